import { expect } from '@open-wc/testing';
import {
  adaptiveChunk,
  ChunkSizer,
  FIRST_CHUNK,
  FIRST_WINDOW,
  MIN_CHUNK,
} from '../../src/engine/chunk-size.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The engine's default stall timeout. */
const STALL_MS = 30_000;

describe('chunk sizes', () => {
  describe('adaptiveChunk', () => {
    it('sends small chunks before any rate is known', () => {
      expect(adaptiveChunk(512 * KiB, undefined)).to.equal(FIRST_CHUNK);
      expect(adaptiveChunk(16 * KiB, undefined)).to.equal(16 * KiB);
    });

    it('sizes a chunk to `seconds` of the rate, in multiples of 16 KiB', () => {
      expect(adaptiveChunk(512 * KiB, 100 * KiB, 1)).to.equal(96 * KiB);
      expect(adaptiveChunk(512 * KiB, 400 * KiB, 0.25)).to.equal(96 * KiB);
      expect(adaptiveChunk(512 * KiB, 1 * KiB, 1)).to.equal(MIN_CHUNK);
      expect(adaptiveChunk(512 * KiB, 20 * MiB, 1)).to.equal(512 * KiB);
    });
  });

  describe('ChunkSizer', () => {
    it('sends 64 KiB chunks until acknowledgements span 50 ms', () => {
      const sizer = new ChunkSizer(STALL_MS);
      expect(sizer.size(512 * KiB)).to.equal(FIRST_CHUNK);
      sizer.acknowledged(64 * KiB, 1000);
      sizer.acknowledged(64 * KiB, 1040);
      expect(sizer.rate).to.equal(undefined);
      expect(sizer.size(512 * KiB)).to.equal(FIRST_CHUNK);
    });

    it('keeps at most 1 MiB unacknowledged until the rate is known', () => {
      const sizer = new ChunkSizer(STALL_MS);
      expect(sizer.window(8 * MiB)).to.equal(FIRST_WINDOW);
      expect(sizer.window(256 * KiB)).to.equal(256 * KiB);
      sizer.acknowledged(64 * KiB, 0);
      sizer.acknowledged(64 * KiB, 60);
      expect(sizer.window(8 * MiB)).to.equal(8 * MiB);
    });

    it('measures the rate from the first acknowledgement, not from when sending began', () => {
      const sizer = new ChunkSizer(STALL_MS);
      // The first acknowledgement came late (a round trip and the server's first flush); then
      // 64 KiB every 3 ms: a fast link, whatever the wait before.
      for (let i = 0; i <= 20; i++) sizer.acknowledged(64 * KiB, 5000 + 3 * i);
      expect(sizer.rate).to.be.closeTo((64 * KiB * 1000) / 3, 1);
      expect(sizer.size(512 * KiB)).to.equal(512 * KiB);
    });

    it('sends the cap on a link that carries it in a second: 1 MiB/s, as a busy start measures', () => {
      const sizer = new ChunkSizer(STALL_MS);
      for (let i = 0; i < 4; i++) sizer.acknowledged(64 * KiB, 62.5 * i);
      expect(sizer.rate).to.equal(MiB);
      expect(sizer.size(512 * KiB)).to.equal(512 * KiB);
    });

    it('keeps a chunk to an eighth of the stall timeout on a slow link', () => {
      const sizer = new ChunkSizer(STALL_MS);
      // 128 KiB/s: 64 KiB every 500 ms; 3.75 s of it.
      for (let i = 0; i < 4; i++) sizer.acknowledged(64 * KiB, 500 * i);
      expect(sizer.rate).to.equal(128 * KiB);
      expect(sizer.size(512 * KiB)).to.equal(480 * KiB);
    });

    it('keeps chunks to an eighth of a short stall timeout', () => {
      const sizer = new ChunkSizer(2000);
      for (let i = 0; i < 4; i++) sizer.acknowledged(64 * KiB, 500 * i);
      // A quarter of a second of 128 KiB/s.
      expect(sizer.size(512 * KiB)).to.equal(32 * KiB);
    });

    it('follows the last two seconds', () => {
      const sizer = new ChunkSizer(STALL_MS);
      for (let i = 0; i < 10; i++) sizer.acknowledged(512 * KiB, 10 * i);
      expect(sizer.size(512 * KiB)).to.equal(512 * KiB);
      // The link slowed down to 16 KiB a second: 60 KiB in 3.75 s, 48 KiB in whole 16 KiB.
      for (let t = 1000; t <= 6000; t += 1000) sizer.acknowledged(16 * KiB, t);
      expect(sizer.rate).to.equal(16 * KiB);
      expect(sizer.size(512 * KiB)).to.equal(48 * KiB);
      for (let t = 7000; t <= 12000; t += 1000) sizer.acknowledged(1 * KiB, t);
      expect(sizer.size(512 * KiB)).to.equal(MIN_CHUNK);
    });
  });
});
