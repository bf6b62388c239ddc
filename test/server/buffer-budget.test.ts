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
  it('stops reading every connection past the cap and reads again once half is stored', () => {
    const budget = new BufferBudget(100);
    const a = new FakeSocket();
    const b = new FakeSocket();
    budget.join(a as unknown as WebSocket);
    budget.join(b as unknown as WebSocket);
    budget.take(60);
    budget.take(50);
    expect([a.isPaused, b.isPaused]).to.deep.equal([true, true]);
    const late = new FakeSocket();
    budget.join(late as unknown as WebSocket);
    expect(late.isPaused).to.equal(true);
    budget.give(50);
    expect(a.isPaused).to.equal(true);
    budget.give(20);
    expect([a.isPaused, b.isPaused, late.isPaused]).to.deep.equal([false, false, false]);
    expect(budget.used).to.equal(40);
  });

  it('forgets a connection when it closes', () => {
    const budget = new BufferBudget(10);
    const a = new FakeSocket();
    budget.join(a as unknown as WebSocket);
    a.emit('close');
    budget.take(20);
    expect(a.isPaused).to.equal(false);
  });
});
