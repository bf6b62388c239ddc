/**
 * The browser's end of the control protocol: connects, says hello, reconnects with backoff and
 * full jitter, and buffers reports while disconnected.
 */
import { CLOSE, SUBPROTOCOL_CONTROL_1 } from '../protocol/constants.js';
import {
  decodeControlServerMessage,
  encodeControlMessage,
  type ControlClientMessage,
  type ControlServerMessage,
} from '../protocol/control.js';
import { ProtocolError } from '../protocol/errors.js';
import { ServerError, TransportError } from '../errors.js';
import type { ResolvedEngineOptions, SocketLike } from './options.js';
import { ConnectionState } from './types.js';

/** Largest number of messages kept while disconnected. */
const MAX_BUFFERED = 1000;

/** Callbacks of a {@link ControlChannel}. */
export interface ControlChannelHandlers {
  message(message: ControlServerMessage): void;
  state(state: ConnectionState): void;
  /** A failure; `fatal` ones stop reconnecting. */
  error(error: TransportError | ServerError | ProtocolError, fatal: boolean): void;
}

/**
 * One control connection, kept open until {@link ControlChannel.close}.
 * @internal
 */
export class ControlChannel {
  readonly #options: ResolvedEngineOptions;
  readonly #handlers: ControlChannelHandlers;
  #socket: SocketLike | undefined;
  #state: ConnectionState = ConnectionState.CLOSED;
  #welcomed = false;
  #sessionId: string | undefined;
  #attempt = 0;
  #timer: unknown;
  #stopped = false;
  readonly #outbox: ControlClientMessage[] = [];

  constructor(options: ResolvedEngineOptions, handlers: ControlChannelHandlers) {
    this.#options = options;
    this.#handlers = handlers;
  }

  /** Current state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Opens the connection (and keeps reopening it). */
  open(): void {
    this.#stopped = false;
    void this.#connect();
  }

  /**
   * Sends a message now, or when the connection is back.
   * @param message the message
   */
  send(message: ControlClientMessage): void {
    if (this.#welcomed && this.#socket?.readyState === 1) {
      this.#socket.send(encodeControlMessage(message));
    } else if (this.#outbox.length < MAX_BUFFERED) {
      this.#outbox.push(message);
    }
  }

  /** Closes for good. */
  close(): void {
    this.#stopped = true;
    this.#options.clock.clearTimeout(this.#timer);
    this.#socket?.close(CLOSE.NORMAL, 'closed by the page');
    this.#socket = undefined;
    this.#setState(ConnectionState.CLOSED);
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    this.#setState(ConnectionState.CONNECTING);
    let token: string;
    try {
      token = await this.#options.auth();
    } catch (e) {
      this.#handlers.error(
        new TransportError('socket-failed', 'the auth callback failed', { cause: e }),
        false,
      );
      this.#retry();
      return;
    }
    if (this.#stopped) return;
    let socket: SocketLike;
    try {
      socket = this.#options.createSocket(this.#options.controlUrl, [SUBPROTOCOL_CONTROL_1]);
    } catch (e) {
      this.#handlers.error(
        new TransportError('socket-failed', 'cannot open the control socket', { cause: e }),
        true,
      );
      this.#setState(ConnectionState.DOWN);
      return;
    }
    this.#socket = socket;
    this.#welcomed = false;
    let fatal = false;
    socket.addEventListener('open', () => {
      const hello: ControlClientMessage = this.#sessionId
        ? { type: 'hello', token, sessionId: this.#sessionId }
        : { type: 'hello', token };
      socket.send(encodeControlMessage(hello));
    });
    socket.addEventListener('message', (event) => {
      const data = (event as MessageEvent).data;
      let message: ControlServerMessage;
      try {
        if (typeof data !== 'string')
          throw new ProtocolError('message-invalid', 'control frames are text');
        message = decodeControlServerMessage(data);
      } catch (e) {
        this.#handlers.error(e as ProtocolError, false);
        return;
      }
      if (message.type === 'welcome') {
        this.#welcomed = true;
        this.#attempt = 0;
        this.#sessionId = message.sessionId;
        this.#setState(ConnectionState.OPEN);
        this.#handlers.message(message);
        // The engine publishes again on every welcome; a publish queued meanwhile would be a duplicate.
        for (const m of this.#outbox.splice(0)) {
          if (m.type !== 'publish') socket.send(encodeControlMessage(m));
        }
        return;
      }
      if (
        message.type === 'error' &&
        (message.code === 'auth-failed' || message.code === 'auth-timeout')
      ) {
        fatal = message.code === 'auth-failed';
      }
      this.#handlers.message(message);
    });
    socket.addEventListener('close', (event) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#welcomed = false;
      if (this.#stopped) return;
      const code = (event as CloseEvent).code;
      if (fatal || code === CLOSE.AUTH_FAILED) {
        this.#handlers.error(
          new ServerError('auth-failed', 'the control server refused the credential', {
            serverId: 'control',
          }),
          true,
        );
        this.#setState(ConnectionState.DOWN);
        return;
      }
      this.#handlers.error(
        new TransportError('socket-closed', `control connection closed (${code})`, {
          serverId: 'control',
          closeCode: code,
        }),
        false,
      );
      this.#retry();
    });
  }

  #retry(): void {
    if (this.#stopped) return;
    this.#setState(ConnectionState.DOWN);
    const delays = this.#options.retryDelays;
    const cap = delays[Math.min(this.#attempt, delays.length - 1)]!;
    this.#attempt++;
    // Full jitter: spreads reconnecting browsers out after a server restart.
    const delay = Math.floor(this.#options.random() * cap);
    this.#timer = this.#options.clock.setTimeout(() => void this.#connect(), delay);
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#handlers.state(state);
  }
}
