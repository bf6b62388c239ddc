// The worker thread of EngineHerd (./engine-herd.ts): loads its TypeScript through tsx, as the
// tests are loaded.
import { tsImport } from 'tsx/esm/api';

await tsImport('./engine-herd-engines.ts', import.meta.url);
