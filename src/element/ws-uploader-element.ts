/**
 * The `<ws-uploader>` element class. Importing this module does not define the tag; import
 * `ws-uploader/ws-uploader.js` for that.
 */
import { html, LitElement, nothing, type PropertyValues } from 'lit';
import { property, query, state } from 'lit/decorators.js';
import { Task, TaskStatus } from '@lit/task';
import { ENGINE_DEFAULTS, type EngineOptions } from '../engine/options.js';
import {
  ItemState,
  type ItemStatus,
  type ServerStatus,
  type TransmitTask,
  type UploadResult,
} from '../engine/types.js';
import { EngineController } from './engine-controller.js';
import { DEFAULT_I18N, mergeI18n, type WsUploaderI18n } from './i18n.js';
import { styles } from './styles.js';

/**
 * A drop area that hands files to a control server, which decides what goes to which upload
 * server; shows the upload servers with their round-trip times and each file's progress.
 *
 * @tagname ws-uploader
 * @summary Server-controlled uploads over WebSockets to several upload servers.
 *
 * @fires {WsPublishEvent} ws-publish - Items were published to the control server. Detail: `{ items }`.
 * @fires {WsTransmitRequestEvent} ws-transmit-request - The control server asked for ranges of an item. Detail: `{ taskId, itemId, ranges, priority }`.
 * @fires {WsUploadProgressEvent} ws-upload-progress - An upload advanced (at most once per frame per item). Detail: `{ itemId, bytesSent, bytesStored, bytesTotal }`.
 * @fires {WsUploadCompleteEvent} ws-upload-complete - An item is stored and verified. Detail: `{ itemId, name, size, sha256, servers: [{ id, url }] }`.
 * @fires {WsUploadErrorEvent} ws-upload-error - An upload or connection failed. Detail: `{ itemId, code, message, error }`.
 * @fires {WsServerChangeEvent} ws-server-change - The upload servers or their state changed. Detail: `{ servers }`.
 *
 * @slot - Content of the drop area, replacing the default label.
 *
 * @csspart drop-area - The drop area (also a button that opens the file picker).
 * @csspart server-list - The list of upload servers.
 * @csspart server - One upload server.
 * @csspart file-list - The list of files.
 * @csspart file - One file.
 * @csspart progress - A file's progress bar.
 *
 * @cssproperty [--ws-uploader-accent-color=#2563eb] - Progress bars, focus ring, drag-over state.
 * @cssproperty [--ws-uploader-border-color=#94a3b8] - Border of the drop area.
 * @cssproperty [--ws-uploader-color=inherit] - Text color.
 * @cssproperty [--ws-uploader-gap=0.75rem] - Space between sections.
 * @cssproperty [--ws-uploader-radius=0.5rem] - Corner radius of the drop area.
 *
 * @example
 * <ws-uploader control-url="wss://app.example/control" auth-token="…"></ws-uploader>
 */
export class WsUploader extends LitElement {
  static override styles = styles;

  /** WebSocket URL of the control server. */
  @property({ attribute: 'control-url' }) controlUrl = '';

  /** Credential for the control server (for example a JWT from your login). */
  @property({ attribute: 'auth-token' }) authToken = '';

  /** Returns a fresh credential for each connection; wins over `authToken`. */
  @property({ attribute: false }) auth: (() => string | Promise<string>) | undefined = undefined;

  /** Accepted file types, as the `accept` attribute of a file input. */
  @property() accept = '';

  /** Lets the picker choose several files. */
  @property({ type: Boolean }) multiple = false;

  /** Disables adding files (drop and picker). */
  @property({ type: Boolean, reflect: true }) disabled = false;

  /** Ignores dropped files (the picker still works). */
  @property({ type: Boolean, attribute: 'no-drop' }) noDrop = false;

  /** Largest DATA payload sent, in bytes (capped by each server's limit). */
  @property({ type: Number, attribute: 'chunk-size' }) chunkSize: number =
    ENGINE_DEFAULTS.chunkSize;

  /** Uploads that run at the same time. */
  @property({ type: Number, attribute: 'max-parallel' }) maxParallel: number =
    ENGINE_DEFAULTS.maxParallel;

  /** Strings shown by the element; a partial object is merged over the English defaults. */
  @property({ attribute: false }) i18n: Partial<WsUploaderI18n> = DEFAULT_I18N;

  /** Whether files are dragged over the drop area. Reflected for styling. */
  @property({ type: Boolean, reflect: true }) dragover = false;

  @state() private announcement = '';

  @query('input[type=file]') private input!: HTMLInputElement;

  readonly #controller = new EngineController(
    this,
    (code) => this.#strings.errors[code] ?? this.#strings.errors.default,
  );

  readonly #connection = new Task(this, {
    task: async ([controlUrl, authToken, auth, chunkSize, maxParallel], { signal }) => {
      if (!controlUrl || (!authToken && !auth) || !this.isConnected) {
        this.#controller.stop();
        return false;
      }
      await this.#controller.connect(
        this.#options(controlUrl, authToken, auth, chunkSize, maxParallel),
        signal,
      );
      return true;
    },
    args: () =>
      [this.controlUrl, this.authToken, this.auth, this.chunkSize, this.maxParallel] as const,
  });

  /** The upload servers, their state and round-trip time. */
  get servers(): readonly ServerStatus[] {
    return this.#controller.servers;
  }

  /** The files added to this element and their progress. */
  get items(): readonly ItemStatus[] {
    return this.#controller.items;
  }

  /** Resolves once connected to the control server; rejects when the credential is refused. */
  get connected(): Promise<unknown> {
    return this.#connection.taskComplete;
  }

  /**
   * Adds files and publishes them to the control server, which then asks for them.
   * @param files the files
   * @returns the new items
   */
  addFiles(files: Iterable<File | Blob> | ArrayLike<File | Blob>): ItemStatus[] {
    const engine = this.#controller.engine;
    if (!engine || this.disabled) return [];
    const added = engine.addFiles(files);
    this.requestUpdate();
    return added;
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

  override connectedCallback(): void {
    super.connectedCallback();
    // Back in the document after the controller stopped the engine: connect again.
    if (this.hasUpdated && !this.#controller.engine) void this.#connection.run();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('chunkSize'))
      this.chunkSize = sanitize('chunk-size', this.chunkSize, ENGINE_DEFAULTS.chunkSize);
    if (changed.has('maxParallel'))
      this.maxParallel = sanitize('max-parallel', this.maxParallel, ENGINE_DEFAULTS.maxParallel);
  }

  get #strings(): WsUploaderI18n {
    return mergeI18n(this.i18n);
  }

  override render() {
    const t = this.#strings;
    return html`
      <div
        part="drop-area"
        role="button"
        tabindex=${this.disabled ? -1 : 0}
        aria-disabled=${this.disabled ? 'true' : 'false'}
        @click=${this.#openPicker}
        @keydown=${this.#onKeyDown}
        @dragover=${this.#onDragOver}
        @dragleave=${this.#onDragLeave}
        @drop=${this.#onDrop}
      >
        <slot><span>${this.dragover ? t.dropActive : t.dropLabel}</span></slot>
        <span class="hint">${t.dropHint}</span>
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
      <h3 id="servers-heading">${t.serversHeading}</h3>
      ${this.#connection.render({
        error: (e) =>
          html`<p role="alert">
            ${t.errors[(e as { code?: string }).code ?? ''] ?? t.errors.default}
          </p>`,
      })}
      ${
        this.servers.length === 0
          ? this.#connection.status === TaskStatus.ERROR
            ? nothing
            : html`<p>${t.noServers}</p>`
          : html`<ul part="server-list" aria-labelledby="servers-heading">
              ${this.servers.map(
                (s) =>
                  html`<li part="server" data-state=${s.state} data-server-id=${s.id}>
                    <span class="dot" aria-hidden="true"></span>
                    <span>${s.id}</span>
                    <span>${t.connection[s.state]}</span>
                    ${s.rttMs === undefined ? nothing : html`<span>${t.rtt(s.rttMs)}</span>`}
                  </li>`,
              )}
            </ul>`
      }
      ${
        this.items.length === 0
          ? nothing
          : html`<h3 id="files-heading">${t.filesHeading}</h3>
              <ul part="file-list" aria-labelledby="files-heading">
                ${this.items.map((item) => this.#renderItem(item, t))}
              </ul>`
      }
      <div class="visually-hidden" role="status" aria-live="polite">${this.announcement}</div>
    `;
  }

  #renderItem(item: ItemStatus, t: WsUploaderI18n) {
    const total = item.bytesTotal || item.size;
    const pct =
      total === 0
        ? item.state === ItemState.COMPLETE
          ? 100
          : 0
        : Math.floor((item.bytesStored / total) * 100);
    const label = `${item.name}: ${t.itemState[item.state]}`;
    return html`<li part="file" data-item-id=${item.itemId} data-state=${item.state}>
      <span class="name">${item.name}</span>
      <span
        >${
          item.state === ItemState.FAILED
            ? (t.errors[item.errorCode ?? ''] ?? t.errors.default)
            : t.itemState[item.state]
        }</span
      >
      <div
        part="progress"
        role="progressbar"
        aria-label=${label}
        aria-valuemin="0"
        aria-valuemax="100"
        aria-valuenow=${item.state === ItemState.PUBLISHING ? nothing : pct}
        aria-valuetext=${t.progress(item.bytesStored, total)}
      >
        <div style="width: ${pct}%"></div>
      </div>
    </li>`;
  }

  protected override updated(): void {
    for (const item of this.items) {
      if (item.state === ItemState.COMPLETE && !this.#announced.has(item.itemId)) {
        this.#announced.add(item.itemId);
        this.announcement = this.#strings.complete(item.name);
      }
    }
  }

  readonly #announced = new Set<string>();

  #options(
    controlUrl: string,
    authToken: string,
    auth: (() => string | Promise<string>) | undefined,
    chunkSize: number,
    maxParallel: number,
  ): EngineOptions {
    return auth
      ? { controlUrl, auth, chunkSize, maxParallel }
      : { controlUrl, authToken, chunkSize, maxParallel };
  }

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
}

/** Bad attribute values warn and fall back to the default; they never throw. */
function sanitize(name: string, value: number, fallback: number): number {
  if (Number.isSafeInteger(value) && value > 0) return value;
  console.warn(`ws-uploader: ignoring ${name}=${String(value)}; using ${fallback}`);
  return fallback;
}

declare global {
  interface HTMLElementTagNameMap {
    'ws-uploader': WsUploader;
  }
}
