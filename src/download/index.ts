/**
 * The download side, headless: items back from the upload servers into browser storage, by parts,
 * verified, kept for offline use.
 * @module
 */
export {
  WsDownloader,
  DownloaderEvent,
  type DownloadedItem,
  type DownloaderEventDetails,
  type DownloaderOptions,
  type DownloadIntegrity,
  type DownloadTransport,
} from './downloader.js';
export {
  IndexedDbItemStore,
  OpfsItemStore,
  type ItemStore,
  type OpfsItemStoreOptions,
  type StoredItem,
} from './item-store.js';
