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
import type { Violation } from './world.js';

interface Case {
  readonly title: string;
  readonly scenario: Scenario;
  readonly faults: readonly Fault[];
  /** The known bug this sequence hits: the property it breaks, and why. */
  readonly knownBug?: { readonly property: Violation['property']; readonly why: string };
}

const ASYNC: Scenario = { sync: false, keepers: 3, proxies: 2 };
const SYNC: Scenario = { sync: true, keepers: 3, proxies: 2 };

const CASES: readonly Case[] = [
  { title: 'the primary dies: the most advanced standby is promoted and routed to', scenario: ASYNC, faults: [{ tick: 2, kind: 'keeper-dies', target: 0 }] },
  { title: 'synchronous replication: the primary dies, its synchronous standby is promoted', scenario: SYNC, faults: [{ tick: 2, kind: 'keeper-dies', target: 0 }] },
  { title: 'a planned switchover to the best standby completes', scenario: ASYNC, faults: [{ tick: 2, kind: 'switchover', target: 0 }] },
  { title: 'synchronous replication: a switchover to a named keeper completes', scenario: SYNC, faults: [{ tick: 2, kind: 'switchover', target: 1 }] },
  {
    title: 'the switchover target is failed by stolonctl failkeeper while it promotes: the old primary takes over again',
    scenario: { sync: false, keepers: 4, proxies: 2 },
    faults: [
      { tick: 11, kind: 'switchover', target: 0 },
      { tick: 14, kind: 'force-fail', target: 5 },
    ],
  },
  {
    title: 'a switchover whose target crashes while the old primary shuts down',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 1 },
      { tick: 11, kind: 'switchover', target: 0 },
      { tick: 13, kind: 'pg-crash', target: 2 },
    ],
  },
  {
    title: 'synchronous replication: a second switchover back to the old primary, whose replication stalled',
    scenario: SYNC,
    faults: [
      { tick: 0, kind: 'replication-stalls', target: 0 },
      { tick: 0, kind: 'switchover', target: 0 },
      { tick: 1, kind: 'switchover', target: 0 },
    ],
  },
  {
    title: 'a switchover whose old primary dies before it shuts down',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'switchover', target: 0 },
      { tick: 0, kind: 'keeper-dies-forever', target: 0 },
    ],
  },
  {
    title: 'the primary dies, then the standby chosen to replace it dies before its promotion completes',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies-forever', target: 0 },
      { tick: 2, kind: 'keeper-dies-forever', target: 1 },
    ],
  },
  {
    title: 'primary and a standby lost for a while; the standby chosen meanwhile is lost for good',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 0 },
      { tick: 0, kind: 'keeper-dies', target: 1 },
      { tick: 2, kind: 'keeper-dies-forever', target: 2 },
    ],
  },
  {
    title: 'the primary keeper hangs and its postgres crashes',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-hangs-forever', target: 0 },
      { tick: 0, kind: 'pg-crash', target: 0 },
    ],
  },
  {
    title: 'the primary dies while a proxy whose checks fail keeps its lease',
    scenario: ASYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 0 },
      { tick: 0, kind: 'proxy-check-fails-forever', target: 0 },
    ],
  },
  {
    title: 'synchronous replication: a lagging standby swapped in for a failed synchronous standby is not known in sync before it catches up (finding 4, fixed)',
    scenario: SYNC,
    faults: [
      { tick: 0, kind: 'replication-stalls', target: 2 },
      { tick: 1, kind: 'pg-wont-start', target: 4 },
      { tick: 3, kind: 'keeper-dies', target: 0 },
    ],
  },
  {
    title: 'synchronous replication: the primary lost for a while, its synchronous standby chosen and lost for a while before its promotion: it completes the promotion when it returns',
    scenario: SYNC,
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 0 },
      { tick: 2, kind: 'keeper-dies', target: 1 },
    ],
  },
  {
    title: 'the primary lost for a while, the new primary lost for a while, the standby chosen next lost for good',
    scenario: { sync: false, keepers: 3, proxies: 2 },
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 0 },
      { tick: 7, kind: 'keeper-dies', target: 1 },
      { tick: 9, kind: 'keeper-dies-forever', target: 5 },
    ],
  },
  {
    title: 'failkeeper on the primary, the standby lost for a while, then the primary keeper hangs for good',
    scenario: { sync: false, keepers: 2, proxies: 2 },
    faults: [
      { tick: 0, kind: 'force-fail', target: 0 },
      { tick: 1, kind: 'keeper-dies', target: 3 },
      { tick: 3, kind: 'keeper-hangs-forever', target: 0 },
    ],
  },
  {
    title: 'two keepers: the primary lost for a while, the standby chosen to replace it hangs for good',
    scenario: { sync: false, keepers: 2, proxies: 2 },
    faults: [
      { tick: 0, kind: 'keeper-dies', target: 0 },
      { tick: 1, kind: 'keeper-hangs-forever', target: 3 },
    ],
  },
  {
    title: 'the primary lost for good, the standby chosen lost for a while, the next choice lost for good',
    scenario: { sync: false, keepers: 3, proxies: 2 },
    faults: [
      { tick: 0, kind: 'keeper-dies-forever', target: 0 },
      { tick: 2, kind: 'keeper-dies', target: 1 },
      { tick: 3, kind: 'keeper-dies-forever', target: 5 },
    ],
  },
  {
    title: 'the primary keeper hangs for good, a standby lost for a while, the chosen standby lost for good, the sentinel restarts',
    scenario: { sync: false, keepers: 3, proxies: 2 },
    faults: [
      { tick: 0, kind: 'keeper-hangs-forever', target: 0 },
      { tick: 0, kind: 'keeper-dies', target: 4 },
      { tick: 3, kind: 'keeper-dies-forever', target: 2 },
      { tick: 5, kind: 'sentinel-restart', target: 0 },
    ],
  },
  {
    title: 'the primary keeper hangs for good, a standby hangs for a while (its DB spec changes meanwhile), the chosen standby lost for good',
    scenario: { sync: false, keepers: 3, proxies: 2 },
    faults: [
      { tick: 0, kind: 'keeper-hangs-forever', target: 0 },
      { tick: 0, kind: 'keeper-hangs', target: 1 },
      { tick: 3, kind: 'keeper-dies-forever', target: 5 },
    ],
  },
  {
    title: 'the primary postgres crashes during a switchover to a lagging standby: aborted, the primary restarts (finding 6, fixed)',
    scenario: { sync: false, keepers: 2, proxies: 2 },
    faults: [
      { tick: 4, kind: 'keeper-lags', target: 3 },
      { tick: 7, kind: 'switchover', target: 0 },
      { tick: 9, kind: 'pg-crash', target: 0 },
    ],
  },
];

function run(c: Case): ReturnType<typeof runSequence> {
  return runSequence(c.scenario, c.faults, process.env['SIM_TRACE'] === '1' ? { onTick: (s) => console.log(s) } : {});
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
    const known = c.knownBug;
    if (known === undefined) {
      it(c.title, () => {
        const r = run(c);
        expect(r.violations, r.final).toEqual([]);
      });
    } else {
      it(`${c.title} (known bug, breaks ${known.property}: ${known.why})`, () => {
        const r = run(c);
        expect(r.violations.length, `no violation any more: the bug is fixed, remove knownBug from this case\n${r.final}`).toBeGreaterThan(0);
        expect(r.violations.map((v) => v.property), r.final).toContain(known.property);
      });
    }
  }
});
