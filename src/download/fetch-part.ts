/**
 * One part of an item from one upload server: a `Range` GET with the server's read token, its
 * status, `Content-Range` and length checked. Used by the downloader, its store Worker (which
 * streams the body into the part's file) and its service worker.
 */
import type { ItemHolder } from '../protocol/control.js';
import type { ByteRange } from '../protocol/ranges.js';
import { byobReader } from '../engine/read-pieces.js';
import type { BufferPool } from './buffer-pool.js';

/** What a part's request needs of its holder. */
export type PartSource = Pick<
  ItemHolder,
  'serverId' | 'httpUrl' | 'wsUrl' | 'token' | 'tokenExpiresAt'
>;

/**
 * A server that sends nothing (no answer, or nothing more of a body) for this long is taken for
 * stalled, in ms, unless told otherwise.
 */
export const DEFAULT_STALL_MS = 30_000;

/**
 * A part's HTTP request failed in a way that says this server's bytes are not to be had over HTTP
 * from here: no answer (the network, nothing listening, a refused connection, none in time), an
 * answer that it does not serve them (404, 405, 501, or 502 and 504 from a gateway: a relay that
 * carries WebSocket connections only answers 502), or another range than the one asked for.
 * Reading over `dup/2` may do better. Other answers (a refused token, 416, 429, 500, 503) are
 * plain errors: they say nothing of the way.
 * @internal
 */
export class PartRequestError extends Error {
  override readonly name = 'PartRequestError';
}

/** Answers that say a server does not serve its bytes over HTTP (see {@link PartRequestError}). */
const NOT_SERVED = new Set([404, 405, 501, 502, 504]);

/**
 * Asks for a part: the response, its status and `Content-Range` checked, its body not read.
 * @param itemId the item
 * @param holder the server, with its read token
 * @param part the bytes wanted
 * @param signal stops the request
 * @param stallMs longest wait for the answer, in ms
 * @throws {PartRequestError} (as a rejection) when the server's bytes are not to be had this way
 * @throws {Error} (as a rejection) naming the server and another answer; the signal's reason once
 *   it is aborted
 * @internal
 */
export async function requestPart(
  itemId: string,
  holder: PartSource,
  part: ByteRange,
  signal?: AbortSignal,
  stallMs = DEFAULT_STALL_MS,
): Promise<Response> {
  // Stopped by the caller, or when no answer comes (a connection that died without closing).
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => stop.abort(new Error(`${holder.serverId} answered nothing for ${stallMs} ms`)),
    stallMs,
  );
  let response: Response;
  try {
    response = await fetch(`${holder.httpUrl.replace(/\/$/, '')}/files/${itemId}`, {
      headers: {
        Authorization: `Bearer ${holder.token}`,
        Range: `bytes=${part.start}-${part.end - 1}`,
      },
      cache: 'no-store',
      credentials: 'omit',
      signal: stop.signal,
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    // The stall's own error names the server; the browser's says only that the fetch failed.
    const stalled = e instanceof Error && !(e instanceof TypeError);
    throw new PartRequestError(stalled ? e.message : `${holder.serverId} could not be reached`, {
      cause: e,
    });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
  if (response.status !== 206) {
    await response.body?.cancel().catch(() => undefined);
    const message = `${holder.serverId} answered ${response.status}`;
    throw NOT_SERVED.has(response.status) ? new PartRequestError(message) : new Error(message);
  }
  const range = /^bytes (\d+)-(\d+)\//.exec(response.headers.get('Content-Range') ?? '');
  if (!range || Number(range[1]) !== part.start || Number(range[2]) !== part.end - 1) {
    await response.body?.cancel().catch(() => undefined);
    throw new PartRequestError(
      `${holder.serverId} sent another range: ${response.headers.get('Content-Range')}`,
    );
  }
  return response;
}

/**
 * Reads a part's body piece by piece, each to `sink` with its offset in the part; a body that sends
 * nothing for `stallMs` is cancelled (a dead connection that never closes).
 *
 * With a `pool`, where the body is a byte stream, each piece is one of the pool's buffers filled
 * (but the last), read into with a BYOB reader, and handed to `sink` with the buffer: whoever is
 * last done with it gives it back to the pool. Else the pieces are the body's own.
 * @param response the part's response, checked by `requestPart`
 * @param holder the server, to name in errors
 * @param sink takes each piece; what it throws cancels the body and fails the read
 * @param stallMs longest wait for the next piece, in ms
 * @param pool buffers to read into
 * @returns the bytes read
 * @throws {Error} (as a rejection) when the body stalls or fails; what `sink` throws
 * @internal
 */
export async function readBody(
  response: Response,
  holder: Pick<PartSource, 'serverId'>,
  sink: (at: number, bytes: Uint8Array<ArrayBuffer>) => void,
  stallMs = DEFAULT_STALL_MS,
  pool?: BufferPool,
): Promise<number> {
  const stream = response.body;
  if (!stream) return 0;
  // Not a byte stream in this browser: the body's own pieces.
  const byob = pool ? byobReader(stream) : undefined;
  const body = byob ?? stream.getReader();
  let at = 0;
  // One timer for the whole body, armed again from the last piece when it fires: a stalled body
  // is cancelled, which ends the read waiting on it.
  let last = Date.now();
  let stalled = false;
  const watch = (): ReturnType<typeof setTimeout> =>
    setTimeout(
      () => {
        if (Date.now() - last < stallMs) timer = watch();
        else {
          stalled = true;
          void body.cancel().catch(() => undefined);
        }
      },
      stallMs - (Date.now() - last),
    );
  let timer = watch();
  /** The pool's buffer being filled, and how much of it is. */
  let buffer: ArrayBuffer | undefined;
  let filled = 0;
  const hand = (): void => {
    const bytes = new Uint8Array(buffer!, 0, filled);
    buffer = undefined;
    filled = 0;
    // Counted first: the sink may move the buffer to another thread.
    const length = bytes.length;
    sink(at, bytes);
    at += length;
  };
  try {
    for (;;) {
      if (byob) {
        buffer ??= pool!.take();
        const read = await byob.read(new Uint8Array(buffer, filled));
        if (stalled) throw new Error(`${holder.serverId} sent nothing for ${stallMs} ms`);
        // The buffer moves into the view read, done or not; a read with no view was cancelled
        // (the buffer is gone with it).
        if (!read.value) throw new Error(`${holder.serverId}: the body was cancelled`);
        buffer = read.value.buffer as ArrayBuffer;
        if (read.done) {
          if (filled > 0) hand();
          else pool!.give(buffer);
          return at;
        }
        last = Date.now();
        filled += read.value.length;
        if (filled === buffer.byteLength) hand();
        continue;
      }
      const read = await (body as ReadableStreamDefaultReader<Uint8Array>).read();
      if (stalled) throw new Error(`${holder.serverId} sent nothing for ${stallMs} ms`);
      if (read.done) return at;
      last = Date.now();
      const length = read.value.length;
      sink(at, read.value as Uint8Array<ArrayBuffer>);
      at += length;
    }
  } catch (e) {
    await body.cancel().catch(() => undefined);
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One part, read whole into memory.
 * @param itemId the item
 * @param holder the server, with its read token
 * @param part the bytes wanted
 * @param signal stops the request
 * @param stallMs longest wait for the next piece of the body, in ms
 * @returns exactly the bytes of `part`
 * @throws {PartRequestError} (as a rejection) as `requestPart`
 * @throws {Error} (as a rejection) naming the server and what it answered, or that it stalled
 * @internal
 */
export async function fetchPart(
  itemId: string,
  holder: PartSource,
  part: ByteRange,
  signal?: AbortSignal,
  stallMs = DEFAULT_STALL_MS,
): Promise<Uint8Array<ArrayBuffer>> {
  const response = await requestPart(itemId, holder, part, signal, stallMs);
  const length = part.end - part.start;
  const bytes = new Uint8Array(length);
  const got = await readBody(
    response,
    holder,
    (at, piece) => {
      if (at + piece.length > length)
        throw new Error(`${holder.serverId} sent more than ${length} bytes`);
      bytes.set(piece, at);
    },
    stallMs,
  );
  if (got !== length) throw new Error(`${holder.serverId} sent ${got} of ${length} bytes`);
  return bytes;
}
