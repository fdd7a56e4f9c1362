/**
 * The switchover target's part of the final-WAL hand-off. In a planned switchover the sentinel
 * promotes the target only once the old primary's keeper reported a clean shutdown at its final
 * LSN and the target's keeper reported a received position past it (cluster's switchover.ts,
 * step 3). The target's keeper used to report that position only at its next pass, which waited
 * for the sentinel's next clusterdata write (or the sleepInterval timer): one more round trip
 * through the store on the path of the write outage. Instead, while the old primary is being
 * shut down, the target's keeper watches its WAL receiver and runs a pass — which publishes its
 * received position — as soon as streaming ends: a walsender of a cleanly shutting-down primary
 * exits only once the standby confirmed it flushed every WAL record up to the shutdown
 * checkpoint. The decision stays the sentinel's; this only makes the report it waits for early.
 *
 * The old primary's part: as soon as its keeper sees the switchover start (the sentinel fences
 * the proxies first, then orders the shutdown), it runs a `CHECKPOINT` in the background, as
 * Patroni does before demoting, so that the shutdown checkpoint, on the path of the write outage,
 * has little left to write.
 */
import { errorMessage, type ClusterData } from '@stolon-ts/cluster';
import type { KeeperRuntime } from './runtime.js';

/**
 * Whether this keeper is the target of the switchover in progress and the sentinel has told the
 * old primary to shut down (`shutdownForSwitchover`), so the sentinel waits for this keeper's
 * report of the primary's final WAL: the switchover (`cluster.status.failover`, kind `switchover`,
 * no result yet) names `dbUid` of `keeperUid` as its new primary, and `dbUid` is not the primary
 * yet. Pure.
 * @param cd the clusterdata last read
 * @param keeperUid this keeper's uid
 * @param dbUid the uid of the DB this keeper holds ('' for none)
 */
export function awaitsFinalWal(cd: ClusterData | undefined, keeperUid: string, dbUid: string): boolean {
  const ev = cd?.cluster.status.failover;
  if (cd === undefined || dbUid === '' || ev?.kind !== 'switchover' || ev.result !== undefined) {
    return false;
  }
  if (ev.newPrimary?.keeperUID !== keeperUid || ev.newPrimary.dbUid !== dbUid) {
    return false;
  }
  const master = cd.dbs[cd.cluster.status.master];
  return master !== undefined && master.uid !== dbUid && master.spec.shutdownForSwitchover === true && cd.dbs[dbUid]?.spec.role === 'standby';
}

/** The watch in progress (one per runtime). */
const watching = new WeakSet<KeeperRuntime>();
/** The switchover (event id) each runtime's watch last fired for: one early pass per switchover. */
const firedFor = new WeakMap<KeeperRuntime, string>();

/**
 * Starts, unless one runs, a background wait for the end of streaming while
 * {@link awaitsFinalWal} holds for the clusterdata this keeper last read (`rt.lastCd`), bounded
 * by the spec's switchoverTimeout; when streaming ends it triggers a pass, which publishes the
 * received position (once per switchover: a receiver that does not stream when the watch starts
 * ends it at once). Never throws (a failed wait is logged at debug level: the next pass
 * publishes anyway).
 */
export function watchFinalWal(rt: KeeperRuntime): void {
  const still = (): boolean => awaitsFinalWal(rt.lastCd, rt.config.uid, rt.local.uid);
  const id = rt.lastCd?.cluster.status.failover?.id ?? '';
  if (watching.has(rt) || firedFor.get(rt) === id || !still()) {
    return;
  }
  watching.add(rt);
  const timeoutMs = rt.spec?.switchoverTimeoutMs ?? 60_000;
  void rt.pg
    .waitStreamingEnd(timeoutMs, still)
    .then((ended) => {
      if (ended && still()) {
        firedFor.set(rt, id);
        rt.trigger('switchover: streaming from the old primary ended, reporting the WAL received');
      }
    })
    .catch((err: unknown) => rt.log.debug({ err }, `waiting for the end of streaming failed: ${errorMessage(err)}`))
    .finally(() => watching.delete(rt));
}

/**
 * Whether this keeper holds the primary a switchover in progress is about to shut down, before
 * the sentinel ordered the shutdown (the proxies are being fenced): the switchover
 * (`cluster.status.failover`, kind `switchover`, no result yet) names `dbUid` as its old primary,
 * `dbUid` is still the primary and has no `shutdownForSwitchover` yet. Pure.
 * @param cd the clusterdata last read
 * @param dbUid the uid of the DB this keeper holds ('' for none)
 */
export function switchoverStarting(cd: ClusterData | undefined, dbUid: string): boolean {
  const ev = cd?.cluster.status.failover;
  if (cd === undefined || dbUid === '' || ev?.kind !== 'switchover' || ev.result !== undefined || ev.oldPrimary.dbUid !== dbUid) {
    return false;
  }
  const db = cd.dbs[dbUid];
  return cd.cluster.status.master === dbUid && db?.spec.role === 'master' && db.spec.shutdownForSwitchover !== true;
}

/** The switchover (event id) each runtime last checkpointed for: one checkpoint per switchover. */
const checkpointedFor = new WeakMap<KeeperRuntime, string>();

/**
 * Runs a `CHECKPOINT` in the background, once per switchover, when {@link switchoverStarting}
 * holds for `cd` and PostgreSQL runs. Never throws, never waits (a failure is logged at debug
 * level: the shutdown checkpoint then simply has more to write).
 */
export function checkpointBeforeShutdown(rt: KeeperRuntime, cd: ClusterData, running: boolean): void {
  const id = cd.cluster.status.failover?.id ?? '';
  if (!running || checkpointedFor.get(rt) === id || !switchoverStarting(cd, rt.local.uid)) {
    return;
  }
  checkpointedFor.set(rt, id);
  const started = performance.now();
  void rt.pg
    .checkpoint()
    .then(() => rt.log.info({ durationMs: Math.round(performance.now() - started) }, 'switchover starting: checkpoint done before the shutdown'))
    .catch((err: unknown) => rt.log.debug({ err }, `checkpoint before the switchover's shutdown failed: ${errorMessage(err)}`));
}
