/** Reads a test holds back: a slow disk, as the test controls it. */
export class Gate {
  #open = false;
  #waiters: (() => void)[] = [];
  /** How many reads are waiting. */
  get waiting(): number {
    return this.#waiters.length;
  }
  /** Resolves once the gate is open. */
  wait(): Promise<void> {
    return this.#open ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }
  /** Lets every waiting and later read through. */
  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
}

/**
 * `file`, whose reads that touch one of `stalls` (`[from, to)` byte ranges) wait for the gate
 * (every other byte reads at once): an upload of it stops there until the gate opens. A slice
 * read whole (`arrayBuffer()`) waits before it is read; a slice read as a stream gives the bytes
 * before the first stall at once, then waits.
 */
export function gatedFile(
  file: File,
  stalls: readonly (readonly [number, number])[],
  gate: Gate,
): File {
  const slice = file.slice.bind(file);
  file.slice = (start = 0, end = file.size, type?: string): Blob => {
    const part = slice(start, end, type);
    if (stalls.some(([from, to]) => start < to && from < end)) {
      const read = part.arrayBuffer.bind(part);
      part.arrayBuffer = async () => {
        await gate.wait();
        return read();
      };
      const stream = part.stream.bind(part);
      part.stream = () => gatedStream(stream(), start, stalls, gate);
    }
    return part;
  };
  return file;
}

/**
 * A byte stream of `inner` (the bytes from `start` of the file) that holds back the bytes from
 * the first stall on until the gate opens.
 */
function gatedStream(
  inner: ReadableStream<Uint8Array<ArrayBuffer>>,
  start: number,
  stalls: readonly (readonly [number, number])[],
  gate: Gate,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  const reader = inner.getReader();
  let at = start;
  return new ReadableStream({
    type: 'bytes',
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      const end = at + value.length;
      const stall = stalls.find(([from, to]) => at < to && from < end);
      // Copies: enqueue takes the buffer it is given.
      if (stall) {
        const before = Math.max(0, stall[0] - at);
        if (before > 0) controller.enqueue(value.slice(0, before));
        await gate.wait();
        controller.enqueue(value.slice(before));
      } else {
        controller.enqueue(value.slice());
      }
      at = end;
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
