/**
 * The SHA-256 of an item split across upload servers, computed by one of them (a registry `digest`
 * request). SHA-256 runs over the bytes in order, so no server can hash its own ranges alone: this
 * server reads the item in order, its own ranges from its store and the others from the servers
 * that hold them (`GET /files/{id}` with a `Range`, `Prefer: no-demand` and the read token the
 * control server gave), each piece once it is stored. Started while the item is uploading, it
 * follows the upload (the planner interleaves the servers' ranges), so the digest is ready soon
 * after the last byte, and the browser never reads the file a second time to hash it.
 *
 * A request may also be one step of a digest that the servers compute in turn, each over its own
 * ranges (the control server's choice when every server takes steps): it starts from the state
 * another server reached (`from`) and ends with the state reached here, so no bytes cross between
 * servers.
 * @internal
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { IHasher } from 'hash-wasm';
import {
  type DigestedMessage,
  type DigestMessage,
  type DigestState,
} from '../../src/protocol/index.js';
import type { ItemStore } from './file-store.js';
import { resumeSha256, sha256State } from './sha256-state.js';
import { waitForBytes } from './wait-for-bytes.js';

/** Bytes read (or asked of a peer) at once: a reader waits for each piece to be stored. */
const PIECE = 2 * 1024 * 1024;
/** Pieces read ahead of the one being hashed (so at most this many and one are held at once). */
const READ_AHEAD = 7;
/** Most digests computed at once; more are answered `unavailable`. */
const MAX_JOBS = 16;
/** How long a peer that answered 503 (the bytes are not there yet) is left before asking again. */
const PEER_RETRY_MS = 200;

/** Options of {@link DigestJobs}. */
export interface DigestJobsOptions {
  readonly store: ItemStore;
  /** The longest a digest waits for one piece of the item, in ms. */
  readonly waitMs: number;
  readonly log: (event: string, fields?: Record<string, unknown>) => void;
}

/** A failure of a digest, with the `digested` code it is reported with. */
class DigestFailure extends Error {
  constructor(
    readonly code: NonNullable<DigestedMessage['code']>,
    message: string,
  ) {
    super(message);
  }
}

/** The digests this server computes: at most one per item (a later request replaces it). */
export class DigestJobs {
  readonly #options: DigestJobsOptions;
  readonly #running = new Map<string, AbortController>();

  constructor(options: DigestJobsOptions) {
    this.#options = options;
  }

  /**
   * Computes the item's SHA-256 as `request` says.
   * @returns the answer; none for a digest that a later request for the item replaced, or that
   *   {@link close} stopped (the later request answers; a closing server answers nothing)
   */
  async run(request: DigestMessage): Promise<DigestedMessage | undefined> {
    const { itemId } = request;
    this.#running.get(itemId)?.abort();
    this.#running.delete(itemId);
    if (this.#running.size >= MAX_JOBS)
      return failed(itemId, new DigestFailure('unavailable', 'too many digests at once'));
    const controller = new AbortController();
    this.#running.set(itemId, controller);
    const started = performance.now();
    try {
      const answer = await this.#digest(request, controller.signal);
      this.#options.log('digest', {
        itemId,
        from: request.from?.offset ?? 0,
        ...answer,
        ms: Math.round(performance.now() - started),
      });
      return { type: 'digested', itemId, ...answer };
    } catch (e) {
      if (controller.signal.aborted) return undefined;
      const failure = e instanceof DigestFailure ? e : new DigestFailure('unavailable', String(e));
      this.#options.log('digest-failed', { itemId, code: failure.code, message: failure.message });
      return failed(itemId, failure);
    } finally {
      if (this.#running.get(itemId) === controller) this.#running.delete(itemId);
    }
  }

  /** Stops every digest under way. */
  close(): void {
    for (const controller of this.#running.values()) controller.abort();
    this.#running.clear();
  }

  /** The item's SHA-256, or the state after the request's last source when that is not the end. */
  async #digest(
    request: DigestMessage,
    signal: AbortSignal,
  ): Promise<{ sha256: string } | { state: DigestState }> {
    const end = request.sources.at(-1)!.end;
    // Node's SHA-256 is the fastest here, but cannot start or stop part way through.
    const steps = request.from !== undefined || end < request.size;
    const hash = steps ? await resumeSha256(request.from) : createHash('sha256');
    const pieces: { start: number; end: number; peer?: number }[] = [];
    for (const source of request.sources)
      for (let start = source.start; start < source.end; start += PIECE)
        pieces.push({ ...source, start, end: Math.min(source.end, start + PIECE) });
    // Pieces are read up to READ_AHEAD ahead of the one being hashed, each as soon as it is stored:
    // the browser's requests end out of order, so when the last byte comes, the rest is in memory.
    const stop = new AbortController();
    const reading = AbortSignal.any([signal, stop.signal]);
    const loads: (Promise<Buffer[]> | undefined)[] = [];
    const load = (i: number): void => {
      const { start, end, peer } = pieces[i]!;
      const loaded =
        peer === undefined
          ? this.#fromStore(request.itemId, start, end, reading)
          : this.#fromPeer(request.peers[peer]!, start, end, reading);
      // One that fails while an earlier one is awaited is reported when its turn comes.
      loaded.catch(() => undefined);
      loads[i] = loaded;
    };
    try {
      for (let i = 0; i < pieces.length; i++) {
        for (let j = i; j < Math.min(pieces.length, i + 1 + READ_AHEAD); j++)
          if (!loads[j]) load(j);
        if (signal.aborted) throw new DigestFailure('unavailable', 'stopped');
        for (const chunk of await loads[i]!) hash.update(chunk);
        loads[i] = undefined;
      }
    } finally {
      stop.abort();
    }
    // Only a step ends before the item's end, and a step hashes with hash-wasm.
    return end < request.size
      ? { state: sha256State(hash as IHasher, end) }
      : { sha256: hash.digest('hex') as string };
  }

  /** Bytes `start..end` of the item from this server's store, once they are stored. */
  async #fromStore(
    itemId: string,
    start: number,
    end: number,
    signal: AbortSignal,
  ): Promise<Buffer[]> {
    const { store, waitMs } = this.#options;
    // At once when they are stored already. The request can come before the browser opened the
    // item here (its link to the control server is quicker than the browser's to this server):
    // the item's bytes are then waited for alike.
    const ready = await waitForBytes({
      store,
      itemId,
      ranges: [{ start, end }],
      record: await store.get(itemId),
      holdMs: waitMs,
      signal,
    });
    if (!ready) {
      if (signal.aborted) throw new DigestFailure('unavailable', 'stopped');
      throw new DigestFailure('timeout', `bytes ${start}..${end} were not stored in time`);
    }
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of store.read(itemId, start, end)) chunks.push(chunk as Buffer);
    } catch (e) {
      throw new DigestFailure('storage-failed', `could not read bytes ${start}..${end}: ${e}`);
    }
    return chunks;
  }

  /** Bytes `start..end` of the item from the peer that holds them, once they are stored there. */
  async #fromPeer(
    peer: { url: string; token: string },
    start: number,
    end: number,
    signal: AbortSignal,
  ): Promise<Buffer[]> {
    const deadline = performance.now() + this.#options.waitMs;
    for (;;) {
      let response: IncomingMessage;
      try {
        response = await get(
          peer.url,
          {
            Authorization: `Bearer ${peer.token}`,
            Range: `bytes=${start}-${end - 1}`,
            Prefer: 'no-demand',
          },
          signal,
        );
      } catch (e) {
        throw new DigestFailure('unavailable', `${peer.url} could not be read: ${e}`);
      }
      const status = response.statusCode ?? 0;
      if ((status === 503 || status === 404) && performance.now() < deadline) {
        // Not stored there yet (the peer waited its own hold time), or the browser has not opened
        // the item there yet: ask again.
        response.resume();
        await new Promise((resolve) => setTimeout(resolve, PEER_RETRY_MS));
        continue;
      }
      if (status !== 206 && !(status === 200 && start === 0)) {
        response.resume();
        throw new DigestFailure(
          status === 503 || status === 404 ? 'timeout' : 'unavailable',
          `${peer.url} answered ${status} for bytes ${start}..${end}`,
        );
      }
      let got = 0;
      const chunks: Buffer[] = [];
      try {
        for await (const value of response as AsyncIterable<Buffer>) {
          const take = Math.min(value.length, end - start - got);
          chunks.push(take === value.length ? value : value.subarray(0, take));
          got += take;
          // A whole item sent for its first piece: the rest is not wanted. (A 206 is read to its
          // end, so its connection is used again.)
          if (got >= end - start && status === 200) break;
        }
      } catch (e) {
        throw new DigestFailure('unavailable', `${peer.url} broke off: ${e}`);
      } finally {
        // The rest of a whole item sent for its first piece is not wanted.
        if (!response.complete) response.destroy();
      }
      if (got < end - start)
        throw new DigestFailure('unavailable', `${peer.url} sent ${got} of ${end - start} bytes`);
      return chunks;
    }
  }
}

/** A `GET` of `url` with `headers`: its response, once its head came. */
function get(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, {
      headers,
      signal,
    });
    request.once('response', resolve);
    request.once('error', reject);
    request.end();
  });
}

function failed(itemId: string, failure: DigestFailure): DigestedMessage {
  return {
    type: 'digested',
    itemId,
    code: failure.code,
    message: failure.message.slice(0, 1024),
  };
}
