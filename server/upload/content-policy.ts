/**
 * How uploaded content is served safely: which media types may be shown inline, and the
 * `Content-Type` and `Content-Disposition` of everything else.
 */

/**
 * Media types served inline, with their own `Content-Type`. Everything else is served as
 * `application/octet-stream` with `Content-Disposition: attachment`: never inline HTML, SVG,
 * XML, JavaScript or PDF, which can run script or phish in the server's origin.
 */
export const INLINE_TYPES: ReadonlySet<string> = new Set([
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'video/mp4',
  'video/webm',
  'video/ogg',
  'audio/mpeg',
  'audio/mp4',
  'audio/aac',
  'audio/ogg',
  'audio/webm',
  'audio/wav',
  'audio/flac',
  'text/plain',
]);

/** Headers that describe an item's content for a response. */
export interface ContentHeaders {
  readonly 'Content-Type': string;
  readonly 'Content-Disposition': string;
}

/**
 * The `Content-Type` and `Content-Disposition` to serve an item with.
 * @param mime the media type the uploader gave (may be empty or anything)
 * @param name the file name the uploader gave (may be empty)
 */
export function contentHeaders(mime: string | undefined, name: string | undefined): ContentHeaders {
  const type = essence(mime ?? '');
  const inline = type !== undefined && INLINE_TYPES.has(type);
  const disposition = inline ? 'inline' : 'attachment';
  return {
    'Content-Type': inline
      ? type === 'text/plain'
        ? 'text/plain; charset=utf-8'
        : type
      : 'application/octet-stream',
    'Content-Disposition': name ? `${disposition}; ${filenameParams(name)}` : disposition,
  };
}

/** `type/subtype` in lower case, without parameters; `undefined` when it is not a media type. */
function essence(mime: string): string | undefined {
  const m = /^\s*([A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+)\s*(;.*)?$/.exec(mime);
  return m ? m[1]!.toLowerCase() : undefined;
}

/**
 * `filename` (an ASCII fallback) and `filename*` (UTF-8, percent-encoded) per RFC 6266 and 8187.
 * Quotes, backslashes and control characters never reach the header.
 */
function filenameParams(name: string): string {
  const ascii = name.replace(/[^A-Za-z0-9._ -]/g, '_').slice(0, 200) || 'download';
  const encoded = encodeURIComponent(name).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
