export default {
  globs: ['src/element/**/*.ts'],
  exclude: ['src/element/internal/**'],
  outdir: '.',
  litelement: true,
};
