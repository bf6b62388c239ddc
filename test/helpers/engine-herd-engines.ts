/**
 * The worker side of `EngineHerd` (./engine-herd.ts; loaded by ./engine-herd-worker.mjs): many
 * engines in a worker thread, so their timers and sockets do not share an event loop with the
 * servers under test. Answers requests `{id, type}` with `{id, ...}`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { WsUploaderEngine, type SocketLike } from '../../src/index.js';

interface HerdData {
  readonly controlUrl: string;
  readonly token: string;
  readonly clients: number;
  readonly retryDelays?: number[];
}

const { controlUrl, token, clients, retryDelays } = workerData as HerdData;
/** When each engine opened a socket, and to which URL (ms since the epoch, sub-ms precision). */
const attempts: { engine: number; url: string; at: number }[] = [];
/** When each engine saw a socket close. */
const closes: { engine: number; url: string; at: number }[] = [];
let jitter = true;

const engines = Array.from(
  { length: clients },
  (_, engine) =>
    new WsUploaderEngine({
      controlUrl,
      authToken: token,
      ...(retryDelays ? { retryDelays } : {}),
      // Without jitter every delay is its whole cap: what a client without jitter does.
      random: () => (jitter ? Math.random() : 0.999),
      createSocket: (url, protocols) => {
        attempts.push({ engine, url, at: performance.timeOrigin + performance.now() });
        const ws = new WebSocket(url, protocols);
        // A browser's error events are harmless; an EventEmitter throws one nobody listens to.
        ws.on('error', () => undefined);
        ws.on('close', () =>
          closes.push({ engine, url, at: performance.timeOrigin + performance.now() }),
        );
        return ws as unknown as SocketLike;
      },
    }),
);

parentPort!.on('message', (request: { id: number; type: string; jitter?: boolean }) => {
  const answer = (body: object = {}): void => parentPort!.postMessage({ id: request.id, ...body });
  switch (request.type) {
    case 'start':
      void Promise.all(engines.map((e) => e.start())).then(() => answer());
      return;
    case 'jitter':
      jitter = request.jitter ?? true;
      answer();
      return;
    case 'status':
      answer({
        controlOpen: engines.filter((e) => e.state === 'open').length,
        uploadOpen: engines.filter(
          (e) => e.servers.length > 0 && e.servers.every((s) => s.state === 'open'),
        ).length,
        attempts,
        closes,
      });
      return;
    case 'stop':
      for (const e of engines) e.stop();
      answer();
      return;
  }
});
