/**
 * The reference Node servers of ws-uploader.
 * @module
 */
export {
  createUploadServer,
  DUP_PATH,
  type UploadServer,
  type UploadServerOptions,
} from './upload/upload-server.js';
export {
  FileStore,
  StoreError,
  type ItemStore,
  type StoreWriteOptions,
  type StoredBytes,
  type ItemRecord,
  type NewItem,
} from './upload/file-store.js';
export { type Demand } from './upload/file-route.js';
export { type ReadAccess, type CrossOriginResourcePolicy } from './upload/read-access.js';
export { INLINE_TYPES } from './upload/content-policy.js';
export {
  createControlServer,
  DEMAND_PRIORITY,
  type ControlServer,
  type ControlServerOptions,
  type UploadServerEndpoint,
  type AuthenticatedUser,
  type ItemInfo,
  type ItemState,
  type TaskEvent,
  type ControlClient,
  type ClientRequest,
  type AppMessage,
  type TransmitOptions,
  RELAY_PATH_PREFIX,
} from './control/control-server.js';
export {
  lowestRttPlanner,
  createPlanner,
  defaultPlanner,
  type PlannerOptions,
  validatePlan,
  type Planner,
  type PlannerServer,
} from './control/planner.js';
export {
  createUserToken,
  createReadToken,
  createRegistryToken,
  REGISTRY_AUDIENCE,
  READ_SCOPE,
  CONTROL_AUDIENCE,
  uploadAudience,
  MIN_SECRET_BYTES,
  type ReadTokenOptions,
} from './tokens.js';
export { startDemo, type Demo, type DemoOptions } from './demo.js';
export { jsonLinesLogger, type Logger, type LogEntry } from './internal/log.js';
