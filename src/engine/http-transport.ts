/**
 * HTTP parts (`http/1`): the bytes go as `PUT {endpoint}/{itemId}` requests with `Content-Range`,
 * their bodies `Blob` slices the browser streams from the file itself (no copy through the page):
 * one after another on a short link, several at once on a long one. What the server holds comes
 * from `HEAD`; the last request carries the item's SHA-256 (`Repr-Digest`) and completes it. When
 * the server also speaks a WebSocket protocol, that connection is kept for pings and liveness while
 * the bytes go over HTTP.
 */
import type { ServerInfo } from '../protocol/control.js';
import type { ByteRange } from '../protocol/ranges.js';
import {
  MAX_MIME_BYTES,
  MAX_NAME_BYTES,
  WIRE_ERROR,
  type WireErrorCode,
} from '../protocol/constants.js';
import type { ControlErrorCode } from '../protocol/control.js';
import { fromHex, toHex } from '../protocol/hex.js';
import { truncateUtf8, utf8Length } from '../protocol/utf8.js';
import { ServerError, TransportError, type WsUploaderError } from '../errors.js';
import { adaptiveChunk } from './chunk-size.js';
import type { ResolvedEngineOptions } from './options.js';
import type { OpenedUpload, Transport, UploadListener, UploadMeta } from './transport.js';

/** Requests of one upload in flight at once, at least (what a link of unknown delay gets)... */
const MIN_REQUESTS = 3;
/** ...and at most, however long the round trip. */
const MAX_REQUESTS = 8;

/** What the engine measured of the link to a server. */
export interface LinkMeasure {
  /** Smoothed round-trip time, in ms. */
  readonly rttMs: number | undefined;
  /** Bytes per second the server stored lately. */
  readonly throughput: number | undefined;
}

/**
 * Requests of one upload to keep in flight: each costs a round trip before its bytes flow and
 * after, so enough to cover twice the round trip at the measured rate (the bandwidth-delay product,
 * in parts), one more to be sending meanwhile, between {@link MIN_REQUESTS} and {@link MAX_REQUESTS}.
 * @param link the link's measures
 * @param partBytes size of the parts being sent
 * @internal
 */
export function requestsInFlight(link: LinkMeasure, partBytes: number): number {
  const { rttMs, throughput } = link;
  if (!rttMs || !throughput || !(partBytes > 0)) return MIN_REQUESTS;
  const parts = Math.ceil((((2 * rttMs) / 1000) * throughput) / partBytes);
  return Math.min(MAX_REQUESTS, Math.max(MIN_REQUESTS, 1 + parts));
}
/**
 * The time one part should take at the measured rate, in seconds: longer than a WebSocket chunk's,
 * as each request costs a round trip and the browser's own work, and an interrupted part keeps the
 * whole chunks the server stored of it.
 */
const PART_SECONDS = 1;
/**
 * Bytes of the first request while the link's speed is not known yet; each next one is twice the
 * last, up to {@link UNMEASURED_PART_MAX}. Parts of one size sent side by side share the link and
 * end together, leaving it idle until the next requests' bytes arrive; growing parts end one after
 * another, and fill a long fast link sooner.
 */
const FIRST_PART = 1024 * 1024;
/**
 * How long before the latest part's body is expected to have been sent the next part starts, in ms,
 * beyond a round trip: the browser's own time to start a request.
 */
const BODY_LEAD_MS = 10;
/**
 * The share of the latest part's estimated sending time by which the next part starts earlier
 * still: the rates the estimate comes from are a little below the link's (they count the server's
 * flush at each part's end, and the pauses between parts).
 */
const EARLY_SHARE = 0.15;
/**
 * The longest round trip, in ms, on which parts are sent one after another. Parts side by side
 * reach the server interleaved, and it holds the bytes ahead of the part its running SHA-256 is in:
 * on loopback, where the browser and the server share two CPUs, that cost the server a third more
 * CPU per byte, and one after another made HTTP parts 1.2 to 1.3 times as fast. On a longer link a
 * part that starts late (the estimate of when the one before ends is a little late) leaves the link
 * idle for a round trip, and parts go side by side.
 */
const STAGGER_RTT_MS = 10;
/** The smallest part whose time from request to answer tells the link's rate, in bytes. */
const MIN_TIMED_PART = 1024 * 1024;
/** How many of the last parts' rates the next part's estimated sending time comes from. */
const TIMED_PARTS = 3;
/** The largest part sent before the link's speed is known. */
const UNMEASURED_PART_MAX = 8 * 1024 * 1024;
/**
 * On a short link, the first part while the link's speed is not known, and the largest: parts go
 * one at a time until the first answer gives the rate (one alone tells it, where parts side by
 * side each look slower than the link), then one after another.
 */
const SHORT_FIRST_PART = 4 * 1024 * 1024;
const SHORT_UNMEASURED_PART_MAX = 16 * 1024 * 1024;
/**
 * The slowest link a request is given time for: a request is abandoned as stalled when no answer
 * came within `stallTimeoutMs` plus its size at this rate, in bytes per second.
 */
const SLOWEST_RATE = 64 * 1024;

interface Upload {
  readonly meta: UploadMeta;
  readonly listener: UploadListener;
  readonly abort: AbortController;
  requests: number;
  /** Size of the latest part. */
  partBytes: number;
  /**
   * When the latest part's body will have been sent, at the measured rate (clock ms); `undefined`
   * while the rate is not known, or when no part is being sent.
   */
  bodyEnd: number | undefined;
  /** When the next part may start (clock ms), while the latest one's body is being sent. */
  nextAt: number | undefined;
  /** The latest part's request, for {@link HttpTransport}'s `#done`. */
  latest: number;
  created: boolean;
  waiters: (() => void)[];
}

/**
 * `http/1` parts to one upload server.
 * @internal
 */
export class HttpTransport implements Transport {
  #info: ServerInfo;
  readonly protocol = 'http/1';
  readonly takesBlobs = true;
  readonly #options: ResolvedEngineOptions;
  /** `{httpUrl}{endpoint}`, without a trailing slash. */
  readonly #base: string;
  readonly #live: Transport | undefined;
  readonly #link: () => LinkMeasure;
  readonly #uploads = new Map<number, Upload>();
  #nextUploadId = 1;
  #open = false;
  #closed = false;
  #stalled = false;
  /** The rates of the last parts answered (see `#bodyRate`). */
  readonly #partRates: number[] = [];
  /** Parts handed out since the link's speed was last known (each twice the one before). */
  #unmeasured = 0;

  /**
   * @param info the server, with this client's token
   * @param options engine options
   * @param endpoint the `http/1` endpoint's URL
   * @param live a WebSocket connection to the same server for pings and liveness, when it has one
   * @param link what the engine measured of the link, for the number of requests in flight
   */
  constructor(
    info: ServerInfo,
    options: ResolvedEngineOptions,
    endpoint: string,
    live: Transport | undefined,
    link: () => LinkMeasure = () => ({ rttMs: undefined, throughput: undefined }),
  ) {
    this.#info = info;
    this.#options = options;
    this.#base = endpoint.replace(/\/+$/, '');
    this.#live = live;
    this.#link = link;
  }

  /** The server, with this client's newest token (passed on to the WebSocket kept for pings). */
  get info(): ServerInfo {
    return this.#info;
  }

  set info(info: ServerInfo) {
    this.#info = info;
    if (this.#live) this.#live.info = info;
  }

  get stalled(): boolean {
    return this.#stalled || (this.#live?.stalled ?? false);
  }

  get isOpen(): boolean {
    return !this.#closed && (this.#live ? this.#live.isOpen : this.#open);
  }

  chunkSize(requested: number, throughput: number | undefined): number {
    // Parts of several MiB: the browser streams each from the file, and a request costs a round trip.
    const part = Math.max(requested, this.#options.partSize);
    if (throughput !== undefined) {
      this.#unmeasured = 0;
      return adaptiveChunk(part, throughput, PART_SECONDS);
    }
    const grown =
      this.#shortRtt() !== undefined
        ? Math.min(SHORT_UNMEASURED_PART_MAX, SHORT_FIRST_PART * 2 ** this.#unmeasured)
        : Math.min(UNMEASURED_PART_MAX, FIRST_PART * 2 ** this.#unmeasured);
    this.#unmeasured++;
    return Math.min(part, grown);
  }

  async connect(): Promise<void> {
    if (this.#live) {
      await this.#live.connect();
      return;
    }
    await this.ping();
    this.#open = true;
  }

  async ping(): Promise<number> {
    if (this.#live) return this.#live.ping();
    const { clock } = this.#options;
    const start = clock.now();
    const response = await this.#fetch(`${new URL(this.info.httpUrl).origin}/healthz`, {
      method: 'HEAD',
      signal: AbortSignal.timeout(15_000),
    });
    if (!response.ok)
      throw new TransportError('socket-failed', `${this.info.id} answered ${response.status}`, {
        serverId: this.info.id,
      });
    return clock.now() - start;
  }

  async open(meta: UploadMeta, listener: UploadListener): Promise<OpenedUpload> {
    const uploadId = this.#nextUploadId++;
    const upload: Upload = {
      meta,
      listener,
      abort: new AbortController(),
      requests: 0,
      partBytes: 0,
      bodyEnd: undefined,
      nextAt: undefined,
      latest: 0,
      created: false,
      waiters: [],
    };
    // An item this engine never sent here: nothing to ask about (the first PUT creates it).
    const held = meta.fresh ? undefined : await this.#held(meta);
    if (held) upload.created = true;
    this.#uploads.set(uploadId, upload);
    return { uploadId, complete: held?.complete ?? false, ranges: held?.ranges ?? [] };
  }

  /**
   * What the server holds of an item (`HEAD`); `undefined` when it has none of it.
   * @throws {ServerError} `conflict` when it holds the item with another size, or what it answered
   */
  async #held(meta: UploadMeta): Promise<{ complete: boolean; ranges: ByteRange[] } | undefined> {
    const response = await this.#fetch(this.#url(meta.itemId), {
      method: 'HEAD',
      headers: this.#auth(),
      signal: AbortSignal.timeout(15_000),
    });
    if (response.status === 404) return undefined;
    if (response.status !== 200) throw await this.#error(response, meta.itemId);
    if (Number(response.headers.get('Upload-Length')) !== meta.size)
      throw new ServerError('conflict', `${this.info.id} holds the item with another size`, {
        serverId: this.info.id,
        itemId: meta.itemId,
      });
    return {
      complete: response.headers.get('Upload-Complete') === '?1',
      ranges: parseUploadRanges(response.headers.get('Upload-Ranges') ?? ''),
    };
  }

  async waitForRoom(uploadId: number, _bytes: number, signal?: AbortSignal): Promise<void> {
    const upload = this.#uploads.get(uploadId);
    const { clock } = this.#options;
    for (;;) {
      if (!upload || !this.#uploads.has(uploadId) || signal?.aborted) return;
      const link = this.#link();
      // On a short link, one part at a time until a rate is known (see SHORT_FIRST_PART).
      const most =
        this.#shortRtt() !== undefined && this.#bodyRate() === undefined
          ? 1
          : requestsInFlight(link, upload.partBytes);
      const full = upload.requests >= most;
      // Bodies one after another: the next part starts as the latest one's body is about to have
      // been sent (a round trip and the request's start ahead), not beside it.
      const sendingFor =
        upload.requests > 0 && upload.nextAt !== undefined ? upload.nextAt - clock.now() : 0;
      if (!full && sendingFor <= 0) return;
      await new Promise<void>((resolve) => {
        let timer: unknown;
        const done = (): void => {
          signal?.removeEventListener('abort', done);
          if (timer !== undefined) clock.clearTimeout(timer);
          resolve();
        };
        signal?.addEventListener('abort', done, { once: true });
        upload.waiters.push(done);
        if (!full) timer = clock.setTimeout(done, sendingFor);
      });
    }
  }

  sendData(uploadId: number, offset: number, payload: Uint8Array | Blob): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload) return;
    const end = offset + (payload instanceof Blob ? payload.size : payload.length);
    upload.requests++;
    upload.partBytes = end - offset;
    const request = ++upload.latest;
    const rate = this.#bodyRate();
    const { clock } = this.#options;
    const now = clock.now();
    const rttMs = this.#shortRtt();
    if (rate && rttMs !== undefined) {
      // Early rather than late: a part that starts early shares the link with the tail of the one
      // before (the server holds a few MiB ahead of its digest); one that starts late leaves it idle.
      const sendingMs = ((end - offset) * 1000) / rate;
      upload.bodyEnd = Math.max(now, upload.bodyEnd ?? now) + sendingMs;
      upload.nextAt = upload.bodyEnd - rttMs - BODY_LEAD_MS - EARLY_SHARE * sendingMs;
    } else {
      upload.bodyEnd = upload.nextAt = undefined;
    }
    this.#put(upload, offset, end, payload as BodyInit, undefined).then(
      () => {
        this.#done(upload, request);
        this.#answered(end - offset, clock.now() - now);
        if (this.#uploads.get(uploadId) === upload) upload.listener.ack(offset, end);
      },
      (error: WsUploaderError) => {
        this.#done(upload, request);
        if (this.#uploads.get(uploadId) !== upload) return;
        this.#uploads.delete(uploadId);
        upload.abort.abort();
        upload.listener.error(error);
      },
    );
  }

  async finish(uploadId: number, sha256: Uint8Array | undefined): Promise<Uint8Array> {
    const upload = this.#uploads.get(uploadId);
    const { meta } = upload ?? {};
    if (!upload || !meta)
      throw new TransportError('socket-closed', 'upload is gone', { serverId: this.info.id });
    if (meta.size === 0) return this.post(meta, sha256, upload.abort.signal);
    // The last byte again (unchanged bytes may be sent again), now with the item's digest, or
    // asking the server to compute it.
    const answer = await this.#put(
      upload,
      meta.size - 1,
      meta.size,
      meta.blob.slice(meta.size - 1),
      sha256 ? `sha-256=:${toBase64(sha256)}:` : COMPUTE_DIGEST,
    );
    if (answer.complete !== true)
      throw new ServerError('incomplete', `${this.info.id} does not hold the whole item`, {
        serverId: this.info.id,
        itemId: meta.itemId,
      });
    return this.#digestOf(answer, sha256, meta.itemId);
  }

  /** The SHA-256 a completing answer reports (the page's own, when it attested one). */
  #digestOf(answer: Described, sha256: Uint8Array | undefined, itemId: string): Uint8Array {
    if (typeof answer.sha256 === 'string' && /^[0-9a-f]{64}$/.test(answer.sha256))
      return fromHex(answer.sha256);
    if (sha256) return sha256;
    throw new ServerError('internal', `${this.info.id} completed the item without its SHA-256`, {
      serverId: this.info.id,
      itemId,
    });
  }

  release(uploadId: number): void {
    const upload = this.#uploads.get(uploadId);
    if (!upload) return;
    this.#uploads.delete(uploadId);
    upload.abort.abort();
    for (const w of upload.waiters.splice(0)) w();
  }

  close(): void {
    this.#closed = true;
    this.#live?.close();
    const error = new TransportError('socket-closed', 'closed by the page', {
      serverId: this.info.id,
    });
    for (const [id, upload] of [...this.#uploads]) {
      this.release(id);
      // Its task is told, as a closed WebSocket tells its uploads.
      upload.listener.error(error);
    }
  }

  /** One `PUT` of `[start, end)`; resolves with the server's description of the item. */
  async #put(
    upload: Upload,
    start: number,
    end: number,
    body: BodyInit,
    digest: string | undefined,
  ): Promise<Described> {
    const { meta } = upload;
    const headers: Record<string, string> = {
      ...this.#auth(),
      'Content-Type': 'application/octet-stream',
      'Content-Range': `bytes ${start}-${end - 1}/${meta.size}`,
    };
    if (!upload.created) {
      if (meta.mime && utf8Length(meta.mime) <= MAX_MIME_BYTES)
        headers['Item-Type'] = encodeURIComponent(meta.mime);
      if (meta.name)
        headers['Item-Name'] = encodeURIComponent(truncateUtf8(meta.name, MAX_NAME_BYTES));
    }
    if (digest === COMPUTE_DIGEST) headers['Upload-Complete'] = '?1';
    else if (digest) headers['Repr-Digest'] = digest;
    const timeout = this.#timeoutMs(end - start, upload.requests);
    const signal = AbortSignal.any([upload.abort.signal, AbortSignal.timeout(timeout)]);
    let response: Response;
    try {
      response = await this.#fetch(this.#url(meta.itemId), {
        method: 'PUT',
        headers,
        body,
        signal,
      });
    } catch (e) {
      if (signal.aborted && !upload.abort.signal.aborted) throw this.#stall();
      throw e;
    }
    if (!response.ok) throw await this.#error(response, meta.itemId);
    upload.created = true;
    return describe(response);
  }

  /**
   * Sends a whole item as one `multipart/form-data` `POST`, with its SHA-256 for the server to check
   * when the page attests one (else the server computes it): the short road for a small item, and
   * the way an empty one is created.
   * @returns the SHA-256 the server verified or computed
   * @throws {ServerError | TransportError} as a `PUT` would
   */
  async post(
    meta: UploadMeta,
    sha256: Uint8Array | undefined,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    const form = new FormData();
    form.append('itemId', meta.itemId);
    form.append('size', String(meta.size));
    if (sha256) form.append('sha256', toHex(sha256));
    form.append('file', meta.blob.slice(0, meta.size, meta.mime), meta.name || 'item');
    const timeout = AbortSignal.timeout(this.#timeoutMs(meta.size, 1));
    let response: Response;
    try {
      response = await this.#fetch(this.#base, {
        method: 'POST',
        headers: this.#auth(),
        body: form,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (e) {
      if (timeout.aborted && !signal?.aborted) throw this.#stall();
      throw e;
    }
    if (!response.ok) throw await this.#error(response, meta.itemId);
    return this.#digestOf(await describe(response), sha256, meta.itemId);
  }

  /**
   * How long a request of `bytes` may take: `stallTimeoutMs`, plus its bytes at the slowest rate
   * the engine allows for, shared with the other requests in flight.
   */
  #timeoutMs(bytes: number, requests: number): number {
    return this.#options.stallTimeoutMs + (bytes * 1000 * Math.max(1, requests)) / SLOWEST_RATE;
  }

  #stall(): TransportError {
    this.#stalled = true;
    return new TransportError('stalled', `${this.info.id} did not answer a request in time`, {
      serverId: this.info.id,
    });
  }

  /** `fetch`, with network failures as {@link TransportError}s. */
  async #fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      throw new TransportError('socket-failed', `request to ${this.info.id} failed`, {
        serverId: this.info.id,
        cause: e,
      });
    }
  }

  async #error(response: Response, itemId: string): Promise<ServerError> {
    let code = '';
    let message = `${this.info.id} answered ${response.status}`;
    try {
      const body = (await response.json()) as { code?: unknown; message?: unknown };
      if (typeof body.code === 'string') code = body.code;
      if (typeof body.message === 'string') message = body.message;
    } catch {
      // Not JSON: the status says it.
    }
    return new ServerError(wireCode(code, response.status), message, {
      serverId: this.info.id,
      itemId,
    });
  }

  /**
   * The rate at which a part's body goes out, in bytes per second: the fastest of the server's
   * stored rate lately and the last parts' own rates (their bytes over the time from request to
   * answer less a round trip: a part sent beside another, or after a pause, looks slower than the
   * link is, and the stored rate counts the pauses between parts); `undefined` before either is
   * known.
   */
  #bodyRate(): number | undefined {
    const rate = Math.max(this.#link().throughput ?? 0, ...this.#partRates);
    return rate > 0 ? rate : undefined;
  }

  /**
   * The link's round trip, in ms, when it is known and short enough for parts one after another;
   * else `undefined`.
   */
  #shortRtt(): number | undefined {
    const { rttMs } = this.#link();
    return rttMs !== undefined && rttMs <= STAGGER_RTT_MS ? rttMs : undefined;
  }

  /** A part of `bytes` was answered `ms` after it was requested. */
  #answered(bytes: number, ms: number): void {
    if (bytes < MIN_TIMED_PART) return;
    const sending = ms - (this.#link().rttMs ?? 0);
    if (!(sending > 0)) return;
    this.#partRates.push((bytes * 1000) / sending);
    if (this.#partRates.length > TIMED_PARTS) this.#partRates.shift();
  }

  /** Request `request` of `upload` was answered. */
  #done(upload: Upload, request: number): void {
    upload.requests--;
    // The latest part was answered, so its body was sent, whatever the estimate said.
    if (request === upload.latest) upload.bodyEnd = upload.nextAt = undefined;
    for (const w of upload.waiters.splice(0)) w();
  }

  #url(itemId: string): string {
    return `${this.#base}/${encodeURIComponent(itemId)}`;
  }

  #auth(): Record<string, string> {
    return { Authorization: `Bearer ${this.info.token}` };
  }
}

/** What a `2xx` answer says of the item. */
interface Described {
  readonly complete?: boolean;
  readonly sha256?: unknown;
}

/** `#put`'s `digest` that asks the server to complete the item with a digest of its own. */
const COMPUTE_DIGEST = 'compute';

/** The item as a `2xx` answer describes it (nothing, when the body is not the JSON it should be). */
async function describe(response: Response): Promise<Described> {
  try {
    const body: unknown = await response.json();
    return typeof body === 'object' && body !== null ? (body as Described) : {};
  } catch {
    return {};
  }
}

/** An `http/1` error code as the wire or control error of the same meaning. */
function wireCode(code: string, status: number): ControlErrorCode {
  if (Object.hasOwn(WIRE_ERROR, code)) return code as WireErrorCode;
  if (code === 'bad-request') return 'bad-frame';
  if (code === 'not-found') return 'unknown-upload';
  if (code === 'forbidden') return 'forbidden';
  // An answer without our JSON (a proxy's, say): by its status.
  const byStatus: Record<number, ControlErrorCode> = {
    400: 'bad-frame',
    401: 'unauthorized',
    403: 'forbidden',
    404: 'unknown-upload',
    409: 'conflict',
    413: 'too-large',
    422: 'digest-mismatch',
    423: 'locked',
    507: 'storage-full',
  };
  return byStatus[status] ?? 'internal';
}

/** `Upload-Ranges: 0-99,200-299` (inclusive pairs) as half-open ranges. */
function parseUploadRanges(header: string): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (const part of header.split(',')) {
    const m = /^\s*(\d+)-(\d+)\s*$/.exec(part);
    if (m) ranges.push({ start: Number(m[1]), end: Number(m[2]) + 1 });
  }
  return ranges;
}

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}
