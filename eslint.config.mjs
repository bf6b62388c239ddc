import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import mocha from 'eslint-plugin-mocha';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'data/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['**/*.mjs', 'bin/**/*.js', 'scripts/**/*.mjs'],
    languageOptions: { globals: globals.node },
  },
  {
    // The codec is shared by browser and Node: no platform globals.
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        ...[
          'window',
          'document',
          'Buffer',
          'process',
          'require',
          'WebSocket',
          'self',
          'navigator',
        ].map((name) => ({ name, message: 'src/protocol is pure: no DOM or Node globals.' })),
      ],
      'no-restricted-imports': ['error', { patterns: ['node:*', 'lit', 'lit/*', 'ws'] }],
    },
  },
  {
    // The engine is headless.
    files: ['src/engine/**/*.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        ...['window', 'document', 'customElements', 'HTMLElement'].map((name) => ({
          name,
          message: 'the engine never touches the DOM.',
        })),
      ],
      'no-restricted-imports': ['error', { patterns: ['lit', 'lit/*', '@lit/*', '../element/*'] }],
    },
  },
  {
    files: ['test/**/*.ts'],
    plugins: { mocha },
    rules: {
      'mocha/no-exclusive-tests': 'error',
      '@typescript-eslint/no-unused-expressions': 'off',
    },
  },
);
