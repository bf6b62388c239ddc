// Helpers for tests of media elements and the downloader's service worker.

/**
 * Resolves at the next `type` event of `target`; rejects when an `error` event comes first, or
 * after `timeoutMs`.
 */
export function nextEvent(target: EventTarget, type: string, timeoutMs = 15_000): Promise<Event> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      target.removeEventListener(type, onEvent);
      target.removeEventListener('error', onError);
    };
    const onEvent = (e: Event): void => {
      done();
      resolve(e);
    };
    const onError = (): void => {
      done();
      reject(new Error(`${type}: an error came first`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${type} in ${timeoutMs} ms`));
    }, timeoutMs);
    target.addEventListener(type, onEvent);
    target.addEventListener('error', onError);
  });
}

/**
 * Registers the downloader's service worker (from its TypeScript source) for the whole test page,
 * and resolves once it controls the page.
 */
export async function registerItemWorker(): Promise<ServiceWorkerRegistration> {
  const registration = await navigator.serviceWorker.register('/src/download/service-worker.js', {
    type: 'module',
    scope: '/',
  });
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller)
    await new Promise((r) =>
      navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }),
    );
  return registration;
}
