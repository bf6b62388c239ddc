// The few web-platform globals the pure protocol codec may use. Declared here so that the
// codec's own type check (lib ES2022, no DOM, no Node types) fails on anything else.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
