/** Engines for tests: started against a deployment, and one whole upload awaited. */
import { WsUploaderEngine, type UploadResult } from '../../src/index.js';
import type { TestDeployment } from './servers.js';

/**
 * A started engine of the user `token` names, noted in `engines` for the test to stop.
 * @param d the deployment
 * @param token a user token
 * @param engines where the test keeps its engines
 */
export async function startedEngine(
  d: TestDeployment,
  token: string,
  engines: WsUploaderEngine[],
): Promise<WsUploaderEngine> {
  const e = new WsUploaderEngine({ controlUrl: d.controlUrl, authToken: token });
  engines.push(e);
  await e.start();
  return e;
}

/** Adds a file and resolves with its `complete` event. */
export function uploadFile(e: WsUploaderEngine, file: File): Promise<UploadResult> {
  return new Promise((resolve) => {
    const off = e.on('complete', (ev) => {
      off();
      resolve(ev.detail);
    });
    e.addFiles([file]);
  });
}
