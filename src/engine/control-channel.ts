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
import { Backoff } from './retry.js';

/** Largest number of messages kept while disconnected. */
const MAX_BUFFERED = 1000;
/** Longest timer browsers keep (2^31 - 1 ms); later renewals are armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Share of a credential's remaining life after which a fresh one is sent with `auth`. */
const RENEW_AT = 0.75;

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
  readonly #backoff: Backoff;
  #timer: unknown;
  #stopped = false;
  /** The credential the session runs on (from `hello`, or the last `auth` sent). */
  #token: string | undefined;
  #renewTimer: unknown;
  readonly #outbox: ControlClientMessage[] = [];

  constructor(options: ResolvedEngineOptions, handlers: ControlChannelHandlers) {
    this.#options = options;
    this.#handlers = handlers;
    this.#backoff = new Backoff(() => options.reconnectDelays, options.random);
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
    this.#options.clock.clearTimeout(this.#renewTimer);
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
    this.#token = token;
    let fatal = false;
    let expired = false;
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
        this.#backoff.reset();
        this.#sessionId = message.sessionId;
        this.#setState(ConnectionState.OPEN);
        this.#scheduleRenewal(socket);
        this.#handlers.message(message);
        // The engine publishes again on every welcome; a publish queued meanwhile would be a duplicate.
        // Reports of the old session's tasks mean nothing to a new session (resumed: false): its
        // tasks are gone, and the items are published and planned again.
        const taskReport = (m: ControlClientMessage): boolean =>
          m.type === 'accept' ||
          m.type === 'progress' ||
          m.type === 'complete' ||
          m.type === 'fail';
        for (const m of this.#outbox.splice(0)) {
          if (m.type === 'publish') continue;
          if (message.resumed === false && taskReport(m)) continue;
          socket.send(encodeControlMessage(m));
        }
        return;
      }
      if (message.type === 'error') {
        if (message.code === 'auth-failed') fatal = true;
        // The session's credential ran out before a fresh one came: a new connection asks `auth`.
        if (message.code === 'auth-expired') expired = true;
      }
      if (message.type === 'authed') this.#scheduleRenewal(socket);
      this.#handlers.message(message);
    });
    socket.addEventListener('close', (event) => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#welcomed = false;
      this.#options.clock.clearTimeout(this.#renewTimer);
      if (this.#stopped) return;
      const code = (event as CloseEvent).code;
      if (fatal || (code === CLOSE.AUTH_FAILED && !expired)) {
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

  /**
   * Arms the renewal of the session's credential, when it is a JWT with an expiry: at 3/4 of its
   * remaining life, a fresh credential from the `auth` option is sent with `auth` (the control
   * server closes a session whose credential expired). A credential that does not change (a fixed
   * `authToken`) is tried again at half the remaining life, then left to expire: the engine then
   * reconnects, asking `auth` again.
   */
  #scheduleRenewal(socket: SocketLike): void {
    const { clock } = this.#options;
    clock.clearTimeout(this.#renewTimer);
    const token = this.#token;
    const expiresAt = token === undefined ? undefined : tokenExpiry(token);
    if (expiresAt === undefined) return;
    const arm = (delay: number): void => {
      this.#renewTimer = clock.setTimeout(
        () => {
          if (delay > MAX_TIMER_MS) arm(delay - MAX_TIMER_MS);
          else void this.#renew(socket, token!, expiresAt);
        },
        Math.max(0, Math.min(delay, MAX_TIMER_MS)),
      );
    };
    arm(Math.max(0, (expiresAt - Date.now()) * RENEW_AT));
  }

  async #renew(socket: SocketLike, token: string, expiresAt: number): Promise<void> {
    let fresh: string;
    try {
      fresh = await this.#options.auth();
    } catch (e) {
      this.#handlers.error(
        new TransportError('socket-failed', 'the auth callback failed', { cause: e }),
        false,
      );
      return;
    }
    if (this.#socket !== socket || !this.#welcomed) return;
    if (fresh !== token) {
      this.#token = fresh;
      socket.send(encodeControlMessage({ type: 'auth', token: fresh }));
      return;
    }
    const left = expiresAt - Date.now();
    if (left < 2000) return;
    this.#renewTimer = this.#options.clock.setTimeout(
      () => void this.#renew(socket, token, expiresAt),
      Math.min(left / 2, MAX_TIMER_MS),
    );
  }

  #retry(): void {
    if (this.#stopped) return;
    this.#setState(ConnectionState.DOWN);
    // Full jitter: spreads reconnecting browsers out after a server restart.
    this.#timer = this.#options.clock.setTimeout(() => void this.#connect(), this.#backoff.next());
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#handlers.state(state);
  }
}

/** The expiry of a JWT (its `exp`, in ms since the epoch), or `undefined` for anything else. */
function tokenExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined || token.split('.').length !== 3) return undefined;
  try {
    const text = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const exp = (JSON.parse(text) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
