/**
 * Number formats of `<ws-uploader>`'s default (English) strings: sizes in SI units, as file
 * managers show them.
 */

/**
 * A size, e.g. `3.1 MB`.
 * @param n bytes
 * @internal
 */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/**
 * A rate, e.g. `12 MB/s`.
 * @param bytesPerSecond bytes per second
 * @internal
 */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/**
 * A duration left, e.g. `40 s`, `3 min`, `1 h 5 min`.
 * @param seconds seconds
 * @internal
 */
export function formatDuration(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} s`;
  const min = Math.ceil(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}
