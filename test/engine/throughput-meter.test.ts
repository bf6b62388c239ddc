import { expect } from '@open-wc/testing';
import { ThroughputMeter } from '../../src/engine/throughput-meter.js';

describe('ThroughputMeter', () => {
  it('has no rate before bytes were acknowledged over at least 10 ms', () => {
    const meter = new ThroughputMeter();
    expect(meter.rate(0)).to.equal(undefined);
    meter.add(1000, 0);
    expect(meter.rate(0)).to.equal(undefined);
    meter.add(1000, 5);
    expect(meter.rate(5)).to.equal(undefined);
  });

  it('counts the first acknowledgements from when sending began', () => {
    const meter = new ThroughputMeter();
    meter.begin(1000);
    meter.add(50_000, 1020);
    meter.add(50_000, 1050);
    // 100 000 bytes in 50 ms.
    expect(meter.rate(1050)).to.equal(2_000_000);
    // A second begin while samples are recent changes nothing.
    meter.begin(1060);
    expect(meter.rate(1060)).to.equal(2_000_000);
  });

  it('measures bytes per second between the first and the last acknowledgement of the last 5 s', () => {
    const meter = new ThroughputMeter();
    // 1 MiB every 100 ms: 10 MiB/s.
    for (let t = 0; t <= 2000; t += 100) meter.add(1024 * 1024, t);
    expect(meter.rate(2000)).to.equal(10 * 1024 * 1024);
    // Faster later: the old samples leave the window.
    for (let t = 2100; t <= 9000; t += 100) meter.add(2 * 1024 * 1024, t);
    expect(meter.rate(9000)).to.equal(20 * 1024 * 1024);
  });

  it('keeps the last rate while nothing is sent, and ignores empty acknowledgements', () => {
    const meter = new ThroughputMeter();
    for (let t = 0; t <= 1000; t += 100) meter.add(500, t);
    expect(meter.rate(1000)).to.equal(5000);
    meter.add(0, 1100);
    meter.add(-5, 1200);
    expect(meter.rate(60_000)).to.equal(5000);
  });
});
