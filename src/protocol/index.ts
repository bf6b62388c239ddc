/**
 * The pure codec of both wire protocols, shared by the browser engine and the servers.
 * No DOM, no `node:` modules, no `Buffer`: only `Uint8Array`, `DataView` and `TextEncoder`.
 * @module
 */
export * from './constants.js';
export * from './errors.js';
export * from './crc32c.js';
export * from './ranges.js';
export * from './hex.js';
export * from './utf8.js';
export * from './dup2.js';
export * from './dup1.js';
export * from './control.js';
export * from './registry.js';
