import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { CLOSE } from '../../src/protocol/index.js';
import {
  createControlServer,
  createUserToken,
  type ClientRequest,
  type ControlServer,
  type ControlServerOptions,
  type ItemInfo,
} from '../../server/index.js';
import { ControlPeer } from '../helpers/node-peers.js';

const SECRET = 'm'.repeat(32);
const UPLOAD_SERVERS = [
  { id: 'up-1', url: 'ws://127.0.0.1:9001/dup', httpUrl: 'http://127.0.0.1:9001' },
];

/** Resolves with `true` when the peer receives nothing for `ms`, `false` when it receives something. */
async function silent(peer: ControlPeer, ms = 200): Promise<boolean> {
  return peer.next(ms).then(
    () => false,
    () => true,
  );
}

describe('control server: messages, rooms, inline items, unpublish, auth, cancel', () => {
  let control: ControlServer;
  let url: string;
  const peers: ControlPeer[] = [];
  const completed: ItemInfo[] = [];
  const requests: ClientRequest[] = [];

  async function start(extra: Partial<ControlServerOptions> = {}): Promise<void> {
    control = createControlServer({
      secret: SECRET,
      uploadServers: UPLOAD_SERVERS,
      probeWaitMs: 0,
      inlineMax: 1024,
      onComplete: (item) => completed.push(item),
      allow: (request) => {
        requests.push(request);
        const room =
          request.action === 'join'
            ? request.room
            : request.action === 'message' && 'room' in request.to
              ? request.to.room
              : undefined;
        return room !== 'secret';
      },
      ...extra,
    });
    url = await control.listen(0);
  }

  async function connect(user = 'alice'): Promise<{ peer: ControlPeer; clientId: string }> {
    const peer = new ControlPeer(url);
    peers.push(peer);
    await peer.send({ type: 'hello', token: await createUserToken(SECRET, user) });
    const welcome = await peer.nextOf('welcome');
    expect(welcome.limits).to.deep.equal({ maxItemSize: 524288000, inlineMax: 1024 });
    expect(welcome.resumed).to.equal(false);
    return { peer, clientId: welcome.clientId };
  }

  beforeEach(async () => {
    completed.length = 0;
    requests.length = 0;
    await start();
  });

  afterEach(async () => {
    for (const p of peers.splice(0)) p.close();
    await control.close();
  });

  it('relays a message to a client, to every browser of a user, and to a room, never back to the sender', async () => {
    const a = await connect('alice');
    const b = await connect('bob');
    const b2 = await connect('bob');
    const c = await connect('carol');
    await a.peer.send({ type: 'message', id: 'm1', to: { clientId: b.clientId }, body: 'hi b' });
    expect(await a.peer.nextOf('sent')).to.deep.equal({ type: 'sent', id: 'm1', delivered: 1 });
    expect(await b.peer.nextOf('message')).to.deep.equal({
      type: 'message',
      from: { clientId: a.clientId, userId: 'alice' },
      id: 'm1',
      body: 'hi b',
    });
    expect(await silent(b2.peer)).to.equal(true);

    await a.peer.send({ type: 'message', id: 'm2', to: { userId: 'bob' }, body: 'hi bob' });
    expect((await a.peer.nextOf('sent')).delivered).to.equal(2);
    expect((await b.peer.nextOf('message')).body).to.equal('hi bob');
    expect((await b2.peer.nextOf('message')).body).to.equal('hi bob');

    await b.peer.send({ type: 'join', room: 'lobby' });
    await c.peer.send({ type: 'join', room: 'lobby' });
    await a.peer.send({ type: 'join', room: 'lobby' });
    await a.peer.send({ type: 'message', id: 'm3', to: { room: 'lobby' }, body: 'hi all' });
    expect((await a.peer.nextOf('sent')).delivered).to.equal(2);
    expect((await c.peer.nextOf('message')).body).to.equal('hi all');
    expect((await b.peer.nextOf('message')).body).to.equal('hi all');
    expect(await silent(a.peer)).to.equal(true);

    await c.peer.send({ type: 'leave', room: 'lobby' });
    b.peer.close();
    await a.peer.send({ type: 'message', id: 'm4', to: { room: 'lobby' }, body: 'anyone?' });
    expect((await a.peer.nextOf('sent')).delivered).to.equal(0);
    expect(await silent(c.peer)).to.equal(true);
    expect(requests).to.deep.include({ action: 'join', room: 'lobby' });
  });

  it('asks the allow hook: a forbidden join or message gets error forbidden and reaches no one', async () => {
    const a = await connect('alice');
    const b = await connect('bob');
    await a.peer.send({ type: 'join', room: 'secret' });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'forbidden', ref: 'secret' });
    await b.peer.send({ type: 'join', room: 'open' });
    await a.peer.send({ type: 'message', id: 'x', to: { room: 'secret' }, body: 'psst' });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'forbidden', ref: 'x' });
    expect(await silent(b.peer)).to.equal(true);
  });

  it('stores an inline item at once (no transmit), verifies its digest, and delivers it with a message', async () => {
    const a = await connect('alice');
    const b = await connect('bob');
    const bytes = randomBytes(700);
    const item = {
      itemId: 'pic',
      name: 'pic.png',
      size: bytes.length,
      mime: 'image/png',
      kind: 'clipboard' as const,
      content: bytes.toString('base64'),
    };
    await a.peer.send({ type: 'publish', items: [item] });
    expect(await a.peer.nextOf('published')).to.deep.equal({
      type: 'published',
      itemIds: ['pic'],
    });
    const digest = createHash('sha256').update(bytes).digest('hex');
    expect(await a.peer.nextOf('completed')).to.deep.equal({
      type: 'completed',
      itemId: 'pic',
      sha256: digest,
      servers: [],
    });
    expect(completed.map((i) => [i.meta.itemId, i.inline, i.sha256])).to.deep.equal([
      ['pic', true, digest],
    ]);
    expect(await silent(a.peer)).to.equal(true); // no transmit
    await a.peer.send({ type: 'message', to: { clientId: b.clientId }, itemId: 'pic' });
    const received = await b.peer.nextOf('message');
    expect(received.item).to.deep.equal(item);
    expect(Buffer.from(received.item!.content!, 'base64').equals(bytes)).to.equal(true);
  });

  it('answers locate with the item and where it is, as the allow hook lets each user read it', async () => {
    await control.close();
    await start({
      allow: (request) => {
        requests.push(request);
        return request.action !== 'read' || request.itemId !== 'private';
      },
    });
    const a = await connect('alice');
    const b = await connect('bob');
    const bytes = randomBytes(300);
    const content = bytes.toString('base64');
    const meta = { size: bytes.length, mime: 'text/plain', kind: 'text' as const, content };
    await a.peer.send({
      type: 'publish',
      items: [
        { itemId: 'note', name: 'note.txt', ...meta },
        { itemId: 'private', name: 'private.txt', ...meta },
      ],
    });
    await a.peer.nextOf('published');
    await b.peer.send({ type: 'locate', id: 'q1', itemId: 'note' });
    expect(await b.peer.nextOf('located')).to.deep.equal({
      type: 'located',
      id: 'q1',
      item: { itemId: 'note', name: 'note.txt', ...meta },
      state: 'stored',
      sha256: createHash('sha256').update(bytes).digest('hex'),
      holders: [],
    });
    expect(requests).to.deep.include({ action: 'read', itemId: 'note', ownerId: 'alice' });
    await b.peer.send({ type: 'locate', id: 'q2', itemId: 'private' });
    expect(await b.peer.nextOf('error')).to.deep.include({ code: 'forbidden', ref: 'q2' });
    await b.peer.send({ type: 'locate', id: 'q3', itemId: 'nothing-here' });
    expect(await b.peer.nextOf('error')).to.deep.include({ code: 'unknown-item', ref: 'q3' });
    // A locate without an id is malformed.
    await b.peer.sendRaw(JSON.stringify({ type: 'locate', itemId: 'note' }));
    expect(await b.peer.nextOf('error')).to.deep.include({ code: 'bad-message' });
    expect((await b.peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('refuses inline items over inlineMax or over the total, and messages naming an item that is not inline', async () => {
    await control.close();
    await start({ inlineTotalMax: 1500 });
    const a = await connect('alice');
    const big = randomBytes(1025);
    await a.peer.send({
      type: 'publish',
      items: [
        {
          itemId: 'big',
          name: 'b',
          size: big.length,
          mime: '',
          kind: 'file',
          content: big.toString('base64'),
        },
      ],
    });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'too-large', ref: 'big' });
    const k = randomBytes(1000).toString('base64');
    await a.peer.send({
      type: 'publish',
      items: [
        { itemId: 'one', name: 'a', size: 1000, mime: '', kind: 'file', content: k },
        { itemId: 'two', name: 'b', size: 1000, mime: '', kind: 'file', content: k },
      ],
    });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'quota-exceeded', ref: 'two' });
    // Unpublishing frees the room.
    await a.peer.send({ type: 'unpublish', itemIds: ['one'] });
    expect(await a.peer.nextOf('unpublished')).to.deep.equal({
      type: 'unpublished',
      itemIds: ['one'],
    });
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'two', name: 'b', size: 1000, mime: '', kind: 'file', content: k }],
    });
    expect((await a.peer.nextOf('completed')).itemId).to.equal('two');
    // A file published the usual way is not sent in messages.
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'file', name: 'f', size: 10, mime: '', kind: 'file' }],
    });
    await a.peer.nextOf('transmit');
    await a.peer.send({ type: 'message', id: 'q', to: { userId: 'bob' }, itemId: 'file' });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'unknown-item', ref: 'file' });
  });

  it('unpublish cancels the pending task and forgets the item; another user cannot unpublish it', async () => {
    const a = await connect('alice');
    const m = await connect('mallory');
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'doc', name: 'd', size: 5000, mime: '', kind: 'file' }],
    });
    const task = await a.peer.nextOf('transmit');
    expect(task.reason).to.equal('publish');
    await m.peer.send({ type: 'unpublish', itemIds: ['doc'] });
    expect(await m.peer.nextOf('error')).to.deep.include({ code: 'unknown-item', ref: 'doc' });
    expect((await control.items()).map((i) => i.meta.itemId)).to.deep.equal(['doc']);
    await a.peer.send({ type: 'unpublish', itemIds: ['doc'] });
    expect(await a.peer.nextOf('cancel')).to.deep.equal({
      type: 'cancel',
      taskId: task.taskId,
      itemId: 'doc',
      reason: 'unpublished',
    });
    expect(await a.peer.nextOf('unpublished')).to.deep.include({ itemIds: ['doc'] });
    expect(await control.items()).to.deep.equal([]);
    // Unpublished from another browser of the same user: the holder is told too.
    const a2 = await connect('alice');
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'doc2', name: 'd', size: 5000, mime: '', kind: 'file' }],
    });
    await a.peer.nextOf('transmit');
    await a2.peer.send({ type: 'unpublish', itemIds: ['doc2'] });
    expect(await a2.peer.nextOf('unpublished')).to.deep.include({ itemIds: ['doc2'] });
    expect(await a.peer.nextOf('unpublished')).to.deep.include({ itemIds: ['doc2'] });
  });

  it('cancelTransmit sends cancel to the browser; requestTransmit carries priority and deadline', async () => {
    const a = await connect('alice');
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'doc', name: 'd', size: 5000, mime: '', kind: 'file' }],
    });
    const first = await a.peer.nextOf('transmit');
    expect(await control.cancelTransmit(first.taskId, 'not now')).to.equal(true);
    expect(await a.peer.nextOf('cancel')).to.deep.include({
      taskId: first.taskId,
      reason: 'not now',
    });
    expect(await control.cancelTransmit(first.taskId)).to.equal(false);
    expect((await control.items())[0]!.state).to.equal('published');
    const deadline = Date.now() + 5000;
    const taskId = await control.requestTransmit('doc', undefined, { priority: 7, deadline });
    expect(await a.peer.nextOf('transmit')).to.deep.include({
      taskId,
      priority: 7,
      deadline,
      reason: 'request',
    });
    expect(
      await control.requestTransmit('doc', undefined, { priority: 2e6 }).catch((e: unknown) => e),
    ).to.be.instanceOf(TypeError);
  });

  it('send() delivers the app’s message to a user or room and refuses malformed ones', async () => {
    const b = await connect('bob');
    await b.peer.send({ type: 'join', room: 'news' });
    await new Promise((r) => setTimeout(r, 50));
    expect(control.send({ userId: 'bob' }, { body: 'from the app' })).to.equal(1);
    expect(await b.peer.nextOf('message')).to.deep.equal({
      type: 'message',
      body: 'from the app',
    });
    expect(control.send({ room: 'news' }, { body: 'news' })).to.equal(1);
    expect(control.send({ room: 'empty' }, { body: 'x' })).to.equal(0);
    expect(() => control.send({ room: 'news' }, {})).to.throw(TypeError);
    expect(() => control.send({ room: 'news' }, { body: 'x'.repeat(70_000) })).to.throw(TypeError);
    expect(() =>
      control.send({ clientId: 'a', userId: 'b' } as never, { body: 'two targets' }),
    ).to.throw(TypeError);
    expect(() =>
      control.send(
        { room: 'news' },
        { item: { itemId: 'i', name: 'i', size: 3, mime: '', kind: 'file', content: 'AAAA' } },
      ),
    ).not.to.throw();
    expect(() =>
      control.send(
        { room: 'news' },
        { item: { itemId: 'i', name: 'i', size: 4, mime: '', kind: 'file', content: 'AAAA' } },
      ),
    ).to.throw(TypeError, /size/);
  });

  it('auth renews the credential of the same user; another user’s credential closes the session with 4003', async () => {
    const a = await connect('alice');
    await a.peer.send({ type: 'auth', token: await createUserToken(SECRET, 'alice') });
    expect(await a.peer.nextOf('authed')).to.deep.equal({ type: 'authed' });
    await a.peer.send({ type: 'auth', token: await createUserToken(SECRET, 'mallory') });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'auth-failed' });
    expect((await a.peer.closed).code).to.equal(CLOSE.AUTH_FAILED);
  });

  it('answers a malformed message with bad-message and closes 4002', async () => {
    const a = await connect('alice');
    await a.peer.sendRaw(JSON.stringify({ type: 'message', to: { room: 'x', userId: 'y' } }));
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'bad-message' });
    expect((await a.peer.closed).code).to.equal(CLOSE.PROTOCOL_VIOLATION);
  });

  it('keeps an empty inline item inline (stored once) and refuses other bytes under a stored inline item id', async () => {
    const a = await connect('alice');
    const b = await connect('bob');
    await a.peer.send({
      type: 'publish',
      items: [
        { itemId: 'empty', name: 'e', size: 0, mime: 'text/plain', kind: 'text', content: '' },
      ],
    });
    expect((await a.peer.nextOf('completed')).itemId).to.equal('empty');
    expect(completed.filter((i) => i.meta.itemId === 'empty')).to.have.length(1);
    await a.peer.send({ type: 'message', to: { clientId: b.clientId }, itemId: 'empty' });
    expect((await b.peer.nextOf('message')).item).to.deep.include({ itemId: 'empty', content: '' });
    const one = Buffer.from('one').toString('base64');
    const two = Buffer.from('two').toString('base64');
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'note', name: 'n', size: 3, mime: '', kind: 'text', content: one }],
    });
    await a.peer.nextOf('completed');
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'note', name: 'n', size: 3, mime: '', kind: 'text', content: two }],
    });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'conflict', ref: 'note' });
    const note = (await control.items()).find((i) => i.meta.itemId === 'note')!;
    expect(note.meta.content).to.equal(one);
  });

  it('closes a session whose credential expires without a fresh auth (auth-expired, 4003), and keeps one that renews', async () => {
    await control.close();
    let lifetime = 300;
    await start({
      // Expiry comes with a 30 s leeway: these credentials expire 300 ms after it.
      authenticate: async (token) => ({
        userId: token,
        expiresAt: Date.now() + lifetime - 30_000,
      }),
    });
    const lapsing = new ControlPeer(url);
    peers.push(lapsing);
    await lapsing.send({ type: 'hello', token: 'alice' });
    await lapsing.nextOf('welcome');
    const renewing = new ControlPeer(url);
    peers.push(renewing);
    await renewing.send({ type: 'hello', token: 'bob' });
    await renewing.nextOf('welcome');
    lifetime = 60_000;
    await renewing.send({ type: 'auth', token: 'bob' });
    await renewing.nextOf('authed');
    expect(await lapsing.nextOf('error', 3000)).to.deep.include({ code: 'auth-expired' });
    expect((await lapsing.closed).code).to.equal(CLOSE.AUTH_FAILED);
    expect(await silent(renewing, 300)).to.equal(true);
  });

  it('completes a task for some ranges without storing the item; a whole-item complete needs its sha256 and is idempotent', async () => {
    const a = await connect('alice');
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'big', name: 'b', size: 10_000, mime: '', kind: 'file' }],
    });
    const whole = await a.peer.nextOf('transmit');
    const partId = await control.requestTransmit('big', [{ start: 0, end: 100, serverId: 'up-1' }]);
    await a.peer.nextOf('transmit');
    await a.peer.send({ type: 'complete', taskId: partId, itemId: 'big', servers: ['up-1'] });
    expect(await silent(a.peer)).to.equal(true); // no completed
    expect((await control.items())[0]).to.deep.include({ state: 'uploading' });
    expect(completed).to.deep.equal([]);
    await a.peer.send({ type: 'complete', taskId: whole.taskId, itemId: 'big', servers: ['up-1'] });
    expect(await a.peer.nextOf('error')).to.deep.include({
      code: 'bad-message',
      ref: whole.taskId,
    });
    await a.peer.send({
      type: 'complete',
      taskId: whole.taskId,
      itemId: 'big',
      sha256: 'c'.repeat(64),
      servers: ['up-1'],
    });
    expect((await a.peer.nextOf('completed')).itemId).to.equal('big');
    expect((await control.items())[0]).to.deep.include({ state: 'stored' });
    // The same report again (its answer lost, say) is answered the same way, once more.
    await a.peer.send({
      type: 'complete',
      taskId: whole.taskId,
      itemId: 'big',
      sha256: 'c'.repeat(64),
      servers: ['up-1'],
    });
    expect(await a.peer.nextOf('completed')).to.deep.include({
      itemId: 'big',
      sha256: 'c'.repeat(64),
    });
    await a.peer.send({
      type: 'complete',
      taskId: whole.taskId,
      itemId: 'big',
      sha256: 'd'.repeat(64),
      servers: ['up-1'],
    });
    expect(await a.peer.nextOf('error')).to.deep.include({ code: 'unknown-task' });
    expect(completed.filter((i) => i.meta.itemId === 'big')).to.have.length(1);
    // A part alone, with no other task pending, leaves the item published (not stored).
    await a.peer.send({
      type: 'publish',
      items: [{ itemId: 'other', name: 'o', size: 500, mime: '', kind: 'file' }],
    });
    const otherWhole = await a.peer.nextOf('transmit');
    await control.cancelTransmit(otherWhole.taskId);
    const otherPart = await control.requestTransmit('other', [
      { start: 0, end: 10, serverId: 'up-1' },
    ]);
    await a.peer.send({ type: 'complete', taskId: otherPart, itemId: 'other', servers: ['up-1'] });
    await new Promise((r) => setTimeout(r, 100));
    const other = (await control.items()).find((i) => i.meta.itemId === 'other')!;
    expect(other.state).to.equal('published');
  });
});
