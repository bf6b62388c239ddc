// Compile-only: every public event is in the DOM event map with its class and detail type.
// Checked by `npm run typecheck`; a missing map entry or a wrong detail fails the build.
import type {
  WsPublishEvent,
  WsServerChangeEvent,
  WsTransmitRequestEvent,
  WsUploadCompleteEvent,
  WsUploadErrorEvent,
  WsUploadProgressEvent,
  WsUploader,
} from '../../src/index.js';

type Is<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const check = <T extends true>(): T => true as T;

declare const el: WsUploader;

check<Is<HTMLElementEventMap['ws-publish'], WsPublishEvent>>();
check<Is<HTMLElementEventMap['ws-transmit-request'], WsTransmitRequestEvent>>();
check<Is<HTMLElementEventMap['ws-upload-progress'], WsUploadProgressEvent>>();
check<Is<HTMLElementEventMap['ws-upload-complete'], WsUploadCompleteEvent>>();
check<Is<HTMLElementEventMap['ws-upload-error'], WsUploadErrorEvent>>();
check<Is<HTMLElementEventMap['ws-server-change'], WsServerChangeEvent>>();
check<Is<HTMLElementTagNameMap['ws-uploader'], WsUploader>>();

el.addEventListener('ws-upload-complete', (e) => {
  const sha: string = e.detail.sha256;
  const urls: string[] = e.detail.servers.map((s) => s.url);
  void sha;
  void urls;
});
el.addEventListener('ws-upload-progress', (e) => {
  const n: number = e.detail.bytesStored + e.detail.bytesSent + e.detail.bytesTotal;
  void n;
});
