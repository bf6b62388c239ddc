import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { BufferBudget } from '../../server/upload/buffer-budget.js';

/** Just what the budget uses of a WebSocket: pause, resume and the close event. */
class FakeSocket extends EventEmitter {
  isPaused = false;
  pause(): void {
    this.isPaused = true;
  }
  resume(): void {
    this.isPaused = false;
  }
}

describe('server-wide buffer budget', () => {
  const join = (budget: BufferBudget): FakeSocket => {
    const ws = new FakeSocket();
    budget.join(ws as unknown as WebSocket);
    return ws;
  };

  it('lets connections read while their slots and the unstored bytes fit, and the others take turns in order', () => {
    // Room for three messages of 30 bytes.
    const budget = new BufferBudget(100, 30);
    const [a, b, c, d] = [join(budget), join(budget), join(budget), join(budget)];
    expect([a, b, c, d].map((s) => s.isPaused)).to.deep.equal([false, false, false, true]);
    // `a` received a message it keeps until stored: 30 bytes used, two slots held.
    budget.take(30);
    budget.received(a as unknown as WebSocket);
    expect([a.isPaused, d.isPaused]).to.deep.equal([true, true]);
    expect(budget.reading).to.equal(2);
    // Stored: the first in line reads, then the next.
    budget.give(30);
    expect([d.isPaused, a.isPaused]).to.deep.equal([false, true]);
    // `b` received a message it does not keep (a PING): its slot goes to `a`, and `b` waits.
    budget.received(b as unknown as WebSocket);
    expect([a.isPaused, b.isPaused]).to.deep.equal([false, true]);
    expect(budget.reading).to.equal(3);
    expect(budget.used).to.equal(0);
  });

  it('always lets one connection read, even when one message is over the cap', () => {
    const budget = new BufferBudget(10, 30);
    const a = join(budget);
    const b = join(budget);
    expect([a.isPaused, b.isPaused]).to.deep.equal([false, true]);
  });

  it('gives the slot of a connection that closes to the next in line', () => {
    const budget = new BufferBudget(60, 30);
    const [a, , c] = [join(budget), join(budget), join(budget)];
    expect(c.isPaused).to.equal(true);
    a.emit('close');
    expect(c.isPaused).to.equal(false);
    expect(budget.reading).to.equal(2);
  });
});
