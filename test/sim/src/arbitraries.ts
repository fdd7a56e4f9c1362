/**
 * fast-check arbitraries for the simulator: a scenario (async or synchronous replication) and a
 * short fault sequence over the enabled fault kinds.
 */
import fc from 'fast-check';
import { HEAL_TICK, type Fault, type FaultKind, type Scenario } from './model.js';

/** One generated case. */
export interface SimCase {
  readonly scenario: Scenario;
  readonly faults: readonly Fault[];
}

/**
 * Cases drawing faults from `kinds(sync)`: at most `maxFaults` faults in ticks [0, HEAL_TICK).
 * Three keepers and two proxies; asynchronous or synchronous replication.
 */
export function simCases(kinds: (sync: boolean) => readonly FaultKind[], maxFaults = 6): fc.Arbitrary<SimCase> {
  return fc.boolean().chain((sync) => {
    const fault: fc.Arbitrary<Fault> = fc.record({
      tick: fc.integer({ min: 0, max: HEAL_TICK - 1 }),
      kind: fc.constantFrom(...kinds(sync)),
      target: fc.integer({ min: 0, max: 5 }),
    });
    return fc.record({
      scenario: fc.constant({ sync, keepers: 3, proxies: 2 }),
      faults: fc.array(fault, { maxLength: maxFaults }).map((fs) => [...fs].sort((a, b) => a.tick - b.tick)),
    });
  });
}
