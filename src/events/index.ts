/**
 * The DOM events `<ws-uploader>` and `<ws-download>` dispatch. All bubble and are composed.
 * @module
 */
export { WsPublishEvent } from './ws-publish-event.js';
export {
  WsTransmitRequestEvent,
  type WsTransmitRequestDetail,
} from './ws-transmit-request-event.js';
export { WsUploadProgressEvent, type WsUploadProgressDetail } from './ws-upload-progress-event.js';
export { WsUploadCompleteEvent, type WsUploadCompleteDetail } from './ws-upload-complete-event.js';
export { WsUploadErrorEvent, type WsUploadErrorDetail } from './ws-upload-error-event.js';
export { WsServerChangeEvent } from './ws-server-change-event.js';
export { WsDegradedEvent, type WsDegradedDetail } from './ws-degraded-event.js';
export { WsMessageEvent, type WsMessageDetail } from './ws-message-event.js';
export {
  WsFileRejectEvent,
  type WsFileRejectDetail,
  type WsFileRejectReason,
} from './ws-file-reject-event.js';
export {
  WsDownloadProgressEvent,
  type WsDownloadProgressDetail,
} from './ws-download-progress-event.js';
export {
  WsDownloadCompleteEvent,
  type WsDownloadCompleteDetail,
} from './ws-download-complete-event.js';
export { WsDownloadErrorEvent, type WsDownloadErrorDetail } from './ws-download-error-event.js';
