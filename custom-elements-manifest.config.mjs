export default {
  globs: ['src/element/**/*.ts'],
  exclude: ['src/element/internal/**'],
  litelement: true,
};
