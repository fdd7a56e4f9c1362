/**
 * Planned switchover (Stolon has none; Patroni and CloudNativePG do), as a sequence of steps the
 * leader sentinel takes one pass at a time, each only after the previous one converged
 * (docs/design.md#one-step-at-a-time):
 *   1. request accepted, target chosen → proxies fenced (new proxy generation);
 *   2. every live proxy acknowledged → the primary is told to shut down cleanly
 *      (`shutdownForSwitchover`): a clean shutdown makes PostgreSQL's walsenders send every WAL
 *      record, up to the shutdown checkpoint, to the connected standbys before it exits;
 *   3. the primary is down and the target has received past its final LSN → the target is
 *      promoted, and the old primary's DB becomes its standby (same DB, no clone: its WAL ends
 *      exactly where the new timeline starts);
 *   4. the new primary converged → proxies routed to it (the normal path in decide).
 * Nothing acknowledged is lost, even without synchronous replication.
 * A switchover that cannot reach step 3 ends: when the old primary's keeper is lost it becomes
 * an ordinary failover (recorded as `aborted`, its choice ending with
 * {@link SWITCHOVER_BECAME_FAILOVER}); past `switchoverTimeout` (or when the target fails) it is
 * aborted and the old primary resumes.
 * The trace is the same FailoverEvent as a failover's, `kind: 'switchover'`.
 */
import { compareFailoverCandidates, ineligibility, type Candidate } from './candidates.js';
import { formatDurationMs } from './duration.js';
import { failoverSyncSet, inheritSynchronousStandbys } from './sync.js';
import type { ClusterData, DB, FailoverEvent, KeeperInfo, ResolvedSpec, SwitchoverRequest } from './types.js';

/** What the switchover step needs from decide. */
export interface SwitchoverContext {
  readonly cd: ClusterData;
  readonly spec: ResolvedSpec;
  readonly master: DB;
  readonly keeperInfos: Readonly<Record<string, KeeperInfo>>;
  /** Live proxies still enforcing an older generation than clusterdata's. */
  readonly proxiesBehind: () => string[];
  readonly dbHealthy: (db: DB) => boolean;
  readonly converged: (db: DB) => boolean;
  /** Whether the keeper's info is live and it is not failed by `stolonctl failkeeper`. */
  readonly keeperLive: (keeperUid: string) => boolean;
  /** Monotonic ms since the leader sentinel first saw this switchover (restarts on a leader change). */
  readonly elapsedMs: number;
  readonly wallTime: string;
  readonly reasons: string[];
}

/**
 * Result: `handled` means decide must not take its normal steps this pass; `aborted`, the
 * switchover ended and the old primary resumes (decide gives it failInterval to restart);
 * `failover`, it ended because the old primary was lost and the failover rules take over.
 */
export type SwitchoverOutcome = 'none' | 'handled' | 'aborted' | 'failover';

/** The end of the `choice` of a switchover that ended because its old primary was lost. */
export const SWITCHOVER_BECAME_FAILOVER = 'continuing as a failover';

/**
 * How late a scheduled switchover (`SwitchoverRequest.scheduledAt`) may still start, ms: one
 * found later than this past its time (no leader sentinel, or no healthy, converged primary until
 * then) is dropped and recorded as aborted instead: a switchover planned for a quiet hour must not
 * happen hours later at a busy one. Patroni starts an overdue scheduled switchover whatever its
 * delay; we bound it.
 */
export const SCHEDULED_SWITCHOVER_MAX_LATE_MS = 5 * 60_000;

/**
 * Where a switchover request stands against its schedule at `nowMs` (epoch ms): `start` (no
 * schedule, or due), `wait` (before `scheduledAt`), or `expired` (more than
 * {@link SCHEDULED_SWITCHOVER_MAX_LATE_MS} past it). An unparseable `scheduledAt` counts as
 * expired (stolonctl writes only valid RFC 3339 times).
 */
export function scheduleState(req: Pick<SwitchoverRequest, 'scheduledAt'>, nowMs: number): 'start' | 'wait' | 'expired' {
  if (req.scheduledAt === undefined) {
    return 'start';
  }
  const at = Date.parse(req.scheduledAt);
  if (!Number.isFinite(at) || nowMs > at + SCHEDULED_SWITCHOVER_MAX_LATE_MS) {
    return 'expired';
  }
  return nowMs < at ? 'wait' : 'start';
}

/**
 * Drops an expired scheduled switchover request, recording it as an aborted switchover in the
 * history (so `stolonctl events` shows it did not happen, and why). @returns the reason line.
 */
export function dropExpiredSchedule(cd: ClusterData, master: DB | undefined, wallTime: string): string {
  const req = cd.cluster.status.switchoverRequest;
  delete cd.cluster.status.switchoverRequest;
  const why =
    `scheduled switchover for ${req?.scheduledAt ?? '?'} not started: more than ${formatDurationMs(SCHEDULED_SWITCHOVER_MAX_LATE_MS)} late ` +
    '(no leader sentinel or no healthy, converged primary until now); schedule it again';
  if (master !== undefined) {
    const ev: FailoverEvent = {
      id: `${master.uid}-${Date.parse(wallTime).toString(36)}`,
      kind: 'switchover',
      cause: `requested with stolonctl switchover --at ${req?.scheduledAt ?? '?'} at ${req?.requestedAt ?? '?'}`,
      oldPrimary: { keeperUID: master.spec.keeperUID, dbUid: master.uid, xLogPos: master.status.xLogPos },
      choice: `aborted: ${why}`,
      phases: { declaredFailed: wallTime },
      result: 'aborted',
    };
    cd.failoverHistory = [...(cd.failoverHistory ?? []), ev].slice(-20);
  }
  return why;
}

function candidateOf(cd: ClusterData, db: DB): Candidate {
  const k = cd.keepers[db.spec.keeperUID];
  return { db, canBeMaster: k?.status.canBeMaster !== false, priority: k?.status.priority ?? 0 };
}

/** Standbys following the primary that could take over now, best first. */
function eligible(ctx: SwitchoverContext): Candidate[] {
  const { cd, master, spec } = ctx;
  return Object.values(cd.dbs)
    .filter((d) => d.uid !== master.uid && d.spec.followConfig?.type === 'internal' && d.spec.followConfig.dbuid === master.uid)
    .map((d) => candidateOf(cd, d))
    .filter((c) => ineligibility(c, master, { healthy: c.db.status.healthy && ctx.dbHealthy(c.db), maxStandbyLag: spec.maxStandbyLag }) === undefined)
    .sort(compareFailoverCandidates);
}

function abort(ctx: SwitchoverContext, ev: FailoverEvent, why: string): SwitchoverOutcome {
  const { cd, master } = ctx;
  delete master.spec.shutdownForSwitchover;
  ev.result = 'aborted';
  ev.choice = `${ev.choice ?? ''}${ev.choice ? '; ' : ''}aborted: ${why}`;
  ev.phases.proxiesRouted = ctx.wallTime;
  cd.failoverHistory = [...(cd.failoverHistory ?? []), ev].slice(-20);
  delete cd.cluster.status.failover;
  ctx.reasons.push(`switchover aborted: ${why}; primary ${master.spec.keeperUID} (db ${master.uid}) stays primary`);
  // The proxies are re-routed to the (restarted) primary by the normal path.
  return 'aborted';
}

/** The old primary was lost before the promotion: end the switchover; decide fails it over. */
function becomeFailover(ctx: SwitchoverContext, ev: FailoverEvent, why: string): SwitchoverOutcome {
  const { cd } = ctx;
  ev.result = 'aborted';
  ev.choice = `${ev.choice ?? ''}${ev.choice ? '; ' : ''}aborted: ${why}; ${SWITCHOVER_BECAME_FAILOVER}`;
  cd.failoverHistory = [...(cd.failoverHistory ?? []), ev].slice(-20);
  delete cd.cluster.status.failover;
  ctx.reasons.push(`switchover aborted: ${why}; ${SWITCHOVER_BECAME_FAILOVER} (the failover rules choose the new primary)`);
  return 'failover';
}

/**
 * One switchover step. Call at the start of the normal phase while the primary is healthy (or
 * while a switchover is in progress, whatever its health).
 */
export function switchoverStep(ctx: SwitchoverContext): SwitchoverOutcome {
  const { cd, master, wallTime, reasons } = ctx;
  const req = cd.cluster.status.switchoverRequest;
  let ev = cd.cluster.status.failover;

  if (ev === undefined && req !== undefined) {
    delete cd.cluster.status.switchoverRequest;
    const candidates = eligible(ctx);
    let target: Candidate | undefined;
    if (req.targetKeeperUID !== undefined) {
      const db = Object.values(cd.dbs).find((d) => d.spec.keeperUID === req.targetKeeperUID);
      if (db === undefined || db.uid === master.uid) {
        reasons.push(`switchover refused: keeper ${req.targetKeeperUID} holds no standby db`);
        return 'none';
      }
      const c = candidateOf(cd, db);
      const why = ineligibility(c, master, { healthy: db.status.healthy && ctx.dbHealthy(db), maxStandbyLag: ctx.spec.maxStandbyLag });
      if (why !== undefined) {
        reasons.push(`switchover refused: keeper ${req.targetKeeperUID} cannot be promoted now: ${why}`);
        return 'none';
      }
      target = c;
    } else {
      target = candidates[0];
      if (target === undefined) {
        reasons.push('switchover refused: no healthy, caught-up standby to promote');
        return 'none';
      }
    }
    ev = {
      id: `${master.uid}-${Date.parse(wallTime).toString(36)}`,
      kind: 'switchover',
      cause:
        `requested ${req.requestedBy !== undefined ? `by ${req.requestedBy}` : 'with stolonctl switchover'} at ${req.requestedAt}` +
        (req.scheduledAt !== undefined ? `, scheduled for ${req.scheduledAt}` : ''),
      oldPrimary: { keeperUID: master.spec.keeperUID, dbUid: master.uid, xLogPos: master.status.xLogPos },
      newPrimary: { keeperUID: target.db.spec.keeperUID, dbUid: target.db.uid, xLogPos: target.db.status.xLogPos },
      choice:
        req.targetKeeperUID !== undefined
          ? `keeper ${req.targetKeeperUID} as requested`
          : `most advanced eligible standby (LSN ${target.db.status.xLogPos}, priority ${target.priority ?? 0})`,
      phases: { declaredFailed: wallTime, primaryLastSeen: wallTime, candidateChosen: wallTime },
    };
    cd.cluster.status.failover = ev;
    cd.proxy.spec.masterDbUid = '';
    cd.proxy.generation += 1;
    cd.proxy.changeTime = wallTime;
    reasons.push(
      `switchover to keeper ${target.db.spec.keeperUID} (db ${target.db.uid}): fencing proxies with proxy generation ${cd.proxy.generation}`,
    );
    return 'handled';
  }
  if (ev?.kind !== 'switchover') {
    return 'none';
  }
  if (ev.newPrimary === undefined) {
    return abort(ctx, ev, 'no target recorded');
  }
  const targetUid = ev.newPrimary.dbUid;

  if (cd.cluster.status.master === targetUid) {
    // Promotion ordered; the normal path routes proxies once the target converged.
    return 'none';
  }
  if (!ctx.keeperLive(master.spec.keeperUID)) {
    return becomeFailover(ctx, ev, `keeper ${master.spec.keeperUID} of the old primary was lost before the promotion`);
  }
  if (ctx.elapsedMs > ctx.spec.switchoverTimeoutMs) {
    return abort(ctx, ev, `switchoverTimeout ${formatDurationMs(ctx.spec.switchoverTimeoutMs)} passed before the target could be promoted`);
  }
  const target = cd.dbs[targetUid];
  if (target === undefined || !(target.status.healthy && ctx.dbHealthy(target))) {
    return abort(ctx, ev, `target db ${targetUid} is gone or unhealthy`);
  }

  // Step 1 → 2: wait for every live proxy to enforce the fence.
  const behind = ctx.proxiesBehind();
  if (behind.length > 0) {
    reasons.push(`switchover: waiting for proxies ${behind.join(', ')} to acknowledge fence generation ${cd.proxy.generation}`);
    return 'handled';
  }
  if (ev.phases.proxiesFenced === undefined) {
    ev.phases.proxiesFenced = wallTime;
  }
  // Step 2: shut the primary down cleanly.
  if (master.spec.shutdownForSwitchover !== true) {
    master.spec.shutdownForSwitchover = true;
    reasons.push(`switchover: proxies fenced; shutting down primary ${master.spec.keeperUID} (db ${master.uid}) cleanly`);
    return 'handled';
  }
  const state = ctx.keeperInfos[master.spec.keeperUID]?.postgresState;
  const stopped = state !== undefined && state.uid === master.uid && state.running === false && ctx.converged(master);
  if (!stopped) {
    reasons.push(`switchover: waiting for primary ${master.spec.keeperUID} to shut down`);
    return 'handled';
  }
  if (state.cleanShutdown === false) {
    // It crashed instead: its reported LSN is its last checkpoint, not the end of its WAL, so no
    // target can be shown to have everything it acknowledged. It restarts (crash recovery) and
    // stays the primary.
    return abort(ctx, ev, `primary ${master.spec.keeperUID} stopped without a clean shutdown (crashed), so its final LSN is unknown`);
  }
  // Step 3: the target must have received everything the primary wrote (its shutdown checkpoint).
  const finalLsn = state.xLogPos;
  if (!(target.status.xLogPos > finalLsn)) {
    reasons.push(
      `switchover: waiting for keeper ${target.spec.keeperUID} to receive the primary's final WAL (at ${target.status.xLogPos}, primary ended at ${finalLsn})`,
    );
    return 'handled';
  }
  ev.oldPrimary.xLogPos = finalLsn;
  ev.newPrimary.xLogPos = target.status.xLogPos;
  // Should the target fail before its promotion completes, the old primary (now its standby, with
  // every WAL record up to its shutdown checkpoint) may take its place, as may its known
  // synchronous standbys (see decide's failover of an unserved choice).
  ev.oldPrimary.timelineID = master.status.timelineID;
  const syncSet = failoverSyncSet(master);
  if (syncSet !== undefined) {
    ev.oldPrimary.synchronousStandbys = [...new Set([...syncSet, master.uid])].sort();
  }
  delete master.spec.shutdownForSwitchover;
  // The old primary becomes a standby of the new one, same DB: no clone, no rewind.
  master.spec.role = 'standby';
  master.spec.followConfig = { type: 'internal', dbuid: target.uid };
  master.spec.followers = [];
  target.spec.role = 'master';
  target.spec.followConfig = null;
  // With synchronous replication the new primary waits for the old one (now its standby) at once,
  // as after a failover; the old primary's own sync settings go.
  reasons.push(...inheritSynchronousStandbys(target, master, ctx.spec));
  master.spec.synchronousReplication = false;
  master.spec.synchronousStandbys = [];
  master.spec.externalSynchronousStandbys = [];
  cd.cluster.status.master = target.uid;
  reasons.push(
    `switchover: primary stopped at LSN ${finalLsn}, keeper ${target.spec.keeperUID} received up to ${target.status.xLogPos}: promoting it; ` +
      `keeper ${master.spec.keeperUID} will follow it`,
  );
  return 'handled';
}
