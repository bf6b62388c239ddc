// Browser tests: headless Chromium from the machine (see scripts/ensure-chromium.mjs), TypeScript
// through esbuild, real servers started on loopback by test/helpers/servers-plugin.mjs.
import { existsSync } from 'node:fs';
import { esbuildPlugin } from '@web/dev-server-esbuild';
import { chromeLauncher } from '@web/test-runner-chrome';
import { CHROMIUM_ARGS, findChromium } from './scripts/chromium.mjs';
import { testServersPlugin } from './test/helpers/servers-plugin.mjs';

const executablePath = findChromium();
if (!executablePath) {
  throw new Error(
    'ws-uploader tests need Chromium: run `node scripts/ensure-chromium.mjs` or set CHROME_PATH',
  );
}

export default {
  nodeResolve: { exportConditions: ['production'] },
  rootDir: '.',
  groups: [
    { name: 'protocol', files: 'test/protocol/**/*.test.ts' },
    { name: 'engine', files: 'test/engine/**/*.test.ts' },
    { name: 'element', files: 'test/element/**/*.test.ts' },
    { name: 'download', files: 'test/download/**/*.test.ts' },
    { name: 'integration', files: 'test/integration/**/*.test.ts' },
  ],
  // A Worker script is fetched by the `.js` name tsc gives it; here the source is TypeScript.
  middleware: [
    function typescriptWorkers(context, next) {
      const path = context.path;
      if (path.startsWith('/src/') && path.endsWith('.js')) {
        const ts = path.replace(/\.js$/, '.ts');
        if (!existsSync(`.${path}`) && existsSync(`.${ts}`))
          context.url = context.url.replace(path, ts);
      }
      return next();
    },
    // The downloader's service worker may control the whole test page (scope `/`).
    async function serviceWorkerScope(context, next) {
      await next();
      if (context.path === '/src/download/service-worker.ts')
        context.set('Service-Worker-Allowed', '/');
    },
  ],
  plugins: [
    esbuildPlugin({ ts: true, target: 'es2022', tsconfig: 'tsconfig.base.json' }),
    testServersPlugin(),
  ],
  browsers: [
    chromeLauncher({
      launchOptions: {
        executablePath,
        headless: true,
        // Media elements in the tests play without a click.
        args: [...CHROMIUM_ARGS, '--autoplay-policy=no-user-gesture-required'],
      },
    }),
  ],
  concurrency: 1,
  coverage: true,
  coverageConfig: {
    include: ['src/**/*.ts'],
    threshold: { statements: 90, lines: 90, branches: 80, functions: 90 },
  },
  testFramework: { config: { timeout: 60_000 } },
  testsFinishTimeout: 300_000,
};
