/**
 * Codes of {@link ProtocolError}: why bytes or text could not be decoded into a valid message.
 * - `frame-empty`: a binary frame with no bytes.
 * - `frame-unknown-type`: the first byte names no dup/2 frame.
 * - `frame-truncated`: the frame ends before its fixed fields or a declared length.
 * - `frame-trailing-bytes`: bytes left over after a frame that has no payload.
 * - `frame-invalid-field`: a field is out of its documented range.
 * - `frame-too-large`: a length or payload is over a limit.
 * - `message-invalid-json`: a control frame is not a JSON object.
 * - `message-invalid`: a control message is JSON but breaks the schema.
 */
export type ProtocolErrorCode =
  | 'frame-empty'
  | 'frame-unknown-type'
  | 'frame-truncated'
  | 'frame-trailing-bytes'
  | 'frame-invalid-field'
  | 'frame-too-large'
  | 'message-invalid-json'
  | 'message-invalid';

/**
 * Base class of every error the library throws or reports. `code` is stable and documented;
 * `message` is for people and may change.
 */
export class WsUploaderError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;

  /**
   * @param code stable code, listed in `docs/protocol.md`
   * @param message human-readable explanation
   * @param options standard error options (`cause`)
   */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(`ws-uploader: ${message}`, options);
    this.name = 'WsUploaderError';
    this.code = code;
  }
}

/**
 * Bytes or text from a peer that do not decode into a valid message. The codec throws
 * this and nothing else for bad input.
 */
export class ProtocolError extends WsUploaderError {
  declare readonly code: ProtocolErrorCode;

  /**
   * @param code why decoding failed
   * @param message which field or limit
   */
  constructor(code: ProtocolErrorCode, message: string) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}
