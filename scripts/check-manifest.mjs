// Fails when custom-elements.json is not what the analyzer makes from the current sources.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

// The analyzer takes --outdir relative to the working folder.
const out = join('node_modules', '.cache', 'cem-check');
try {
  execFileSync('npx', ['cem', 'analyze', '--outdir', out], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const fresh = readFileSync(join(out, 'custom-elements.json'), 'utf8');
  const committed = readFileSync('custom-elements.json', 'utf8');
  if (fresh !== committed) {
    console.error('custom-elements.json is stale: run `npm run analyze` and commit the result');
    process.exit(1);
  }
  console.log('custom-elements.json is up to date');
} finally {
  rmSync(out, { recursive: true, force: true });
}
