// Writes the README's tables of <ws-uploader> (attributes and properties, methods, events, slots,
// parts, CSS properties) from custom-elements.json, between the markers
// `<!-- element-docs:start -->` and `<!-- element-docs:end -->`. With --check, fails when the
// README's tables are not what the manifest gives.
import { readFileSync, writeFileSync } from 'node:fs';
import prettier from 'prettier';

const START = '<!-- element-docs:start -->';
const END = '<!-- element-docs:end -->';

const manifest = JSON.parse(readFileSync('custom-elements.json', 'utf8'));
const element = manifest.modules
  .flatMap((m) => m.declarations ?? [])
  .find((d) => d.customElement && d.tagName === 'ws-uploader');
if (!element) throw new Error('custom-elements.json has no <ws-uploader>: run `npm run analyze`');

/** A table cell: one line, pipes escaped. */
const cell = (text) =>
  String(text ?? '')
    .replace(/\s+/g, ' ')
    .replace(/\|/g, '\\|')
    .trim();
const code = (text) => (text === undefined || text === '' ? '' : `\`${cell(text)}\``);
const table = (head, rows) =>
  [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');

const isPublic = (m) => !m.privacy && !m.static && !m.name.startsWith('#');
const fields = element.members.filter((m) => m.kind === 'field' && isPublic(m));
const methods = element.members.filter((m) => m.kind === 'method' && isPublic(m));

const properties = table(
  ['attribute', 'property', 'type', 'default', 'what it does'],
  fields.map((f) => [
    f.attribute ? code(f.attribute) : '—',
    code(f.name),
    f.readonly ? `read-only ${code(f.type?.text?.replace(/^readonly /, ''))}` : code(f.type?.text),
    f.default === 'DEFAULT_I18N' ? 'English' : code(f.default),
    cell(f.description),
  ]),
);
const methodTable = table(
  ['method', 'what it does'],
  methods.map((m) => [
    code(`${m.name}(${(m.parameters ?? []).map((p) => p.name).join(', ')})`),
    cell(m.description),
  ]),
);
const events = table(
  ['event', 'class', 'when'],
  element.events
    .filter((e) => e.name)
    .map((e) => [code(e.name), code(e.type?.text), cell(e.description)]),
);
const slots = table(
  ['slot', 'what goes there'],
  element.slots.map((s) => [s.name ? code(s.name) : '(default)', cell(s.description)]),
);
const parts = table(
  ['part', 'what it is'],
  element.cssParts.map((p) => [code(p.name), cell(p.description)]),
);
const cssProperties = table(
  ['CSS property', 'default', 'what it sets'],
  element.cssProperties.map((p) => [code(p.name), code(p.default), cell(p.description)]),
);

const generated = [
  START,
  '',
  '#### Attributes and properties',
  '',
  properties,
  '',
  '#### Methods',
  '',
  methodTable,
  '',
  '#### Events',
  '',
  events,
  '',
  '#### Slots',
  '',
  slots,
  '',
  '#### Parts',
  '',
  parts,
  '',
  '#### CSS properties',
  '',
  cssProperties,
  '',
  END,
].join('\n');

const readme = readFileSync('README.md', 'utf8');
const from = readme.indexOf(START);
const to = readme.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md needs the markers ${START} and ${END}`);
const next = await prettier.format(
  readme.slice(0, from) + generated + readme.slice(to + END.length),
  { ...(await prettier.resolveConfig('README.md')), filepath: 'README.md' },
);
if (process.argv.includes('--check')) {
  if (next !== readme) {
    console.error(
      'README.md element tables are stale: run `npm run analyze` and commit the result',
    );
    process.exit(1);
  }
  console.log('README.md element tables are up to date');
} else if (next !== readme) {
  writeFileSync('README.md', next);
  console.log('README.md element tables written');
}
