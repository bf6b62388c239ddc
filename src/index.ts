/**
 * ws-uploader: the element classes, the headless engine and downloader, events, errors and protocol
 * types.
 * Importing this module has no side effects (it defines no tag).
 * @module
 */
export { WsUploader } from './element/ws-uploader-element.js';
export { WsDownload, type WsDownloadState } from './element/ws-download-element.js';
export { DEFAULT_I18N, mergeI18n, type DisplayState, type WsUploaderI18n } from './element/i18n.js';
export {
  DEFAULT_DOWNLOAD_I18N,
  mergeDownloadI18n,
  type WsDownloadI18n,
  type WsDownloadI18nOverrides,
} from './element/download-i18n.js';
export * from './engine/index.js';
export * from './download/index.js';
export * from './events/index.js';
export {
  TransportError,
  ServerError,
  ConfigError,
  ResumeError,
  DownloadError,
  WsUploaderError,
  ProtocolError,
} from './errors.js';
export type {
  TransportErrorCode,
  ProtocolErrorCode,
  ResumeErrorCode,
  DownloadErrorCode,
} from './errors.js';
export type {
  ItemMeta,
  ItemKind,
  ItemHolder,
  ServerInfo,
  TargetRange,
  ByteRange,
  WireErrorCode,
  ControlErrorCode,
} from './protocol/index.js';
