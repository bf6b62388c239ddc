// Makes sure a Chromium is there for the browser tests: finds one, or, as root on Debian,
// installs Debian's `chromium` package. Otherwise says in one line what to install.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { findChromium } from './chromium.mjs';

let path = findChromium();
if (!path && process.env.CHROME_PATH) {
  console.error(`ws-uploader tests: CHROME_PATH=${process.env.CHROME_PATH} does not exist`);
  process.exit(1);
}
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!path && isRoot && existsSync('/usr/bin/apt-get') && existsSync('/etc/debian_version')) {
  console.log(
    'ws-uploader tests: no Chromium found; installing Debian package "chromium" with apt-get',
  );
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'inherit', env });
  path = findChromium();
}
if (!path) {
  console.error(
    'ws-uploader tests need Chromium or Chrome: install it (Debian: apt-get install chromium) or set CHROME_PATH',
  );
  process.exit(1);
}
