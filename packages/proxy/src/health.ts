/**
 * The proxy's liveness and readiness, for its status endpoint (`--metrics-listen-address`):
 * `GET /healthz`, `GET /readyz` and, with a read-only listener, `GET /readyz/read-only`
 * (common's status server; bodies are one JSON line with the reason).
 *
 * - **Alive** (`/healthz`): the check loop still turns (common's `loopLiveness`): a check is not
 *   stuck past 2 × proxyTimeout + {@link PROXY_LIVENESS_SLACK_MS} (a check makes at most two
 *   store calls, reading clusterdata and publishing the info, each bounded by proxyTimeout) and a
 *   new check started within proxyCheckInterval + slack of the last one. Store outages do not
 *   count: a restarted proxy could not reach the store either. A hung event loop cannot answer
 *   at all, which the probe's timeout counts as a failure.
 * - **Ready** (`/readyz`): alive, routing to a primary, and the watchdog's deadline not passed:
 *   the last successful check is fresher than proxyTimeout (a failed check in between, state
 *   `store-lost`, keeps the target until then, so it stays ready: a short etcd leader election
 *   must not empty the Service), or failsafe mode
 *   moved the deadline because the primary's keeper confirmed its role while the store is
 *   unreachable (the proxy then still routes, so it stays ready). While it holds new clients in
 *   a planned switchover (no target, `switchoverHoldTimeout` in force) it stays ready too: the
 *   held clients go to the new primary, so leaving the Service would only refuse them.
 * - **Read-only ready** (`/readyz/read-only`): alive, a read-only listener, at least one
 *   read-only target, and the same freshness.
 *
 * {@link proxyLiveness}, {@link proxyReadiness} and {@link proxyReadOnlyReadiness} are pure and
 * table-tested; the check loop's `health()` (checker.ts) gives their snapshot.
 */
import { loopLiveness, type CheckResult, type LoopSnapshot, type StatusChecks } from '@stolon-ts/common';
import type { ProxyState } from './types.js';

/** Slack added to the proxy's own bounds before its check loop counts as stalled, in ms. */
const PROXY_LIVENESS_SLACK_MS = 10_000;

/** The path of the read-only listener's readiness. */
const READ_ONLY_READYZ = '/readyz/read-only';

/** What the proxy's checks decide from; every time is monotonic ms (performance.now()). */
export interface ProxyHealthSnapshot {
  readonly state: ProxyState;
  /** The main listener's target as `host:port`; null: routing nowhere. */
  readonly target: string | null;
  /** How many read-only targets the read-only listener may use. */
  readonly roTargets: number;
  /** Whether there is a read-only listener (`--ro-port`). */
  readonly readOnly: boolean;
  /** The check loop's passes. */
  readonly loop: LoopSnapshot;
  /** Start of the last successful check; undefined before any. */
  readonly lastGoodCheckAtMs: number | undefined;
  /**
   * The watchdog's deadline: the last successful check's start + proxyTimeout, or later by
   * failsafe mode; undefined before any successful check and once the watchdog fired.
   */
  readonly deadlineMs: number | undefined;
  /** The spec's proxyTimeout and proxyCheckInterval in force, ms. */
  readonly proxyTimeoutMs: number;
  readonly checkIntervalMs: number;
  /**
   * With no target: how long a new client is held for a planned switchover (the spec's
   * `switchoverHoldTimeout` in force), ms; 0 when new clients are not held.
   */
  readonly holdMs: number;
  /** Now, on the same clock. */
  readonly nowMs: number;
}

/**
 * Liveness (`/healthz`): is the check loop still turning? See the module comment for the bounds.
 * @returns ok with "proxy check loop alive: …", or not ok with "… stalled: … (limit N ms)"
 */
export function proxyLiveness(s: ProxyHealthSnapshot): CheckResult {
  if (s.state === 'stopping' || s.state === 'stopped') {
    return { ok: true, reason: `proxy ${s.state}` };
  }
  const limits = { maxPassMs: 2 * s.proxyTimeoutMs + PROXY_LIVENESS_SLACK_MS, maxIdleMs: s.checkIntervalMs + PROXY_LIVENESS_SLACK_MS };
  return loopLiveness('proxy check', s.loop, limits, s.nowMs);
}

/** Not ready while not running, not alive, or the last successful check is too old; undefined: fresh. */
function notFresh(s: ProxyHealthSnapshot): CheckResult | undefined {
  if (s.state === 'starting' || s.state === 'stopping' || s.state === 'stopped' || s.state === 'failed') {
    return { ok: false, reason: `proxy ${s.state}` };
  }
  const alive = proxyLiveness(s);
  if (!alive.ok) {
    return alive;
  }
  if (s.lastGoodCheckAtMs === undefined) {
    return { ok: false, reason: 'no successful check yet' };
  }
  const age = Math.round(s.nowMs - s.lastGoodCheckAtMs);
  if (s.deadlineMs === undefined || s.nowMs >= s.deadlineMs) {
    return {
      ok: false,
      reason: `no successful check for ${age} ms (the watchdog's limit: proxyTimeout ${s.proxyTimeoutMs} ms, or earlier when this proxy's info lease could expire): routing nowhere`,
    };
  }
  return undefined;
}

/** "last successful check N ms ago", noting when failsafe mode keeps it routing past proxyTimeout. */
function freshness(s: ProxyHealthSnapshot): string {
  const age = Math.round(s.nowMs - (s.lastGoodCheckAtMs ?? s.nowMs));
  const failsafe = age >= s.proxyTimeoutMs ? ', kept routing by failsafe mode' : '';
  return `last successful check ${age} ms ago (proxyTimeout ${s.proxyTimeoutMs} ms${failsafe})`;
}

/**
 * Readiness (`/readyz`): alive, routing to a primary, and the last successful check fresher than
 * proxyTimeout (or a failsafe extension in force). Each "no" names the first unmet condition.
 */
export function proxyReadiness(s: ProxyHealthSnapshot): CheckResult {
  const stale = notFresh(s);
  if (stale !== undefined) {
    return stale;
  }
  if (s.target === null && s.holdMs > 0) {
    // A held client is accepted and routed to the new primary once it is known, so taking this
    // proxy out of a load balancer for the switchover would only turn waits into refusals.
    return { ok: true, reason: `holding new connections for a planned switchover (switchoverHoldTimeout ${s.holdMs} ms); ${freshness(s)}` };
  }
  if (s.target === null) {
    return { ok: false, reason: `not routing to a primary (proxy ${s.state}); ${freshness(s)}` };
  }
  const failing = s.state === 'store-lost' ? ' (the last check could not reach the store)' : '';
  return { ok: true, reason: `routing to the primary at ${s.target}${failing}; ${freshness(s)}` };
}

/**
 * Readiness of the read-only listener (`/readyz/read-only`): alive, a read-only listener with at
 * least one target, and the last successful check fresher than proxyTimeout (as {@link proxyReadiness}).
 */
export function proxyReadOnlyReadiness(s: ProxyHealthSnapshot): CheckResult {
  if (!s.readOnly) {
    return { ok: false, reason: 'no read-only listener (--ro-port 0)' };
  }
  const stale = notFresh(s);
  if (stale !== undefined) {
    return stale;
  }
  if (s.roTargets === 0) {
    return { ok: false, reason: `no read-only target (proxy ${s.state}); ${freshness(s)}` };
  }
  return { ok: true, reason: `read-only listener routes to ${s.roTargets} target${s.roTargets === 1 ? '' : 's'}; ${freshness(s)}` };
}

/**
 * The status endpoint's checks of a proxy: `/healthz`, `/readyz`, and `/readyz/read-only` when
 * it has a read-only listener.
 * @param health the proxy handle's `health()`
 */
export function proxyChecks(health: () => ProxyHealthSnapshot): StatusChecks {
  const first = health();
  return {
    healthz: () => proxyLiveness(health()),
    readyz: () => proxyReadiness(health()),
    ...(first.readOnly ? { more: { [READ_ONLY_READYZ]: () => proxyReadOnlyReadiness(health()) } } : {}),
  };
}
