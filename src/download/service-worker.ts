/**
 * The service worker: serves items of the downloader's store to `<video>`, `<audio>`, `<img>` and
 * links at `{scope}ws-uploader/items/{itemId}`, with HTTP `Range` semantics (`206` and
 * `Content-Range`). Bytes the store does not have are fetched from an upload server that holds
 * them (a part at a time, stored on the way), so a video plays and seeks before it is downloaded,
 * and, when the item is still uploading, the upload server asks the uploading browser for them.
 * The page tells it where items are (`WsDownloader.url()`); when it was restarted and forgot, when
 * the read tokens it has are about to expire or are refused, or when no server it knows holds a
 * part, it asks the pages it controls.
 *
 * Register it as a module: `navigator.serviceWorker.register('/ws-uploader-sw.js', { type: 'module' })`.
 * @module
 */
import type { ItemLocation } from '../engine/types.js';
import type { ItemHolder } from '../protocol/control.js';
import { fetchPart } from './fetch-part.js';
import { defaultItemStore, type ItemStore } from './item-store.js';
import { ITEMS_PATH, type ItemNotice, type LocateRequest } from './worker-messages.js';

/** The most bytes one response carries: a media element asks again for the rest. */
const MAX_RESPONSE = 4 * 1024 * 1024;
/** How long to wait for a page to say where an item is, in ms. */
const ASK_TIMEOUT_MS = 5000;
/** How long a page's "not known here" waits for another answer from the same page, in ms. */
const NULL_GRACE_MS = 250;
/** Read tokens this close to their expiry are renewed first, in ms. */
const RENEW_BEFORE_MS = 30_000;

// The worker's global scope, typed by what is used here (the project compiles against the DOM lib).
interface FetchEvent extends Event {
  readonly request: Request;
  respondWith(response: Promise<Response>): void;
}
interface WorkerScope {
  readonly registration: { readonly scope: string };
  readonly clients: {
    claim(): Promise<void>;
    matchAll(options: {
      type: 'window';
    }): Promise<readonly { postMessage(m: unknown, t: Transferable[]): void }[]>;
  };
  skipWaiting(): Promise<void>;
  addEventListener(
    type: 'install' | 'activate',
    l: (e: Event & { waitUntil(p: Promise<unknown>): void }) => void,
  ): void;
  addEventListener(type: 'fetch', l: (e: FetchEvent) => void): void;
  addEventListener(type: 'message', l: (e: MessageEvent<ItemNotice>) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

const known = new Map<string, { location: ItemLocation; partSize: number }>();
let store: Promise<ItemStore> | undefined;

scope.addEventListener('install', (e) => e.waitUntil(scope.skipWaiting()));
scope.addEventListener('activate', (e) => e.waitUntil(scope.clients.claim()));
scope.addEventListener('message', (e) => {
  const notice = e.data;
  if (notice?.type !== 'ws-uploader-item') return;
  known.set(notice.location.item.itemId, { location: notice.location, partSize: notice.partSize });
  e.ports[0]?.postMessage('ok');
});
scope.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  const base = new URL(ITEMS_PATH, scope.registration.scope);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) return;
  if (e.request.method !== 'GET' && e.request.method !== 'HEAD') return;
  const itemId = decodeURIComponent(url.pathname.slice(base.pathname.length));
  e.respondWith(
    serve(itemId, e.request).catch(
      (error: unknown) => new Response(`ws-uploader: ${String(error)}`, { status: 502 }),
    ),
  );
});

/** Asks the pages where an item is; the first answer wins. */
async function ask(
  itemId: string,
): Promise<{ location: ItemLocation; partSize: number } | undefined> {
  const pages = await scope.clients.matchAll({ type: 'window' });
  const answers = pages.map(
    (page) =>
      new Promise<{ location: ItemLocation; partSize: number } | undefined>((resolve) => {
        const channel = new MessageChannel();
        // Each downloader of the page answers; one that does not know the item says null, and
        // another may still know it: a null answer waits a little for a better one.
        channel.port1.onmessage = (m: MessageEvent<ItemNotice | null>) => {
          if (m.data) resolve({ location: m.data.location, partSize: m.data.partSize });
          else setTimeout(() => resolve(undefined), NULL_GRACE_MS);
        };
        page.postMessage({ type: 'ws-uploader-locate', itemId } satisfies LocateRequest, [
          channel.port2,
        ]);
        setTimeout(() => resolve(undefined), ASK_TIMEOUT_MS);
      }),
  );
  for (const answer of answers) {
    const found = await answer;
    if (found) {
      known.set(itemId, found);
      return found;
    }
  }
  return undefined;
}

/** Parses `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range); `undefined` for none or another form. */
function parseRange(
  header: string | null,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const n = Number(m[2]);
    return n === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
  if (start >= size || end <= start) return 'unsatisfiable';
  return { start, end };
}

async function serve(itemId: string, request: Request): Promise<Response> {
  const items = await (store ??= defaultItemStore());
  const record = await items.get(itemId);
  const where = known.get(itemId) ?? (record?.sha256 ? undefined : await ask(itemId));
  const meta = record?.meta ?? where?.location.item;
  if (!meta) return new Response('ws-uploader: unknown item', { status: 404 });
  const size = meta.size;
  const type = meta.mime || 'application/octet-stream';
  const range = parseRange(request.headers.get('Range'), size);
  if (range === 'unsatisfiable')
    return new Response(null, { status: 416, headers: { 'Content-Range': `bytes */${size}` } });
  const start = range?.start ?? 0;
  const wanted = range?.end ?? size;
  if (size === 0)
    return new Response(new Blob([]), { status: 200, headers: { 'Content-Type': type } });
  const body = await bytes(items, itemId, start, Math.min(wanted, start + MAX_RESPONSE), where);
  const headers = {
    'Content-Type': type,
    'Accept-Ranges': 'bytes',
    'Content-Length': String(body.size),
    'Cache-Control': 'no-store',
  };
  // Without Range, a whole small item is a 200; otherwise a part of it, as a 206.
  if (!range && body.size === size)
    return new Response(request.method === 'HEAD' ? null : body, { status: 200, headers });
  return new Response(request.method === 'HEAD' ? null : body, {
    status: 206,
    headers: { ...headers, 'Content-Range': `bytes ${start}-${start + body.size - 1}/${size}` },
  });
}

/**
 * Bytes from `start`, at most to `end`: from the store, else the part of the item that holds
 * `start` is fetched from an upload server that holds it and stored first.
 */
async function bytes(
  items: ItemStore,
  itemId: string,
  start: number,
  end: number,
  where: { location: ItemLocation; partSize: number } | undefined,
): Promise<Blob> {
  const stored = await items.slice(itemId, start, end);
  if (stored) return stored;
  let info = where ?? (await ask(itemId));
  if (!info) throw new Error(`no page says where ${itemId} is, and the store does not have it`);
  // Read tokens run out (an hour by default): a page gives fresh ones, as when the worker forgot.
  if (info.location.holders.some((h) => h.tokenExpiresAt - Date.now() < RENEW_BEFORE_MS))
    info = (await ask(itemId)) ?? info;
  const { partSize } = info;
  const size = info.location.item.size;
  const partStart = Math.floor(start / partSize) * partSize;
  const partEnd = Math.min(size, partStart + partSize);
  const part = { start: partStart, end: partEnd };
  const holderOf = (location: ItemLocation): ItemHolder | undefined =>
    location.holders.find((h) => h.ranges.some((r) => r.start <= partStart && r.end >= partEnd));
  let holder = holderOf(info.location);
  if (!holder) {
    // The upload may have moved on to other servers since the page said where the item was.
    info = (await ask(itemId)) ?? info;
    holder = holderOf(info.location);
  }
  if (!holder) throw new Error(`no live upload server holds bytes ${partStart}..${partEnd}`);
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await fetchPart(itemId, holder, part);
  } catch (e) {
    // A refused token (revoked, or a clock that ran ahead): once more with a fresh one.
    if (!/\b40[13]\b/.test(String(e))) throw e;
    const again = await ask(itemId);
    const other = again && holderOf(again.location);
    if (!other) throw e;
    bytes = await fetchPart(itemId, other, part);
  }
  // Kept for the next seek and for offline use; the downloader checks the whole item later.
  if (!(await items.get(itemId))) await items.begin(info.location.item);
  await items.put(itemId, partStart, bytes);
  return new Blob([bytes]).slice(start - partStart, Math.min(end, partEnd) - partStart);
}
