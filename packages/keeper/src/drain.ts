/**
 * Drain on stop (`--shutdown-switchover-timeout`): a keeper asked to stop (SIGTERM: a node drain,
 * a rolling update) while it runs the primary first hands the primary over with a planned
 * switchover, as CloudNativePG does on a drain, so the stop costs a switchover (a fraction of a
 * second of write pause, nothing acknowledged lost) rather than a failover (failInterval of
 * outage). Keepers cannot write clusterdata (docs/security.md), so the keeper asks in its info
 * (`switchoverRequestedAt`) and the leader sentinel makes the request (decide.ts). The keeper
 * keeps running its passes meanwhile (it must shut PostgreSQL down cleanly when told, and keep
 * publishing so it is not failed), and waits, bounded, until clusterdata names another primary.
 * Whatever happens the wait ends by the bound; then the keeper stops as without a drain.
 */
import { nowIso } from '@stolon-ts/common';
import { parseClusterData, type ClusterData, type DB } from '@stolon-ts/cluster';
import type { KeeperRuntime } from './runtime.js';

/** How often the wait reads clusterdata, in ms. */
const DRAIN_POLL_MS = 200;

/**
 * Why a switchover cannot take the primary away from this keeper now according to `cd` (the last
 * clusterdata it read), or undefined when one can: a standby following this keeper's DB, healthy
 * in clusterdata, on a healthy keeper that may become primary. The leader sentinel decides the
 * rest (how far behind the standby may be, among others) and may still refuse.
 */
export function drainBlocker(cd: ClusterData | undefined, mine: DB | undefined): string | undefined {
  if (cd === undefined || mine === undefined) {
    return 'no clusterdata read yet';
  }
  if (cd.cluster.spec.paused === true) {
    return 'the cluster is paused (the sentinel makes no switchover)';
  }
  if ((cd.cluster.spec.role ?? 'master') !== 'master') {
    return 'a standby cluster has no switchover';
  }
  if (cd.cluster.status.failover !== undefined) {
    return `a ${cd.cluster.status.failover.kind} is already in progress`;
  }
  const ok = Object.values(cd.dbs).some(
    (d) =>
      d.uid !== mine.uid &&
      d.spec.followConfig?.type === 'internal' &&
      d.spec.followConfig.dbuid === mine.uid &&
      d.status.healthy &&
      cd.keepers[d.spec.keeperUID]?.status.healthy === true &&
      cd.keepers[d.spec.keeperUID]?.status.canBeMaster !== false,
  );
  return ok ? undefined : 'no healthy standby that may become primary follows this primary in clusterdata';
}

/** What {@link drainPrimary} ended with (for the log and the tests). */
export type DrainOutcome = 'not-primary' | 'disabled' | 'blocked' | 'switched-over' | 'aborted' | 'store-unreachable' | 'timed-out' | 'stopped-by-failover';

/** Resolves with `p`'s value, or with undefined after `ms` (the promise is left to settle alone). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), Math.max(0, ms))))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * When this keeper runs the primary and a standby could take over, asks for a switchover and
 * waits until clusterdata names another primary (then its PostgreSQL was shut down for the
 * switchover, or told to stop by a failover), the sentinel ended the switchover without it, the
 * store stops answering, or `timeoutMs` passed. Logs the outcome and why (warn when the stop
 * goes on without a switchover). The keeper's passes must keep running meanwhile.
 * @param timeoutMs the bound of the whole wait, in ms; 0 (or less) disables the drain
 * @returns the outcome; never throws, never waits past `timeoutMs` (plus one poll of at most
 *   {@link DRAIN_POLL_MS})
 */
export async function drainPrimary(rt: KeeperRuntime, timeoutMs: number): Promise<DrainOutcome> {
  const { log } = rt;
  if (!rt.isPrimary) {
    return 'not-primary';
  }
  if (timeoutMs <= 0) {
    log.info('stopping the primary without a switchover: --shutdown-switchover-timeout is 0');
    return 'disabled';
  }
  const deadline = performance.now() + timeoutMs;
  const left = () => deadline - performance.now();
  /** The stored clusterdata; undefined when the store fails, does not answer in time, or the document is unusable. */
  const read = async (): Promise<ClusterData | undefined> => {
    const rec = await within(
      rt.store.getClusterData().catch(() => null),
      left(),
    );
    try {
      return rec === undefined || rec === null ? undefined : parseClusterData(rec.text);
    } catch {
      return undefined;
    }
  };
  const cd = await read();
  if (cd === undefined) {
    log.warn('stopping the primary without a switchover: the store does not answer, or its clusterdata is unusable (the sentinel fails over)');
    return 'store-unreachable';
  }
  const myDb = rt.local.uid;
  const blocker = drainBlocker(cd, cd.dbs[myDb]);
  if (blocker !== undefined) {
    log.warn({ reason: blocker }, `stopping the primary without a switchover: ${blocker}`);
    return 'blocked';
  }
  const at = nowIso();
  rt.switchoverRequestedAt = at;
  const cause = `requested by keeper ${rt.config.uid}, stopping at ${at}`;
  log.info({ timeoutMs }, `asking for a switchover before stopping (waiting up to ${Math.round(timeoutMs / 1000)} s)`);
  rt.trigger('switchover requested on stop');
  for (;;) {
    await new Promise((r) => setTimeout(r, Math.min(DRAIN_POLL_MS, Math.max(0, left()))));
    if (left() <= 0) {
      log.warn({ timeoutMs }, `stopping the primary without a switchover: none happened within --shutdown-switchover-timeout (${Math.round(timeoutMs / 1000)} s)`);
      return 'timed-out';
    }
    const now = await read();
    if (now === undefined) {
      if (left() <= 0) {
        continue;
      }
      log.warn('stopping the primary without a switchover: the store stopped answering (or its clusterdata became unusable) while waiting for it');
      return 'store-unreachable';
    }
    const master = now.dbs[now.cluster.status.master];
    if (now.cluster.status.master !== myDb && master !== undefined) {
      const sw = now.failoverHistory?.some((e) => e.kind === 'switchover' && e.cause === cause) === true || now.cluster.status.failover?.cause === cause;
      if (sw) {
        log.info({ newPrimary: master.spec.keeperUID }, `switched over to keeper ${master.spec.keeperUID}; stopping`);
        return 'switched-over';
      }
      log.warn({ newPrimary: master.spec.keeperUID }, `keeper ${master.spec.keeperUID} became primary by a failover, not by this keeper's switchover; stopping`);
      return 'stopped-by-failover';
    }
    const ended = now.failoverHistory?.find((e) => e.kind === 'switchover' && e.cause === cause && e.result === 'aborted');
    if (ended !== undefined) {
      log.warn({ choice: ended.choice }, `stopping the primary without a switchover: the sentinel aborted it (${ended.choice ?? 'no reason recorded'})`);
      return 'aborted';
    }
  }
}
