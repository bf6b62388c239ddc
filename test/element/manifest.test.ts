// custom-elements.json (and the README tables made from it) describes the element as it is: its
// attributes, events, slots, parts and CSS properties are exactly what the element has.
import { expect, fixture, html } from '@open-wc/testing';
import { render, type CSSResult } from 'lit';
import '../../src/ws-uploader.js';
import '../../src/ws-download.js';
import * as events from '../../src/events/index.js';
import { WsDownload, WsUploader, type WsDownloader } from '../../src/index.js';
import { DEFAULT_I18N } from '../../src/element/i18n.js';
import { renderHeld, renderItem } from '../../src/element/item-list.js';
import { renderServers } from '../../src/element/server-list.js';
import type { ItemStatus } from '../../src/engine/types.js';

interface Declaration {
  tagName?: string;
  attributes: { name: string; fieldName?: string }[];
  events: { name?: string; type?: { text: string } }[];
  slots: { name: string }[];
  cssParts: { name: string }[];
  cssProperties: { name: string }[];
}

async function declaration(tagName = 'ws-uploader'): Promise<Declaration> {
  const manifest = (await (await fetch('/custom-elements.json')).json()) as {
    modules: { declarations?: Declaration[] }[];
  };
  const found = manifest.modules
    .flatMap((m) => m.declarations ?? [])
    .find((d) => d.tagName === tagName);
  if (!found) throw new Error(`custom-elements.json has no <${tagName}>`);
  return found;
}

const sorted = (values: Iterable<string>): string[] => [...new Set(values)].sort();

/** The event classes of `src/events`, as `type ClassName`, those of `<ws-download>` or the others. */
function eventClasses(download: boolean): string[] {
  const classes = Object.entries(events).filter(([name]) => name.endsWith('Event')) as [
    string,
    new (detail: never) => Event,
  ][];
  return classes
    .map(([name, Cls]) => `${new Cls({} as never).type} ${name}`)
    .filter((e) => e.startsWith('ws-download-') === download);
}

/** Every `part` token in a tree (shadow roots included). */
function partsIn(root: ParentNode): string[] {
  return [...root.querySelectorAll('[part]')].flatMap((e) =>
    (e.getAttribute('part') ?? '').split(/\s+/).filter(Boolean),
  );
}

const item = (over: Partial<ItemStatus>): ItemStatus => ({
  itemId: 'i',
  name: 'a.bin',
  size: 100,
  mime: '',
  kind: 'file',
  state: 'uploading',
  bytesSent: 50,
  bytesStored: 40,
  bytesTotal: 100,
  sha256: undefined,
  servers: [],
  errorCode: undefined,
  ...over,
});

/** The text of an element's style sheets, in order. */
function cssOf(styles: CSSResult[]): string {
  return styles.map((sheet) => sheet.cssText).join('\n');
}

describe('custom-elements.json describes <ws-uploader>', () => {
  it('lists exactly its observed attributes, each for a property of the element', async () => {
    const d = await declaration();
    expect(sorted(d.attributes.map((a) => a.name))).to.deep.equal(
      sorted(WsUploader.observedAttributes),
    );
    const el = document.createElement('ws-uploader');
    for (const a of d.attributes) expect(a.fieldName! in el, a.name).to.equal(true);
  });

  it('lists exactly the ws-* events, by name and class', async () => {
    const d = await declaration();
    expect(sorted(d.events.map((e) => `${e.name} ${e.type?.text}`))).to.deep.equal(
      sorted(eventClasses(false)),
    );
  });

  it('lists exactly its slots, parts and CSS properties', async () => {
    const d = await declaration();
    const el = await fixture<WsUploader>(html`<ws-uploader accept="image/png"></ws-uploader>`);
    el.addFiles([new File(['x'], 'x.txt', { type: 'text/plain' })]); // a rejected-file notice
    await el.updateComplete;
    const root = el.shadowRoot!;
    expect(sorted([...root.querySelectorAll('slot')].map((s) => s.name))).to.deep.equal(
      sorted(d.slots.map((s) => s.name)),
    );
    // The pieces that need servers and items, rendered by the element's own templates.
    const box = document.createElement('div');
    const servers = [
      {
        id: 'up-1',
        url: 'ws://x/dup',
        httpUrl: 'http://x',
        state: 'open' as const,
        rttMs: 1,
        throughput: 1e6,
        protocol: 'dup/2',
      },
    ];
    const context = {
      t: DEFAULT_I18N,
      rate: 1000,
      secondsLeft: 3,
      serverIndex: () => 0,
      act: () => undefined,
    };
    render(
      html`${renderServers(servers, DEFAULT_I18N)}
        <ul>
          ${renderItem(item({ bytesByServer: { 'up-1': 20, 'up-2': 20 } }), context)}
          ${renderItem(item({ state: 'paused' }), context)}
          ${renderItem(item({ state: 'failed', errorCode: 'stalled' }), context)}
          ${renderHeld(new File(['h'], 'h.txt'), 'k', DEFAULT_I18N, () => undefined)}
        </ul>`,
      box,
    );
    expect(sorted([...partsIn(root), ...partsIn(box), 'file-list'])).to.deep.equal(
      sorted(d.cssParts.map((p) => p.name)),
    );
    // `file-list` is the element's own list, shown once it has files (the element tests see it).
    const css = cssOf(WsUploader.styles as CSSResult[]);
    expect(sorted(css.match(/--ws-uploader-[a-z0-9-]+/g) ?? [])).to.deep.equal(
      sorted(d.cssProperties.map((p) => p.name)),
    );
  });
});

describe('custom-elements.json describes <ws-download>', () => {
  it('lists exactly its observed attributes, each for a property of the element', async () => {
    const d = await declaration('ws-download');
    expect(sorted(d.attributes.map((a) => a.name))).to.deep.equal(
      sorted(WsDownload.observedAttributes),
    );
    const el = document.createElement('ws-download');
    for (const a of d.attributes) expect(a.fieldName! in el, a.name).to.equal(true);
  });

  it('lists exactly the ws-download-* events, by name and class', async () => {
    const d = await declaration('ws-download');
    expect(sorted(d.events.map((e) => `${e.name} ${e.type?.text}`))).to.deep.equal(
      sorted(eventClasses(true)),
    );
  });

  it('lists exactly its CSS properties, and parts the element renders', async () => {
    const d = await declaration('ws-download');
    const css = cssOf(WsDownload.styles as CSSResult[]);
    expect(sorted(css.match(/--ws-uploader-[a-z0-9-]+/g) ?? [])).to.deep.equal(
      sorted(d.cssProperties.map((p) => p.name)),
    );
    expect(d.slots ?? []).to.deep.equal([]);
    // Every part the element renders in its states is documented, and the other way round.
    const fake = (mime: string, fail = false) =>
      ({
        on: () => () => undefined,
        store: new Promise(() => undefined),
        download: () =>
          fail
            ? Promise.reject(new Error('no'))
            : Promise.resolve({
                meta: { itemId: 'i', name: 'i', size: 1, mime, kind: 'file' },
                sha256: '',
                blob: new Blob(['x']),
              }),
      }) as unknown as WsDownloader;
    const pending = { ...fake(''), download: () => new Promise(() => undefined) };
    const states = [
      html`<ws-download no-auto item-id="i" .downloader=${fake('')}></ws-download>`,
      html`<ws-download item-id="i" .downloader=${pending}></ws-download>`,
      html`<ws-download item-id="i" .downloader=${fake('', true)}></ws-download>`,
      html`<ws-download item-id="i" .downloader=${fake('image/png')}></ws-download>`,
      html`<ws-download item-id="i" .downloader=${fake('text/plain')}></ws-download>`,
    ];
    const parts: string[] = [];
    for (const state of states) {
      const el = await fixture<WsDownload>(state);
      await new Promise((r) => setTimeout(r, 20));
      await el.updateComplete;
      parts.push(...partsIn(el.shadowRoot!));
    }
    expect(sorted(parts)).to.deep.equal(sorted(d.cssParts.map((p) => p.name)));
  });
});
