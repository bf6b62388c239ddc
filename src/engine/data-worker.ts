/**
 * The data Worker: the engine's connections to the upload servers, its file reads, checksums,
 * hashing and framing, off the page's main thread. The page keeps the control channel and the
 * items' state and hears of progress by message (`data-worker-messages.ts`); its side is
 * `data-worker-client.ts`. Built as `data-worker.js` next to the engine's modules, and as
 * `dist/bundle/data-worker.js` next to the bundle.
 * @module
 */
import { resolveOptions, type ResolvedEngineOptions } from './options.js';
import { LocalDataPlane } from './data-plane.js';
import {
  errorFields,
  type FromWorker,
  type ToWorker,
  type WorkerOptions,
} from './data-worker-messages.js';
import type { TaskProgress } from './part-scheduler.js';
import type { WsUploaderError } from '../errors.js';

/** Progress of a task is posted at most this often, in ms (and always before it ends). */
const PROGRESS_MS = 50;
/** Server statuses (their throughput moves with every acknowledgement) are posted this often. */
const STATUS_MS = 500;

// The Worker's global scope, typed by what is used here (the project compiles against the DOM lib).
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker): void;
};

const post = (message: FromWorker): void => scope.postMessage(message);

let plane: LocalDataPlane | undefined;
const runs = new Map<number, AbortController>();
const retryAsks = new Map<number, (retry: boolean) => void>();
let nextAsk = 1;
let statusTimer: ReturnType<typeof setInterval> | undefined;

function start(given: WorkerOptions): void {
  const { askRetry, ...cloned } = given;
  const options: ResolvedEngineOptions = resolveOptions({
    ...cloned,
    // The control channel stays on the page: these two only pass the check.
    controlUrl: 'ws://data-worker.invalid',
    authToken: 'unused',
    resume: false,
    dataWorker: false,
  });
  if (askRetry)
    options.onShouldRetry = (error: WsUploaderError, attempt: number, retryable: boolean) =>
      new Promise<boolean>((resolve) => {
        const askId = nextAsk++;
        retryAsks.set(askId, resolve);
        post({ type: 'should-retry', askId, error: errorFields(error), attempt, retryable });
      });
  plane = new LocalDataPlane(options, {
    change: (servers) => post({ type: 'servers', servers, changed: true }),
    probe: (results) => post({ type: 'probe', results }),
  });
  post({ type: 'ready' });
}

function run(message: Extract<ToWorker, { type: 'run' }>): void {
  const { runId, item, ranges, options } = message;
  const controller = new AbortController();
  runs.set(runId, controller);
  let latest: TaskProgress | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (latest) post({ type: 'progress', runId, progress: latest });
    latest = undefined;
  };
  const onProgress = (progress: TaskProgress): void => {
    latest = progress;
    timer ??= setTimeout(flush, PROGRESS_MS);
  };
  watchStatuses(true);
  plane!
    .run(item, ranges, onProgress, {
      ...options,
      ...(options.deadline === undefined ? {} : { deadline: options.deadline }),
      signal: controller.signal,
    })
    .then(
      (result) => {
        flush();
        postStatuses();
        post({ type: 'done', runId, result });
      },
      (error: unknown) => {
        flush();
        postStatuses();
        post({ type: 'failed', runId, error: errorFields(error) });
      },
    )
    .finally(() => {
      runs.delete(runId);
      if (runs.size === 0) watchStatuses(false);
    });
}

/** The servers' statuses as they are now (their throughput), for `engine.servers`. */
function postStatuses(): void {
  post({ type: 'servers', servers: plane!.statuses(), changed: false });
}

/** While tasks run, the servers' throughput goes to the page now and then. */
function watchStatuses(on: boolean): void {
  if (on && statusTimer === undefined) statusTimer = setInterval(postStatuses, STATUS_MS);
  else if (!on && statusTimer !== undefined) {
    clearInterval(statusTimer);
    statusTimer = undefined;
  }
}

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case 'init':
      start(message.options);
      return;
    case 'update':
      plane?.update(message.servers);
      return;
    case 'configure':
      plane?.configure(message.settings);
      return;
    case 'run':
      run(message);
      return;
    case 'abort':
      runs.get(message.runId)?.abort();
      return;
    case 'forget':
      plane?.forget(message.itemId);
      return;
    case 'retry-answer':
      retryAsks.get(message.askId)?.(message.retry);
      retryAsks.delete(message.askId);
      return;
    case 'close':
      for (const controller of runs.values()) controller.abort();
      plane?.close();
      watchStatuses(false);
      // The page starts a new Worker if it needs one again.
      (globalThis as unknown as { close(): void }).close();
      return;
  }
};
