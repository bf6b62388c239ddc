// One minified ESM file of the element with lit inlined, for the demo and CDN users, and its
// Workers (the engine's data and hash Workers, the downloader's store Worker).
// The npm build is tsc's per-module output; this bundle is built from it.
import { nodeResolve } from '@rollup/plugin-node-resolve';
import terser from '@rollup/plugin-terser';

const onwarn = (warning, warn) => {
  // tsc's decorator helper reads `this` at module level; it is undefined in ESM, as intended.
  if (warning.code === 'THIS_IS_UNDEFINED') return;
  warn(warning);
};

export default [
  {
    input: 'dist/src/ws-uploader.js',
    output: {
      file: 'dist/bundle/ws-uploader.min.js',
      format: 'es',
      sourcemap: true,
    },
    onwarn,
    plugins: [
      nodeResolve({ browser: true, exportConditions: ['production'] }),
      terser({ ecma: 2022, module: true, format: { comments: false } }),
    ],
  },
  // The downloader's service worker, for pages to serve at the scope they want it to control.
  {
    input: 'dist/src/download/service-worker.js',
    output: { file: 'dist/bundle/ws-uploader-sw.js', format: 'es', sourcemap: true },
    onwarn,
    plugins: [
      nodeResolve({ browser: true, exportConditions: ['production'] }),
      terser({ ecma: 2022, module: true, format: { comments: false } }),
    ],
  },
  // The data Worker, which the bundle starts from `./data-worker.js` next to itself.
  {
    input: 'dist/src/engine/data-worker.js',
    output: { file: 'dist/bundle/data-worker.js', format: 'es', sourcemap: true },
    onwarn,
    plugins: [
      nodeResolve({ browser: true, exportConditions: ['production'] }),
      terser({ ecma: 2022, module: true, format: { comments: false } }),
    ],
  },
  // The hash Worker, which the bundle starts from `./hash-worker.js` next to itself.
  {
    input: 'dist/src/engine/hash-worker.js',
    output: { file: 'dist/bundle/hash-worker.js', format: 'es', sourcemap: true },
    onwarn,
    plugins: [
      nodeResolve({ browser: true, exportConditions: ['production'] }),
      terser({ ecma: 2022, module: true, format: { comments: false } }),
    ],
  },
  // The store Worker, which OpfsItemStore starts from `./store-worker.js` next to itself; the
  // hashing it loads on demand goes in the same file.
  {
    input: 'dist/src/download/store-worker.js',
    output: {
      file: 'dist/bundle/store-worker.js',
      format: 'es',
      sourcemap: true,
      inlineDynamicImports: true,
    },
    onwarn,
    plugins: [
      nodeResolve({ browser: true, exportConditions: ['production'] }),
      terser({ ecma: 2022, module: true, format: { comments: false } }),
    ],
  },
];
