import { expect } from 'chai';
import fc from 'fast-check';
import {
  createPlanner,
  defaultPlanner,
  lowestRttPlanner,
  validatePlan,
  type PlannerServer,
} from '../../server/index.js';

const MiB = 1024 * 1024;
const item = (size: number) => ({ itemId: 'i', name: 'i', size, mime: '', kind: 'file' as const });

describe('planners', () => {
  it('lowestRttPlanner sends the whole item to the lowest measured RTT, unmeasured servers last', () => {
    const servers: PlannerServer[] = [{ id: 'a' }, { id: 'b', rttMs: 30 }, { id: 'c', rttMs: 5 }];
    expect(lowestRttPlanner(item(10), servers)).to.deep.equal([
      { start: 0, end: 10, serverId: 'c' },
    ]);
    expect(lowestRttPlanner(item(10), [{ id: 'a' }, { id: 'b' }])[0]!.serverId).to.equal('a');
    expect(lowestRttPlanner(item(10), [])).to.deep.equal([]);
    expect(lowestRttPlanner(item(0), servers)).to.deep.equal([]);
  });

  it('the default planner keeps items under 64 MiB whole and splits larger ones by throughput', () => {
    const servers: PlannerServer[] = [
      { id: 'slow', rttMs: 1, throughput: 10 * MiB },
      { id: 'fast', rttMs: 9, throughput: 30 * MiB },
    ];
    expect(defaultPlanner(item(64 * MiB - 1), servers)).to.deep.equal([
      { start: 0, end: 64 * MiB - 1, serverId: 'slow' },
    ]);
    // In stripes: 16 MiB for the fastest server, a third of that for one a third as fast.
    const plan = defaultPlanner(item(100 * MiB), servers);
    expect(plan.slice(0, 4)).to.deep.equal([
      { start: 0, end: 16 * MiB, serverId: 'fast' },
      { start: 16 * MiB, end: 21 * MiB, serverId: 'slow' },
      { start: 21 * MiB, end: 37 * MiB, serverId: 'fast' },
      { start: 37 * MiB, end: 42 * MiB, serverId: 'slow' },
    ]);
    const share = (id: string) =>
      plan.filter((r) => r.serverId === id).reduce((n, r) => n + r.end - r.start, 0);
    expect([share('fast'), share('slow')]).to.deep.equal([75 * MiB, 25 * MiB]);
    // One contiguous range each without stripes.
    expect(createPlanner({ stripe: Infinity })(item(100 * MiB), servers)).to.deep.equal([
      { start: 0, end: 75 * MiB, serverId: 'fast' },
      { start: 75 * MiB, end: 100 * MiB, serverId: 'slow' },
    ]);
    expect(() => createPlanner({ stripe: 0 })).to.throw(TypeError);
  });

  it('splits alike without measurements (11 blocks: 6 and 5), across at most maxServers, on aligned boundaries', () => {
    const planner = createPlanner({ splitMin: 0, maxServers: 2, align: 1000 });
    const plan = planner(item(10_500), [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    expect(plan).to.deep.equal([
      { start: 0, end: 6000, serverId: 'a' },
      { start: 6000, end: 10_500, serverId: 'b' },
    ]);
    expect(() => createPlanner({ maxServers: 0 })).to.throw(TypeError);
    expect(() => createPlanner({ align: 0.5 })).to.throw(TypeError);
  });

  it('always makes a valid plan: sorted, no gaps, no overlaps, no empty ranges, the whole item (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.array(
          fc.record({
            rttMs: fc.option(fc.double({ min: 0, max: 1e4, noNaN: true }), { nil: undefined }),
            throughput: fc.option(fc.double({ min: 1, max: 1e10, noNaN: true }), {
              nil: undefined,
            }),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        fc.integer({ min: 0, max: 2 ** 41 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 2 ** 24 }),
        fc.option(fc.integer({ min: 1, max: 2 ** 30 }), { nil: undefined }),
        (size, measured, splitMin, maxServers, align, stripe) => {
          const servers = measured.map((m, i) => ({
            id: `s${i}`,
            ...(m.rttMs === undefined ? {} : { rttMs: m.rttMs }),
            ...(m.throughput === undefined ? {} : { throughput: m.throughput }),
          }));
          const plan = createPlanner({ splitMin, maxServers, align, stripe: stripe ?? Infinity })(
            item(size),
            servers,
          );
          const ids = new Set(servers.map((s) => s.id));
          expect(validatePlan(item(size), plan, ids)).to.equal(undefined);
          expect(new Set(plan.map((r) => r.serverId)).size).to.be.at.most(maxServers);
          // Neighbours on one server are one range; without stripes, one range per server.
          plan.slice(1).forEach((r, i) => expect(r.serverId).to.not.equal(plan[i]!.serverId));
          if (stripe === undefined)
            expect(new Set(plan.map((r) => r.serverId)).size).to.equal(plan.length);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('validatePlan names what is wrong with a plan', () => {
    const ids = new Set(['a']);
    expect(validatePlan(item(10), [], ids)).to.equal('no ranges');
    expect(validatePlan(item(10), [{ start: 0, end: 0, serverId: 'a' }], ids)).to.match(/empty/);
    expect(
      validatePlan(
        item(10),
        [
          { start: 0, end: 6, serverId: 'a' },
          { start: 5, end: 10, serverId: 'a' },
        ],
        ids,
      ),
    ).to.match(/overlap/);
    expect(
      validatePlan(
        item(10),
        [
          { start: 0, end: 4, serverId: 'a' },
          { start: 5, end: 10, serverId: 'a' },
        ],
        ids,
      ),
    ).to.match(/gap/);
    expect(validatePlan(item(10), [{ start: 0, end: 10, serverId: 'z' }], ids)).to.match(
      /unknown server/,
    );
    expect(validatePlan(item(10), [{ start: 0, end: 11, serverId: 'a' }], ids)).to.match(/ends/);
  });
});
