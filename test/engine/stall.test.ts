import { expect } from '@open-wc/testing';
import type { TransportError } from '../../src/errors.js';
import { Dup2Transport } from '../../src/engine/dup2-transport.js';
import { resolveOptions } from '../../src/engine/options.js';
import { SocketPool } from '../../src/engine/socket-pool.js';
import type { ServerStatus } from '../../src/engine/types.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeServerSocket } from '../helpers/fake-socket.js';

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('Dup2Transport stall detection', () => {
  it('closes a connection that acknowledges nothing for stallTimeoutMs while bytes are in flight (stalled), not an idle one', async () => {
    const clock = new FakeClock();
    let socket!: FakeServerSocket;
    const options = resolveOptions({
      controlUrl: 'ws://control.invalid/',
      authToken: 't',
      stallTimeoutMs: 1000,
      clock,
      createSocket: () => (socket = new FakeServerSocket()),
    });
    const closes: TransportError[] = [];
    const transport = new Dup2Transport(
      {
        id: 'fake',
        url: 'ws://fake.invalid/dup',
        httpUrl: 'http://fake.invalid',
        protocols: ['dup/2'],
        token: 't',
        tokenExpiresAt: 0,
      },
      options,
      (e) => closes.push(e),
    );
    await transport.connect();
    const errors: unknown[] = [];
    const acked: number[] = [];
    const opened = await transport.open(
      { itemId: 'i', size: 1000, mime: '', name: 'i', blob: new Blob([new Uint8Array(1000)]) },
      { ack: (start, end) => acked.push(end - start), error: (e) => errors.push(e) },
    );
    // Idle, nothing in flight: no stall however long.
    clock.advance(5000);
    expect(transport.isOpen).to.equal(true);
    // Acknowledged in time: still no stall.
    transport.sendData(opened.uploadId, 0, new Uint8Array(100));
    await tick();
    expect(acked).to.deep.equal([100]);
    clock.advance(5000);
    expect(transport.isOpen).to.equal(true);
    // Silent while bytes are in flight: closed after stallTimeoutMs, once.
    socket.acks = false;
    transport.sendData(opened.uploadId, 100, new Uint8Array(100));
    clock.advance(999);
    expect(transport.isOpen).to.equal(true);
    clock.advance(1);
    expect(transport.isOpen).to.equal(false);
    expect(transport.stalled).to.equal(true);
    expect(socket.closedWith).to.equal(4000);
    await tick();
    expect(closes.map((e) => e.code)).to.deep.equal(['stalled']);
    expect(errors.map((e) => (e as TransportError).code)).to.deep.equal(['stalled']);
  });

  /** A welcomed transport with one open upload, on a fake socket and a fake clock. */
  async function openUpload(stallTimeoutMs: number) {
    const clock = new FakeClock();
    let socket!: FakeServerSocket;
    const options = resolveOptions({
      controlUrl: 'ws://control.invalid/',
      authToken: 't',
      stallTimeoutMs,
      clock,
      createSocket: () => (socket = new FakeServerSocket()),
    });
    const transport = new Dup2Transport(
      {
        id: 'fake',
        url: 'ws://fake.invalid/dup',
        httpUrl: 'http://fake.invalid',
        protocols: ['dup/2'],
        token: 't',
        tokenExpiresAt: 0,
      },
      options,
      () => undefined,
    );
    await transport.connect();
    const { uploadId } = await transport.open(
      { itemId: 'i', size: 1000, mime: '', name: 'i', blob: new Blob([new Uint8Array(1000)]) },
      { ack: () => undefined, error: () => undefined },
    );
    return { clock, socket, transport, uploadId };
  }

  it('counts bytes leaving the socket buffer as progress (a slow link), and stalls once they stop', async () => {
    const { clock, socket, transport, uploadId } = await openUpload(1000);
    socket.acks = false;
    transport.sendData(uploadId, 0, new Uint8Array(500));
    // No ACK for 3 stall times, but the buffer drains a little each time: alive.
    for (let i = 0; i < 3; i++) {
      socket.bufferedAmount = Math.max(0, socket.bufferedAmount - 100);
      clock.advance(1000);
      expect(transport.isOpen, `look ${i}`).to.equal(true);
    }
    // The buffer stops draining: stalled one stall time later.
    clock.advance(1000);
    expect(transport.isOpen).to.equal(false);
    expect(transport.stalled).to.equal(true);
  });

  it('finds a connection that went silent with its bytes already out of the buffer within two stall times', async () => {
    const { clock, socket, transport, uploadId } = await openUpload(1000);
    socket.acks = false;
    socket.holds = false;
    transport.sendData(uploadId, 0, new Uint8Array(500));
    clock.advance(1000);
    expect(transport.isOpen).to.equal(true); // the bytes left the buffer since the last look
    clock.advance(999);
    expect(transport.isOpen).to.equal(true);
    clock.advance(1);
    expect(transport.isOpen).to.equal(false);
    expect(transport.stalled).to.equal(true);
  });

  it('starts the stall clock when bytes go out after a quiet spell, not at the last ACK', async () => {
    const { clock, socket, transport, uploadId } = await openUpload(1000);
    transport.sendData(uploadId, 0, new Uint8Array(100));
    await tick(); // acknowledged
    clock.advance(5000); // quiet: nothing in flight
    socket.acks = false;
    transport.sendData(uploadId, 100, new Uint8Array(100));
    clock.advance(999);
    expect(transport.isOpen).to.equal(true); // counted from the send, not from the ACK 5 s ago
    clock.advance(1);
    expect(transport.isOpen).to.equal(false);
  });

  it('fails an OPEN or a FINISH the server does not answer within 15 s, ending its upload id', async () => {
    const { clock, socket, transport, uploadId } = await openUpload(60_000);
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (e: TransportError) => `${e.code}: ${e.message}`,
      );
    const finished = outcome(transport.finish(uploadId, new Uint8Array(32)));
    let settled: string | undefined;
    void finished.then((o) => (settled = o));
    clock.advance(14_999);
    await tick();
    expect(settled).to.equal(undefined);
    clock.advance(1);
    expect(await finished).to.equal('connect-timeout: ws-uploader: no COMPLETE from fake');
    // The upload id is given up on both sides; the connection stays.
    expect(socket.frames.at(-1)).to.deep.equal({ type: 'cancel', uploadId });
    expect(transport.isOpen).to.equal(true);

    socket.opens = false;
    const opened = outcome(
      transport.open(
        { itemId: 'j', size: 10, mime: '', name: 'j', blob: new Blob([new Uint8Array(10)]) },
        { ack: () => undefined, error: () => undefined },
      ),
    );
    clock.advance(15_000);
    expect(await opened).to.equal('connect-timeout: ws-uploader: no OPENED from fake');
    expect(socket.frames.at(-1)).to.include({ type: 'cancel' });
    expect(transport.isOpen).to.equal(true);
  });

  it('hands a renewed upload token to the open connection, for its next connections and requests', async () => {
    const clock = new FakeClock();
    const options = resolveOptions({
      controlUrl: 'ws://control.invalid/',
      authToken: 't',
      clock,
      createSocket: () => new FakeServerSocket(),
    });
    const pool = new SocketPool(options, { change: () => undefined, probe: () => undefined });
    const info = {
      id: 'fake',
      url: 'ws://fake.invalid/dup',
      httpUrl: 'http://fake.invalid',
      protocols: ['dup/2'],
      token: 'old',
      tokenExpiresAt: 1,
    };
    pool.update([info]);
    const transport = await pool.get('fake');
    expect(transport.info.token).to.equal('old');
    pool.update([{ ...info, token: 'new', tokenExpiresAt: 2 }]);
    expect(transport.info.token).to.equal('new');
    expect(await pool.get('fake')).to.equal(transport); // the same connection, not a new one
    pool.close();
  });

  it('marks a server degraded while its heartbeat goes unanswered, and open again when it answers', async () => {
    const clock = new FakeClock();
    let socket!: FakeServerSocket;
    const options = resolveOptions({
      controlUrl: 'ws://control.invalid/',
      authToken: 't',
      probeIntervalMs: 1000,
      clock,
      createSocket: () => (socket = new FakeServerSocket()),
    });
    const states: string[] = [];
    const pool = new SocketPool(options, {
      change: (servers: ServerStatus[]) => {
        const state = servers[0]?.state;
        if (state && states.at(-1) !== state) states.push(state);
      },
      probe: () => undefined,
    });
    pool.update([
      {
        id: 'fake',
        url: 'ws://fake.invalid/dup',
        httpUrl: 'http://fake.invalid',
        protocols: ['dup/2'],
        token: 't',
        tokenExpiresAt: 0,
      },
    ]);
    for (let i = 0; i < 10; i++) await tick();
    expect(states).to.deep.equal(['connecting', 'open']);
    socket.pongs = false;
    clock.advance(1000); // the heartbeat ping goes out
    await tick();
    clock.advance(15_000); // and gets no PONG in time
    for (let i = 0; i < 5; i++) await tick();
    expect(states.at(-1)).to.equal('degraded');
    expect(await pool.get('fake')).to.be.instanceOf(Dup2Transport); // still used
    socket.pongs = true;
    clock.advance(1000);
    for (let i = 0; i < 5; i++) await tick();
    expect(states).to.deep.equal(['connecting', 'open', 'degraded', 'open']);
    pool.close();
  });
});
