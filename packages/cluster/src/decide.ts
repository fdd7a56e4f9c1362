/**
 * The leader sentinel's whole policy as one pure function: given the current clusterdata, what
 * keepers and proxies publish, the sentinel's memory and the clock, it returns the next
 * clusterdata, the next memory, and the human sentences explaining the pass. No I/O and no clock
 * reads, so every rule is table-tested (docs/design.md#pure-decisions).
 *
 * The loop around it reads the store, calls `decide`, writes with compare-and-set only when
 * `changed`, and commits `memory` only when that write succeeded (or nothing needed writing).
 *
 * Failover order, one step per pass and each only after the previous one converged
 * (docs/design.md#one-step-at-a-time): primary declared failed → proxies pointed at nobody with a
 * new proxy generation → wait until every live proxy reports that generation → stop the old primary
 * if its keeper is live and reports it running (bounded by convergenceTimeout) → promote the most
 * advanced eligible standby → wait until it converged and is healthy → point proxies at it. A chosen
 * standby that fails before it converged is replaced the same way (see `failoverReference`).
 * Stolon clears the proxies' target and promotes in the same pass.
 */
import { findBestCandidates, ineligibility, type Candidate } from './candidates.js';
import { formatDurationMs } from './duration.js';
import { resolveSpec } from './spec.js';
import { dropExpiredSchedule, scheduleState, switchoverStep } from './switchover.js';
import { failoverSyncSet, failoverSynchronousStandbys, manageSynchronousStandbys, reportedSyncStandbys, type SyncCatchUp } from './sync.js';
import { recordEventOutcomes, recordFailsafeEpisodes, traceChosen, traceDeclared, traceFenced, traceNoCandidate, tracePromoted, traceRouted } from './trace.js';
import type {
  ClusterData,
  DB,
  DBSpec,
  Keeper,
  KeeperInfo,
  ProxyInfo,
  ResolvedSpec,
  SwitchoverRequest,
} from './types.js';

/**
 * What Stolon keeps in hidden maps, made explicit. Times are monotonic ms (`DecideInput.now`).
 */
export interface SentinelMemory {
  /** DB uid → when the DB was first seen failing (no state, wrong uid, or unhealthy). */
  readonly dbErrorSince: Readonly<Record<string, number>>;
  /** DB uid → generation and the time the DB was first seen not converged at that generation. */
  readonly dbConvergingSince: Readonly<Record<string, { readonly generation: number; readonly since: number }>>;
  /**
   * Keeper uid → its last observed progress: when this sentinel first saw its current progress
   * marker (`keeperProgress`), kept after its info is gone (for the failover trace's "primary
   * last seen"). Not the last pass its info was there: a killed keeper's info outlives it until
   * its lease expires.
   */
  readonly keeperLastSeen?: Readonly<Record<string, number>>;
  /**
   * Keeper uid → how many initial-primary attempts it failed (initTimeout) during initialisation,
   * so the next choice goes to a keeper that has not failed yet (Stolon retries its random pick).
   */
  readonly initFailures?: Readonly<Record<string, number>>;
  /**
   * The switchover in progress (its event id) and when this sentinel first saw it, for
   * `switchoverTimeout`. A new leader starts the timer again from its first pass: the switchover
   * then gets at most one more `switchoverTimeout`, still bounded.
   */
  readonly switchoverSince?: { readonly id: string; readonly since: number };
  /**
   * Keeper uid → its last progress marker (`KeeperInfo.infoUID`, new on every keeper pass) and
   * when this sentinel first saw that marker. A keeper whose marker has not changed for more than
   * failInterval is not healthy, however alive its lease (Stolon's keeper info histories).
   */
  readonly keeperProgress?: Readonly<Record<string, Progress>>;
  /**
   * Proxy uid → its last progress marker (`ProxyInfo.infoUID`, new after every successful check)
   * and when this sentinel first saw it. A proxy whose marker has not changed for more than its
   * proxyTimeout + {@link PROXY_PROGRESS_MARGIN_MS} is treated as gone (Stolon's proxy info
   * histories): its watchdog has stopped it forwarding by then.
   */
  readonly proxyProgress?: Readonly<Record<string, Progress>>;
  /**
   * Enabled proxy uid → when this sentinel first saw its info absent. Such a proxy stays in
   * `enabledProxies` until its info has been absent for {@link absentProxyGraceMs}: an info lease
   * that expired during a store outage shorter than failInterval (etcd revokes it a moment after
   * it runs again) must not fence a proxy that is still alive and publishes again at its next check.
   */
  readonly proxyAbsentSince?: Readonly<Record<string, number>>;
  /**
   * Standby DB uid → the primary's WAL position it must reach before it is known in sync
   * ({@link SyncCatchUp}, synchronous replication only).
   */
  readonly syncCatchUp?: Readonly<Record<string, SyncCatchUp>>;
  /**
   * When this sentinel's last stored decision was written (`changed`), so that a decision that
   * only moves reported WAL positions waits for {@link POSITIONS_WRITE_INTERVAL_MS}
   * ({@link positionsDue}). Absent after (re)gaining leadership: the first such change is written.
   */
  readonly lastWriteAt?: number;
  /**
   * DB uid → the reported WAL positions of this sentinel's last decision that held them back
   * (not written, {@link positionsDue}). The next pass starts from them instead of the older
   * stored ones, so this sentinel judges a primary that stopped reporting (maxStandbyLag at a
   * failover) by the last position it saw. Absent once a decision is stored, and after
   * (re)gaining leadership: a new leader starts from the stored clusterdata, at most
   * {@link POSITIONS_WRITE_INTERVAL_MS} behind.
   */
  readonly heldPositions?: Readonly<Record<string, ReportedPositions>>;
}

/** A DB's reported WAL positions ({@link REPORTED_POSITION_KEYS}), bytes. */
type ReportedPositions = Partial<Record<(typeof REPORTED_POSITION_KEYS)[number], number>>;

/** A progress marker and when it was first seen (monotonic ms, `DecideInput.now`). */
interface Progress {
  readonly infoUID: string;
  readonly since: number;
}

/**
 * An empty memory, as after (re)gaining leadership. Its progress timers start at the first pass:
 * a new leader sees every marker as fresh, so a keeper or proxy that stopped making progress is
 * noticed one full interval (failInterval; proxyTimeout + margin) after the new leader's first
 * pass, never earlier than by the old leader.
 */
export function emptyMemory(): SentinelMemory {
  return { dbErrorSince: {}, dbConvergingSince: {}, keeperLastSeen: {}, keeperProgress: {}, proxyProgress: {} };
}

/**
 * How long after a proxy's watchdog must have fired the sentinel still waits before it no longer
 * waits for that proxy, in ms. The watchdog fires at most proxyTimeout after the start of the
 * proxy's last successful check, which precedes the publish of the marker the sentinel saw; this
 * margin covers the watchdog closing the connections (and the native relay's own dead-man
 * deadline, 250 ms after the watchdog's, for a stalled event loop) and timer lateness.
 */
const PROXY_PROGRESS_MARGIN_MS = 1_000;

/**
 * How long an enabled proxy whose info is absent stays in `enabledProxies`, in ms: proxyTimeout +
 * {@link PROXY_PROGRESS_MARGIN_MS}. A proxy alive behind an expired info lease publishes again at
 * its first successful check (every proxyCheckInterval once the store answers); one that does not
 * within proxyTimeout has stopped forwarding (its watchdog) and is dropped. Keeping it listed
 * changes nothing a fence waits for: a change of primary waits for the proxies with a live info
 * only, and lists only those.
 */
function absentProxyGraceMs(spec: ResolvedSpec): number {
  return spec.proxyTimeoutMs + PROXY_PROGRESS_MARGIN_MS;
}

/**
 * The enabled proxies whose info is absent, with when this sentinel first saw each absent
 * (monotonic ms); an enabled proxy with an info, stalled or not, is not in it.
 */
function trackAbsentProxies(input: DecideInput): Record<string, number> {
  const out: Record<string, number> = {};
  for (const uid of input.cd.proxy.spec.enabledProxies) {
    if (input.proxyInfos[uid] === undefined) {
      out[uid] = input.memory.proxyAbsentSince?.[uid] ?? input.now;
    }
  }
  return out;
}

/**
 * Remembers, per uid, when its marker last changed: a new or changed marker is stamped `now`,
 * an unchanged one keeps its time, and uids without a live info are forgotten.
 */
function trackProgress(
  prev: Readonly<Record<string, Progress>> | undefined,
  markers: Readonly<Record<string, string>>,
  now: number,
): Record<string, Progress> {
  const out: Record<string, Progress> = {};
  for (const [uid, infoUID] of Object.entries(markers)) {
    const p = prev?.[uid];
    out[uid] = p !== undefined && p.infoUID === infoUID ? p : { infoUID, since: now };
  }
  return out;
}

/** Maps infos to their progress markers. */
function markersOf<T extends { readonly infoUID: string }>(infos: Readonly<Record<string, T>>): Record<string, string> {
  return Object.fromEntries(Object.entries(infos).map(([uid, i]) => [uid, i.infoUID]));
}

/**
 * The live proxies that still count: those whose marker changed within their proxyTimeout (the
 * larger of the spec's and the one the proxy publishes) + {@link PROXY_PROGRESS_MARGIN_MS}. A
 * dropped proxy is treated as if its lease had expired: not waited for, not enabled. A sentence
 * names each one dropped while it matters (it was enabled, or a fence is in effect).
 */
function progressingProxies(
  input: DecideInput,
  spec: ResolvedSpec,
  progress: Readonly<Record<string, Progress>>,
  reasons: string[],
): Record<string, ProxyInfo> {
  const out: Record<string, ProxyInfo> = {};
  for (const [uid, info] of Object.entries(input.proxyInfos)) {
    const timeoutMs = Math.max(spec.proxyTimeoutMs, Math.round(info.ProxyTimeout / 1e6));
    const since = progress[uid]?.since ?? input.now;
    const stalledMs = input.now - since;
    if (stalledMs <= timeoutMs + PROXY_PROGRESS_MARGIN_MS) {
      out[uid] = info;
      continue;
    }
    const { spec: ps } = input.cd.proxy;
    if (ps.enabledProxies.includes(uid) || ps.masterDbUid === '' || info.Generation < input.cd.proxy.generation) {
      reasons.push(
        `proxy ${uid} made no progress for ${Math.round(stalledMs)} ms (no successful check; more than its proxyTimeout ` +
          `${formatDurationMs(timeoutMs)} + ${formatDurationMs(PROXY_PROGRESS_MARGIN_MS)}): its watchdog has stopped it forwarding, not waiting for it`,
      );
    }
  }
  return out;
}

export interface DecideInput {
  readonly cd: ClusterData;
  /** Live keeper infos (the store drops them when their lease expires), keyed by keeper uid. */
  readonly keeperInfos: Readonly<Record<string, KeeperInfo>>;
  /** Live proxy infos, keyed by proxy uid. */
  readonly proxyInfos: Readonly<Record<string, ProxyInfo>>;
  readonly memory: SentinelMemory;
  /** Monotonic ms, for timers. */
  readonly now: number;
  /** Wall-clock RFC 3339 time, for timestamps stored in clusterdata. */
  readonly wallTime: string;
  /** Makes a new DB uid (8 hex chars in production; deterministic in tests). */
  readonly newUid: () => string;
}

export interface DecideOutput {
  readonly next: ClusterData;
  readonly memory: SentinelMemory;
  /** One sentence per decision taken (or why nothing was), first the most important. */
  readonly reasons: readonly string[];
  /**
   * False when `next` equals the input apart from timestamps, or apart from reported WAL
   * positions that are not due to be written yet ({@link positionsDue}): no write is needed.
   */
  readonly changed: boolean;
}

/**
 * A decision that changes nothing but reported WAL positions (`xLogPos`, `replayedXLogPos`) is
 * written at most this often, in ms, unless a standby's lag changed by a quarter of
 * `maxStandbyLag` or more ({@link positionsDue}). Stolon's sentinel rewrites clusterdata every
 * sleepInterval (5 s by default) and Patroni its leader's position every loop_wait (10 s by
 * default).
 */
export const POSITIONS_WRITE_INTERVAL_MS = 5000;

/**
 * The DB status fields a keeper's every report moves under a write load: its reported WAL
 * positions. The sentinel holds back writes that change only these ({@link positionsDue}); a
 * keeper runs no watch pass for a clusterdata write that changed only these (and timestamps).
 */
export const REPORTED_POSITION_KEYS = ['xLogPos', 'replayedXLogPos'] as const;
const POSITION_KEYS: ReadonlySet<string> = new Set(REPORTED_POSITION_KEYS);

/** lastHealthyTime is refreshed at most this often, so a steady cluster does not rewrite clusterdata. */
const LAST_HEALTHY_REFRESH_MS = 60_000;

type Convergence = 'converged' | 'converging' | 'failed';

/** Stable JSON for change detection: everything except change timestamps. */
function fingerprint(cd: ClusterData): string {
  return JSON.stringify(cd, (k, v: unknown) => (k === 'changeTime' ? undefined : v));
}

/** {@link fingerprint} without reported WAL positions either. */
function fingerprintWithoutPositions(cd: ClusterData): string {
  return JSON.stringify(cd, (k, v: unknown) => (k === 'changeTime' || POSITION_KEYS.has(k) ? undefined : v));
}

/**
 * How `next` differs from the stored `prev`: `unchanged` apart from timestamps; `positions held`
 * when only reported WAL positions moved and they are not due ({@link positionsDue}; same
 * parameters); `changed` otherwise, which is what must be written.
 */
function changeOf(
  prev: ClusterData,
  next: ClusterData,
  lastWriteAt: number | undefined,
  now: number,
  maxStandbyLagBytes: number,
): 'changed' | 'positions held' | 'unchanged' {
  if (fingerprint(next) === fingerprint(prev)) {
    return 'unchanged';
  }
  const positionsOnly = fingerprintWithoutPositions(next) === fingerprintWithoutPositions(prev);
  return positionsOnly && !positionsDue(prev, next, lastWriteAt, now, maxStandbyLagBytes) ? 'positions held' : 'changed';
}

/**
 * Whether a decision that differs from the stored clusterdata `prev` only in reported WAL
 * positions must be written now. Under a write load every keeper report carries a new position;
 * writing each one (two writes a second with two keepers at the default sleepInterval) woke every
 * keeper, proxy and the sentinel itself for nothing, and the bursts of work that followed each
 * write delayed the database's own clients on a small machine (docs/benchmarks.md,
 * bench:store-outage). Due when this sentinel has not written for
 * {@link POSITIONS_WRITE_INTERVAL_MS} (or not at all since it leads), when a DB appeared or one of
 * its positions appeared or went, or when a standby's lag behind the primary (the primary's
 * `xLogPos` less the standby's `xLogPos`, and less its `replayedXLogPos`) changed by at least
 * `max(1, maxStandbyLag / 4)` bytes (`maxStandbyLag` 0: every change is due). So what the stored
 * clusterdata says of each standby's lag, which the proxy's read-only listener routes by, is
 * never more than a quarter of `maxStandbyLag` off what the keepers last reported. The lag, not
 * the positions themselves: under a steady write load every position moves while the lags stay
 * put, and the absolute positions matter only for a primary that stopped reporting, which this
 * sentinel judges by the positions it holds ({@link SentinelMemory.heldPositions}).
 * @param lastWriteAt monotonic ms of this sentinel's last write (`SentinelMemory.lastWriteAt`)
 * @param now monotonic ms
 * @param maxStandbyLagBytes the spec's `maxStandbyLag`, bytes
 */
function positionsDue(prev: ClusterData, next: ClusterData, lastWriteAt: number | undefined, now: number, maxStandbyLagBytes: number): boolean {
  if (lastWriteAt === undefined || now - lastWriteAt >= POSITIONS_WRITE_INTERVAL_MS) {
    return true;
  }
  for (const db of Object.values(next.dbs)) {
    const old = prev.dbs[db.uid];
    if (old === undefined || REPORTED_POSITION_KEYS.some((k) => (old.status[k] === undefined) !== (db.status[k] === undefined))) {
      return true;
    }
  }
  const threshold = Math.max(1, Math.floor(maxStandbyLagBytes / 4));
  const prevLags = standbyLags(prev);
  const nextLags = standbyLags(next);
  return [...nextLags].some(([key, lag]) => {
    const before = prevLags.get(key);
    return before === undefined || Math.abs(lag - before) >= threshold;
  });
}

/**
 * Every standby's lag behind the primary of `cd`, bytes, keyed `<db uid>/<position key>`: the
 * primary's `xLogPos` less the standby's `xLogPos` and less its `replayedXLogPos` (when reported).
 * Empty without a primary. (A standby cluster's primary DB has no upstream in this clusterdata.)
 */
function standbyLags(cd: ClusterData): Map<string, number> {
  const lags = new Map<string, number>();
  const primary = cd.dbs[cd.cluster.status.master];
  if (primary === undefined) {
    return lags;
  }
  for (const db of Object.values(cd.dbs)) {
    if (db.uid === primary.uid) {
      continue;
    }
    for (const k of REPORTED_POSITION_KEYS) {
      const pos = db.status[k];
      if (pos !== undefined) {
        lags.set(`${db.uid}/${k}`, primary.status.xLogPos - pos);
      }
    }
  }
  return lags;
}

/**
 * The memory of this pass's write: `lastWriteAt` (`now` when `change` is to be written, else as
 * it was) and the positions held back (`heldPositions`, only when they are).
 */
function writeMemory(
  change: 'changed' | 'positions held' | 'unchanged',
  next: ClusterData,
  now: number,
  lastWriteAt: number | undefined,
): Pick<SentinelMemory, 'lastWriteAt' | 'heldPositions'> {
  const at = change === 'changed' ? now : lastWriteAt;
  return { ...(at !== undefined ? { lastWriteAt: at } : {}), ...(change === 'positions held' ? { heldPositions: positionsOf(next) } : {}) };
}

/** The reported WAL positions of every DB of `cd` ({@link SentinelMemory.heldPositions}). */
function positionsOf(cd: ClusterData): Record<string, ReportedPositions> {
  const out: Record<string, ReportedPositions> = {};
  for (const db of Object.values(cd.dbs)) {
    const p: ReportedPositions = {};
    for (const k of REPORTED_POSITION_KEYS) {
      const v = db.status[k];
      if (v !== undefined) {
        p[k] = v;
      }
    }
    out[db.uid] = p;
  }
  return out;
}

/**
 * Puts the positions a previous pass held back into `cd` (the stored clusterdata's working copy),
 * for the DBs it still has; the keepers' reports of this pass then overwrite them as usual.
 * @returns `cd`, changed in place
 */
function withHeldPositions(cd: ClusterData, held: Readonly<Record<string, ReportedPositions>> | undefined): ClusterData {
  if (held === undefined) {
    return cd;
  }
  for (const [uid, p] of Object.entries(held)) {
    const db = cd.dbs[uid];
    if (db === undefined) {
      continue;
    }
    for (const k of REPORTED_POSITION_KEYS) {
      const v = p[k];
      if (v !== undefined) {
        db.status[k] = v;
      } else if (k === 'replayedXLogPos') {
        delete db.status.replayedXLogPos;
      }
    }
  }
  return cd;
}

function sortedEq(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The keeper infos of one pass, as `decide` reads them. */
interface KeeperViews {
  /** Live infos of this cluster, keyed by keeper uid. */
  readonly infos: Record<string, KeeperInfo>;
  /** The progress markers, for the next memory. */
  readonly keeperProgress: Record<string, Progress>;
  /** How long a keeper made no progress (ms), when more than failInterval; else undefined. */
  readonly stalledMs: (uid: string) => number | undefined;
  /** The infos of keepers making progress: only they speak for their postgres. */
  readonly reporting: Record<string, KeeperInfo>;
}

/**
 * Only infos of this cluster count: a keeper still carrying another cluster's uid (an old
 * `stolonctl init`) must not be given a DB (Stolon drops such infos too). Alive is not enough: a
 * keeper whose info has not changed for more than failInterval (a hung pass, while the store
 * keeps its lease alive) is not healthy, and what it last said about its DB no longer counts.
 */
function keeperViews(input: DecideInput, clusterUid: string, failIntervalMs: number): KeeperViews {
  const { now } = input;
  const infos: Record<string, KeeperInfo> = {};
  for (const [uid, info] of Object.entries(input.keeperInfos)) {
    if (info.clusterUID === clusterUid) {
      infos[uid] = info;
    }
  }
  const keeperProgress = trackProgress(input.memory.keeperProgress, markersOf(infos), now);
  const stalledMs = (uid: string): number | undefined => {
    const p = keeperProgress[uid];
    return p !== undefined && now - p.since > failIntervalMs ? now - p.since : undefined;
  };
  const reporting: Record<string, KeeperInfo> = {};
  for (const [uid, info] of Object.entries(infos)) {
    if (stalledMs(uid) === undefined) {
      reporting[uid] = info;
    }
  }
  return { infos, keeperProgress, stalledMs, reporting };
}

/**
 * Computes the next cluster data. Pure: never mutates its input, reads no clock or randomness
 * except through `input`.
 * @throws SpecValidationError when the stored spec is invalid (the loop must not call it then).
 */
export function decide(input: DecideInput): DecideOutput {
  const spec = resolveSpec(input.cd.cluster.spec);
  const next = withHeldPositions(structuredClone(input.cd) as ClusterData, input.memory.heldPositions);
  const reasons: string[] = [];
  const dbErrorSince: Record<string, number> = { ...input.memory.dbErrorSince };
  const dbConvergingSince: Record<string, { generation: number; since: number }> = {
    ...input.memory.dbConvergingSince,
  };
  const { now } = input;

  const { infos, keeperProgress, stalledMs, reporting } = keeperViews(input, next.cluster.uid, spec.failIntervalMs);
  const proxyProgress = trackProgress(input.memory.proxyProgress, markersOf(input.proxyInfos), now);
  const proxyAbsentSince = trackAbsentProxies(input);

  const keeperLastSeen: Record<string, number> = { ...(input.memory.keeperLastSeen ?? {}) };
  const initFailures: Record<string, number> = { ...(input.memory.initFailures ?? {}) };
  const syncCatchUp: Record<string, SyncCatchUp> = { ...(input.memory.syncCatchUp ?? {}) };
  // The keeper's last observed progress (when this sentinel first saw its current marker), not
  // the last pass its info was there: a killed keeper's info outlives it until its lease expires.
  for (const uid of Object.keys(infos)) {
    keeperLastSeen[uid] = keeperProgress[uid]?.since ?? now;
  }
  for (const uid of Object.keys(keeperLastSeen)) {
    if (next.keepers[uid] === undefined && infos[uid] === undefined) {
      delete keeperLastSeen[uid];
    }
  }
  const wallMs = Date.parse(input.wallTime);
  const trace: TraceContext = {
    lastSeenIso: (db) => {
      const progress = keeperLastSeen[db.spec.keeperUID];
      // A keeper that keeps making progress while it reports its postgres failing: the primary
      // was last seen serving before that first report (dbErrorSince, filled in below).
      const failing = dbErrorSince[db.uid];
      const seen = progress === undefined ? failing : failing === undefined ? progress : Math.min(progress, failing);
      return seen === undefined || Number.isNaN(wallMs) ? undefined : new Date(wallMs - (now - seen)).toISOString();
    },
  };

  const rebooted = rebootedKeepers(next, infos);
  updateKeepers(next, infos, input.wallTime, reasons, { stalledMs, failIntervalMs: spec.failIntervalMs });
  reasons.push(...recordFailsafeEpisodes(next, infos));
  updateDbStatuses(next, reporting, dbErrorSince, now);
  reasons.push(...recordEventOutcomes(next));
  graceForRebootedChoice(next, rebooted, dbErrorSince, now);

  const keeperHealthy = (uid: string): boolean => next.keepers[uid]?.status.healthy === true;
  // A keeper that says its postgres cannot be started: failed now, no failInterval grace.
  const startError = (db: DB): string | undefined => reportedStartError(db, infos);
  const dbHealthy = (db: DB): boolean => {
    if (!keeperHealthy(db.spec.keeperUID) || startError(db) !== undefined) {
      return false;
    }
    const since = dbErrorSince[db.uid];
    return since === undefined || now - since <= spec.failIntervalMs;
  };
  const convergence = (db: DB, timeoutMs: number): Convergence => {
    if (db.status.currentGeneration === db.generation) {
      return 'converged';
    }
    const c = dbConvergingSince[db.uid];
    if (timeoutMs > 0 && c !== undefined && c.generation === db.generation && now - c.since > timeoutMs) {
      return 'failed';
    }
    return 'converging';
  };

  let awaitingFence = false;
  if (spec.paused) {
    // Maintenance mode: statuses stay current, nothing is decided.
    const m = next.dbs[next.cluster.status.master];
    reasons.push(
      `paused (stolonctl resume to re-enable): observing only, no failover or standby action` +
        (m !== undefined && !dbHealthy(m) ? `; primary ${m.spec.keeperUID} (db ${m.uid}) is UNHEALTHY and will not be failed over` : ''),
    );
  } else if (next.cluster.status.phase === 'initializing') {
    decideInitializing(next, spec, input, keeperHealthy, dbHealthy, convergence, reasons, initFailures);
  } else {
    removeDeadKeepers(next, spec, input.wallTime, reasons);
    const sw = input.memory.switchoverSince;
    const ev = next.cluster.status.failover;
    const timers: NormalTimers = {
      switchoverElapsedMs: ev?.kind === 'switchover' && sw?.id === ev.id ? now - sw.since : 0,
      // An aborted switchover's primary was shut down on purpose: give it failInterval to restart.
      resetDbError: (uid) => {
        delete dbErrorSince[uid];
      },
      syncCatchUp,
      absentProxiesKept: Object.keys(proxyAbsentSince).filter((uid) => now - (proxyAbsentSince[uid] ?? now) <= absentProxyGraceMs(spec)),
    };
    const proxyInfos = progressingProxies(input, spec, proxyProgress, reasons);
    // Only keepers making progress speak for their postgres: a hung keeper's last "running" must
    // not make a failover wait for it to stop its primary (its fencer does, see stopOldPrimary).
    awaitingFence = decideNormal(
      next,
      spec,
      { ...input, proxyInfos, keeperInfos: reporting },
      { keeperHealthy, dbHealthy, convergence },
      reasons,
      trace,
      timers,
    );
  }

  // forceFail is one-shot (Stolon), but our failover spans passes: fence, wait for every proxy,
  // promote. Clearing it in the fence pass would make the next pass see the keeper healthy again
  // and route proxies back to it, so keep it on the primary's keeper while the fence is pending.
  const heldFor = awaitingFence ? next.dbs[next.cluster.status.master]?.spec.keeperUID : undefined;
  for (const keeper of Object.values(next.keepers)) {
    if (keeper.status.forceFail === true && keeper.uid !== heldFor) {
      delete keeper.status.forceFail;
    }
  }

  finishDbSpecs(next, input.cd, spec, input.wallTime);

  // Convergence timers: start when a DB's generation differs from what its keeper applied,
  // restart when the generation moves again, forget once converged or deleted.
  for (const uid of Object.keys(dbConvergingSince)) {
    const db = next.dbs[uid];
    if (db === undefined || db.status.currentGeneration === db.generation) {
      delete dbConvergingSince[uid];
    }
  }
  for (const db of Object.values(next.dbs)) {
    if (db.status.currentGeneration !== db.generation) {
      const c = dbConvergingSince[db.uid];
      if (c === undefined || c.generation !== db.generation) {
        dbConvergingSince[db.uid] = { generation: db.generation, since: now };
      }
    }
  }
  forgetRemovedDbs(next, dbErrorSince, syncCatchUp);

  const change = changeOf(input.cd, next, input.memory.lastWriteAt, now, spec.maxStandbyLag);
  const changed = change === 'changed';
  if (changed) {
    next.changeTime = input.wallTime;
  }
  if (reasons.length === 0) {
    const m = next.dbs[next.cluster.status.master];
    const failingSince = m === undefined ? undefined : dbErrorSince[m.uid];
    reasons.push(
      describeSteadyState(
        next,
        change,
        failingSince === undefined ? undefined : { forMs: now - failingSince, failIntervalMs: spec.failIntervalMs },
      ),
    );
  }
  const evNext = next.cluster.status.failover;
  const swPrev = input.memory.switchoverSince;
  const switchoverSince =
    evNext?.kind === 'switchover' ? { id: evNext.id, since: swPrev?.id === evNext.id ? swPrev.since : now } : undefined;
  // Failed initial-primary attempts matter only while initializing.
  const initFailed = next.cluster.status.phase === 'initializing' ? initFailures : {};
  return {
    next,
    memory: {
      dbErrorSince,
      dbConvergingSince,
      keeperLastSeen,
      keeperProgress,
      proxyProgress,
      ...(Object.keys(proxyAbsentSince).length > 0 ? { proxyAbsentSince } : {}),
      ...(Object.keys(initFailed).length > 0 ? { initFailures: initFailed } : {}),
      ...(switchoverSince !== undefined ? { switchoverSince } : {}),
      ...(Object.keys(syncCatchUp).length > 0 ? { syncCatchUp } : {}),
      ...writeMemory(change, next, now, input.memory.lastWriteAt),
    },
    reasons,
    changed,
  };
}

/** Drops the memory of DBs no longer in `cd` (and catch-up thresholds of a replaced primary). */
function forgetRemovedDbs(cd: ClusterData, dbErrorSince: Record<string, number>, syncCatchUp: Record<string, SyncCatchUp>): void {
  for (const uid of Object.keys(dbErrorSince)) {
    if (cd.dbs[uid] === undefined) {
      delete dbErrorSince[uid];
    }
  }
  for (const [uid, c] of Object.entries(syncCatchUp)) {
    if (cd.dbs[uid] === undefined || cd.cluster.status.master !== c.primaryUid) {
      delete syncCatchUp[uid];
    }
  }
}

/**
 * The start error the keeper of `db` reports for it (postgres wanted running, the last start
 * failed), or undefined. Only for that DB, and only while the keeper reports it unhealthy.
 */
function reportedStartError(db: DB, infos: Readonly<Record<string, KeeperInfo>>): string | undefined {
  const st = infos[db.spec.keeperUID]?.postgresState;
  return st !== undefined && st.uid === db.uid && !st.healthy ? st.startError : undefined;
}

function describeSteadyState(
  cd: ClusterData,
  change: 'changed' | 'positions held' | 'unchanged',
  primaryFailing?: { readonly forMs: number; readonly failIntervalMs: number },
): string {
  const head =
    change === 'changed'
      ? 'observed status updated'
      : change === 'positions held'
        ? `no change (new WAL positions only: written within ${POSITIONS_WRITE_INTERVAL_MS / 1000} s)`
        : 'no change';
  const master = cd.dbs[cd.cluster.status.master];
  if (master === undefined) {
    return `${head}: no primary`;
  }
  // Not the primary: a standby cluster's primary DB has role standby too.
  const standbys = Object.values(cd.dbs).filter((d) => d.uid !== master.uid && d.spec.role === 'standby');
  const healthy = standbys.filter((d) => d.status.healthy).length;
  // A primary inside failInterval's grace is not failed yet, but it is not "healthy" either.
  const state =
    primaryFailing === undefined
      ? 'healthy'
      : `reported unhealthy for ${primaryFailing.forMs} ms; it is failed after failInterval ${formatDurationMs(primaryFailing.failIntervalMs)}`;
  return `${head}: primary ${master.spec.keeperUID} (db ${master.uid}) ${state}, ${healthy}/${standbys.length} standbys healthy`;
}

/** Copies the flags a keeper publishes (`--can-be-master`, `--can-be-synchronous-replica`, `--priority`). */
function copyKeeperFlags(status: Keeper['status'], info: KeeperInfo): void {
  if (info.canBeMaster !== undefined) {
    status.canBeMaster = info.canBeMaster;
  }
  if (info.canBeSynchronousReplica !== undefined) {
    status.canBeSynchronousReplica = info.canBeSynchronousReplica;
  }
  if (info.priority !== undefined) {
    status.priority = info.priority;
  }
  if (info.memberAddress !== undefined) {
    status.memberAddress = info.memberAddress;
  } else {
    delete status.memberAddress;
  }
}

/**
 * Adds newly seen keepers and recomputes every keeper's health: healthy when its info is live,
 * it made progress within failInterval (`progress.stalledMs` undefined) and it is not forced failed.
 */
function updateKeepers(
  cd: ClusterData,
  infos: Readonly<Record<string, KeeperInfo>>,
  wallTime: string,
  reasons: string[],
  progress: { readonly stalledMs: (uid: string) => number | undefined; readonly failIntervalMs: number },
): void {
  for (const [uid, info] of Object.entries(infos)) {
    if (cd.keepers[uid] === undefined) {
      const k: Keeper = {
        uid,
        generation: 1,
        changeTime: wallTime,
        spec: {},
        status: {
          healthy: true,
          lastHealthyTime: wallTime,
          bootUUID: info.bootUUID,
          postgresBinaryVersion: info.postgresBinaryVersion,
        },
      };
      copyKeeperFlags(k.status, info);
      cd.keepers[uid] = k;
      reasons.push(`new keeper ${uid} registered`);
    }
  }
  for (const keeper of Object.values(cd.keepers)) {
    const info = infos[keeper.uid];
    const forced = keeper.status.forceFail === true;
    const stalled = info === undefined ? undefined : progress.stalledMs(keeper.uid);
    const healthy = info !== undefined && !forced && stalled === undefined;
    if (forced) {
      // Cleared at the end of the pass (see `decide`), not here: a failover spans passes.
      reasons.push(`keeper ${keeper.uid} forced failed by stolonctl failkeeper`);
    }
    if (info !== undefined) {
      keeper.status.bootUUID = info.bootUUID;
      keeper.status.postgresBinaryVersion = info.postgresBinaryVersion;
      copyKeeperFlags(keeper.status, info);
    }
    const wasHealthy = keeper.status.healthy;
    keeper.status.healthy = healthy;
    if (healthy) {
      const last = Date.parse(keeper.status.lastHealthyTime);
      const nowWall = Date.parse(wallTime);
      if (!wasHealthy || !(nowWall - last < LAST_HEALTHY_REFRESH_MS)) {
        keeper.status.lastHealthyTime = wallTime;
      }
    } else if (wasHealthy && !forced) {
      // Seen healthy until this pass: pin lastHealthyTime to now, since it is refreshed only
      // once a minute while healthy and dead-keeper removal counts from it.
      keeper.status.lastHealthyTime = wallTime;
      reasons.push(
        stalled === undefined
          ? `keeper ${keeper.uid} lost: its info lease expired`
          : `keeper ${keeper.uid} lost: no progress for ${Math.round(stalled)} ms (its info did not change for more than failInterval ${formatDurationMs(progress.failIntervalMs)})`,
      );
    }
  }
}

/**
 * Dead keeper removal: a keeper that owns no DB and has not been healthy for
 * `deadKeeperRemovalInterval` (wall clock, from `status.lastHealthyTime`) is dropped from
 * clusterdata. A keeper owning a DB is never removed here (its DB goes first, by failover or
 * standby replacement). If it comes back it registers again as a new keeper. This is Stolon's
 * rule, on the same clock (the wall clock of `lastHealthyTime`).
 */
function removeDeadKeepers(cd: ClusterData, spec: ResolvedSpec, wallTime: string, reasons: string[]): void {
  const nowWall = Date.parse(wallTime);
  const owners = new Set(Object.values(cd.dbs).map((db) => db.spec.keeperUID));
  for (const keeper of Object.values(cd.keepers)) {
    if (keeper.status.healthy || owners.has(keeper.uid)) {
      continue;
    }
    const last = Date.parse(keeper.status.lastHealthyTime);
    if (Number.isNaN(last) || Number.isNaN(nowWall) || nowWall - last <= spec.deadKeeperRemovalIntervalMs) {
      continue;
    }
    delete cd.keepers[keeper.uid];
    reasons.push(
      `removed dead keeper ${keeper.uid}: no DB and not healthy since ${keeper.status.lastHealthyTime} ` +
        `(more than deadKeeperRemovalInterval ${formatDurationMs(spec.deadKeeperRemovalIntervalMs)})`,
    );
  }
}

/** Registered keepers whose info carries a new boot id: a new keeper process, registered this pass. */
function rebootedKeepers(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>): Set<string> {
  return new Set(Object.keys(infos).filter((uid) => cd.keepers[uid] !== undefined && cd.keepers[uid].status.bootUUID !== infos[uid]?.bootUUID));
}

/**
 * The standby a failover chose, whose keeper comes back as a new process: its DB error timer starts
 * again, so the returning keeper has failInterval to finish the promotion before the choice is
 * replaced. A keeper acts only once this pass has registered its boot id (Stolon's rule, see the
 * keeper's planner), so without the grace the choice, failing since the keeper went away, could be
 * replaced in the very pass after the returning keeper started promoting: two primaries for direct
 * clients. The failover stays bounded by convergenceTimeout, counted from the choice.
 */
function graceForRebootedChoice(cd: ClusterData, rebooted: ReadonlySet<string>, dbErrorSince: Record<string, number>, now: number): void {
  const m = cd.dbs[cd.cluster.status.master];
  const ev = cd.cluster.status.failover;
  if (m !== undefined && rebooted.has(m.spec.keeperUID) && ev?.newPrimary?.dbUid === m.uid && ev.phases.proxiesRouted === undefined) {
    dbErrorSince[m.uid] = now;
  }
}

/** Copies what each keeper reports about its DB into the DB status and tracks DB error timers. */
function updateDbStatuses(
  cd: ClusterData,
  infos: Readonly<Record<string, KeeperInfo>>,
  dbErrorSince: Record<string, number>,
  now: number,
): void {
  for (const db of Object.values(cd.dbs)) {
    const state = infos[db.spec.keeperUID]?.postgresState;
    if (state !== undefined && state.listenAddress !== '') {
      // The keeper's address, even before its data directory holds this DB (a first clone):
      // the primary admits replication from the keepers' addresses only (pg_hba.conf).
      db.status.listenAddress = state.listenAddress;
    }
    if (state === undefined || state.uid !== db.uid) {
      dbErrorSince[db.uid] ??= now;
      db.status.healthy = false;
      continue;
    }
    db.status.port = state.port;
    db.status.currentGeneration = state.generation;
    if (state.discardedWal !== undefined) {
      db.status.discardedWal = { ...state.discardedWal };
    }
    if (state.healthy) {
      delete dbErrorSince[db.uid];
      db.status.healthy = true;
      db.status.systemdID = state.systemID;
      db.status.timelineID = state.timelineID;
      db.status.xLogPos = state.xLogPos;
      // The read-only proxy listener measures a standby's lag with it; a primary reports none.
      if (state.replayedXLogPos !== undefined) {
        db.status.replayedXLogPos = state.replayedXLogPos;
      } else {
        delete db.status.replayedXLogPos;
      }
      db.status.timelinesHistory = state.timelinesHistory;
      db.status.pgParameters = state.pgParameters;
      // Not `state.synchronousStandbys`: that is what the keeper *reports* in sync right now;
      // `status.synchronousStandbys` is the sentinel's persisted *known* list (sync.ts).
      db.status.olderWalFile = state.olderWalFile;
      if (state.pendingRestart !== undefined && state.pendingRestart.length > 0) {
        db.status.pendingRestart = [...state.pendingRestart];
      } else {
        delete db.status.pendingRestart;
      }
    } else {
      dbErrorSince[db.uid] ??= now;
      db.status.healthy = false;
    }
  }
}

function emptyDbStatus(): DB['status'] {
  return {
    healthy: false,
    currentGeneration: 0,
    listenAddress: '',
    port: '',
    systemdID: '',
    timelineID: 0,
    xLogPos: 0,
    timelinesHistory: [],
    pgParameters: {},
    synchronousStandbys: [],
    olderWalFile: '',
  };
}

function newDb(
  uid: string,
  keeperUID: string,
  initMode: DBSpec['initMode'],
  role: DBSpec['role'],
  followed: string | undefined,
  spec: ResolvedSpec,
  wallTime: string,
): DB {
  const dbSpec: DBSpec = {
    keeperUID,
    requestTimeout: formatDurationMs(spec.requestTimeoutMs),
    maxStandbys: spec.maxStandbys,
    synchronousReplication: false,
    usePgrewind: spec.usePgrewind,
    additionalWalSenders: spec.additionalWalSenders,
    additionalReplicationSlots: null,
    initMode,
    pgParameters: { ...spec.pgParameters },
    pgHBA: spec.pgHBA,
    role,
    followConfig: followed === undefined ? null : { type: 'internal', dbuid: followed },
    followers: [],
    includePreviousConfig: false,
    synchronousStandbys: [],
    externalSynchronousStandbys: [],
  };
  if (initMode === 'new') {
    dbSpec.newConfig = { ...spec.newConfig };
  }
  if (initMode === 'pitr' && spec.pitrConfig !== null) {
    dbSpec.pitrConfig = structuredClone(spec.pitrConfig);
  }
  return { uid, generation: 1, changeTime: wallTime, spec: dbSpec, status: emptyDbStatus() };
}

/**
 * Stolon's "different timeline branch" test (`isDifferentTimelineBranch` in Stolon's
 * cmd/sentinel/cmd/sentinel.go, where a DB on another branch is invalid and removed): why
 * standby `db` cannot follow `followed` because their timelines diverged, or
 * undefined when it can (or the histories do not tell). Followed timeline lower than the DB's:
 * diverged. Equal and > 1: diverged iff both histories record timeline − 1 with different switch
 * points. Followed timeline higher: diverged iff the followed history's entry for the DB's
 * timeline ends (switch point) before the DB's reported position, i.e. the DB has WAL of its
 * timeline the followed DB never had (an asynchronous standby that received more of the old
 * primary's WAL than the standby promoted in its place).
 * @see Stolon's integration test `TestTimelineFork` (tests/integration/ha_test.go)
 */
function forkedFrom(followed: DB, db: DB): string | undefined {
  const ftl = followed.status.timelineID;
  const tl = db.status.timelineID;
  if (ftl <= 0 || tl <= 0) {
    return undefined;
  }
  if (ftl < tl) {
    return `on timeline ${tl}, which the primary's timeline ${ftl} does not contain`;
  }
  if (ftl === tl) {
    if (tl <= 1) {
      return undefined;
    }
    const f = followed.status.timelinesHistory.find((h) => h.timelineID === tl - 1);
    const d = db.status.timelinesHistory.find((h) => h.timelineID === tl - 1);
    return f !== undefined && d !== undefined && f.switchPoint !== d.switchPoint
      ? `timeline ${tl} forked at ${d.switchPoint}, the primary's at ${f.switchPoint}`
      : undefined;
  }
  const f = followed.status.timelinesHistory.find((h) => h.timelineID === tl);
  return f !== undefined && f.switchPoint < db.status.xLogPos
    ? `has WAL of timeline ${tl} up to ${db.status.xLogPos}, past where the primary's timeline ${ftl} forked from it (${f.switchPoint})`
    : undefined;
}

/**
 * A "master-type" DB: the cluster's primary, or in a standby cluster the DB that follows the
 * external primary (Stolon's classification of DBs, with the same two cases).
 */
export function isMasterType(db: DB): boolean {
  return db.spec.role === 'master' || db.spec.followConfig?.type === 'external';
}

/** Makes `db` the cluster's primary DB: a real primary, or the external follower of a standby cluster. */
function makeMasterType(db: DB, spec: ResolvedSpec): void {
  if (spec.role === 'standby') {
    db.spec.role = 'standby';
    const follow: NonNullable<DBSpec['followConfig']> = { type: 'external' };
    if (spec.standbyConfig?.standbySettings !== undefined) {
      follow.standbySettings = { ...spec.standbyConfig.standbySettings };
    }
    if (spec.standbyConfig?.archiveRecoverySettings !== undefined) {
      follow.archiveRecoverySettings = { ...spec.standbyConfig.archiveRecoverySettings };
    }
    db.spec.followConfig = follow;
  } else {
    db.spec.role = 'master';
    db.spec.followConfig = null;
  }
}

/** Keepers that may be primary, best first: higher priority, then lower uid. */
function primaryKeeperChoices(cd: ClusterData, keeperHealthy: Health): string[] {
  return Object.values(cd.keepers)
    .filter((k) => keeperHealthy(k.uid) && k.status.canBeMaster !== false)
    .sort((a, b) => (b.status.priority ?? 0) - (a.status.priority ?? 0) || (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0))
    .map((k) => k.uid);
}

type Health = (uid: string) => boolean;
interface TraceContext {
  /**
   * Wall-clock time (RFC 3339) the primary `db` was last observed making progress, if known: the
   * earlier of its keeper's last progress marker change as this sentinel saw it and the first
   * report of its postgres failing (`dbErrorSince`).
   */
  readonly lastSeenIso: (db: DB) => string | undefined;
}
type DbHealth = (db: DB) => boolean;
type ConvergenceFn = (db: DB, timeoutMs: number) => Convergence;
/** The health views decide computes once per pass. */
interface HealthViews {
  readonly keeperHealthy: Health;
  readonly dbHealthy: DbHealth;
  readonly convergence: ConvergenceFn;
}
/** Timers of the normal phase kept in the sentinel memory. */
interface NormalTimers {
  /** Monotonic ms since this sentinel first saw the switchover in progress (0 if none). */
  readonly switchoverElapsedMs: number;
  /** Forgets when a DB was first seen failing. */
  readonly resetDbError: (dbUid: string) => void;
  /** The synchronous catch-up thresholds (memory `syncCatchUp`), updated in place. */
  readonly syncCatchUp: Record<string, SyncCatchUp>;
  /** Enabled proxies whose info is absent for less than {@link absentProxyGraceMs}: they stay enabled. */
  readonly absentProxiesKept: readonly string[];
}

function decideInitializing(
  cd: ClusterData,
  spec: ResolvedSpec,
  input: DecideInput,
  keeperHealthy: Health,
  dbHealthy: DbHealth,
  convergence: ConvergenceFn,
  reasons: string[],
  initFailures: Record<string, number>,
): void {
  const masterUid = cd.cluster.status.master;
  const master = masterUid === '' ? undefined : cd.dbs[masterUid];
  if (master === undefined) {
    let chosen: string | undefined;
    if (spec.initMode === 'existing') {
      // The operator named the keeper whose data directory becomes the primary.
      const wanted = spec.existingConfig?.keeperUID ?? '';
      if (!keeperHealthy(wanted)) {
        reasons.push(`initializing: waiting for keeper ${wanted} (existingConfig.keeperUID) to register`);
        return;
      }
      chosen = wanted;
    } else {
      // Stolon picks at random and ignores canBeMaster (GitHub issue sorintlab/stolon#840); we
      // honour canBeMaster and pick by priority, then the lowest uid, so the same inputs always
      // give the same primary.
      // A keeper that already failed to initialise goes after those that have not.
      chosen = primaryKeeperChoices(cd, keeperHealthy)
        .map((uid, i) => ({ uid, i, failed: initFailures[uid] ?? 0 }))
        .sort((a, b) => a.failed - b.failed || a.i - b.i)[0]?.uid;
    }
    if (chosen === undefined) {
      reasons.push('initializing: waiting for a healthy keeper that can be primary to register');
      return;
    }
    const uid = input.newUid();
    cd.dbs = {};
    const db = newDb(uid, chosen, spec.initMode, 'master', undefined, spec, input.wallTime);
    makeMasterType(db, spec);
    cd.dbs[uid] = db;
    cd.cluster.status.master = uid;
    reasons.push(`initializing: keeper ${chosen} chosen as initial primary (db ${uid}, initMode ${spec.initMode})`);
    return;
  }
  // A restore (pitr) may take as long as it takes (Stolon waits forever: syncTimeout, 0 by default);
  // adopting an existing data dir has no failure path either (Stolon).
  const initLimit =
    master.spec.initMode === 'pitr'
      ? { name: 'syncTimeout', ms: spec.syncTimeoutMs }
      : master.spec.initMode === 'existing'
        ? { name: 'no limit', ms: 0 }
        : { name: 'initTimeout', ms: spec.initTimeoutMs };
  const c = convergence(master, initLimit.ms);
  // `master.status.healthy`: postgres is up now (dbHealthy alone allows failInterval's grace).
  if (c === 'converged' && master.status.healthy && dbHealthy(master)) {
    master.spec.initMode = 'none';
    cd.cluster.status.phase = 'normal';
    reasons.push(`initialized: primary ${master.spec.keeperUID} (db ${master.uid}) is up; cluster phase normal`);
    return;
  }
  if (c === 'failed') {
    reasons.push(
      `initializing: keeper ${master.spec.keeperUID} did not initialize db ${master.uid} within ${initLimit.name} ` +
        `${formatDurationMs(initLimit.ms)}; choosing again`,
    );
    delete cd.dbs[master.uid];
    cd.cluster.status.master = '';
    if (master.spec.initMode === 'new') {
      initFailures[master.spec.keeperUID] = (initFailures[master.spec.keeperUID] ?? 0) + 1;
    }
    return;
  }
  reasons.push(`initializing: waiting for keeper ${master.spec.keeperUID} to initialize db ${master.uid}`);
}

function proxiesBehind(cd: ClusterData, proxyInfos: Readonly<Record<string, ProxyInfo>>): string[] {
  return Object.entries(proxyInfos)
    .filter(([, p]) => p.Generation < cd.proxy.generation)
    .map(([uid]) => uid)
    .sort();
}

/**
 * Routes the proxies: the primary is published only once it converged (promotion done) and only
 * after every live proxy acknowledged the fence generation; a change of the live proxies alone
 * bumps the proxy generation too. A change of primary enables the live proxies only; otherwise
 * `absentKept` (enabled proxies whose info is absent for less than {@link absentProxyGraceMs})
 * stay enabled, so a proxy whose info lease expired during a short store outage keeps routing.
 */
function routeProxies(
  cd: ClusterData,
  master: DB,
  masterConverged: boolean,
  input: DecideInput,
  absentKept: readonly string[],
  reasons: string[],
): void {
  const liveProxies = Object.keys(input.proxyInfos).sort();
  if (cd.proxy.spec.masterDbUid !== master.uid) {
    const behind = proxiesBehind(cd, input.proxyInfos);
    if (!masterConverged) {
      reasons.push(`waiting for primary ${master.spec.keeperUID} (db ${master.uid}) to converge before routing proxies to it`);
    } else if (behind.length > 0) {
      reasons.push(
        `waiting for proxies ${behind.join(', ')} to acknowledge proxy generation ${cd.proxy.generation} before routing`,
      );
    } else {
      tracePromoted(cd, master, input.wallTime);
      traceRouted(cd, master, input.wallTime);
      cd.proxy.spec.masterDbUid = master.uid;
      cd.proxy.spec.enabledProxies = liveProxies;
      cd.proxy.generation += 1;
      cd.proxy.changeTime = input.wallTime;
      reasons.push(
        `routing proxies [${liveProxies.join(', ')}] to primary ${master.spec.keeperUID} (db ${master.uid}), proxy generation ${cd.proxy.generation}`,
      );
    }
    return;
  }
  const enabled = [...new Set([...liveProxies, ...absentKept])].sort();
  if (!sortedEq(cd.proxy.spec.enabledProxies, enabled)) {
    cd.proxy.spec.enabledProxies = enabled;
    cd.proxy.generation += 1;
    cd.proxy.changeTime = input.wallTime;
    reasons.push(`enabled proxies now [${enabled.join(', ')}], proxy generation ${cd.proxy.generation}`);
  }
}

/**
 * Removes the DBs that can no longer follow the healthy, converged primary: old primaries, and
 * standbys of another system, ahead of its timeline, or forked off its history.
 */
function removeDivergedDbs(cd: ClusterData, master: DB, input: DecideInput, reasons: string[]): void {
  for (const db of Object.values(cd.dbs)) {
    if (db.uid !== master.uid && isMasterType(db)) {
      delete cd.dbs[db.uid];
      reasons.push(`removing old primary db ${db.uid} of keeper ${db.spec.keeperUID}; it will be resynced as a standby`);
    }
  }
  const streamingFromPrimary = new Set([...master.status.synchronousStandbys, ...reportedSyncStandbys(cd, master, input.keeperInfos)]);
  for (const db of Object.values(cd.dbs)) {
    if (db.uid === master.uid || db.status.currentGeneration === 0) {
      continue;
    }
    if (db.status.systemdID !== '' && master.status.systemdID !== '' && db.status.systemdID !== master.status.systemdID) {
      delete cd.dbs[db.uid];
      reasons.push(`removing db ${db.uid} of keeper ${db.spec.keeperUID}: system id differs from the primary's`);
    } else if (db.status.healthy && master.status.timelineID > 0 && db.status.timelineID > master.status.timelineID) {
      // (Timeline 0 is "unknown": a report taken while postgres could not answer; never a reason
      // to throw a standby away.)
      delete cd.dbs[db.uid];
      reasons.push(
        `removing db ${db.uid} of keeper ${db.spec.keeperUID}: on timeline ${db.status.timelineID}, ahead of the primary's ${master.status.timelineID}`,
      );
    } else if (!streamingFromPrimary.has(db.uid)) {
      // A standby the primary reports (or knows) in sync streams from it, so it cannot be on
      // another branch whatever its keeper's last report says: a standby whose walreceiver is
      // momentarily down reports the timeline of its last restartpoint with a position it may
      // have replayed on the next one. Removing the known synchronous standby on such a report
      // would leave no failover candidate in strict mode.
      const fork = forkedFrom(master, db);
      if (fork !== undefined) {
        // It can never stream from the primary again (PostgreSQL: "new timeline N forked off
        // current database system timeline M before current recovery point"); without this it
        // would hold its place forever and, with synchronous replication, never be in sync.
        delete cd.dbs[db.uid];
        reasons.push(`removing db ${db.uid} of keeper ${db.spec.keeperUID}: ${fork}; it will be resynced`);
      }
    }
  }
}

/**
 * Consumes a `stolonctl reinit` request (`cluster.status.reinitRequest`), with a healthy,
 * converged primary: the standby DB it names is replaced by a new DB of the same keeper with
 * initMode `resync` and `reinitRequestedAt`, which its keeper clones afresh with pg_basebackup
 * (the keeper's resync path; the old data directory is replaced only once the clone succeeded).
 * Dropped with a reason, changing nothing, when the DB is gone or already replaced, or is the
 * primary. Whether losing a synchronous standby is acceptable was stolonctl's to check (`--force`).
 */
function applyReinitRequest(cd: ClusterData, spec: ResolvedSpec, input: DecideInput, master: DB, reasons: string[]): void {
  const req = cd.cluster.status.reinitRequest;
  if (req === undefined) {
    return;
  }
  delete cd.cluster.status.reinitRequest;
  const db = cd.dbs[req.dbUid];
  if (db === undefined || db.spec.keeperUID !== req.keeperUID) {
    reasons.push(`reinit of keeper ${req.keeperUID} dropped: its db ${req.dbUid} is no longer in the cluster (already replaced)`);
    return;
  }
  if (db.uid === master.uid) {
    reasons.push(`reinit of keeper ${req.keeperUID} refused: it holds the primary db ${db.uid}`);
    return;
  }
  delete cd.dbs[db.uid];
  const uid = input.newUid();
  const fresh = newDb(uid, req.keeperUID, 'resync', 'standby', master.uid, spec, input.wallTime);
  fresh.spec.reinitRequestedAt = req.requestedAt;
  cd.dbs[uid] = fresh;
  reasons.push(`reinit of keeper ${req.keeperUID} (stolonctl reinit at ${req.requestedAt}): db ${db.uid} replaced by new standby db ${uid}, cloned again from primary db ${master.uid}`);
}

/**
 * The switchover request a stopping primary's keeper asks for with its info's
 * `switchoverRequestedAt`, or undefined: none asked, or this very request (same keeper, DB and
 * time) already has a switchover in the history (completed or aborted: it is not retried; a
 * refused one leaves no trace and is asked again at the next pass, while the keeper still asks).
 */
function keeperSwitchoverRequest(cd: ClusterData, master: DB, input: DecideInput): SwitchoverRequest | undefined {
  const at = input.keeperInfos[master.spec.keeperUID]?.switchoverRequestedAt;
  if (at === undefined) {
    return undefined;
  }
  const by = `keeper ${master.spec.keeperUID}, stopping`;
  const cause = `requested by ${by} at ${at}`;
  const tried = (cd.failoverHistory ?? []).some((e) => e.kind === 'switchover' && e.oldPrimary.dbUid === master.uid && e.cause === cause);
  return tried ? undefined : { requestedAt: at, requestedBy: by };
}

/**
 * Runs the switchover step when one is requested or in progress.
 * @returns true when the pass is handled (decide takes no normal step).
 */
function runSwitchover(
  cd: ClusterData,
  spec: ResolvedSpec,
  input: DecideInput,
  h: HealthViews,
  masterOk: boolean,
  reasons: string[],
  timers: NormalTimers,
): boolean {
  const { convergence } = h;
  const master = cd.dbs[cd.cluster.status.master];
  // A planned switchover in progress owns the primary (it is shut down on purpose); a new request
  // starts only from a healthy, converged primary of a primary cluster.
  const switching = cd.cluster.status.failover?.kind === 'switchover';
  const canStart =
    cd.cluster.status.failover === undefined &&
    masterOk &&
    spec.role === 'master' &&
    master !== undefined &&
    convergence(master, spec.convergenceTimeoutMs) === 'converged';
  // A stopping primary's keeper asks through its info (keepers cannot write clusterdata); the
  // request is made only when it can start now, so none is left behind once that keeper is gone.
  const nowMs = Date.parse(input.wallTime);
  const pending = cd.cluster.status.switchoverRequest;
  if (pending !== undefined && cd.cluster.status.failover === undefined && scheduleState(pending, nowMs) === 'expired') {
    reasons.push(dropExpiredSchedule(cd, master, input.wallTime));
  }
  // A scheduled switchover not due yet gives way to a stopping primary's keeper (its keeper will
  // be gone by the scheduled time).
  const notDue = (r: SwitchoverRequest | undefined): boolean => r !== undefined && scheduleState(r, nowMs) === 'wait';
  const drain =
    canStart && (cd.cluster.status.switchoverRequest === undefined || notDue(cd.cluster.status.switchoverRequest))
      ? keeperSwitchoverRequest(cd, master, input)
      : undefined;
  if (drain !== undefined) {
    if (cd.cluster.status.switchoverRequest !== undefined) {
      reasons.push(`scheduled switchover for ${cd.cluster.status.switchoverRequest.scheduledAt} replaced by the stopping primary keeper's request`);
    }
    cd.cluster.status.switchoverRequest = drain;
  }
  const scheduled = cd.cluster.status.failover === undefined && notDue(cd.cluster.status.switchoverRequest);
  if (scheduled) {
    reasons.push(`switchover scheduled at ${cd.cluster.status.switchoverRequest?.scheduledAt}: waiting`);
  }
  const requested = cd.cluster.status.switchoverRequest !== undefined && canStart && !scheduled;
  if (master !== undefined && (switching || requested)) {
    const outcome = switchoverStep({
      cd,
      spec,
      master,
      keeperInfos: input.keeperInfos,
      proxiesBehind: () => proxiesBehind(cd, input.proxyInfos),
      dbHealthy: h.dbHealthy,
      converged: (db) => convergence(db, spec.convergenceTimeoutMs) === 'converged',
      keeperLive: h.keeperHealthy,
      elapsedMs: timers.switchoverElapsedMs,
      wallTime: input.wallTime,
      reasons,
    });
    if (outcome === 'handled') {
      return true;
    }
    if (outcome === 'aborted') {
      timers.resetDbError(master.uid);
    }
  }
  if (cd.cluster.status.switchoverRequest !== undefined && cd.cluster.status.failover === undefined && !requested && !scheduled) {
    reasons.push('switchover requested: waiting for a healthy, converged primary');
  }
  return false;
}

function decideNormal(
  cd: ClusterData,
  spec: ResolvedSpec,
  input: DecideInput,
  h: HealthViews,
  reasons: string[],
  trace: TraceContext,
  timers: NormalTimers,
): boolean {
  const { keeperHealthy, dbHealthy, convergence } = h;
  const master = cd.dbs[cd.cluster.status.master];
  // A primary a failover is shutting down (see stopOldPrimary) stays failed: its shutdown order
  // restarts its convergence timer, which must not make it look healthy again.
  const beingStopped = (db: DB): boolean => db.spec.shutdownForSwitchover === true && cd.cluster.status.failover?.kind === 'failover';
  const isOk = (db: DB): boolean =>
    dbHealthy(db) && convergence(db, spec.convergenceTimeoutMs) !== 'failed' && !beingStopped(db);
  if (runSwitchover(cd, spec, input, h, master !== undefined && isOk(master), reasons, timers)) {
    return false;
  }
  // Again: an aborted switchover gives its primary a fresh failInterval.
  const masterOk = master !== undefined && isOk(master);
  if (masterOk && cd.cluster.status.failover?.kind !== 'switchover' && master.spec.shutdownForSwitchover === true) {
    // A failed primary told to shut down before a promotion recovered first (the failover
    // aborts): it may run again.
    delete master.spec.shutdownForSwitchover;
    reasons.push(`primary ${master.spec.keeperUID} (db ${master.uid}) recovered before a standby was promoted: it may run again`);
  }

  if (!masterOk) {
    if (master !== undefined) {
      const cause = !keeperHealthy(master.spec.keeperUID)
        ? `keeper ${master.spec.keeperUID} lost (info lease expired or no progress for failInterval) or failed by stolonctl failkeeper`
        : reportedStartError(master, input.keeperInfos) !== undefined
          ? `postgres of keeper ${master.spec.keeperUID} cannot be started: ${reportedStartError(master, input.keeperInfos)}`
          : !dbHealthy(master)
            ? `postgres of keeper ${master.spec.keeperUID} reported unhealthy for more than failInterval`
          : `db ${master.uid} did not converge within convergenceTimeout`;
      traceDeclared(cd, master, cause, input.wallTime, trace.lastSeenIso(master));
    }
    return failover(cd, spec, input, master, dbHealthy, convergence, reasons);
  }
  // Keeps the primary DB in line with the cluster role: this is how `stolonctl promote` (role
  // standby → master) turns a standby cluster's external follower into a real primary.
  const wasExternal = master.spec.followConfig?.type === 'external';
  makeMasterType(master, spec);
  if (wasExternal && master.spec.role === 'master') {
    reasons.push(`cluster role is now master: promoting db ${master.uid} on keeper ${master.spec.keeperUID}`);
  }

  const masterConverged = convergence(master, spec.convergenceTimeoutMs) === 'converged';
  routeProxies(cd, master, masterConverged, input, timers.absentProxiesKept, reasons);

  if (!masterConverged) {
    return false;
  }
  if (master.status.healthy) {
    tracePromoted(cd, master, input.wallTime);
  }

  // The primary is healthy and converged: clean up and manage standbys.
  removeDivergedDbs(cd, master, input, reasons);
  applyReinitRequest(cd, spec, input, master, reasons);

  const standbys = Object.values(cd.dbs).filter((d) => d.uid !== master.uid);
  const good = standbys.filter((d) => dbHealthy(d) && convergence(d, spec.convergenceTimeoutMs) === 'converged');
  // A new standby being cloned (resync at its first generation) may take as long as syncTimeout
  // (0: no limit), any later change of a standby convergenceTimeout; a standby past its timeout
  // no longer holds a place, so a free keeper gets a new standby DB (Stolon TestUpdateCluster #10).
  const standbyTimeoutMs = (d: DB): number =>
    d.spec.initMode === 'resync' && d.generation === 1 ? spec.syncTimeoutMs : spec.convergenceTimeoutMs;
  const converging = standbys.filter(
    (d) => keeperHealthy(d.spec.keeperUID) && convergence(d, standbyTimeoutMs(d)) === 'converging' && !good.includes(d),
  );
  for (const d of good) {
    d.spec.initMode = 'none';
    delete d.spec.reinitRequestedAt;
  }
  reasons.push(
    ...manageSynchronousStandbys({
      cd,
      master,
      spec,
      good,
      converging,
      reported: reportedSyncStandbys(cd, master, input.keeperInfos),
      catchUp: timers.syncCatchUp,
    }),
  );
  if (good.length >= spec.maxStandbysPerSender) {
    for (const d of standbys) {
      // A failed synchronous standby stays: when it comes back it is still electable (Stolon).
      if (!good.includes(d) && !master.spec.synchronousStandbys.includes(d.uid)) {
        delete cd.dbs[d.uid];
        reasons.push(`removing failed standby db ${d.uid} of keeper ${d.spec.keeperUID}: enough good standbys`);
      }
    }
  } else {
    let room = spec.maxStandbysPerSender - (good.length + converging.length);
    const assigned = new Set(Object.values(cd.dbs).map((d) => d.spec.keeperUID));
    const free = Object.values(cd.keepers)
      .filter((k) => keeperHealthy(k.uid) && !assigned.has(k.uid))
      .map((k) => k.uid)
      .sort();
    for (const keeperUid of free) {
      if (room <= 0) {
        break;
      }
      const uid = input.newUid();
      cd.dbs[uid] = newDb(uid, keeperUid, 'resync', 'standby', master.uid, spec, input.wallTime);
      reasons.push(`keeper ${keeperUid} assigned new standby db ${uid} following primary db ${master.uid}`);
      room -= 1;
    }
  }
  for (const d of Object.values(cd.dbs)) {
    if (d.uid !== master.uid) {
      d.spec.role = 'standby';
      d.spec.followConfig = { type: 'internal', dbuid: master.uid };
      d.spec.followers = [];
    }
  }
  return false;
}

/**
 * Shuts down a failed primary whose keeper is still live and reports its PostgreSQL running,
 * before any standby is promoted, so direct clients can never write to two primaries; a live
 * keeper whose PostgreSQL is down is told to keep it down, and the promotion waits until it applied
 * that order (so a fenced or crashed primary is never started again under a promoted standby). It reuses
 * the switchover's clean shutdown (`shutdownForSwitchover`: the keeper stops PostgreSQL fast,
 * which lets walsenders send the remaining WAL, and keeps it down). A keeper whose info is gone,
 * or whose info made no progress for failInterval (a hung pass; `input.keeperInfos` then lacks it),
 * is not waited for: its fencer stops PostgreSQL before its lease can expire or failInterval after
 * its last completed pass (docs/architecture.md, "Self-fencing primary"). Bounded by `convergenceTimeout`, counted from
 * the shutdown order: past it the promotion goes ahead (liveness), with a loud reason.
 * @returns true while waiting for the keeper to report PostgreSQL stopped under the shutdown order.
 */
function stopOldPrimary(
  cd: ClusterData,
  spec: ResolvedSpec,
  input: DecideInput,
  master: DB,
  convergence: ConvergenceFn,
  reasons: string[],
): boolean {
  const who = `${master.spec.keeperUID} (db ${master.uid})`;
  const info = input.keeperInfos[master.spec.keeperUID];
  const st = info?.clusterUID === cd.cluster.uid ? info.postgresState : undefined;
  if (st === undefined || st.uid !== master.uid) {
    return false;
  }
  const running = st.running ?? st.healthy;
  if (master.spec.shutdownForSwitchover !== true) {
    // A live keeper whose postgres is down (crashed, fenced) is told to keep it down too: it could
    // otherwise start it again, on the clusterdata it read just before this promotion.
    master.spec.shutdownForSwitchover = true;
    reasons.push(
      running
        ? `primary ${who} failed but its keeper is live and reports postgres running: shutting it down before promoting a standby`
        : `primary ${who} failed; its keeper is live (postgres down): telling it to keep postgres down before promoting a standby`,
    );
    return true;
  }
  if (!running && master.status.currentGeneration === master.generation) {
    return false;
  }
  if (convergence(master, spec.convergenceTimeoutMs) === 'failed') {
    reasons.push(
      `LIVENESS: primary ${who} still reports postgres ${running ? 'running' : 'down without having applied the order'} ` +
        `convergenceTimeout ${formatDurationMs(spec.convergenceTimeoutMs)} after it was told to shut down; promoting a standby anyway (its proxies are fenced)`,
    );
    return false;
  }
  reasons.push(`primary ${who} failed: waiting for its keeper to stop postgres before promoting a standby`);
  return true;
}

/** What a failover compares candidates with, and who may win. */
interface FailoverReference {
  /** The primary whose timeline and last LSN the candidates are compared with. */
  readonly primary: DB;
  /** Synchronous replication: the DB uids that may be promoted; undefined: any within maxStandbyLag. */
  readonly syncSet: ReadonlySet<string> | undefined;
  /**
   * Set when the failed primary is a standby chosen by this failover (or switchover) that failed
   * before its promotion completed: it never served clients through the proxies, so the standbys
   * still following the replaced (deleted) primary are candidates too, compared with that primary.
   */
  readonly unserved: boolean;
}

/**
 * The reference of a failover of `master`. Normally `master` itself and its known synchronous
 * standbys. When `master` is the unconverged choice of the failover in progress (proxies never
 * routed to it), the old primary recorded in the event: its timeline and last LSN, and in
 * synchronous mode the set it had known in sync (never a standby outside it).
 */
function failoverReference(cd: ClusterData, master: DB): FailoverReference {
  const ev = cd.cluster.status.failover;
  const unserved =
    ev !== undefined &&
    ev.newPrimary?.dbUid === master.uid &&
    ev.oldPrimary.dbUid !== master.uid &&
    ev.phases.proxiesRouted === undefined &&
    cd.proxy.spec.masterDbUid !== master.uid;
  if (!unserved) {
    return { primary: master, syncSet: failoverSyncSet(master), unserved: false };
  }
  const old = ev.oldPrimary;
  const primary: DB = {
    ...master,
    uid: old.dbUid,
    status: { ...master.status, timelineID: old.timelineID ?? master.status.timelineID, xLogPos: old.xLogPos },
  };
  const syncSet = old.synchronousStandbys !== undefined ? new Set(old.synchronousStandbys) : failoverSyncSet(master);
  return { primary, syncSet, unserved: true };
}

/**
 * The primary is not OK: fence proxies, stop the old primary if its keeper is reachable, then
 * promote the best candidate.
 * @returns true while waiting for live proxies to acknowledge the fence or for the old primary to stop.
 */
function failover(
  cd: ClusterData,
  spec: ResolvedSpec,
  input: DecideInput,
  master: DB | undefined,
  dbHealthy: DbHealth,
  convergence: ConvergenceFn,
  reasons: string[],
): boolean {
  const who = master === undefined ? 'missing' : `${master.spec.keeperUID} (db ${master.uid})`;
  if (cd.proxy.spec.masterDbUid !== '') {
    cd.proxy.spec.masterDbUid = '';
    cd.proxy.generation += 1;
    cd.proxy.changeTime = input.wallTime;
    reasons.push(`primary ${who} failed: fencing proxies with proxy generation ${cd.proxy.generation}`);
  }
  if (master === undefined) {
    reasons.push('no primary db and none can be chosen safely; manual intervention needed');
    return false;
  }
  const behind = proxiesBehind(cd, input.proxyInfos);
  if (behind.length > 0) {
    reasons.push(
      `primary ${who} failed: waiting for proxies ${behind.join(', ')} to acknowledge fence generation ${cd.proxy.generation} before promoting`,
    );
    return true;
  }
  traceFenced(cd, input.wallTime);
  const choice = chooseCandidate(cd, spec, master, dbHealthy, reasons);
  if (choice === undefined) {
    adoptFreeKeepers(cd, spec, input, master, reasons);
    if (master.spec.shutdownForSwitchover === true && cd.cluster.status.failover?.kind !== 'switchover') {
      // Told to shut down for a promotion that can no longer happen: it may run again.
      delete master.spec.shutdownForSwitchover;
      reasons.push(`no standby can replace primary ${who} now: it may run again`);
    }
    return false;
  }
  if (stopOldPrimary(cd, spec, input, master, convergence, reasons)) {
    return true;
  }
  promote(cd, spec, input, master, choice, reasons);
  return false;
}

/**
 * The last resort when the standby a failover chose failed before its promotion completed and no
 * standby can replace it: live keepers that hold no DB but still have a data directory of this
 * cluster (an old primary, an earlier failed choice, a standby whose DB was removed) get their DB
 * back, under the uid their data carries, as a standby of the failed choice with initMode none.
 * Their keepers start PostgreSQL in recovery on the data they have (no clone, read-only, whether or
 * not the upstream answers) and report its timeline and position; from the next pass they are
 * candidates like any standby, compared with the old primary's timeline and last LSN (and, with
 * synchronous replication, eligible only if the DB is in the old primary's known-in-sync set). So a
 * failover is never stuck while a keeper with data as recent as any lives. A keeper that cannot be
 * primary (`canBeMaster` false) or whose data belongs to another system is left alone.
 */
function adoptFreeKeepers(cd: ClusterData, spec: ResolvedSpec, input: DecideInput, master: DB, reasons: string[]): void {
  if (!failoverReference(cd, master).unserved) {
    return;
  }
  const held = new Set(Object.values(cd.dbs).map((d) => d.spec.keeperUID));
  for (const keeper of Object.values(cd.keepers)) {
    const st = input.keeperInfos[keeper.uid]?.postgresState;
    if (
      held.has(keeper.uid) ||
      keeper.status.healthy !== true ||
      keeper.status.canBeMaster === false ||
      input.keeperInfos[keeper.uid]?.clusterUID !== cd.cluster.uid ||
      st === undefined ||
      st.uid === '' ||
      cd.dbs[st.uid] !== undefined ||
      st.systemID === '' ||
      (master.status.systemdID !== '' && st.systemID !== master.status.systemdID)
    ) {
      continue;
    }
    const db = newDb(st.uid, keeper.uid, 'none', 'standby', master.uid, spec, input.wallTime);
    db.generation = st.generation + 1;
    cd.dbs[db.uid] = db;
    reasons.push(
      `keeper ${keeper.uid} holds no db but has data of db ${st.uid} (timeline ${st.timelineID}): ` +
        `giving it back as a standby so that it can replace the failed choice ${master.spec.keeperUID} (db ${master.uid}) if its data is recent enough`,
    );
  }
}

/** The candidate a failover promotes, with what it was compared with. */
interface Choice {
  readonly best: Candidate;
  readonly ref: FailoverReference;
  readonly count: number;
}

/** The most advanced eligible standby to replace the failed `master`, or undefined (and why, in reasons). */
function chooseCandidate(cd: ClusterData, spec: ResolvedSpec, master: DB, dbHealthy: DbHealth, reasons: string[]): Choice | undefined {
  const who = `${master.spec.keeperUID} (db ${master.uid})`;
  const ref = failoverReference(cd, master);
  // A standby follows the failed primary, or (unserved choice) still the primary it replaced (whose
  // DB may be back as a standby, see adoptFreeKeepers) or another DB that is gone.
  const follows = (d: DB): boolean => {
    const f = d.spec.followConfig?.dbuid;
    return f === master.uid || (ref.unserved && f !== undefined && (f === ref.primary.uid || cd.dbs[f] === undefined));
  };
  const candidates: Candidate[] = Object.values(cd.dbs)
    .filter((d) => d.uid !== master.uid && follows(d))
    .map((db) => {
      const k = cd.keepers[db.spec.keeperUID];
      return { db, canBeMaster: k?.status.canBeMaster !== false, priority: k?.status.priority ?? 0 };
    });
  // A candidate must be up now: failInterval's grace keeps a primary from being failed for a
  // blip; it must not make a standby whose postgres is down right now the promotion target.
  const upNow = (db: DB): boolean => db.status.healthy && dbHealthy(db);
  // Synchronous replication: only a standby known to have every acknowledged commit may win.
  const { syncSet, primary: refDb } = ref;
  const best = findBestCandidates(candidates, refDb, { isHealthy: upNow, maxStandbyLag: spec.maxStandbyLag, syncSet })[0];
  if (best === undefined) {
    const why = candidates
      .map(
        (c) =>
          `${c.db.spec.keeperUID}: ${ineligibility(c, refDb, { healthy: upNow(c.db), maxStandbyLag: spec.maxStandbyLag, syncSet }) ?? 'eligible'}`,
      )
      .join('; ');
    const sync =
      syncSet === undefined
        ? ''
        : `; synchronous replication is on and only a standby known to be in sync may be promoted (known in sync: [${[...syncSet].sort().join(', ')}])`;
    reasons.push(`primary ${who} failed: no eligible standby to promote${why === '' ? '' : ` (${why})`}${sync}`);
    traceNoCandidate(cd, `no eligible standby${why === '' ? '' : `: ${why}`}`);
    return undefined;
  }
  return { best, ref, count: candidates.length };
}

/** Promotes the chosen standby in place of the failed `master`. */
function promote(cd: ClusterData, spec: ResolvedSpec, input: DecideInput, master: DB, choice: Choice, reasons: string[]): void {
  const who = `${master.spec.keeperUID} (db ${master.uid})`;
  const { best, ref } = choice;
  const { syncSet, primary: refDb } = ref;
  const w = best.db;
  const ev = cd.cluster.status.failover;
  if (ev !== undefined && !ref.unserved) {
    // What a later choice is compared with if this one fails before its promotion completes.
    ev.oldPrimary.timelineID = master.status.timelineID;
    if (syncSet !== undefined) {
      ev.oldPrimary.synchronousStandbys = [...syncSet].sort();
    }
  }
  const earlier = ref.unserved && ev !== undefined ? `${ev.choice ?? ''}; keeper ${who} failed before its promotion completed; then ` : '';
  // The old primary's DB goes at once (and so does a chosen standby that failed before its
  // promotion completed): its keeper, if it comes back, then has no DB and keeps PostgreSQL
  // stopped until it is given a fresh standby DB. Stolon keeps it as role master until the new
  // primary converged, which lets a returning old keeper start a second writable primary.
  delete cd.dbs[master.uid];
  cd.cluster.status.master = w.uid;
  makeMasterType(w, spec);
  reasons.push(...failoverSynchronousStandbys(cd, w, master, spec));
  // The other standbys follow the new primary in this same write (as a cascade until it is
  // promoted; PostgreSQL's walreceiver follows the timeline switch), so they stream from it as soon
  // as it is primary, instead of after the next passes saw it converged: with synchronous
  // replication its commits wait for them. A standby forked off its history is removed once it
  // converged (removeDivergedDbs), as before.
  for (const d of Object.values(cd.dbs)) {
    if (d.uid !== w.uid && !isMasterType(d)) {
      d.spec.followConfig = { type: 'internal', dbuid: w.uid };
    }
  }
  traceChosen(
    cd,
    w,
    `${earlier}most advanced eligible standby: LSN ${w.status.xLogPos} (old primary's last ${refDb.status.xLogPos}), priority ${best.priority ?? 0}, of ${choice.count} standby(s)`,
    input.wallTime,
  );
  reasons.push(
    `primary ${who} failed${ref.unserved ? ' before its promotion completed' : ''}: promoting keeper ${w.spec.keeperUID} (db ${w.uid}, LSN ${w.status.xLogPos}, ` +
      `primary's last LSN ${refDb.status.xLogPos})`,
  );
}

/** Copies cluster-wide settings into every DB spec, recomputes followers, bumps generations. */
function finishDbSpecs(cd: ClusterData, prev: ClusterData, spec: ResolvedSpec, wallTime: string): void {
  const masterUid = cd.cluster.status.master;
  for (const db of Object.values(cd.dbs)) {
    db.spec.requestTimeout = formatDurationMs(spec.requestTimeoutMs);
    db.spec.maxStandbys = spec.maxStandbys;
    db.spec.usePgrewind = spec.usePgrewind;
    db.spec.additionalWalSenders = spec.additionalWalSenders;
    db.spec.pgParameters = { ...spec.pgParameters };
    db.spec.pgHBA = spec.pgHBA === null ? null : [...spec.pgHBA];
    db.spec.suReplAccessMode = spec.defaultSUReplAccessMode;
    db.spec.suAllowedCIDRs = [...spec.suAllowedCIDRs];
    db.spec.automaticPgRestart = spec.automaticPgRestart;
    if (db.spec.initMode !== 'pitr') {
      delete db.spec.pitrConfig;
    }
    db.spec.additionalReplicationSlots =
      db.uid === masterUid && spec.additionalMasterReplicationSlots !== null
        ? [...spec.additionalMasterReplicationSlots]
        : null;
  }
  const master = cd.dbs[masterUid];
  if (master !== undefined) {
    master.spec.followers = Object.values(cd.dbs)
      .filter((d) => d.spec.followConfig?.type === 'internal' && d.spec.followConfig.dbuid === masterUid)
      .map((d) => d.uid)
      .sort();
  }
  for (const db of Object.values(cd.dbs)) {
    const before = prev.dbs[db.uid];
    if (before !== undefined && JSON.stringify(before.spec) !== JSON.stringify(db.spec)) {
      db.generation = before.generation + 1;
      db.changeTime = wallTime;
    }
  }
}
