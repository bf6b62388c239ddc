import { expect } from 'chai';
import { ProtocolError } from '../../src/protocol/index.js';

/** The code of the ProtocolError `fn` throws; fails the test when it throws anything else or nothing. */
export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(ProtocolError);
    return (e as ProtocolError).code;
  }
  throw new Error('expected a ProtocolError');
}
