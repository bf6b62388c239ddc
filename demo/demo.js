/* global document, fetch, customElements, URL, Blob, File, createImageBitmap, OffscreenCanvas, performance, FileSystemFileHandle */
// The demo page: the uploader (left), the upload servers' health and switches (top), and a second
// browser that downloads (right). Both browsers are engines of this page, each with its own user.
import { WsUploaderEngine } from 'ws-uploader/engine.js';
import { OpfsItemStore, WsDownloader } from 'ws-uploader/download.js';

// The npm build's Worker scripts import `hash-wasm` by name, which the page's import map does not
// resolve inside a Worker: the engines and the downloader start the bundle's self-contained ones.
const DATA_WORKER = '/bundle/data-worker.js';
const STORE_WORKER = '/bundle/store-worker.js';

/** What the uploader page sends to the room when a file is stored, as a JSON message body. */
const FILE_NOTE = 'ws-uploader-demo/file';
/** The engine's `protocols` default, best first: each server gets the first one it speaks. */
const PREFERRED = ['dup/2', 'dup/1', 'http/1'];
/** Types the downloader shows in the page; anything else is only offered for saving. */
const VIEWABLE =
  /^(image\/(png|jpeg|gif|webp|avif)|video\/(mp4|webm|ogg)|audio\/(mpeg|ogg|wav|webm))$/;

const $ = (id) => document.getElementById(id);
const config = await (await fetch('/demo-config.json', { cache: 'no-store' })).json();
const room = config.room;

// ---------------------------------------------------------------------------------------------
// Left: the uploader, and the page's own engine for messages (same user).

await customElements.whenDefined('ws-uploader');
const uploader = $('uploader');
uploader.setAttribute('control-url', config.controlUrl);
uploader.setAttribute('auth-token', config.token);

const messenger = new WsUploaderEngine({
  controlUrl: config.controlUrl,
  authToken: config.token,
  resume: false,
  dataWorker: DATA_WORKER,
});
messenger.start().catch((e) => composeStatus(`Cannot send messages: ${e.message}`));

/** Each item's type, from `ws-publish`. */
const mimes = new Map();
uploader.addEventListener('ws-publish', (e) => {
  for (const item of e.detail.items) mimes.set(item.itemId, item.mime);
});
uploader.addEventListener('ws-upload-complete', (e) => void announce(e.detail));

/**
 * Tells the room about a stored file, so the downloader can fetch it (it asks the control server
 * where the parts are).
 */
async function announce({ itemId, name, size, sha256, servers }) {
  try {
    if (servers.length === 0 && size > 0) {
      // A small file went inline: its bytes are with the control server, and the app sends them.
      const res = await fetch(`/demo/items/${encodeURIComponent(itemId)}/relay`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${config.token}` },
      });
      if (!res.ok) throw new Error(`the app answered ${res.status}`);
      return;
    }
    const note = { type: FILE_NOTE, itemId, name, size, sha256, servers };
    await messenger.send({ room }, { body: JSON.stringify({ ...note, mime: mimes.get(itemId) }) });
  } catch (e) {
    composeStatus(`Could not tell the room about ${name}: ${e.message}`);
  } finally {
    mimes.delete(itemId);
  }
}

// The message box: text and an image (picked or pasted), sent inline to the room.
const inlineMax = config.inlineMax ?? 64 * 1024;
let attachment;
const text = $('message-text');
const picker = $('message-image');

function composeStatus(message) {
  $('compose-status').textContent = message;
}

picker.addEventListener('change', () => {
  if (picker.files?.[0]) void attach(picker.files[0]);
  picker.value = '';
});
text.addEventListener('paste', (e) => {
  const image = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (!image) return;
  e.preventDefault();
  void attach(image);
});

async function attach(file) {
  if (!file.type.startsWith('image/')) {
    composeStatus('Only images go with a message here; drop other files on the uploader.');
    return;
  }
  try {
    attachment = file.size <= inlineMax ? file : await shrink(file, inlineMax);
  } catch (e) {
    composeStatus(`Cannot attach ${file.name}: ${e.message}`);
    return;
  }
  const box = $('attachment');
  const img = document.createElement('img');
  img.src = URL.createObjectURL(attachment);
  img.alt = '';
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.textContent = 'Remove';
  remove.addEventListener('click', detach);
  box.replaceChildren(img, `${attachment.name}, ${formatBytes(attachment.size)}`, remove);
  box.hidden = false;
  composeStatus(attachment === file ? '' : 'Scaled down to fit in a message.');
}

function detach() {
  const img = $('attachment').querySelector('img');
  if (img) URL.revokeObjectURL(img.src);
  attachment = undefined;
  $('attachment').hidden = true;
  $('attachment').replaceChildren();
}

/** A smaller WebP of an image, at most `limit` bytes: messages carry small items only. */
async function shrink(file, limit) {
  const bitmap = await createImageBitmap(file);
  try {
    for (let side = 960; side >= 64; side = Math.round(side * 0.7)) {
      const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
      const canvas = new OffscreenCanvas(
        Math.max(1, Math.round(bitmap.width * scale)),
        Math.max(1, Math.round(bitmap.height * scale)),
      );
      canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await canvas.convertToBlob({ type: 'image/webp', quality: 0.8 });
      const name = `${file.name.replace(/\.[^.]*$/, '') || 'image'}.webp`;
      if (blob.size <= limit) return new File([blob], name, { type: blob.type });
    }
  } finally {
    bitmap.close();
  }
  throw new Error('it does not get small enough');
}

$('compose').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = text.value.trim();
  if (!body && !attachment) {
    composeStatus('Write something or attach an image first.');
    return;
  }
  const button = e.submitter;
  if (button) button.disabled = true;
  composeStatus('Sending…');
  try {
    const delivered = await messenger.send(
      { room },
      { ...(body ? { body } : {}), ...(attachment ? { item: attachment } : {}) },
    );
    composeStatus(
      delivered === 1
        ? 'Sent to 1 browser in the room.'
        : `Sent to ${delivered} browsers in the room.`,
    );
    text.value = '';
    detach();
  } catch (err) {
    composeStatus(`Not sent: ${err.message}`);
  } finally {
    if (button) button.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// Top: the upload servers, as the uploader sees them, with a switch each.

const servers = new Map(config.servers.map((s) => [s.id, { ...s, busy: false, error: '' }]));
/** The uploader's view: its `servers` property and `ws-server-change` events. */
let seen;
const rows = new Map();

for (const s of servers.values()) {
  const li = document.createElement('li');
  li.className = 'server';
  const dot = document.createElement('span');
  dot.className = 'dot';
  dot.setAttribute('aria-hidden', 'true');
  const title = document.createElement('span');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = s.id;
  const protocol = document.createElement('span');
  protocol.className = 'protocol';
  title.append(name, protocol);
  const toggle = document.createElement('button');
  toggle.type = 'button';
  toggle.className = 'switch';
  toggle.setAttribute('role', 'switch');
  toggle.setAttribute('aria-label', `${s.id} running`);
  const track = document.createElement('span');
  track.className = 'track';
  const label = document.createElement('span');
  label.className = 'switch-label';
  toggle.append(track, label);
  toggle.addEventListener('click', () => void flip(s.id));
  const status = document.createElement('span');
  status.className = 'status';
  const speaks = document.createElement('span');
  speaks.className = 'speaks';
  speaks.textContent = `speaks ${s.protocols.join(', ')}`;
  li.append(dot, title, toggle, status, speaks);
  $('servers').append(li);
  rows.set(s.id, { li, protocol, toggle, label, status });
}

function renderServers() {
  for (const s of servers.values()) {
    const row = rows.get(s.id);
    const view = seen?.find((v) => v.id === s.id);
    let state;
    let status;
    if (!s.running) {
      state = 'stopped';
      status = 'stopped: switch it on to restart it';
    } else if (!view) {
      state = seen ? 'down' : 'connecting';
      status = seen ? 'not listed by the control server' : 'waiting for the uploader';
    } else {
      state = view.state;
      status =
        {
          open: 'connected',
          connecting: 'connecting…',
          degraded: 'slow to answer',
          down: 'unreachable, retrying',
          closed: 'closed',
        }[view.state] ?? view.state;
      if (view.rttMs !== undefined && (state === 'open' || state === 'degraded'))
        status += ` · RTT ${Math.max(1, Math.round(view.rttMs))} ms`;
    }
    if (s.busy) status = s.running ? 'stopping…' : 'starting…';
    if (s.error) status = s.error;
    row.li.dataset.state = state;
    row.protocol.textContent =
      view?.protocol ?? PREFERRED.find((p) => s.protocols.includes(p)) ?? s.protocols[0];
    row.toggle.setAttribute('aria-checked', String(s.running));
    row.toggle.disabled = s.busy;
    row.label.textContent = s.running ? 'Running' : 'Stopped';
    row.status.textContent = status;
  }
}

/** Stops a running server (as a crash would) or starts a stopped one again. */
async function flip(id) {
  const s = servers.get(id);
  if (s.busy) return;
  s.busy = true;
  s.error = '';
  renderServers();
  try {
    const res = await fetch(
      `/demo/servers/${encodeURIComponent(id)}/${s.running ? 'kill' : 'restart'}`,
      {
        method: 'POST',
      },
    );
    if (!res.ok) throw new Error(`the demo server answered ${res.status}`);
    Object.assign(s, await res.json());
  } catch (e) {
    s.error = `failed: ${e.message}`;
  } finally {
    s.busy = false;
    renderServers();
  }
}

uploader.addEventListener('ws-server-change', (e) => {
  seen = e.detail.servers;
  renderServers();
});
if (uploader.servers?.length) seen = uploader.servers;
renderServers();

// ---------------------------------------------------------------------------------------------
// Right: a second browser (another user) in the same room.

const feed = $('feed');
const viewer = new WsUploaderEngine({
  controlUrl: config.controlUrl,
  authToken: config.viewerToken,
  resume: false,
  dataWorker: DATA_WORKER,
});
viewer.join(room);
const viewerState = (state, text) => {
  $('downloader-state').dataset.state = state;
  $('downloader-state').textContent = text;
};
viewer.on('state', (e) =>
  viewerState(e.detail.state, e.detail.state === 'open' ? 'connected' : `${e.detail.state}…`),
);
viewer.on('message', (e) => receive(e.detail));
viewer.start().then(
  () => (document.documentElement.dataset.downloader = 'ready'),
  (e) => viewerState('down', `refused: ${e.message}`),
);

function receive({ from, body, item }) {
  const note = fileNote(body);
  if (note) {
    void download(note, from);
    return;
  }
  const li = entry(from, item ? 'inline, through the control server' : '');
  if (body) {
    const p = document.createElement('p');
    p.textContent = body;
    li.append(p);
  }
  if (item?.dataUrl) {
    const img = document.createElement('img');
    img.src = item.dataUrl;
    img.alt = item.meta.name;
    li.append(img);
  } else if (item?.blob) {
    // The engine types the blob so that an object URL of it never renders as a page.
    li.append(
      saveLink(item.blob, item.meta.name, `${item.meta.name}, ${formatBytes(item.meta.size)}`),
    );
  } else if (item) {
    const p = document.createElement('p');
    p.textContent = `${item.meta.name} (${formatBytes(item.meta.size)}), without its bytes`;
    li.append(p);
  }
}

function fileNote(body) {
  if (!body?.startsWith('{')) return undefined;
  try {
    const note = JSON.parse(body);
    return note?.type === FILE_NOTE && Array.isArray(note.servers) ? note : undefined;
  } catch {
    return undefined;
  }
}

/** A new entry at the top of the feed. */
function entry(from, how, className = '') {
  const li = document.createElement('li');
  li.className = `entry ${className}`.trim();
  const meta = document.createElement('span');
  meta.className = 'meta';
  const time = new Date().toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  meta.textContent = [from ? `from ${from.userId}` : 'from the app', how, time]
    .filter(Boolean)
    .join(' · ');
  li.append(meta);
  feed.prepend(li);
  return li;
}

function saveLink(blob, name, text = 'Save') {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.textContent = text;
  return a;
}

/** Waits between attempts at a part, in ms: a stopped server has time to come back. */
const RETRY_DELAYS = [500, 1000, 2000, 4000, 8000, 15_000];

/**
 * The second browser's downloader: it asks the control server where an item is (which servers hold
 * which ranges, with read tokens), reads the parts from all of them at once over HTTP Range (over
 * dup/2 from a server whose HTTP does not serve them), writes them into the origin private file
 * system and checks the SHA-256. Items stay there across reloads.
 */
const downloader = new WsDownloader({
  locate: viewer,
  retryDelays: RETRY_DELAYS,
  // OPFS where the downloader's default would pick it, its parts written in the bundle's Worker.
  ...(typeof FileSystemFileHandle !== 'undefined' &&
  'createWritable' in FileSystemFileHandle.prototype
    ? { store: new OpfsItemStore({ worker: STORE_WORKER }) }
    : {}),
});

/** Downloads a stored file by parts, shows where they came from, then shows or offers the file. */
async function download(note, from) {
  const li = entry(from, 'by parts, from the upload servers', 'file');
  li.dataset.state = 'downloading';
  const title = document.createElement('div');
  title.className = 'title';
  const strong = document.createElement('strong');
  strong.textContent = note.name;
  const size = document.createElement('span');
  size.className = 'detail';
  size.textContent = formatBytes(note.size);
  title.append(strong, size);
  const bar = document.createElement('progress');
  bar.max = Math.max(1, note.size);
  bar.value = 0;
  bar.setAttribute('aria-label', `${note.name} downloaded`);
  const detail = document.createElement('div');
  detail.className = 'detail';
  const result = document.createElement('div');
  result.className = 'result';
  li.append(title, bar, detail, result);

  const started = performance.now();
  let first;
  const off = downloader.on('progress', (e) => {
    const { itemId, bytesStored, bytesByServer } = e.detail;
    if (itemId !== note.itemId) return;
    first ??= bytesStored; // kept from an earlier visit
    bar.value = bytesStored;
    const seconds = (performance.now() - started) / 1000;
    const fetched = bytesStored - first;
    const rate = seconds > 0.2 && fetched > 0 ? `${formatBytes(fetched / seconds)}/s` : '';
    const sources = Object.entries(bytesByServer)
      .map(([id, n]) => `${id} ${formatBytes(n)}`)
      .join(', ');
    detail.textContent = [
      `${formatBytes(bytesStored)} of ${formatBytes(note.size)}`,
      rate,
      sources && `from ${sources}`,
    ]
      .filter(Boolean)
      .join(' · ');
  });
  let item;
  try {
    item = await downloader.download(note.itemId);
  } catch (e) {
    li.dataset.state = 'failed';
    result.textContent = `Download failed: ${e.message}`;
    return;
  } finally {
    off();
  }
  bar.value = note.size;
  const verified = item.sha256 === note.sha256;
  li.dataset.state = verified ? 'verified' : 'failed';
  result.textContent = verified
    ? '✓ SHA-256 matches the uploader’s · kept in this browser'
    : `✗ SHA-256 differs: ${item.sha256.slice(0, 12)}…, expected ${String(note.sha256).slice(0, 12)}…`;
  if (!verified) return;
  const type = VIEWABLE.test(note.mime ?? '') ? note.mime : 'application/octet-stream';
  const file = new Blob([item.blob], { type });
  result.append(saveLink(file, note.name));
  if (type.startsWith('image/')) {
    const img = document.createElement('img');
    img.src = URL.createObjectURL(file);
    img.alt = note.name;
    li.append(img);
  } else if (type.startsWith('video/') || type.startsWith('audio/')) {
    const media = document.createElement(type.startsWith('video/') ? 'video' : 'audio');
    media.src = URL.createObjectURL(file);
    media.controls = true;
    li.append(media);
  }
}

/** Bytes in SI units, as the element shows them. */
function formatBytes(n) {
  if (n < 1000) return `${Math.round(n)} B`;
  const units = ['kB', 'MB', 'GB'];
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}
