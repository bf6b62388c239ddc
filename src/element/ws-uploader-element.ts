/**
 * The `<ws-uploader>` element class. Importing this module does not define the tag; import
 * `ws-uploader/ws-uploader.js` for that.
 */
import { html, LitElement, nothing, type PropertyValues } from 'lit';
import { property, query, state } from 'lit/decorators.js';
import { Task, TaskStatus } from '@lit/task';
import { ENGINE_DEFAULTS, type EngineOptions, type Integrity } from '../engine/options.js';
import {
  ItemState,
  type ItemStatus,
  type ServerStatus,
  type TransmitTask,
  type UploadResult,
} from '../engine/types.js';
import type { ItemKind } from '../protocol/control.js';
import { WsFileRejectEvent, type WsFileRejectReason } from '../events/ws-file-reject-event.js';
import type { WsUploadErrorEvent } from '../events/ws-upload-error-event.js';
import { EngineController } from './engine-controller.js';
import { checkFiles } from './file-rules.js';
import {
  DEFAULT_I18N,
  mergeI18n,
  type WsUploaderI18n,
  type WsUploaderI18nOverrides,
} from './i18n.js';
import { renderHeld, renderItem, type ItemAction } from './item-list.js';
import { ItemSpeed } from './item-speed.js';
import { renderServers } from './server-list.js';
import { styles } from './styles.js';
import { sharedStyles } from './shared-styles.js';

interface Held {
  readonly key: string;
  readonly file: File;
  readonly kind: ItemKind;
}

interface Rejected {
  readonly key: string;
  readonly name: string;
  readonly reason: WsFileRejectReason;
}

/** Rejected-file notices kept on screen, at most. */
const MAX_REJECTED = 5;

/**
 * A drop area that hands files to a control server, which decides what goes to which upload
 * server; shows the upload servers' health and each file's progress, with pause, retry and cancel.
 *
 * @tagname ws-uploader
 * @summary Server-controlled uploads over WebSockets to several upload servers.
 *
 * @fires {WsPublishEvent} ws-publish - Items were published to the control server. Detail: `{ items }`.
 * @fires {WsTransmitRequestEvent} ws-transmit-request - The control server (or `transmit()`) asked for ranges of an item; cancelable (`preventDefault()` declines it), and `retarget(ranges)` sends it to other servers. Detail: `{ taskId, itemId, ranges, priority, reason }`.
 * @fires {WsUploadProgressEvent} ws-upload-progress - An upload advanced (at most once per frame per item). Detail: `{ itemId, bytesSent, bytesStored, bytesTotal, bytesByServer }`.
 * @fires {WsUploadCompleteEvent} ws-upload-complete - An item is stored and verified. Detail: `{ itemId, name, size, sha256, servers: [{ id, url }] }`.
 * @fires {WsUploadErrorEvent} ws-upload-error - An upload or connection failed. Detail: `{ itemId, serverId, code, message, error }`.
 * @fires {WsDegradedEvent} ws-degraded - Uploads go on, but less well: the data Worker could not start, so the page's thread sends the bytes. Detail: `{ reason, message }`.
 * @fires {WsServerChangeEvent} ws-server-change - The upload servers or their state changed. Detail: `{ servers }`.
 * @fires {WsMessageEvent} ws-message - A short message or an inline item arrived through the control server. Detail: `{ from, id, body, item }`.
 * @fires {WsFileRejectEvent} ws-file-reject - A file was not added (`accept`, `max-file-size`, `max-files`). Detail: `{ file, name, reason, message }`.
 *
 * @slot - Content of the drop area, replacing the default label.
 * @slot hint - A line under the label, replacing the default hint.
 *
 * @csspart drop-area - The drop area (also a button that opens the file picker).
 * @csspart rejected-list - Notices of files that were not added.
 * @csspart server-list - The list of upload servers.
 * @csspart server - One upload server.
 * @csspart protocol - The protocol a server's bytes go over.
 * @csspart file-list - The list of files.
 * @csspart file - One file.
 * @csspart file-state - A file's state, or its error.
 * @csspart progress - A file's progress bar.
 * @csspart progress-segment - The filled part of a progress bar; one per server for an item split across servers.
 * @csspart button - Every button of a file or a notice.
 * @csspart pause-button - A file's pause button.
 * @csspart resume-button - A file's resume button.
 * @csspart retry-button - A failed file's retry button.
 * @csspart cancel-button - A file's cancel button.
 * @csspart dismiss-button - Removes a rejected-file notice, or a file held back.
 *
 * @cssproperty [--ws-uploader-accent-color=light-dark(#2563eb, #60a5fa)] - Progress bars, focus ring, drag-over state.
 * @cssproperty [--ws-uploader-border-color=light-dark(#94a3b8, #64748b)] - Borders and the empty part of progress bars.
 * @cssproperty [--ws-uploader-color=inherit] - Text color.
 * @cssproperty [--ws-uploader-background=transparent] - Background of the drop area.
 * @cssproperty [--ws-uploader-error-color=light-dark(#b91c1c, #f87171)] - Failed files and rejected-file notices.
 * @cssproperty [--ws-uploader-server-color-1=light-dark(#2563eb, #60a5fa)] - First server's segment of a split progress bar.
 * @cssproperty [--ws-uploader-server-color-2=light-dark(#16a34a, #4ade80)] - Second server's segment.
 * @cssproperty [--ws-uploader-server-color-3=light-dark(#d97706, #fbbf24)] - Third server's segment (the fourth takes the first color again).
 * @cssproperty [--ws-uploader-gap=0.75rem] - Space between sections.
 * @cssproperty [--ws-uploader-radius=0.5rem] - Corner radius of the drop area and buttons.
 *
 * @example
 * <ws-uploader control-url="wss://app.example/control" auth-token="…" multiple></ws-uploader>
 */
export class WsUploader extends LitElement {
  static override styles = [sharedStyles, styles];

  /** WebSocket URL of the control server. */
  @property({ attribute: 'control-url' }) controlUrl = '';

  /** Credential for the control server (for example a JWT from your login). */
  @property({ attribute: 'auth-token' }) authToken = '';

  /** Returns a fresh credential for each connection; wins over `authToken`. */
  @property({ attribute: false }) auth: (() => string | Promise<string>) | undefined = undefined;

  /** Accepted file types, as the `accept` attribute of a file input (`image/*,.pdf`); others are rejected. */
  @property() accept = '';

  /** Largest file taken, in bytes; `0` for no limit. */
  @property({ type: Number, attribute: 'max-file-size' }) maxFileSize = 0;

  /** Most files the element holds (done ones count); `0` for no limit. */
  @property({ type: Number, attribute: 'max-files' }) maxFiles = 0;

  /** Lets the picker choose several files. */
  @property({ type: Boolean }) multiple = false;

  /** Holds added files back until `publish()` is called, instead of publishing them at once. */
  @property({ type: Boolean, attribute: 'no-auto' }) noAuto = false;

  /** Disables adding files (drop, paste and picker). */
  @property({ type: Boolean, reflect: true }) disabled = false;

  /** Ignores dropped files (the picker and paste still work). */
  @property({ type: Boolean, attribute: 'no-drop' }) noDrop = false;

  /**
   * Largest DATA payload sent, in bytes (capped by each server's limit).
   * @default 524288
   */
  @property({ type: Number, attribute: 'chunk-size' }) chunkSize: number =
    ENGINE_DEFAULTS.chunkSize;

  /**
   * Uploads that run at the same time.
   * @default 3
   */
  @property({ type: Number, attribute: 'max-parallel' }) maxParallel: number =
    ENGINE_DEFAULTS.maxParallel;

  /**
   * Size in bytes under which an item takes the short road (its bytes inline in the control
   * message, kept by the control server); `0` sends everything to upload servers. Absent: the
   * control server's limit.
   */
  @property({ type: Number, attribute: 'inline-max' }) inlineMax: number | undefined = undefined;

  /**
   * What guards an item's bytes besides TLS: `transport` (a CRC-32C per chunk; the upload server
   * computes the item's SHA-256) or `sha256` (the page also hashes the file, and the server
   * verifies that digest). Either way `ws-upload-complete` carries the SHA-256. Read when the
   * element connects. @default 'transport'
   */
  @property() integrity: Integrity = 'transport';

  /** Strings shown by the element; a partial object is merged over the English defaults. */
  @property({ attribute: false }) i18n: WsUploaderI18nOverrides = DEFAULT_I18N;

  /** Whether files are dragged over the drop area. Reflected for styling. */
  @property({ type: Boolean, reflect: true }) dragover = false;

  /** Whether a file is uploading. Reflected for styling; set by the element. */
  @property({ type: Boolean, reflect: true }) uploading = false;

  @state() private announcement = '';
  @state() private held: readonly Held[] = [];
  @state() private rejected: readonly Rejected[] = [];

  @query('input[type=file]') private input!: HTMLInputElement;

  readonly #controller = new EngineController(
    this,
    (code) => this.#strings.errors[code] ?? this.#strings.errors.default,
  );
  readonly #speed = new ItemSpeed();
  readonly #announced = new Set<string>();
  #keys = 0;

  // A new engine only for a new control server or credential; the other options are changed on
  // the running engine (configure()), so items and uploads carry on.
  readonly #connection = new Task(this, {
    task: async ([controlUrl, authToken, auth], { signal }) => {
      if (!controlUrl || (!authToken && !auth) || !this.isConnected) {
        this.#controller.stop();
        return false;
      }
      const inlineMax = this.inlineMax;
      const options: EngineOptions = {
        controlUrl,
        ...(auth ? { auth } : { authToken }),
        chunkSize: this.chunkSize,
        maxParallel: this.maxParallel,
        integrity: this.integrity === 'sha256' ? 'sha256' : 'transport',
        ...(inlineMax === undefined ? {} : { inlineMax }),
      };
      await this.#controller.connect(options, signal);
      // Files added before the engine existed go now, unless the app publishes them.
      if (!this.noAuto) this.publish();
      return true;
    },
    args: () => [this.controlUrl, this.authToken, this.auth] as const,
  });

  constructor() {
    super();
    this.addEventListener('paste', this.#onPaste);
    this.addEventListener('ws-upload-error', (e: WsUploadErrorEvent) => {
      const item = this.items.find((i) => i.itemId === e.detail.itemId);
      if (item) this.announcement = this.#strings.failed(item.name, e.detail.message);
    });
  }

  /** The upload servers: state, round-trip time, protocol in use, throughput. */
  get servers(): readonly ServerStatus[] {
    return this.#controller.servers;
  }

  /** The files added to this element and given to the engine, with their progress. */
  get items(): readonly ItemStatus[] {
    return this.#controller.items;
  }

  /** Files held back: added with `no-auto`, or before the element connected; `publish()` sends them. */
  get heldFiles(): readonly File[] {
    return this.held.map((h) => h.file);
  }

  /** Resolves once connected to the control server; rejects when the credential is refused. */
  get connected(): Promise<unknown> {
    return this.#connection.taskComplete;
  }

  /**
   * Adds files. Those that `accept`, `max-file-size` or `max-files` rule out fire
   * `ws-file-reject` and are not added; the others are published to the control server, which
   * then asks for them (with `no-auto`, or before the element is connected, they are held until
   * `publish()`).
   * @param files the files
   * @returns the new items (none for held files)
   */
  addFiles(files: Iterable<File | Blob> | ArrayLike<File | Blob>): ItemStatus[] {
    return this.#add(Array.from(files as ArrayLike<File | Blob>), 'file');
  }

  /**
   * Without arguments, publishes the files held back (`no-auto`, or added before the element
   * connected); the control server then asks for them. With item ids, publishes those items again
   * (a declined one, say).
   * @param itemIds items to publish again
   */
  publish(itemIds?: readonly string[]): void {
    const engine = this.#controller.engine;
    if (!engine) return;
    if (itemIds !== undefined) engine.publish(itemIds);
    else if (this.held.length > 0) {
      const held = this.held;
      this.held = [];
      for (const kind of new Set(held.map((h) => h.kind)))
        engine.addFiles(
          held.filter((h) => h.kind === kind).map((h) => h.file),
          kind,
        );
    }
    this.#controller.refresh();
  }

  /**
   * Uploads ranges of an item without the control server asking.
   * @param task the item, its ranges and targets
   */
  transmit(task: TransmitTask): Promise<UploadResult> {
    const engine = this.#controller.engine;
    if (!engine) return Promise.reject(new Error('ws-uploader: not connected'));
    return engine.transmit(task);
  }

  /**
   * Pauses uploads where they are (no error).
   * @param itemIds items @default all
   */
  pause(itemIds?: readonly string[]): void {
    this.#controller.engine?.pause(itemIds);
    this.#controller.refresh();
  }

  /**
   * Resumes paused uploads from what the servers hold.
   * @param itemIds items @default all
   */
  resume(itemIds?: readonly string[]): void {
    this.#controller.engine?.resume(itemIds);
    this.#controller.refresh();
  }

  /**
   * Cancels items: their uploads stop (no error) and they leave the list, here and on the control
   * server.
   * @param itemIds items
   */
  cancel(itemIds: readonly string[]): void {
    this.#controller.engine?.cancel(itemIds);
    for (const id of itemIds) this.#speed.forget(id);
    this.#controller.refresh();
  }

  /**
   * Tries failed items again, from what the servers hold.
   * @param itemIds items @default every failed item
   */
  retry(itemIds?: readonly string[]): void {
    this.#controller.engine?.retry(itemIds);
    this.#controller.refresh();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    // Back in the document after the controller stopped the engine: connect again.
    if (this.hasUpdated && !this.#controller.engine) void this.#connection.run();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('chunkSize'))
      this.chunkSize = positive('chunk-size', this.chunkSize, ENGINE_DEFAULTS.chunkSize);
    if (changed.has('maxParallel'))
      this.maxParallel = positive('max-parallel', this.maxParallel, ENGINE_DEFAULTS.maxParallel);
    if (changed.has('maxFileSize'))
      this.maxFileSize = nonNegative('max-file-size', this.maxFileSize, 0);
    if (changed.has('maxFiles')) this.maxFiles = nonNegative('max-files', this.maxFiles, 0);
    if (changed.has('integrity') && this.integrity !== 'sha256' && this.integrity !== 'transport') {
      console.warn(
        `ws-uploader: integrity="${String(this.integrity)}" is not sha256 or transport; using transport`,
      );
      this.integrity = 'transport';
    }
    if (changed.has('inlineMax') && this.inlineMax !== undefined)
      this.inlineMax = nonNegative('inline-max', this.inlineMax, undefined);
    if (
      this.#controller.engine &&
      (changed.has('chunkSize') || changed.has('maxParallel') || changed.has('inlineMax'))
    )
      this.#controller.engine.configure({
        chunkSize: this.chunkSize,
        maxParallel: this.maxParallel,
        inlineMax: this.inlineMax,
      });
    const now = performance.now();
    for (const item of this.items) {
      if (item.state === ItemState.UPLOADING)
        this.#speed.update(item.itemId, item.bytesStored, now);
      else this.#speed.forget(item.itemId);
    }
    this.uploading = this.items.some((i) => i.state === ItemState.UPLOADING);
  }

  get #strings(): WsUploaderI18n {
    return mergeI18n(this.i18n);
  }

  override render() {
    const t = this.#strings;
    const servers = this.servers;
    const items = this.items;
    return html`
      <div
        part="drop-area"
        role="button"
        tabindex=${this.disabled ? -1 : 0}
        aria-disabled=${this.disabled ? 'true' : 'false'}
        aria-describedby="hint"
        @click=${this.#openPicker}
        @keydown=${this.#onKeyDown}
        @dragover=${this.#onDragOver}
        @dragleave=${this.#onDragLeave}
        @drop=${this.#onDrop}
      >
        <slot><span class="label">${this.dragover ? t.dropActive : t.dropLabel}</span></slot>
        <span id="hint" class="hint"><slot name="hint">${t.dropHint}</slot></span>
      </div>
      <input
        type="file"
        hidden
        aria-hidden="true"
        tabindex="-1"
        accept=${this.accept || nothing}
        ?multiple=${this.multiple}
        @change=${this.#onPick}
      />
      ${
        this.rejected.length === 0
          ? nothing
          : html`<section class="rejected" aria-labelledby="rejected-heading">
              <h3 id="rejected-heading">${t.rejectedHeading}</h3>
              <ul part="rejected-list">
                ${this.rejected.map(
                  (r) =>
                    html`<li>
                      <span>${t.rejected[r.reason](r.name)}</span>
                      <button
                        type="button"
                        part="button dismiss-button"
                        aria-label=${`${t.dismiss} ${r.name}`}
                        @click=${() => (this.rejected = this.rejected.filter((x) => x !== r))}
                      >
                        ${t.dismiss}
                      </button>
                    </li>`,
                )}
              </ul>
            </section>`
      }
      <h3 id="servers-heading">${t.serversHeading}</h3>
      ${this.#connection.render({
        error: (e) =>
          html`<p role="alert">
            ${t.errors[(e as { code?: string }).code ?? ''] ?? t.errors.default}
          </p>`,
      })}
      ${
        servers.length === 0
          ? this.#connection.status === TaskStatus.ERROR
            ? nothing
            : html`<p class="waiting">${t.noServers}</p>`
          : renderServers(
              servers,
              t,
              new Set(
                items
                  .filter((i) => i.state === ItemState.UPLOADING)
                  .flatMap((i) => Object.keys(i.bytesByServer ?? {})),
              ),
            )
      }
      ${
        items.length === 0 && this.held.length === 0
          ? nothing
          : html`<h3 id="files-heading">${t.filesHeading}</h3>
              <ul part="file-list" aria-labelledby="files-heading">
                ${this.held.map((h) =>
                  renderHeld(
                    h.file,
                    h.key,
                    t,
                    () => (this.held = this.held.filter((x) => x !== h)),
                  ),
                )}
                ${items.map((item) =>
                  renderItem(item, {
                    t,
                    rate: this.#speed.rate(item.itemId),
                    secondsLeft: this.#speed.secondsLeft(
                      item.itemId,
                      (item.bytesTotal || item.size) - item.bytesStored,
                    ),
                    serverIndex: (id) =>
                      Math.max(
                        0,
                        servers.findIndex((s) => s.id === id),
                      ),
                    act: this.#act,
                  }),
                )}
              </ul>`
      }
      <div class="visually-hidden" role="status" aria-live="polite">${this.announcement}</div>
    `;
  }

  protected override updated(): void {
    for (const item of this.items) {
      if (item.state === ItemState.COMPLETE && !this.#announced.has(item.itemId)) {
        this.#announced.add(item.itemId);
        this.announcement = this.#strings.complete(item.name);
      }
    }
  }

  #add(files: (File | Blob)[], kind: ItemKind): ItemStatus[] {
    if (this.disabled || files.length === 0) return [];
    const held = this.items.length + this.held.length;
    const { accepted, rejected } = checkFiles(files, this, held);
    const t = this.#strings;
    for (const { file, reason } of rejected) {
      const name = (file as Partial<File>).name ?? '';
      fire(this, new WsFileRejectEvent({ file, name, reason, message: t.rejected[reason](name) }));
      this.rejected = [...this.rejected, { key: String(++this.#keys), name, reason }].slice(
        -MAX_REJECTED,
      );
      this.announcement = t.rejected[reason](name);
    }
    if (accepted.length === 0) return [];
    const engine = this.#controller.engine;
    if (!engine || this.noAuto) {
      this.held = [
        ...this.held,
        ...accepted.map((blob) => ({ key: String(++this.#keys), file: asFile(blob), kind })),
      ];
      return [];
    }
    const added = engine.addFiles(accepted, kind);
    this.#controller.refresh();
    return added;
  }

  #act = (action: ItemAction, item: ItemStatus): void => {
    this[action]([item.itemId]);
  };

  #openPicker = (): void => {
    if (!this.disabled) this.input.click();
  };

  #onKeyDown = (e: KeyboardEvent): void => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      this.#openPicker();
    }
  };

  #onDragOver = (e: DragEvent): void => {
    if (this.disabled || this.noDrop) return;
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    this.dragover = true;
  };

  #onDragLeave = (): void => {
    this.dragover = false;
  };

  #onDrop = (e: DragEvent): void => {
    this.dragover = false;
    if (this.disabled || this.noDrop) return;
    e.preventDefault();
    const files = e.dataTransfer?.files;
    if (files && files.length > 0) this.addFiles(files);
  };

  #onPick = (): void => {
    const files = this.input.files;
    if (files && files.length > 0) this.addFiles(files);
    this.input.value = '';
  };

  #onPaste = (e: ClipboardEvent): void => {
    const data = e.clipboardData;
    if (this.disabled || !data) return;
    // Files (a screenshot is an image file), else the plain text as a text item.
    const files = Array.from(data.files);
    const text = files.length === 0 ? data.getData('text/plain') : '';
    if (files.length === 0 && text === '') return;
    e.preventDefault();
    this.#add(
      files.length > 0
        ? files
        : [new File([text], 'pasted.txt', { type: 'text/plain;charset=utf-8' })],
      'clipboard',
    );
  };
}

/** Dispatches an event (listed in the class's `@fires`, which documents it). */
function fire(target: EventTarget, event: Event): void {
  target.dispatchEvent(event);
}

function asFile(blob: File | Blob): File {
  return blob instanceof File ? blob : new File([blob], 'blob', { type: blob.type });
}

/**
 * Bad attribute values warn and fall back to the default; they never throw. A removed attribute
 * (Lit sets `null`) falls back quietly.
 */
function positive(name: string, value: number | null, fallback: number): number {
  if (value === null) return fallback;
  if (Number.isSafeInteger(value) && value > 0) return value;
  console.warn(`ws-uploader: ignoring ${name}=${String(value)}; using ${fallback}`);
  return fallback;
}

function nonNegative<F extends number | undefined>(
  name: string,
  value: number | null,
  fallback: F,
): number | F {
  if (value === null) return fallback;
  if (Number.isSafeInteger(value) && value >= 0) return value;
  console.warn(
    `ws-uploader: ignoring ${name}=${String(value)}; using ${String(fallback ?? 'the default')}`,
  );
  return fallback;
}

declare global {
  interface HTMLElementTagNameMap {
    'ws-uploader': WsUploader;
  }
}
