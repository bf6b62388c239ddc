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
 * (every other byte reads at once): an upload of it stops there until the gate opens.
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
    }
    return part;
  };
  return file;
}
