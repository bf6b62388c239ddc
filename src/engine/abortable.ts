/**
 * A promise that gives up waiting when a signal aborts, for work that cannot itself be stopped (a
 * file read, a server's answer). Used by the engine and the downloader.
 */

/**
 * Waits for `promise`, or rejects as soon as `signal` aborts (at once if it already has).
 * @param promise the work
 * @param signal stops the wait; none: `promise` as it is
 * @param reason what to reject with @default the signal's reason
 * @internal
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  reason: () => unknown = () => signal?.reason,
): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      reject(reason());
      return;
    }
    const onAbort = (): void => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
