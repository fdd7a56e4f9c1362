/**
 * The sentinel's liveness and readiness, for its status endpoint (`--metrics-listen-address`,
 * `GET /healthz` and `GET /readyz`, common's status server; bodies are one JSON line with the
 * reason).
 *
 * - **Alive** (`/healthz`): the pass loop still turns (common's `loopLiveness`): a pass is not
 *   stuck past {@link SENTINEL_MAX_PASS_MS} and a new pass started within sleepInterval +
 *   {@link SENTINEL_LIVENESS_SLACK_MS} of the last one. Store outages do not count: a restarted
 *   sentinel could not reach the store either. A hung event loop cannot answer at all, which the
 *   probe's timeout counts as a failure.
 * - **Ready** (`/readyz`): alive, running, and a pass read clusterdata from the store within
 *   {@link storeFreshMs} (the TTL of the sentinel's own info: past it, the store has forgotten
 *   this sentinel anyway), whether this sentinel leads or not; the body says which.
 *
 * {@link sentinelLiveness} and {@link sentinelReadiness} are pure and table-tested; the handle's
 * `health()` (sentinel.ts) gives their snapshot.
 */
import { loopLiveness, type CheckResult, type LoopSnapshot, type StatusChecks } from '@stolon-ts/common';
import type { SentinelState } from './sentinel.js';

/**
 * Longest a pass may run before the loop counts as stalled, in ms: a pass makes at most six
 * store calls one after the other (publish its info, read clusterdata, list infos, write), each
 * bounded by the store client's timeout (`--store-timeout`, 5 s by default), with twice that
 * as slack.
 */
const SENTINEL_MAX_PASS_MS = 60_000;

/** Slack over sleepInterval before a loop that stopped re-arming counts as stalled, in ms. */
const SENTINEL_LIVENESS_SLACK_MS = 30_000;

/** What the sentinel's checks decide from; every time is monotonic ms (performance.now()). */
export interface SentinelHealthSnapshot {
  readonly state: SentinelState;
  readonly leader: boolean;
  /** The pass loop's passes. */
  readonly loop: LoopSnapshot;
  /** When a pass last read clusterdata from the store (absent clusterdata counts); undefined: never. */
  readonly lastStoreReadAtMs: number | undefined;
  /** The spec's sleepInterval in force, ms. */
  readonly sleepMs: number;
  /** Now, on the same clock. */
  readonly nowMs: number;
}

/**
 * How long a store read counts as fresh for readiness, in ms: the TTL the sentinel publishes its
 * info with, 3 × sleepInterval and at least 5 s.
 */
export function storeFreshMs(sleepMs: number): number {
  return Math.max(3 * sleepMs, 5000);
}

/**
 * Liveness (`/healthz`): is the pass loop still turning? See the module comment for the bounds.
 * @returns ok with "sentinel loop alive: …", or not ok with "sentinel loop stalled: … (limit N ms)"
 */
export function sentinelLiveness(s: SentinelHealthSnapshot): CheckResult {
  if (s.state === 'stopping' || s.state === 'stopped') {
    return { ok: true, reason: `sentinel ${s.state}` };
  }
  return loopLiveness('sentinel', s.loop, { maxPassMs: SENTINEL_MAX_PASS_MS, maxIdleMs: s.sleepMs + SENTINEL_LIVENESS_SLACK_MS }, s.nowMs);
}

/**
 * Readiness (`/readyz`): alive, running, and the store read within {@link storeFreshMs}; leader
 * or not (the body says which). Each "no" names the first unmet condition.
 */
export function sentinelReadiness(s: SentinelHealthSnapshot): CheckResult {
  if (s.state !== 'running') {
    return { ok: false, reason: `sentinel ${s.state}` };
  }
  const alive = sentinelLiveness(s);
  if (!alive.ok) {
    return alive;
  }
  const role = s.leader ? 'leader' : 'not the leader';
  if (s.lastStoreReadAtMs === undefined) {
    return { ok: false, reason: `store not read yet (${role})` };
  }
  const age = Math.round(s.nowMs - s.lastStoreReadAtMs);
  const bound = storeFreshMs(s.sleepMs);
  return age > bound
    ? { ok: false, reason: `store not read for ${age} ms (limit ${bound} ms; ${role})` }
    : { ok: true, reason: `${role}; store read ${age} ms ago` };
}

/**
 * The status endpoint's checks of a sentinel.
 * @param health the sentinel handle's `health()`
 */
export function sentinelChecks(health: () => SentinelHealthSnapshot): StatusChecks {
  return { healthz: () => sentinelLiveness(health()), readyz: () => sentinelReadiness(health()) };
}
