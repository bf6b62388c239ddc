import { expect } from '@open-wc/testing';
import { WsUploader, WsUploaderEngine } from '../../src/index.js';

// Each test file runs in a page of its own, so nothing else has defined the tag here.
describe('ws-uploader (package entry point)', () => {
  it('exports the element class and the engine without defining <ws-uploader>', () => {
    expect(WsUploader).to.be.a('function');
    expect(WsUploaderEngine).to.be.a('function');
    expect(customElements.get('ws-uploader')).to.equal(undefined);
  });

  it('defines the tag when ws-uploader.js is imported', async () => {
    await import('../../src/ws-uploader.js');
    expect(customElements.get('ws-uploader')).to.equal(WsUploader);
  });
});
