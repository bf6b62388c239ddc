// Screenshots of the demo page in light and dark theme, for the README:
// docs/screenshots/demo-light.png and docs/screenshots/demo-dark.png (1280x800).
//
// Needs the build (`npm run screenshots` builds first, then runs this). Starts the demo in this
// process on a free port with a temporary data folder, opens the page in headless Chromium, waits
// for the three upload servers, sends a message with a small image and uploads a generated image of
// a few MB through <ws-uploader>, waits until the downloader verified it, then adds a generated
// file of about 90 MB, which the control server splits across the upload servers, pauses it
// part-way (its row shows the split bar, each server's share, and Resume/Cancel), and takes the
// picture. The dark one is taken with upload-3 switched off, to show the switch: the large file is
// then split across the two servers left.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { CHROMIUM_ARGS, findChromium } from './chromium.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = join(root, 'dist', 'server', 'demo.js');
if (!existsSync(built) || !existsSync(join(root, 'dist', 'bundle', 'ws-uploader.min.js'))) {
  console.error('screenshots: build first (npm run build), or run npm run screenshots');
  process.exit(1);
}
const executablePath = findChromium();
if (!executablePath) {
  console.error('screenshots: no Chromium found; set CHROME_PATH');
  process.exit(1);
}
const { startDemo } = await import(built);

const outDir = join(root, 'docs', 'screenshots');
const TIMEOUT = 60_000;

const dataDir = await mkdtemp(join(tmpdir(), 'ws-uploader-screenshots-'));
let demo;
let browser;
try {
  demo = await startDemo({ port: 0, dataDir });
  browser = await puppeteer.launch({
    executablePath,
    headless: true,
    args: [...CHROMIUM_ARGS, '--hide-scrollbars', '--force-color-profile=srgb'],
  });
  await mkdir(outDir, { recursive: true });
  for (const theme of ['light', 'dark']) {
    await shoot(theme);
    console.log(`screenshots: docs/screenshots/demo-${theme}.png`);
  }
} finally {
  await browser?.close();
  await demo?.close();
  await rm(dataDir, { recursive: true, force: true });
}

async function shoot(theme) {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => console.error(`screenshots (${theme}): page error: ${e.message}`));
  await page.setViewport({ width: 1280, height: 800, deviceScaleFactor: 1 });
  await page.goto(`${demo.url}?theme=${theme}`, { waitUntil: 'load' });
  await page.evaluate(`window.drawPicture = ${drawPicture}`);

  // Both browsers connected, and the uploader reaches all three upload servers.
  await page.waitForFunction(() => {
    const servers = document.getElementById('uploader')?.servers ?? [];
    return (
      document.documentElement.dataset.downloader === 'ready' &&
      servers.length === 3 &&
      servers.every((s) => s.state === 'open' && s.rttMs !== undefined)
    );
  });

  // A message with a small picture, through the message box.
  const picture = join(dataDir, `postcard-${theme}.png`);
  const png = await page.evaluate(() => window.drawPicture(480, 300, false).toDataURL('image/png'));
  await writeFile(picture, Buffer.from(png.split(',')[1], 'base64'));
  await page.type('#message-text', 'Hi! The photos from the trip are coming, here is a preview.');
  const chooser = await page.$('#message-image');
  await chooser.uploadFile(picture);
  await page.waitForSelector('#attachment:not([hidden]) img');
  await page.click('#compose button[type=submit]');
  await page.waitForSelector('#feed .entry img');

  // A generated image of a few MB, through the element, which the downloader fetches by parts.
  await page.evaluate(async () => {
    const canvas = window.drawPicture(2400, 1600, true);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
    const file = new File([blob], 'mountain-lake.png', { type: 'image/png' });
    document.getElementById('uploader').addFiles([file]);
  });
  await page.waitForSelector('#feed .file[data-state="verified"] img');
  await page.waitForFunction(() =>
    [...document.querySelectorAll('#feed img')].every((img) => img.complete),
  );

  if (theme === 'dark') {
    await page.click('#servers li:nth-child(3) .switch');
    await page.waitForFunction(
      () => document.querySelector('#servers li:nth-child(3)')?.dataset.state === 'stopped',
    );
    // The element hears that the server left.
    await page.waitForFunction(() =>
      document.getElementById('uploader').servers.every((s) => s.id !== 'upload-3'),
    );
    await new Promise((r) => setTimeout(r, 1000));
  }

  // A large file, which the control server splits across the servers (from 64 MiB), paused
  // part-way so its row shows one bar segment and one share per server.
  const { itemId, stored, segments } = await page.evaluate(splitAndPause, {
    servers: theme === 'dark' ? 2 : 3,
  });
  console.log(
    `screenshots (${theme}): paused ${itemId} at ${Math.round(stored * 100)} % on ${segments} servers`,
  );
  await page.waitForFunction(
    (id) => {
      const row = document
        .getElementById('uploader')
        .shadowRoot.querySelector(`[part~="file"][data-item-id="${id}"]`);
      return (
        row?.dataset.state === 'paused' &&
        row.querySelectorAll('[part~="progress-segment"][data-server-id]').length >= 2 &&
        row.querySelector('[part~="resume-button"]') !== null
      );
    },
    {},
    itemId,
  );

  await page.evaluate(() => document.activeElement?.blur());
  await page.screenshot({ path: join(outDir, `demo-${theme}.png`), type: 'png' });
  if (theme === 'dark') await demo.restart('upload-3');
  await page.close();
}

/* global document, window */
// Runs in the page: adds a generated file of about 90 MB (one random chunk of 4 MiB, repeated) to
// the uploader, with small chunks so it is caught part-way, and pauses it once it is at least 40 %
// stored and on at least two servers (on `servers` of them when it gets there before 70 %).
// Resolves with its id, the part stored and the number of servers holding bytes; rejects when the
// file completes or fails first.
async function splitAndPause({ servers }) {
  const MiB = 1024 * 1024;
  const el = document.getElementById('uploader');
  const chunk = new Uint8Array(4 * MiB);
  for (let i = 0; i < chunk.length; i += 65536)
    crypto.getRandomValues(chunk.subarray(i, i + 65536));
  const blob = new Blob(new Array(22).fill(chunk));
  const file = new File([blob], 'lake-timelapse.mp4', { type: 'video/mp4' });
  el.setAttribute('chunk-size', String(64 * 1024));
  const [{ itemId }] = el.addFiles([file]);
  return new Promise((resolve, reject) => {
    const check = () => {
      const item = el.items.find((i) => i.itemId === itemId);
      if (!item) return;
      if (item.state === 'complete' || item.state === 'failed') {
        el.removeEventListener('ws-upload-progress', check);
        clearInterval(timer);
        reject(new Error(`the large file was ${item.state} before it could be paused`));
        return;
      }
      const stored = item.bytesStored / (item.bytesTotal || item.size);
      const holders = Object.values(item.bytesByServer ?? {}).filter((n) => n > 0).length;
      if (stored < 0.4 || holders < 2 || (holders < servers && stored < 0.7)) return;
      el.pause([itemId]);
      el.removeEventListener('ws-upload-progress', check);
      clearInterval(timer);
      resolve({ itemId, stored, segments: holders });
    };
    el.addEventListener('ws-upload-progress', check);
    const timer = setInterval(check, 5);
  });
}

// Runs in the page (its source is sent there): a landscape, with grain when `grain` is set (which
// makes the PNG a few MB).
function drawPicture(width, height, grain) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  const sky = g.createLinearGradient(0, 0, 0, height * 0.65);
  sky.addColorStop(0, '#1e3a8a');
  sky.addColorStop(0.55, '#f472b6');
  sky.addColorStop(1, '#fdba74');
  g.fillStyle = sky;
  g.fillRect(0, 0, width, height);
  g.fillStyle = '#fde68a';
  g.beginPath();
  g.arc(width * 0.68, height * 0.5, height * 0.12, 0, Math.PI * 2);
  g.fill();
  const ridge = (base, amplitude, color, seed) => {
    g.fillStyle = color;
    g.beginPath();
    g.moveTo(0, height);
    for (let x = 0; x <= width; x += width / 60) {
      const y =
        base -
        amplitude *
          (0.6 * Math.sin(x / (width / 7) + seed) + 0.4 * Math.sin(x / (width / 19) + seed * 3));
      g.lineTo(x, y);
    }
    g.lineTo(width, height);
    g.fill();
  };
  ridge(height * 0.58, height * 0.12, '#6d28d9', 1);
  ridge(height * 0.66, height * 0.09, '#4c1d95', 2);
  const lake = g.createLinearGradient(0, height * 0.7, 0, height);
  lake.addColorStop(0, '#312e81');
  lake.addColorStop(1, '#0f172a');
  g.fillStyle = lake;
  g.fillRect(0, height * 0.72, width, height * 0.28);
  if (grain) {
    const image = g.getImageData(0, 0, width, height);
    let seed = 42;
    for (let i = 0; i < image.data.length; i++) {
      if (i % 4 === 3) continue;
      seed = (seed * 1103515245 + 12345) >>> 0;
      image.data[i] += (seed >>> 24) / 12 - 10;
    }
    g.putImageData(image, 0, 0);
  }
  return canvas;
}
