/**
 * The headless engine, usable without the element.
 * @module
 */
export { WsUploaderEngine } from './engine.js';
export { EngineEvent, type EngineEventDetails, type EngineEventType } from './events.js';
export {
  ENGINE_DEFAULTS,
  type EngineOptions,
  type SocketLike,
  type SocketFactory,
  type Clock,
  type Integrity,
} from './options.js';
export { LatencyProbe } from './latency-probe.js';
export {
  ConnectionState,
  ItemState,
  type ItemLocation,
  type ItemStatus,
  type MessageSender,
  type MessageTarget,
  type OutgoingMessage,
  type ReceivedItem,
  type ReceivedMessageDetail,
  type RunningTask,
  type ServerStatus,
  type TransmitTask,
  type UnfinishedItem,
  type UploadResult,
} from './types.js';
export type { ResumeOptions, ResumeRecord, ResumeStore } from './resume-store.js';
export { DATA_PROTOCOLS, type DataProtocol } from './transport.js';
