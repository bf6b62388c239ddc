export default {
  globs: ['src/element/**/*.ts'],
  exclude: ['src/element/internal/**'],
  litelement: true,
  // package.json names the manifest itself; the analyzer must not rewrite it.
  packagejson: false,
};
