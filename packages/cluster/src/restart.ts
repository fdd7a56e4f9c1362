/**
 * Restarting PostgreSQL on purpose: which pending parameters justify a restart, when a keeper
 * acts on a restart request (`DBSpec.restartRequest`), and the order and step rules of
 * `stolonctl restart`'s rolling restart (standbys one at a time, each back and streaming before
 * the next; then the primary through a planned switchover). Pure; stolonctl and the keeper do
 * the I/O.
 */
import type { ClusterData, DB, KeeperInfo } from './types.js';

/**
 * Settings that only matter while PostgreSQL is in recovery (a standby, or a primary before its
 * promotion completes): the recovery target and standby server settings. A promoted primary's
 * config drops them, and PostgreSQL may then flag the postmaster-context ones (e.g.
 * `recovery_target_timeline`) as `pending_restart`; restarting a new primary for them would only
 * cut its first sessions off right after a failover.
 * @see https://www.postgresql.org/docs/current/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET
 * @see https://www.postgresql.org/docs/current/runtime-config-replication.html#RUNTIME-CONFIG-REPLICATION-STANDBY
 */
const RECOVERY_ONLY_SETTINGS: ReadonlySet<string> = new Set([
  'primary_conninfo',
  'primary_slot_name',
  'promote_trigger_file',
  'recovery_min_apply_delay',
  'restore_command',
  'archive_cleanup_command',
  'recovery_end_command',
  'recovery_target',
  'recovery_target_action',
  'recovery_target_inclusive',
  'recovery_target_lsn',
  'recovery_target_name',
  'recovery_target_time',
  'recovery_target_timeline',
  'recovery_target_xid',
]);

/**
 * Which of PostgreSQL's `pending_restart` settings justify a restart (`automaticPgRestart`,
 * `stolonctl restart --pending-only`): all of them on a standby; on a primary, not the
 * {@link RECOVERY_ONLY_SETTINGS}. @returns the setting names, in the given order.
 */
export function restartWorthy(pendingRestart: readonly string[], isPrimary: boolean): string[] {
  return isPrimary ? pendingRestart.filter((p) => !RECOVERY_ONLY_SETTINGS.has(p)) : [...pendingRestart];
}

/**
 * Whether the keeper must restart its running PostgreSQL for `db`'s restart request: one is
 * recorded and the generation the keeper last applied (`appliedGeneration`, persisted in its
 * local state) is below the request's. Once the keeper applied that generation (after the
 * restart) the request is done, also across keeper restarts.
 */
export function restartRequested(db: Pick<DB, 'spec'>, appliedGeneration: number): boolean {
  const req = db.spec.restartRequest;
  return req !== undefined && appliedGeneration < req.generation;
}

/** Options of {@link planRestart}: `stolonctl restart`'s flags. */
export interface RestartPlanOptions {
  /** `--keeper`: only this keeper's instance. */
  readonly keeper?: string;
  /** `--pending-only`: only instances whose keeper reports a parameter pending restart. */
  readonly pendingOnly?: boolean;
  /** `--in-place`: restart the primary in place (a short outage) instead of switching over first. */
  readonly inPlace?: boolean;
}

/** What {@link planRestart} decided. */
export interface RestartPlan {
  /** Keeper uids of the standbys to restart, in order, one at a time. */
  readonly standbys: readonly string[];
  /**
   * The primary's keeper when it is to be restarted: `switchover` (a planned switchover, whose
   * clean shutdown restarts it as a standby of the new primary) or `in-place`. Always last.
   */
  readonly primary?: { readonly keeperUID: string; readonly how: 'switchover' | 'in-place' };
  /** Instances left out, with why (nothing pending, no DB). */
  readonly skipped: readonly { readonly keeperUID: string; readonly why: string }[];
}

/**
 * The rolling restart's order: every standby of the primary (sorted by keeper uid), then the
 * primary. A primary is switched over rather than restarted in place unless `inPlace`, or when it
 * has no standby to switch to (then `inPlace` is required).
 * @throws Error with a sentence naming the flag or the state to fix: an unknown `--keeper`, a
 *   keeper without a DB, a cluster without a primary, a primary needing a switchover without a
 *   standby.
 */
export function planRestart(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>, opts: RestartPlanOptions): RestartPlan {
  const master = cd.dbs[cd.cluster.status.master];
  if (master === undefined) {
    throw new Error('the cluster has no primary now; see stolonctl status');
  }
  if (opts.keeper !== undefined && cd.keepers[opts.keeper] === undefined) {
    throw new Error(`--keeper: keeper ${opts.keeper} is not in the cluster (known: ${Object.keys(cd.keepers).sort().join(', ')})`);
  }
  const dbOf = new Map(Object.values(cd.dbs).map((d) => [d.spec.keeperUID, d]));
  if (opts.keeper !== undefined && dbOf.get(opts.keeper) === undefined) {
    throw new Error(`--keeper: keeper ${opts.keeper} holds no DB; there is no PostgreSQL to restart`);
  }
  const skipped: { keeperUID: string; why: string }[] = [];
  const wanted = (db: DB): boolean => {
    if (opts.keeper !== undefined && db.spec.keeperUID !== opts.keeper) {
      return false;
    }
    if (opts.pendingOnly === true) {
      const pending = restartWorthy(infos[db.spec.keeperUID]?.postgresState?.pendingRestart ?? [], db.uid === master.uid);
      if (pending.length === 0) {
        skipped.push({ keeperUID: db.spec.keeperUID, why: 'no parameter pending restart' });
        return false;
      }
    }
    return true;
  };
  const standbys = Object.values(cd.dbs)
    .filter((d) => d.uid !== master.uid)
    .sort((a, b) => (a.spec.keeperUID < b.spec.keeperUID ? -1 : a.spec.keeperUID > b.spec.keeperUID ? 1 : 0))
    .filter(wanted)
    .map((d) => d.spec.keeperUID);
  if (!wanted(master)) {
    return { standbys, skipped };
  }
  const hasStandby = Object.values(cd.dbs).some((d) => d.uid !== master.uid);
  if (opts.inPlace !== true && !hasStandby) {
    throw new Error(
      `the primary (keeper ${master.spec.keeperUID}) has no standby to switch over to; give --in-place to restart it in place (writes stop while it restarts)`,
    );
  }
  return { standbys, primary: { keeperUID: master.spec.keeperUID, how: opts.inPlace === true ? 'in-place' : 'switchover' }, skipped };
}

/**
 * Whether the instance of `db` is back after the restart asked at generation `generation`: its
 * keeper reports that DB at that generation or later, running and healthy, with a postmaster start
 * time other than `startedBefore` (when that was known), and — a standby — streaming from its
 * upstream again.
 * @returns undefined when back, else what is still missing (for the progress line and the error).
 */
export function restartPending(
  info: KeeperInfo | undefined,
  db: Pick<DB, 'uid'>,
  generation: number,
  startedBefore: string | undefined,
  standby: boolean,
): string | undefined {
  const st = info?.postgresState;
  if (st === undefined || st.uid !== db.uid) {
    return 'its keeper reports no state for the DB';
  }
  if (st.generation < generation) {
    return `its keeper has not applied generation ${generation} yet (at ${st.generation})`;
  }
  if (st.running !== true || !st.healthy) {
    return 'PostgreSQL is not running and healthy yet';
  }
  if (startedBefore !== undefined && st.startedAt === startedBefore) {
    return 'the postmaster start time did not change';
  }
  if (standby && st.streaming !== true) {
    return 'the standby is not streaming from its upstream yet';
  }
  return undefined;
}

/**
 * The keepers, other than `except`, whose PostgreSQL is not up (not running, unhealthy, or a
 * standby not streaming): the rolling restart takes no instance down while any is listed, so
 * never two are down at once. DBs without a live keeper info count as down.
 */
export function instancesDown(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>, except?: string): string[] {
  return Object.values(cd.dbs)
    .filter((d) => d.spec.keeperUID !== except)
    .filter((d) => {
      const st = infos[d.spec.keeperUID]?.postgresState;
      const standby = d.uid !== cd.cluster.status.master;
      return st === undefined || st.uid !== d.uid || st.running !== true || !st.healthy || (standby && st.streaming === false);
    })
    .map((d) => d.spec.keeperUID)
    .sort();
}
