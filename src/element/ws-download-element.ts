/**
 * The `<ws-download>` element class. Importing this module does not define the tag; import
 * `ws-uploader/ws-download.js` for that.
 */
import { html, LitElement, nothing, type PropertyValues } from 'lit';
import { property, state } from 'lit/decorators.js';
import type { WsDownloader } from '../download/downloader.js';
import { WsDownloadCompleteEvent } from '../events/ws-download-complete-event.js';
import { WsDownloadErrorEvent } from '../events/ws-download-error-event.js';
import {
  WsDownloadProgressEvent,
  type WsDownloadProgressDetail,
} from '../events/ws-download-progress-event.js';
import {
  DEFAULT_DOWNLOAD_I18N,
  mergeDownloadI18n,
  type WsDownloadI18n,
  type WsDownloadI18nOverrides,
} from './download-i18n.js';
import { downloadStyles } from './download-styles.js';
import { sharedStyles } from './shared-styles.js';

/** Where a `<ws-download>` is; reflected as its `state` attribute. */
export type WsDownloadState = 'idle' | 'downloading' | 'done' | 'failed';

/** What the element knows of its item. */
interface ShownItem {
  readonly name: string;
  readonly size: number;
  readonly mime: string;
}

/** Raster image types shown as `<img>` (never SVG: it can carry script). */
const RASTER_IMAGES = new Set([
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/bmp',
]);

/** Item ids the control server takes. */
const ITEM_ID = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Downloads one item with a `WsDownloader` the app made, into browser storage, verified, and
 * shows it by its media type: a raster image as `<img>`, video and audio with controls, anything
 * else as a link that saves it. Shows the name, size and a progress bar while it downloads, and a
 * localized error with a retry button when it fails.
 *
 * @tagname ws-download
 * @summary Downloads one item and shows it.
 *
 * @fires {WsDownloadProgressEvent} ws-download-progress - The download advanced (at most once per frame). Detail: `{ itemId, bytesStored, bytesTotal }`.
 * @fires {WsDownloadCompleteEvent} ws-download-complete - The item is stored, verified and shown. Detail: `{ itemId, name, size, sha256, mime }`.
 * @fires {WsDownloadErrorEvent} ws-download-error - The download failed (a cancelled one fires nothing). Detail: `{ itemId, code, message, error }`.
 *
 * @csspart name - The item's name.
 * @csspart progress - The progress bar, while downloading.
 * @csspart media - The `<img>`, `<video>` or `<audio>` showing the item.
 * @csspart save-link - The link that saves an item that is not shown.
 * @csspart error - Why the download failed.
 * @csspart button - Every button.
 * @csspart download-button - Starts the download (shown while idle, as with `no-auto`).
 * @csspart cancel-button - Stops the download.
 * @csspart retry-button - Tries a failed download again.
 *
 * @cssproperty [--ws-uploader-accent-color=light-dark(#2563eb, #60a5fa)] - The progress bar, links and the focus ring.
 * @cssproperty [--ws-uploader-border-color=light-dark(#94a3b8, #64748b)] - Buttons and the empty part of the progress bar.
 * @cssproperty [--ws-uploader-error-color=light-dark(#b91c1c, #f87171)] - The error line.
 * @cssproperty [--ws-uploader-radius=0.5rem] - Corner radius of the media and buttons.
 * @cssproperty [--ws-uploader-color=inherit] - Text color.
 *
 * @example
 * <ws-download item-id="k3J9x"></ws-download>
 * <script type="module">
 *   document.querySelector('ws-download').downloader = new WsDownloader({ locate: engine });
 * </script>
 */
export class WsDownload extends LitElement {
  static override styles = [sharedStyles, downloadStyles];

  /** The item to download: an id as the control server gives (`[A-Za-z0-9_-]{1,128}`). */
  @property({ attribute: 'item-id' }) itemId = '';

  /** The downloader that gets the item; the app makes it (the element creates no engine). */
  @property({ attribute: false }) downloader: WsDownloader | undefined = undefined;

  /** Waits for `download()` instead of starting once `item-id` and `downloader` are set. */
  @property({ type: Boolean, attribute: 'no-auto' }) noAuto = false;

  /**
   * Plays audio and video through the downloader's service worker (`downloader.url()`) as it
   * arrives, instead of waiting for the whole item; other items, or a page no service worker
   * controls, are downloaded as without it. A streamed item fires no `ws-download-complete` (it
   * is not verified as a whole).
   */
  @property({ type: Boolean }) stream = false;

  /** Strings shown by the element; a partial object is merged over the English defaults. */
  @property({ attribute: false }) i18n: WsDownloadI18nOverrides = DEFAULT_DOWNLOAD_I18N;

  @state() private phase: WsDownloadState = 'idle';
  @state() private bytesStored = 0;
  @state() private bytesTotal = 0;
  @state() private shown: ShownItem | undefined = undefined;
  @state() private blob: Blob | undefined = undefined;
  @state() private streamUrl: string | undefined = undefined;
  /** The error code of a failed download; its message follows `i18n`. */
  @state() private failure: string | undefined = undefined;
  @state() private announcement = '';

  #run: AbortController | undefined;
  #running: Promise<void> | undefined;
  #objectUrl: { blob: Blob; url: string } | undefined;
  #frame = 0;
  #pending: WsDownloadProgressDetail | undefined;

  /** Where the element is: `idle`, `downloading`, `done` or `failed`. Reflected as `state`. */
  get state(): WsDownloadState {
    return this.phase;
  }

  /** Bytes of the item stored and its size (`0` while unknown). */
  get progress(): { readonly bytesStored: number; readonly bytesTotal: number } {
    return { bytesStored: this.bytesStored, bytesTotal: this.bytesTotal };
  }

  /**
   * Downloads the item (again after a failure or `cancel()`; the parts stored stay, so only the
   * rest is fetched). Does nothing without `item-id` and `downloader`.
   * @returns resolves when the download is done or failed (never rejects: see `ws-download-error`)
   */
  download(): Promise<void> {
    if (this.phase === 'downloading' && this.#running) return this.#running;
    return this.#start();
  }

  /** Stops the download (the parts stored stay); the element goes back to `idle`, with no error. */
  cancel(): void {
    if (!this.#run) return;
    this.#run.abort();
    this.#run = undefined;
    this.#running = undefined;
    this.#dropFrame();
    this.#pending = undefined;
    this.phase = 'idle';
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (!this.hasUpdated) return;
    // Back in the document: show the item again (its object URL was revoked), or start again.
    this.requestUpdate();
    if (this.phase === 'idle' && !this.noAuto) void this.#start();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.cancel();
    this.#revoke();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('itemId') && this.itemId && !ITEM_ID.test(this.itemId)) {
      console.warn(`ws-uploader: ignoring item-id=${JSON.stringify(this.itemId)}; not an item id`);
      this.itemId = '';
    }
    if (changed.has('itemId') || changed.has('downloader')) {
      this.#reset();
      if (!this.noAuto && this.isConnected) void this.#start();
    }
    if (this.getAttribute('state') !== this.phase) this.setAttribute('state', this.phase);
  }

  get #strings(): WsDownloadI18n {
    return mergeDownloadI18n(this.i18n);
  }

  get #name(): string {
    return this.shown?.name ?? this.itemId;
  }

  override render() {
    const t = this.#strings;
    const name = this.#name;
    const size = this.shown?.size ?? (this.bytesTotal || undefined);
    const ready = Boolean(this.itemId && this.downloader);
    return html`
      <div class="head">
        <span part="name">${name}</span>
        ${
          size === undefined
            ? nothing
            : html`<span class="size"
                >${
                  this.phase === 'downloading' ? t.progress(this.bytesStored, size) : t.size(size)
                }</span
              >`
        }
        <span class="actions">
          ${
            this.phase === 'idle' && ready
              ? this.#button('download', t.download, () => void this.download())
              : nothing
          }
          ${
            this.phase === 'downloading'
              ? this.#button('cancel', t.cancel, () => this.cancel())
              : nothing
          }
          ${
            this.phase === 'failed' && ready
              ? this.#button('retry', t.retry, () => void this.download())
              : nothing
          }
        </span>
      </div>
      ${this.phase === 'downloading' ? this.#renderProgress(t, name) : nothing}
      ${
        this.phase === 'failed' && this.failure !== undefined
          ? html`<p part="error">${t.errors[this.failure] ?? t.errors.default}</p>`
          : nothing
      }
      ${this.phase === 'done' ? this.#renderItem(t, name) : nothing}
      <div class="visually-hidden" role="status" aria-live="polite">${this.announcement}</div>
    `;
  }

  #button(kind: string, label: string, act: () => void) {
    return html`<button
      type="button"
      part=${`button ${kind}-button`}
      aria-label=${`${label} ${this.#name}`}
      @click=${act}
    >
      ${label}
    </button>`;
  }

  #renderProgress(t: WsDownloadI18n, name: string) {
    const total = this.bytesTotal || this.shown?.size || 0;
    const percent = total > 0 ? Math.min(100, Math.floor((this.bytesStored / total) * 100)) : 0;
    return html`<div
      part="progress"
      role="progressbar"
      aria-label=${t.progressLabel(name)}
      aria-valuemin="0"
      aria-valuemax="100"
      aria-valuenow=${total > 0 ? percent : nothing}
      aria-valuetext=${total > 0 ? t.progress(this.bytesStored, total) : nothing}
    >
      <div class="bar" style=${`width: ${percent}%`}></div>
    </div>`;
  }

  #renderItem(t: WsDownloadI18n, name: string) {
    const mime = (this.shown?.mime ?? '').split(';')[0]!.trim().toLowerCase();
    if (this.streamUrl) return media(mime, this.streamUrl, name) ?? nothing;
    if (!this.blob) return nothing;
    const url = this.#urlOf(this.blob);
    if (RASTER_IMAGES.has(mime)) return html`<img part="media" src=${url} alt=${name} />`;
    return (
      media(mime, url, name) ??
      html`<a part="save-link" href=${url} download=${name}>${t.save(name)}</a>`
    );
  }

  /** An object URL of the blob shown, made once; the one of a blob shown before is revoked. */
  #urlOf(blob: Blob): string {
    if (this.#objectUrl?.blob === blob) return this.#objectUrl.url;
    this.#revoke();
    this.#objectUrl = { blob, url: URL.createObjectURL(blob) };
    return this.#objectUrl.url;
  }

  #revoke(): void {
    if (this.#objectUrl) URL.revokeObjectURL(this.#objectUrl.url);
    this.#objectUrl = undefined;
  }

  /** Forgets the item shown: a new item id or downloader. */
  #reset(): void {
    this.cancel();
    this.#revoke();
    this.phase = 'idle';
    this.shown = undefined;
    this.blob = undefined;
    this.streamUrl = undefined;
    this.failure = undefined;
    this.bytesStored = 0;
    this.bytesTotal = 0;
  }

  #start(): Promise<void> {
    const { downloader, itemId } = this;
    if (!downloader || !itemId) return Promise.resolve();
    this.#run?.abort();
    const run = new AbortController();
    this.#run = run;
    this.phase = 'downloading';
    this.failure = undefined;
    this.blob = undefined;
    this.streamUrl = undefined;
    this.bytesStored = 0;
    const running = this.#download(downloader, itemId, run);
    this.#running = running;
    return running;
  }

  async #download(downloader: WsDownloader, itemId: string, run: AbortController): Promise<void> {
    const current = () => run === this.#run;
    let named = false;
    const name = () => {
      if (named) return;
      named = true;
      // The store has the item's metadata once the download has begun.
      void downloader.store
        .then((store) => store.get(itemId))
        .then((stored) => {
          if (stored && current() && !this.shown) {
            const { name, size, mime } = stored.meta;
            this.shown = { name, size, mime };
          }
        })
        .catch(() => undefined);
    };
    const off = downloader.on('progress', (e) => {
      if (!current() || e.detail.itemId !== itemId) return;
      name();
      this.#queueProgress({
        itemId,
        bytesStored: e.detail.bytesStored,
        bytesTotal: e.detail.bytesTotal,
      });
    });
    try {
      if (this.stream && (await this.#streamed(downloader, itemId, run.signal))) {
        if (current()) this.announcement = this.#strings.complete(this.#name);
        return;
      }
      const item = await downloader.download(itemId, { signal: run.signal });
      if (!current()) return;
      this.#flushProgress();
      const { name, size, mime } = item.meta;
      this.shown = { name, size, mime };
      this.blob = item.blob;
      this.bytesStored = size;
      this.bytesTotal = size;
      this.phase = 'done';
      this.announcement = this.#strings.complete(name);
      fire(this, new WsDownloadCompleteEvent({ itemId, name, size, sha256: item.sha256, mime }));
    } catch (e) {
      if (!current()) return; // cancelled, or another item now
      this.#dropFrame();
      const error = e instanceof Error ? e : new Error(String(e));
      const raw = (error as Error & { code?: unknown }).code;
      const code = typeof raw === 'string' ? raw : 'unknown';
      const t = this.#strings;
      const message = t.errors[code] ?? t.errors.default;
      this.failure = code;
      this.phase = 'failed';
      this.announcement = t.failed(this.#name, message);
      fire(this, new WsDownloadErrorEvent({ itemId, code, message, error }));
    } finally {
      off();
      if (current()) {
        this.#run = undefined;
        this.#running = undefined;
      }
    }
  }

  /**
   * Streams audio or video through the service worker; `false` (download it instead) for another
   * type, an item stored whole, or a page no service worker controls.
   */
  async #streamed(downloader: WsDownloader, itemId: string, signal: AbortSignal): Promise<boolean> {
    if (typeof navigator === 'undefined' || !navigator.serviceWorker?.controller) return false;
    if (await downloader.get(itemId)) return false; // stored: shown from the store, verified
    let url: string;
    let head: Response;
    try {
      url = await downloader.url(itemId);
      head = await fetch(url, { method: 'HEAD', headers: { Range: 'bytes=0-0' }, signal });
    } catch (e) {
      if (signal.aborted) throw e;
      return false; // the worker could not serve it: download it instead
    }
    if (!head.ok) return false;
    const mime = (head.headers.get('Content-Type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (!mime.startsWith('audio/') && !mime.startsWith('video/')) return false;
    const total = /\/(\d+)$/.exec(head.headers.get('Content-Range') ?? '')?.[1];
    const size = Number(total ?? head.headers.get('Content-Length') ?? 0);
    const stored = await (await downloader.store).get(itemId).catch(() => undefined);
    if (signal.aborted) return true; // cancelled: nothing to show
    this.shown = { name: stored?.meta.name ?? itemId, size, mime };
    this.streamUrl = url;
    this.bytesTotal = size;
    this.phase = 'done';
    return true;
  }

  #queueProgress(detail: WsDownloadProgressDetail): void {
    this.#pending = detail;
    this.#frame ||= requestAnimationFrame(() => this.#flushProgress());
  }

  #flushProgress(): void {
    this.#dropFrame();
    const detail = this.#pending;
    this.#pending = undefined;
    if (!detail) return;
    this.bytesStored = detail.bytesStored;
    this.bytesTotal = detail.bytesTotal;
    fire(this, new WsDownloadProgressEvent(detail));
  }

  #dropFrame(): void {
    if (this.#frame) cancelAnimationFrame(this.#frame);
    this.#frame = 0;
  }
}

/** Dispatches an event (outside the class, so the manifest lists only the documented events). */
function fire(target: EventTarget, event: Event): void {
  target.dispatchEvent(event);
}

/** A `<video>` or `<audio>` with controls, for a media type that is one; else `undefined`. */
function media(mime: string, src: string, name: string) {
  if (mime.startsWith('video/'))
    return html`<video
      part="media"
      controls
      preload="metadata"
      src=${src}
      aria-label=${name}
    ></video>`;
  if (mime.startsWith('audio/'))
    return html`<audio
      part="media"
      controls
      preload="metadata"
      src=${src}
      aria-label=${name}
    ></audio>`;
  return undefined;
}

declare global {
  interface HTMLElementTagNameMap {
    'ws-download': WsDownload;
  }
}
