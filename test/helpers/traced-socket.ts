/**
 * A real browser WebSocket for the engine's `createSocket` that also records what a dup/2
 * connection carried, as the page saw it: DATA sent, ACK and OPENED received, and how it closed.
 */
import type { SocketLike } from '../../src/index.js';
import { decodeDup2Frame } from '../../src/protocol/dup2.js';

/** A byte range. */
export interface Span {
  readonly start: number;
  readonly end: number;
}

/** What one dup/2 connection of the page carried. Times are `Date.now()`. */
export interface Dup2Trace {
  readonly url: string;
  readonly createdAt: number;
  /** DATA frames sent, as byte ranges of the item. */
  readonly data: Span[];
  /** ACKs received. */
  readonly acks: Span[];
  /** The stored ranges of each OPENED received. */
  readonly opened: Span[][];
  /** `OPEN` and `DATA` sent and `OPENED` received, in the order the page sent or got them. */
  readonly order: ('OPEN' | 'DATA' | 'OPENED')[];
  /** The code the page closed it with, and when. */
  closedByPage?: { readonly code: number | undefined; readonly at: number };
  /** Its close event. */
  closed?: { readonly code: number; readonly at: number };
}

/**
 * Opens a WebSocket to `url` and records its dup/2 traffic in a new entry of `traces`.
 * @param url where to connect (for example a fault proxy's URL)
 */
export function tracedDup2Socket(
  url: string,
  protocols: string[],
  traces: Dup2Trace[],
): SocketLike {
  const ws = new WebSocket(url, protocols);
  const trace: Dup2Trace = {
    url,
    createdAt: Date.now(),
    data: [],
    acks: [],
    opened: [],
    order: [],
  };
  traces.push(trace);
  const send = ws.send.bind(ws);
  ws.send = (data: string | ArrayBufferLike | Blob | ArrayBufferView) => {
    if (ArrayBuffer.isView(data)) {
      const frame = decodeDup2Frame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      if (frame.type === 'data')
        trace.data.push({ start: frame.offset, end: frame.offset + frame.payload.length });
      if (frame.type === 'data' || frame.type === 'open')
        trace.order.push(frame.type === 'data' ? 'DATA' : 'OPEN');
    }
    send(data);
  };
  const close = ws.close.bind(ws);
  ws.close = (code?: number, reason?: string) => {
    trace.closedByPage ??= { code, at: Date.now() };
    close(code, reason);
  };
  ws.addEventListener('message', (event) => {
    if (!(event.data instanceof ArrayBuffer)) return;
    const frame = decodeDup2Frame(new Uint8Array(event.data));
    if (frame.type === 'ack') trace.acks.push({ start: frame.start, end: frame.end });
    else if (frame.type === 'opened') {
      trace.opened.push(frame.ranges.map((r) => ({ ...r })));
      trace.order.push('OPENED');
    }
  });
  ws.addEventListener('close', (event) => {
    trace.closed = { code: event.code, at: Date.now() };
  });
  return ws;
}

/** Whether `ranges` hold every byte of `[start, end)`. */
export function holds(ranges: readonly Span[], start: number, end: number): boolean {
  let at = start;
  for (const r of [...ranges].sort((a, b) => a.start - b.start)) {
    if (r.start > at) break;
    at = Math.max(at, r.end);
  }
  return at >= end;
}
