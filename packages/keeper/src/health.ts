/**
 * The keeper's liveness and readiness, for the status endpoint (`--metrics-listen-address`,
 * `GET /healthz` and `GET /readyz`) that Kubernetes probes.
 *
 * - **Alive** (`/healthz`): the keeper's serial loop still turns — a pass is not stuck past the
 *   longest a pass may legitimately take, and a new pass started within a sleepInterval (plus
 *   slack) of the last one. It stays alive through store outages on purpose: a liveness failure
 *   restarts the container, and restarting a keeper stops its PostgreSQL (a primary!), which
 *   would not bring the store back.
 * - **Ready** (`/readyz`): alive, the last pass reached the store (read clusterdata and published
 *   the keeper info), did not fail, and PostgreSQL has converged: running, in the role its DB
 *   spec wants, at the DB's current generation, with no background task (initdb, clone, rewind)
 *   running. What counts as converged is decided by the keeper's own planner
 *   (`planKeeperAction`): anything but a settled `converge` step is "not ready" with the
 *   planner's sentence as the reason. Kubernetes uses readiness for StatefulSet rolling updates
 *   (the next keeper is updated only once this one is ready) and for PodDisruptionBudgets.
 *
 * The keeper reports through {@link KeeperStatusSink}; {@link KeeperStatus} keeps the last pass,
 * and the facts the role endpoints (role-checks.ts) and the metrics (keeper-metrics.ts) read;
 * {@link keeperLiveness} and {@link keeperReadiness} are pure and table-tested.
 */
import { DEFAULT_SPEC, errorMessage, parseDurationMs, resolveSpec, type ClusterData } from '@stolon-ts/cluster';
import { loopLiveness, type CheckResult, type StatusChecks } from '@stolon-ts/common';
import type { PgObservation } from '@stolon-ts/postgres';
import { healthCheck, primaryCheck, readOnlyCheck, replicaCheck, syncCheck, type RoleCheckInput } from './role-checks.js';
import type { KeeperErrorKind, KeeperFacts, KeeperState, KeeperStatusSink, PublishedView } from './types.js';
import { assignedDb, planKeeperAction } from './plan.js';

export type { KeeperStatusSink, PublishedView } from './types.js';

/**
 * Whether the keeper reports its PostgreSQL healthy (`postgresState.healthy`): running, probed
 * without error, and no task (initdb, resync...) in progress. A postmaster that accepted the
 * connection but failed the probe query (e.g. while shutting down) is not healthy: its timeline
 * and LSN are then unknown (reported as 0), and a healthy report with them once made the sentinel
 * take a standby for "ahead of the primary" and resync it.
 * @param obs the PostgreSQL observation's `running` and `error` (see `PgObservation`).
 * @param busy a keeper task is in progress.
 */
export function reportedHealthy(obs: { readonly running: boolean; readonly error?: string | undefined }, busy: boolean): boolean {
  return obs.running && obs.error === undefined && !busy;
}

/**
 * Wraps a pass so the sink hears when it starts and settles; errors are re-thrown unchanged.
 * @returns `run` itself when there is no sink.
 */
export function reportPasses<T>(sink: KeeperStatusSink | undefined, run: () => Promise<T>): () => Promise<T> {
  if (sink === undefined) {
    return run;
  }
  return async () => {
    sink.passStarted();
    let result: T;
    try {
      result = await run();
    } catch (err) {
      sink.passSettled(err ?? new Error('pass failed'));
      throw err;
    }
    sink.passSettled(undefined);
    return result;
  };
}

/** One settled pass as the status sees it. */
export interface SettledPass {
  /** Monotonic ms when it started and settled. */
  readonly startedAtMs: number;
  readonly settledAtMs: number;
  /** The pass's error message, undefined when it succeeded. */
  readonly error: string | undefined;
  /** The last publish of the pass; undefined when the pass never got through the store. */
  readonly view: PublishedView | undefined;
}

/** Everything the two checks decide from (a snapshot of {@link KeeperStatus} plus the daemon state). */
export interface KeeperStatusSnapshot {
  readonly state: KeeperState;
  /** Monotonic ms when the status was created (stands for "last settle" before the first pass). */
  readonly createdAtMs: number;
  /** Start of the pass in progress, monotonic ms; undefined between passes. */
  readonly passInProgressSinceMs: number | undefined;
  readonly lastPass: SettledPass | undefined;
  /** Passes started so far. */
  readonly passes: number;
}

/** Slack added to the keeper's own intervals before the loop counts as stalled, in ms. */
const LIVENESS_SLACK_MS = 30_000;

/**
 * How long a pass and a pause between passes may last before the loop counts as stalled, from
 * the last spec seen (defaults before any). A pass may wait for PostgreSQL twice (promote, then
 * start or restart), each up to `dbWaitReadyTimeout`; between passes the loop waits at most
 * `sleepInterval`.
 * @returns `{ maxPassMs, maxIdleMs }` in ms
 */
export function livenessLimits(cd: ClusterData | undefined): { maxPassMs: number; maxIdleMs: number } {
  let sleepMs = parseDurationMs(DEFAULT_SPEC.sleepInterval) ?? 1000;
  let waitMs = parseDurationMs(DEFAULT_SPEC.dbWaitReadyTimeout) ?? 60_000;
  if (cd !== undefined) {
    const spec = resolveSpec(cd.cluster.spec);
    sleepMs = spec.sleepIntervalMs;
    waitMs = spec.dbWaitReadyTimeoutMs;
  }
  return { maxPassMs: 2 * waitMs + 2 * LIVENESS_SLACK_MS, maxIdleMs: sleepMs + LIVENESS_SLACK_MS };
}

/**
 * Liveness (`/healthz`): is the keeper's loop still turning? Store and PostgreSQL failures do not
 * count (see the module comment); only a stuck pass or a loop that stopped re-arming does.
 * @param nowMs monotonic ms, same clock as the snapshot
 */
export function keeperLiveness(s: KeeperStatusSnapshot, nowMs: number): CheckResult {
  if (s.state === 'stopping' || s.state === 'stopped') {
    // Shutting down on purpose: a restart would not help, and the pod is going away anyway.
    return { ok: true, reason: `keeper ${s.state}` };
  }
  const snapshot = { createdAtMs: s.createdAtMs, passInProgressSinceMs: s.passInProgressSinceMs, lastSettledAtMs: s.lastPass?.settledAtMs, passes: s.passes };
  return loopLiveness('keeper', snapshot, livenessLimits(s.lastPass?.view?.cd), nowMs);
}

/**
 * Readiness (`/readyz`): alive, the store reachable in the last pass, and PostgreSQL converged to
 * this keeper's DB spec (role and generation). Each "no" names the first unmet condition.
 * The boot id is the one the last publish carried (the planner waits until the sentinel has seen it).
 * @param keeperUid this keeper's uid
 * @param nowMs monotonic ms, same clock as the snapshot
 */
export function keeperReadiness(s: KeeperStatusSnapshot, keeperUid: string, nowMs: number): CheckResult {
  if (s.state !== 'running') {
    return { ok: false, reason: `keeper ${s.state}` };
  }
  const alive = keeperLiveness(s, nowMs);
  if (!alive.ok) {
    return alive;
  }
  const last = s.lastPass;
  if (last === undefined) {
    return { ok: false, reason: 'no keeper pass has completed yet' };
  }
  if (last.view === undefined) {
    return { ok: false, reason: `store not reachable in the last pass: ${last.error ?? 'no keeper info published'}` };
  }
  if (last.error !== undefined) {
    return { ok: false, reason: `last pass failed: ${last.error}` };
  }
  const { cd, local, obs, task, bootUuid } = last.view;
  if (cd === undefined) {
    return { ok: false, reason: 'no usable clusterdata: waiting for `stolonctl init` (or the clusterdata is invalid)' };
  }
  const db = assignedDb(cd, keeperUid);
  if (db === undefined) {
    return { ok: false, reason: 'no db assigned to this keeper yet' };
  }
  if (task !== undefined) {
    return { ok: false, reason: `${task} in progress` };
  }
  const action = planKeeperAction(cd, keeperUid, bootUuid, local, obs);
  if (action.kind !== 'converge') {
    return { ok: false, reason: `not converged: ${action.reason}` };
  }
  if (action.promote) {
    return { ok: false, reason: `not converged: ${action.reason}` };
  }
  if (!obs.running) {
    return { ok: false, reason: `postgres of db ${db.uid} is not running` };
  }
  if (local.generation !== db.generation) {
    return { ok: false, reason: `db ${db.uid} generation ${db.generation} not applied yet (applied: ${local.generation})` };
  }
  const what = db.spec.followConfig?.type === 'external' ? 'standby-cluster primary' : db.spec.role === 'master' ? 'primary' : 'standby';
  return { ok: true, reason: `${what} db ${db.uid} running at generation ${db.generation}` };
}

/** Options of {@link KeeperStatus}. */
export interface KeeperStatusOptions {
  /** Monotonic clock in ms. @default performance.now */
  readonly nowMs?: () => number;
  /** Wall clock in ms since the epoch, for the timestamps the metrics export. @default Date.now */
  readonly wallMs?: () => number;
  /** Hears each settled pass's duration in seconds (the pass duration histogram); must not throw. */
  readonly onPassSettled?: (seconds: number) => void;
}

/** Keeps what the keeper reports about its passes (the {@link KeeperStatusSink} the keeper is given). */
export class KeeperStatus implements KeeperStatusSink {
  readonly #now: () => number;
  readonly #wall: () => number;
  readonly #onPassSettled: ((seconds: number) => void) | undefined;
  readonly #createdAtMs: number;
  #passes = 0;
  #current: { startedAtMs: number; view: PublishedView | undefined } | undefined;
  #last: SettledPass | undefined;
  #view: { view: PublishedView; atMs: number } | undefined;
  #obs: { obs: PgObservation; atMs: number; wallMs: number } | undefined;
  readonly #errors: Record<KeeperErrorKind, number> = { store: 0, pass: 0, task: 0 };
  #lastErrorWallMs: number | undefined;
  #lastSuccessWallMs: number | undefined;
  #lastValidCdWallMs: number | undefined;

  constructor(opts: KeeperStatusOptions = {}) {
    this.#now = opts.nowMs ?? (() => performance.now());
    this.#wall = opts.wallMs ?? (() => Date.now());
    this.#onPassSettled = opts.onPassSettled;
    this.#createdAtMs = this.#now();
  }

  /** @inheritdoc */
  observed(obs: PgObservation): void {
    this.#obs = { obs, atMs: this.#now(), wallMs: this.#wall() };
  }

  /** @inheritdoc */
  errorSeen(kind: KeeperErrorKind): void {
    this.#errors[kind] += 1;
    this.#lastErrorWallMs = this.#wall();
  }

  /** The cached facts for the metrics and the role endpoints (see {@link KeeperFacts}). */
  facts(): KeeperFacts {
    return {
      view: this.#view?.view,
      viewAtMs: this.#view?.atMs,
      obs: this.#obs?.obs,
      obsAtMs: this.#obs?.atMs,
      obsWallMs: this.#obs?.wallMs,
      errors: { ...this.#errors },
      lastErrorWallMs: this.#lastErrorWallMs,
      lastSuccessWallMs: this.#lastSuccessWallMs,
      lastValidCdWallMs: this.#lastValidCdWallMs,
    };
  }

  /** @inheritdoc */
  passStarted(): void {
    this.#passes += 1;
    this.#current = { startedAtMs: this.#now(), view: undefined };
  }

  /** @inheritdoc */
  published(view: PublishedView): void {
    if (this.#current !== undefined) {
      this.#current.view = view;
    }
    this.#view = { view, atMs: this.#now() };
    if (view.cd !== undefined) {
      this.#lastValidCdWallMs = this.#wall();
    }
  }

  /** @inheritdoc */
  passSettled(error: unknown): void {
    const cur = this.#current ?? { startedAtMs: this.#now(), view: undefined };
    this.#last = {
      startedAtMs: cur.startedAtMs,
      settledAtMs: this.#now(),
      error: error === undefined ? undefined : errorMessage(error),
      view: cur.view,
    };
    this.#current = undefined;
    if (error === undefined) {
      this.#lastSuccessWallMs = this.#wall();
    } else {
      this.errorSeen(cur.view === undefined ? 'store' : 'pass');
    }
    this.#onPassSettled?.((this.#last.settledAtMs - this.#last.startedAtMs) / 1000);
  }

  /** The current monotonic time of this status's clock, in ms. */
  nowMs(): number {
    return this.#now();
  }

  /** A snapshot for the checks, with the daemon's state. */
  snapshot(state: KeeperState): KeeperStatusSnapshot {
    return {
      state,
      createdAtMs: this.#createdAtMs,
      passInProgressSinceMs: this.#current?.startedAtMs,
      lastPass: this.#last,
      passes: this.#passes,
    };
  }
}

/**
 * The checks of a keeper's status endpoint: `/healthz` and `/readyz`, and the role endpoints
 * `/primary`, `/replica`, `/read-only`, `/sync` and `/health` (role-checks.ts, Patroni's
 * semantics), all from cached state.
 * @param state the daemon's state (the handle's `state()`)
 * @param metrics `GET /metrics`'s source (`createDaemonMetrics(...).source`); absent: no `/metrics`
 */
export function keeperChecks(
  status: KeeperStatus,
  state: () => KeeperState,
  keeperUid: string,
  metrics?: StatusChecks['metrics'],
): StatusChecks {
  const input = (): RoleCheckInput => ({ keeperUid, state: state(), facts: status.facts(), nowMs: status.nowMs() });
  return {
    healthz: () => keeperLiveness(status.snapshot(state()), status.nowMs()),
    readyz: () => keeperReadiness(status.snapshot(state()), keeperUid, status.nowMs()),
    more: {
      '/primary': () => primaryCheck(input()),
      '/replica': (q) => replicaCheck(input(), q),
      '/read-only': (q) => readOnlyCheck(input(), q),
      '/sync': () => syncCheck(input()),
      '/health': () => healthCheck(input()),
    },
    ...(metrics !== undefined ? { metrics } : {}),
  };
}
