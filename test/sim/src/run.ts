/**
 * Runs one fault sequence on a copy of a warmed-up simulated cluster and checks the properties:
 * (b), (c) and (d) after every tick (in {@link World}), (a) liveness: once no fault is in effect
 * or still to come (at HEAL_TICK at the latest), if some available keeper could be primary, a
 * primary must serve through every working proxy within LIVENESS_TICKS.
 */
import { HEAL_TICK, LIVENESS_TICKS, type Fault, type Scenario } from './model.js';
import { World, type Violation } from './world.js';

/** The outcome of one sequence. */
export interface SimResult {
  /** Empty when every property held. */
  readonly violations: readonly Violation[];
  /** The final state, described (for failure reports). */
  readonly final: string;
  readonly ticks: number;
}

const warmed = new Map<string, World>();

function warm(scenario: Scenario): World {
  const key = JSON.stringify(scenario);
  let w = warmed.get(key);
  if (w === undefined) {
    w = World.create(scenario);
    warmed.set(key, w);
  }
  return w.clone();
}

/**
 * Runs `faults` (any order; applied at their tick) against `scenario`. Deterministic.
 * `liveness: false` checks the safety properties only; `onTick` gets the state after every tick.
 */
export function runSequence(
  scenario: Scenario,
  faults: readonly Fault[],
  opts: { readonly onTick?: (state: string) => void; readonly liveness?: boolean } = {},
): SimResult {
  const { onTick, liveness = true } = opts;
  const w = warm(scenario);
  const byTick = new Map<number, Fault[]>();
  for (const f of faults) {
    byTick.set(f.tick, [...(byTick.get(f.tick) ?? []), f]);
  }
  const lastFault = Math.max(-1, ...faults.map((f) => f.tick));
  // The liveness window starts once no fault is left to come and none is in effect: at the heal
  // tick at the latest (when the transient ones end), earlier if they are already over.
  let end = HEAL_TICK + LIVENESS_TICKS;
  let quiet = false;
  for (let t = 0; t < end; t++) {
    w.step(byTick.get(t) ?? []);
    onTick?.(w.describe());
    if (w.violations.length > 0) {
      return { violations: w.violations, final: w.describe(), ticks: t + 1 };
    }
    if (!quiet && (t >= HEAL_TICK || (t >= lastFault && !w.transientFaultActive()))) {
      quiet = true;
      end = Math.min(end, t + 1 + LIVENESS_TICKS);
    }
    if (quiet && w.primaryServing() !== undefined) {
      return { violations: [], final: w.describe(), ticks: t + 1 };
    }
  }
  const violations: Violation[] = liveness && w.livenessOwed()
    ? [{ property: 'a-liveness', tick: end, detail: `no primary serving through the proxies ${LIVENESS_TICKS} ticks after the faults ended` }]
    : [];
  return { violations, final: w.describe(), ticks: end };
}
