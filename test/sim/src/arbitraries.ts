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
 * Two to four keepers (three in 60% of the cases, and what shrinking goes to) and two proxies;
 * asynchronous or synchronous replication.
 */
export function simCases(kinds: (sync: boolean) => readonly FaultKind[], maxFaults = 6): fc.Arbitrary<SimCase> {
  return fc.record({ sync: fc.boolean(), keepers: fc.oneof({ arbitrary: fc.constant(3), weight: 3 }, { arbitrary: fc.constantFrom(2, 4), weight: 2 }) }).chain(({ sync, keepers }) => {
    const fault: fc.Arbitrary<Fault> = fc.record({
      tick: fc.integer({ min: 0, max: HEAL_TICK - 1 }),
      kind: fc.constantFrom(...kinds(sync)),
      target: fc.integer({ min: 0, max: 5 }),
    });
    return fc.record({
      scenario: fc.constant({ sync, keepers, proxies: 2 }),
      faults: fc.array(fault, { maxLength: maxFaults }).map((fs) => [...fs].sort((a, b) => a.tick - b.tick)),
    });
  });
}
