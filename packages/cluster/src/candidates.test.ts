import { describe, expect, it } from 'vitest';
import { aCluster, dbOf, deepFreeze, type DbOptions } from './testing.js';
import { compareFailoverCandidates, findBestCandidates, ineligibility, type Candidate } from './candidates.js';
import type { DB } from './types.js';

const PRIMARY_LSN = 10_000_000;

/** The primary DB (keeper k1, LSN `PRIMARY_LSN`) and one standby on keeper `k`. */
function primaryAnd(k: string, opts: DbOptions = {}): { primary: DB; standby: DB } {
  const cd = aCluster()
    .initialized()
    .withPrimary('k1', { xLogPos: PRIMARY_LSN })
    .withStandby(k, { xLogPos: PRIMARY_LSN, ...opts })
    .build();
  const primary = cd.dbs[dbOf('k1')];
  const standby = cd.dbs[opts.uid ?? dbOf(k)];
  if (primary === undefined || standby === undefined) {
    throw new Error('builder did not produce the DBs');
  }
  return deepFreeze({ primary, standby });
}

function candidate(k: string, opts: DbOptions = {}, canBeMaster = true): Candidate {
  return { db: primaryAnd(k, opts).standby, canBeMaster };
}

const uids = (cs: readonly Candidate[]): string[] => cs.map((c) => c.db.uid);

describe('compareFailoverCandidates', () => {
  it('orders the higher LSN first (Stolon takes the lowest)', () => {
    const low = candidate('k2', { xLogPos: 1_000 });
    const high = candidate('k3', { xLogPos: 2_000 });
    expect(compareFailoverCandidates(high, low)).toBeLessThan(0);
    expect(compareFailoverCandidates(low, high)).toBeGreaterThan(0);
    expect(uids([low, high].sort(compareFailoverCandidates))).toEqual(['db-k3', 'db-k2']);
  });

  it('lets LSN win over uid', () => {
    const aLow = candidate('k2', { uid: 'a', xLogPos: 1_000 });
    const zHigh = candidate('k3', { uid: 'z', xLogPos: 1_001 });
    expect(uids([aLow, zHigh].sort(compareFailoverCandidates))).toEqual(['z', 'a']);
  });

  it('breaks an LSN tie by the lower DB uid', () => {
    const b = candidate('k2', { uid: 'b', xLogPos: 5_000 });
    const a = candidate('k3', { uid: 'a', xLogPos: 5_000 });
    expect(compareFailoverCandidates(a, b)).toBeLessThan(0);
    expect(compareFailoverCandidates(b, a)).toBeGreaterThan(0);
    expect(uids([b, a].sort(compareFailoverCandidates))).toEqual(['a', 'b']);
  });

  it('finds a candidate equal to itself', () => {
    const a = candidate('k2');
    expect(compareFailoverCandidates(a, a)).toBe(0);
  });

  it('gives one order whatever the input order', () => {
    const cs = [
      candidate('k2', { uid: 'c', xLogPos: 7 }),
      candidate('k3', { uid: 'a', xLogPos: 7 }),
      candidate('k4', { uid: 'b', xLogPos: 9 }),
      candidate('k5', { uid: 'd', xLogPos: 1 }),
    ];
    const expected = ['b', 'a', 'c', 'd'];
    for (const order of [cs, [...cs].reverse(), [cs[2], cs[0], cs[3], cs[1]]]) {
      expect(uids([...(order as Candidate[])].sort(compareFailoverCandidates))).toEqual(expected);
    }
  });
});

describe('ineligibility', () => {
  interface Case {
    readonly title: string;
    readonly standby?: DbOptions;
    readonly canBeMaster?: boolean;
    readonly healthy?: boolean;
    readonly maxStandbyLag?: number;
    /** DB uids known in sync (sync mode); absent: asynchronous. */
    readonly syncSet?: readonly string[];
    /** Use the primary itself as the candidate. */
    readonly thePrimary?: boolean;
    /** undefined: eligible. */
    readonly reason: string | undefined;
  }
  const cases: readonly Case[] = [
    { title: 'a healthy, converged, caught-up standby is eligible', reason: undefined },
    { title: 'the primary itself is not a standby', thePrimary: true, reason: 'not a standby' },
    { title: 'an unhealthy standby', healthy: false, reason: 'unhealthy' },
    { title: 'a standby that has not applied its spec', standby: { generation: 2, currentGeneration: 1 }, reason: 'not converged (generation 1/2)' },
    { title: 'a keeper with canBeMaster=false', canBeMaster: false, reason: 'keeper has canBeMaster=false' },
    { title: 'a standby on a newer timeline', standby: { timeline: 2 }, reason: 'on timeline 2, primary was on 1' },
    { title: 'a standby on an older timeline', standby: { timeline: 0 }, reason: 'on timeline 0, primary was on 1' },
    {
      title: 'lag one byte over maxStandbyLag',
      standby: { xLogPos: PRIMARY_LSN - 1_025 },
      maxStandbyLag: 1_024,
      reason: 'lags 1025 bytes behind the primary (maxStandbyLag 1024)',
    },
    { title: 'lag exactly at maxStandbyLag is OK', standby: { xLogPos: PRIMARY_LSN - 1_024 }, maxStandbyLag: 1_024, reason: undefined },
    { title: 'maxStandbyLag 0 with no lag is OK', maxStandbyLag: 0, reason: undefined },
    { title: 'maxStandbyLag 0 with one byte of lag', standby: { xLogPos: PRIMARY_LSN - 1 }, maxStandbyLag: 0, reason: 'lags 1 bytes' },
    { title: 'a standby ahead of the primary\'s last report is OK', standby: { xLogPos: PRIMARY_LSN + 4_096 }, maxStandbyLag: 0, reason: undefined },
    {
      title: 'the first failing check is reported (unhealthy before lagging)',
      standby: { xLogPos: 0 },
      healthy: false,
      reason: 'unhealthy',
    },
    { title: 'sync mode: a standby known to be in sync is eligible', syncSet: ['db-k2'], reason: undefined },
    { title: 'sync mode: a standby not known to be in sync', syncSet: ['db-k3'], reason: 'not a synchronous standby known to be in sync' },
    { title: 'sync mode: nothing known in sync', syncSet: [], reason: 'not a synchronous standby known to be in sync' },
    {
      title: 'sync mode: a known synchronous standby is not held to maxStandbyLag',
      standby: { xLogPos: PRIMARY_LSN - 10_000_000 },
      maxStandbyLag: 0,
      syncSet: ['db-k2'],
      reason: undefined,
    },
    { title: 'sync mode: still unhealthy first', healthy: false, syncSet: ['db-k2'], reason: 'unhealthy' },
    { title: 'sync mode: still canBeMaster', canBeMaster: false, syncSet: ['db-k2'], reason: 'keeper has canBeMaster=false' },
    { title: 'sync mode: still the same timeline', standby: { timeline: 2 }, syncSet: ['db-k2'], reason: 'on timeline 2, primary was on 1' },
  ];

  it.each(cases)('$title', (c) => {
    const { primary, standby } = primaryAnd('k2', c.standby);
    const cand: Candidate = { db: c.thePrimary === true ? primary : standby, canBeMaster: c.canBeMaster ?? true };
    const why = ineligibility(cand, primary, {
      healthy: c.healthy ?? true,
      maxStandbyLag: c.maxStandbyLag ?? 1_048_576,
      syncSet: c.syncSet === undefined ? undefined : new Set(c.syncSet),
    });
    if (c.reason === undefined) {
      expect(why).toBeUndefined();
    } else {
      expect(why).toContain(c.reason);
    }
  });
});

describe('findBestCandidates', () => {
  const { primary } = primaryAnd('k2');

  it('drops the ineligible and sorts the rest best first', () => {
    const cs = deepFreeze([
      candidate('k2', { xLogPos: PRIMARY_LSN - 100 }),
      candidate('k3', { xLogPos: PRIMARY_LSN }), // unhealthy, below
      candidate('k4', { xLogPos: PRIMARY_LSN - 50 }),
      candidate('k5', { xLogPos: PRIMARY_LSN }, false), // canBeMaster=false
      candidate('k6', { xLogPos: PRIMARY_LSN - 2_000_000 }), // lags
    ]);
    const best = findBestCandidates(cs, primary, { isHealthy: (db) => db.uid !== 'db-k3', maxStandbyLag: 1_048_576 });
    expect(uids(best)).toEqual(['db-k4', 'db-k2']);
  });

  it('in sync mode keeps only the known synchronous standbys, ranked by LSN, lag ignored', () => {
    const cs = deepFreeze([
      candidate('k2', { xLogPos: PRIMARY_LSN + 100 }), // most advanced, not in sync
      candidate('k3', { xLogPos: PRIMARY_LSN - 5_000_000 }), // in sync, lags
      candidate('k4', { xLogPos: PRIMARY_LSN - 4_000_000 }), // in sync, lags less
    ]);
    const syncSet = new Set(['db-k3', 'db-k4']);
    expect(uids(findBestCandidates(cs, primary, { isHealthy: () => true, maxStandbyLag: 0, syncSet }))).toEqual(['db-k4', 'db-k3']);
    expect(findBestCandidates(cs, primary, { isHealthy: () => true, maxStandbyLag: 0, syncSet: new Set() })).toEqual([]);
  });

  it('returns nothing when nobody is eligible', () => {
    expect(findBestCandidates([candidate('k2')], primary, { isHealthy: () => false, maxStandbyLag: 0 })).toEqual([]);
    expect(findBestCandidates([], primary, { isHealthy: () => true, maxStandbyLag: 0 })).toEqual([]);
  });

  it('asks isHealthy about each candidate DB', () => {
    const seen: string[] = [];
    findBestCandidates([candidate('k2'), candidate('k3')], primary, {
      isHealthy: (db) => {
        seen.push(db.uid);
        return true;
      },
      maxStandbyLag: 0,
    });
    expect(seen.sort()).toEqual(['db-k2', 'db-k3']);
  });
});
