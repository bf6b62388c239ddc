import { expect } from 'chai';
import { readFileSync } from 'node:fs';

interface Declaration {
  customElement?: boolean;
  tagName?: string;
  events?: { name: string }[];
  cssParts?: { name: string }[];
  cssProperties?: { name: string }[];
  attributes?: { name: string }[];
}

const manifest = JSON.parse(readFileSync('custom-elements.json', 'utf8')) as {
  modules: { declarations?: Declaration[] }[];
};
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as Record<string, unknown>;

describe('custom-elements.json', () => {
  const element = manifest.modules
    .flatMap((m) => m.declarations ?? [])
    .find((d) => d.customElement && d.tagName === 'ws-uploader');

  it('describes <ws-uploader>', () => {
    expect(element?.tagName).to.equal('ws-uploader');
  });

  it('lists every ws-* event', () => {
    expect(element?.events?.map((e) => e.name)).to.have.members([
      'ws-publish',
      'ws-transmit-request',
      'ws-upload-progress',
      'ws-upload-complete',
      'ws-upload-error',
      'ws-degraded',
      'ws-server-change',
      'ws-message',
      'ws-file-reject',
    ]);
  });

  it('lists every part and the documented attributes', () => {
    // The browser test test/element/manifest.test.ts checks them against the element itself.
    expect(element?.cssParts?.map((p) => p.name)).to.include.members([
      'drop-area',
      'server-list',
      'server',
      'file-list',
      'file',
      'progress',
      'progress-segment',
      'button',
    ]);
    expect(element?.attributes?.map((a) => a.name)).to.include.members([
      'control-url',
      'auth-token',
      'accept',
      'max-file-size',
      'max-files',
      'multiple',
      'no-auto',
      'no-drop',
      'disabled',
      'chunk-size',
      'max-parallel',
      'inline-max',
    ]);
    expect(element?.cssProperties?.every((p) => p.name.startsWith('--ws-uploader-'))).to.equal(
      true,
    );
  });

  it('is the manifest package.json points to', () => {
    expect(pkg['customElements']).to.equal('custom-elements.json');
  });
});

describe('package.json exports', () => {
  const exports = pkg['exports'] as Record<string, unknown>;

  it('puts types first in every conditional export', () => {
    for (const [key, value] of Object.entries(exports)) {
      if (typeof value === 'object' && value !== null)
        expect(Object.keys(value)[0], key).to.equal('types');
    }
  });

  it('has the documented entry points', () => {
    expect(Object.keys(exports)).to.include.members([
      '.',
      './ws-uploader.js',
      './protocol.js',
      './server.js',
      './custom-elements.json',
    ]);
  });
});
