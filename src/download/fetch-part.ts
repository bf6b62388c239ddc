/**
 * One part of an item from one upload server: a `Range` GET with the server's read token, its
 * status, `Content-Range` and length checked. Used by the downloader, its store Worker (which
 * streams the body into the part's file) and its service worker.
 */
import type { ItemHolder } from '../protocol/control.js';
import type { ByteRange } from '../protocol/ranges.js';

/** What a part's request needs of its holder. */
export type PartSource = Pick<
  ItemHolder,
  'serverId' | 'httpUrl' | 'wsUrl' | 'token' | 'tokenExpiresAt'
>;

/**
 * Asks for a part: the response, its status and `Content-Range` checked, its body not read.
 * @param itemId the item
 * @param holder the server, with its read token
 * @param part the bytes wanted
 * @param signal stops the request
 * @throws {Error} (as a rejection) naming the server and what it answered
 * @internal
 */
export async function requestPart(
  itemId: string,
  holder: PartSource,
  part: ByteRange,
  signal?: AbortSignal,
): Promise<Response> {
  const response = await fetch(`${holder.httpUrl.replace(/\/$/, '')}/files/${itemId}`, {
    headers: {
      Authorization: `Bearer ${holder.token}`,
      Range: `bytes=${part.start}-${part.end - 1}`,
    },
    cache: 'no-store',
    credentials: 'omit',
    ...(signal ? { signal } : {}),
  });
  if (response.status !== 206) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(`${holder.serverId} answered ${response.status}`);
  }
  const range = /^bytes (\d+)-(\d+)\//.exec(response.headers.get('Content-Range') ?? '');
  if (!range || Number(range[1]) !== part.start || Number(range[2]) !== part.end - 1) {
    await response.body?.cancel().catch(() => undefined);
    throw new Error(
      `${holder.serverId} sent another range: ${response.headers.get('Content-Range')}`,
    );
  }
  return response;
}

/**
 * One part, read whole into memory.
 * @param itemId the item
 * @param holder the server, with its read token
 * @param part the bytes wanted
 * @param signal stops the request
 * @returns exactly the bytes of `part`
 * @throws {Error} (as a rejection) naming the server and what it answered
 * @internal
 */
export async function fetchPart(
  itemId: string,
  holder: PartSource,
  part: ByteRange,
  signal?: AbortSignal,
): Promise<Uint8Array<ArrayBuffer>> {
  const response = await requestPart(itemId, holder, part, signal);
  const bytes = new Uint8Array(await response.arrayBuffer());
  if (bytes.length !== part.end - part.start)
    throw new Error(`${holder.serverId} sent ${bytes.length} of ${part.end - part.start} bytes`);
  return bytes;
}
