// A browser asks the control server where an item is (`locate`) and reads it from the upload
// servers that hold it, with the read tokens the answer carries. Real servers, real bytes.
import { expect } from '@open-wc/testing';
import type { WsUploaderEngine } from '../../src/index.js';
import { ConfigError, ServerError } from '../../src/index.js';
import {
  randomFile,
  sha256Hex,
  startDeployment,
  stopServers,
  userToken,
  type TestDeployment,
} from '../helpers/servers.js';
import { startedEngine, uploadFile } from '../helpers/engines.js';

const MiB = 1024 * 1024;

describe('locate: where an item can be read', () => {
  let d: TestDeployment | undefined;
  const engines: WsUploaderEngine[] = [];

  afterEach(async () => {
    for (const e of engines.splice(0)) e.stop();
    await stopServers(d);
    d = undefined;
  });

  it('names each server of a split item with its ranges and a read token that reads them', async () => {
    d = await startDeployment({
      uploadServers: 2,
      linked: true,
      plannerOptions: { splitMin: 1 * MiB, align: 64 * 1024 },
    });
    const alice = await startedEngine(d!, d!.token, engines);
    const file = randomFile(3 * MiB + 5, 'split.bin');
    const expected = await sha256Hex(await file.arrayBuffer());
    const { itemId, servers } = await uploadFile(alice, file);
    expect(servers).to.have.length(2);

    // Another user's browser.
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const where = await bob.locate(itemId);
    expect(where.state).to.equal('stored');
    expect(where.sha256).to.equal(expected);
    expect(where.item).to.deep.include({ itemId, name: 'split.bin', size: file.size });
    expect(where.holders.map((h) => h.serverId).sort()).to.deep.equal(['up-1', 'up-2']);
    // Together the holders' ranges are the item, once.
    const parts = where.holders
      .flatMap((h) => h.ranges.map((r) => ({ ...r, holder: h })))
      .sort((a, b) => a.start - b.start);
    expect(parts[0]!.start).to.equal(0);
    expect(parts.at(-1)!.end).to.equal(file.size);
    for (let i = 1; i < parts.length; i++) expect(parts[i]!.start).to.equal(parts[i - 1]!.end);

    // Each range read from its holder with the token given.
    const bytes: ArrayBuffer[] = [];
    for (const { start, end, holder } of parts) {
      const response = await fetch(`${holder.httpUrl}/files/${itemId}`, {
        headers: { Authorization: `Bearer ${holder.token}`, Range: `bytes=${start}-${end - 1}` },
      });
      expect(response.status).to.equal(206);
      bytes.push(await response.arrayBuffer());
    }
    expect(await sha256Hex(await new Blob(bytes).arrayBuffer())).to.equal(expected);
    // The token reads this item only.
    const other = await fetch(`${parts[0]!.holder.httpUrl}/files/${'A'.repeat(22)}`, {
      headers: { Authorization: `Bearer ${parts[0]!.holder.token}` },
    });
    expect(other.status).to.equal(403);
  });

  it('gives an inline item with its bytes, and refuses an unknown item or a bad id', async () => {
    d = await startDeployment({ uploadServers: 1 }); // inline items up to 64 KiB
    const alice = await startedEngine(d!, d!.token, engines);
    const small = new File(['hello, bob'], 'note.txt', { type: 'text/plain' });
    const { itemId } = await uploadFile(alice, small);
    const bob = await startedEngine(d!, await userToken(d, 'bob'), engines);
    const where = await bob.locate(itemId);
    expect(where.state).to.equal('stored');
    expect(where.holders).to.deep.equal([]);
    expect(atob(where.item.content!)).to.equal('hello, bob');

    let error: unknown;
    await bob.locate('B'.repeat(22)).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(ServerError);
    expect((error as ServerError).code).to.equal('unknown-item');
    let bad: unknown;
    await bob.locate('not an id!').catch((e: unknown) => (bad = e));
    expect(bad).to.be.instanceOf(ConfigError);
  });
});
