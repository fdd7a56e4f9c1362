/**
 * Named replays of fault sequences: every counterexample the simulation found, and a few
 * scenarios that must hold. A case with `knownBug` reproduces a bug fixed on another branch (or
 * reported) and is expected to fail; once the fix is merged, it fails as "expected to fail but
 * passed": remove its `knownBug` (and the fault kind from KNOWN_BUG_FAULTS in model.ts).
 * `SIM_TRACE=1` prints every tick of every case.
 */
import { describe, expect, it } from 'vitest';
import { KNOWN_BUG_FAULTS, type Fault, type Scenario } from './model.js';
import { runSequence } from './run.js';

interface Case {
  readonly title: string;
  readonly scenario: Scenario;
  readonly faults: readonly Fault[];
  /** The known bug this sequence hits (the property it breaks, and why). */
  readonly knownBug?: string;
}

const ASYNC: Scenario = { sync: false, keepers: 3, proxies: 2 };
const SYNC: Scenario = { sync: true, keepers: 3, proxies: 2 };

const CASES: readonly Case[] = [
  { title: 'the primary dies: the most advanced standby is promoted and routed to', scenario: ASYNC, faults: [{ tick: 2, kind: 'keeper-dies', target: 0 }] },
  { title: 'synchronous replication: the primary dies, its synchronous standby is promoted', scenario: SYNC, faults: [{ tick: 2, kind: 'keeper-dies', target: 0 }] },
  { title: 'a planned switchover to the best standby completes', scenario: ASYNC, faults: [{ tick: 2, kind: 'switchover', target: 0 }] },
  { title: 'synchronous replication: a switchover to a named keeper completes', scenario: SYNC, faults: [{ tick: 2, kind: 'switchover', target: 1 }] },
  {
    title: 'a switchover whose target crashes while the old primary shuts down',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 1 },
      { tick: 11, kind: 'switchover', target: 0 },
      { tick: 13, kind: 'pg-crash', target: 2 },
    ],
    knownBug: 'a-liveness, bug 2: the target restarted after the clean shutdown, never receives the final WAL, and the switchover waits for it for ever',
  },
  {
    title: 'a switchover whose target replication stalls through the old primary shutdown',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 0 },
      { tick: 0, kind: 'replication-stalls', target: 5 },
      { tick: 12, kind: 'switchover', target: 0 },
    ],
    knownBug: 'a-liveness, bug 2: the target misses the final WAL and the switchover waits for it for ever',
  },
  {
    title: 'synchronous replication: a lagging standby swapped in for a failed synchronous standby is promoted',
    scenario: SYNC,
    faults: [
      { tick: 0, kind: 'replication-stalls', target: 2 },
      { tick: 1, kind: 'pg-wont-start', target: 4 },
      { tick: 3, kind: 'keeper-dies', target: 0 },
    ],
    knownBug:
      'c-sync-promotion, finding 4: d3 is reported sync (streaming, behind) as soon as it enters synchronous_standby_names, ' +
      'becomes known in sync without the commits only d2 acknowledged, and is promoted without them',
  },
];

function expectHolds(c: Case): void {
  const r = runSequence(c.scenario, c.faults, process.env['SIM_TRACE'] === '1' ? (s) => console.log(s) : undefined);
  expect(r.violations, r.final).toEqual([]);
}

describe('simulated fault sequences', () => {
  it('every known-bug replay uses a fault kind the sim test does not draw for its scenario', () => {
    for (const c of CASES.filter((x) => x.knownBug !== undefined)) {
      const marked = c.faults.filter((f) => {
        const known = KNOWN_BUG_FAULTS[f.kind];
        return known !== undefined && (known.syncOnly !== true || c.scenario.sync);
      });
      expect(marked, c.title).not.toEqual([]);
    }
  });
  for (const c of CASES) {
    if (c.knownBug === undefined) {
      it(c.title, () => expectHolds(c));
    } else {
      it.fails(`${c.title} (known: ${c.knownBug})`, () => expectHolds(c));
    }
  }
});
