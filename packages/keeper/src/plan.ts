/**
 * The keeper's pure planner (docs/design.md#pure-decisions): from clusterdata, the keeper's own
 * local state and what it observes of PostgreSQL, decide the one next step. The daemon executes it
 * through the PostgresManager. No I/O here; table-tested in plan.test.ts. It covers what Stolon's
 * keeper state machine does (`postgresKeeperSM` in Stolon's cmd/keeper/cmd/keeper.go): the init
 * modes, and converging to the role, followed primary and parameters of the DB spec.
 */
import type { ClusterData, DB, StandbySettingsSpec, ArchiveRecoverySettings } from '@stolon-ts/cluster';

/** What the keeper persists in `<data-dir>/dbstate` (Stolon's dbstate file, plus the cluster uid). */
export interface LocalDbState {
  /** DB uid the data directory holds ("" when none). */
  readonly uid: string;
  /** Last DB generation applied successfully. */
  readonly generation: number;
  /** Cluster uid the DB belongs to ("" for data written before this field existed). */
  readonly clusterUID?: string;
}

/** What the keeper observed of its instance this pass. */
export interface LocalObservation {
  readonly initialized: boolean;
  readonly running: boolean;
  readonly role: 'master' | 'standby' | undefined;
  /** PostgreSQL system identifier of the local data directory ("" when unknown). */
  readonly systemId?: string;
}

/** The followed primary's address, for standbys. */
export interface FollowTarget {
  readonly dbUid: string;
  readonly host: string;
  readonly port: number;
  /** The followed DB's system identifier as reported to the sentinel ("" when unknown). */
  readonly systemId: string;
}

/** What a standby of a standby cluster follows: the external primary. */
export interface ExternalFollow {
  readonly standbySettings: StandbySettingsSpec;
  readonly archiveRecoverySettings: ArchiveRecoverySettings | undefined;
}

/** One step. The daemon runs it, then re-plans on the next pass. */
export type KeeperAction =
  | { readonly kind: 'wait'; readonly reason: string }
  | { readonly kind: 'refuse'; readonly reason: string }
  | { readonly kind: 'stop-postgres'; readonly reason: string }
  | { readonly kind: 'switchover-stop'; readonly db: DB; readonly reason: string }
  | { readonly kind: 'init-new'; readonly db: DB; readonly reason: string }
  | { readonly kind: 'init-existing'; readonly db: DB; readonly reason: string }
  | { readonly kind: 'init-pitr'; readonly db: DB; readonly external: ExternalFollow | undefined; readonly reason: string }
  | {
      readonly kind: 'resync';
      readonly db: DB;
      readonly from: FollowTarget;
      /** Try pg_rewind before a full clone (usePgrewind on and the local data is the same cluster). */
      readonly tryRewind: boolean;
      /**
       * The followed primary has not reported applying the generation that lists this DB as its
       * follower, so it may not have created the DB's slot yet: the copy creates it unless it
       * is there by then.
       */
      readonly createSlot: boolean;
      readonly reason: string;
    }
  | {
      readonly kind: 'converge';
      readonly db: DB;
      readonly role: 'master' | 'standby';
      /** Set for internal standbys. */
      readonly follow: FollowTarget | undefined;
      /** Set for the primary DB of a standby cluster. */
      readonly external: ExternalFollow | undefined;
      /** Promote the running standby instance. */
      readonly promote: boolean;
      readonly reason: string;
    };

/** Finds the DB assigned to `keeperUid`, if any. */
export function assignedDb(cd: ClusterData, keeperUid: string): DB | undefined {
  return Object.values(cd.dbs).find((d) => d.spec.keeperUID === keeperUid);
}

function externalFollow(db: DB): ExternalFollow | undefined {
  const f = db.spec.followConfig;
  if (f?.type !== 'external') {
    return undefined;
  }
  return { standbySettings: f.standbySettings ?? {}, archiveRecoverySettings: f.archiveRecoverySettings };
}

function followTarget(cd: ClusterData, db: DB): FollowTarget | string {
  const followed = db.spec.followConfig?.dbuid;
  if (db.spec.followConfig?.type !== 'internal' || followed === undefined) {
    return `db ${db.uid} has no internal follow config`;
  }
  const f = cd.dbs[followed];
  if (f === undefined) {
    return `followed db ${followed} is not in clusterdata`;
  }
  const port = Number(f.status.port);
  if (f.status.listenAddress === '' || !Number.isInteger(port) || port <= 0) {
    return `followed db ${followed} has not reported its address yet`;
  }
  return { dbUid: followed, host: f.status.listenAddress, port, systemId: f.status.systemdID };
}

/**
 * Plans the keeper's next step.
 * @param cd parsed, validated clusterdata
 * @param keeperUid this keeper
 * @param bootUuid this keeper process's boot id: nothing is done to PostgreSQL until the sentinel
 *   has recorded it (Stolon: prevents acting on clusterdata written before this process started)
 */
export function planKeeperAction(
  cd: ClusterData,
  keeperUid: string,
  bootUuid: string,
  local: LocalDbState,
  obs: LocalObservation,
): KeeperAction {
  const keeper = cd.keepers[keeperUid];
  if (keeper === undefined || keeper.status.bootUUID !== bootUuid) {
    return { kind: 'wait', reason: 'waiting for the sentinel to register this keeper process' };
  }
  const db = assignedDb(cd, keeperUid);
  if (db === undefined) {
    // Without a DB this instance has no role; a former primary must not accept writes.
    return obs.running
      ? { kind: 'stop-postgres', reason: 'no db assigned to this keeper: stopping postgres' }
      : { kind: 'wait', reason: 'no db assigned to this keeper' };
  }
  // Safety: never wipe or reuse a data directory that belongs to another cluster (an operator
  // re-ran `stolonctl init`, or pointed this keeper at the wrong directory). Adopting a data
  // directory on purpose (initMode existing) is the exception.
  const localCluster = local.clusterUID ?? '';
  if (obs.initialized && localCluster !== '' && localCluster !== cd.cluster.uid && db.spec.initMode !== 'existing') {
    return {
      kind: 'refuse',
      reason:
        `refusing to touch the data directory: it holds db ${local.uid} of cluster ${localCluster}, but the store's ` +
        `cluster is ${cd.cluster.uid}. If the old data is no longer needed, move the data directory away and restart the keeper`,
    };
  }
  if (db.uid !== local.uid) {
    switch (db.spec.initMode) {
      case 'new':
        return { kind: 'init-new', db, reason: `initializing new db ${db.uid} (initdb)` };
      case 'existing':
        if (!obs.initialized) {
          return { kind: 'refuse', reason: `cannot adopt the data directory for db ${db.uid} (initMode existing): it holds no initialized PostgreSQL cluster` };
        }
        return { kind: 'init-existing', db, reason: `adopting the existing data directory as db ${db.uid}` };
      case 'pitr':
        return {
          kind: 'init-pitr',
          db,
          external: externalFollow(db),
          reason: `restoring db ${db.uid} with pitrConfig.dataRestoreCommand (point-in-time recovery)`,
        };
      case 'resync': {
        const from = followTarget(cd, db);
        if (typeof from === 'string') {
          return { kind: 'wait', reason: `cannot resync db ${db.uid} yet: ${from}` };
        }
        // The primary's keeper creates our slot when it applies the generation that lists us as a
        // follower, and drops stolon_* slots of DBs its generation does not list. A full copy does
        // not wait for the former: once the clusterdata lists us as a follower, the copy creates
        // the slot unless it is there (both sides tolerate the other's). pg_rewind, which starts
        // the standby right after, waits for the primary's keeper.
        const followed = cd.dbs[from.dbUid];
        const slotKept = followed !== undefined && (followed.spec.role === 'master' || followed.spec.followConfig?.type === 'external');
        if (slotKept && !followed.spec.followers.includes(db.uid)) {
          return { kind: 'wait', reason: `cannot resync db ${db.uid} yet: waiting for the sentinel to list it as a follower of db ${followed.uid} (its replication slot stolon_${db.uid})` };
        }
        const slotPending = slotKept && followed.status.currentGeneration !== followed.generation;
        const sameSystem = obs.initialized && (obs.systemId ?? '') !== '' && obs.systemId === from.systemId;
        // `stolonctl reinit` asks for a new copy: pg_rewind of an intact standby would keep its data.
        const tryRewind = db.spec.usePgrewind && sameSystem && db.spec.reinitRequestedAt === undefined;
        if (slotPending && tryRewind) {
          return { kind: 'wait', reason: `cannot resync db ${db.uid} yet: waiting for the primary to create replication slot stolon_${db.uid}` };
        }
        return {
          kind: 'resync',
          db,
          from,
          tryRewind,
          createSlot: slotPending,
          reason: `resyncing db ${db.uid} from db ${from.dbUid} at ${from.host}:${from.port} (${tryRewind ? 'pg_rewind, else pg_basebackup' : 'pg_basebackup'})`,
        };
      }
      case 'none':
        return { kind: 'wait', reason: `db ${db.uid} is new to this keeper but has initMode "none"; waiting for the sentinel` };
    }
  }
  if (!obs.initialized) {
    return { kind: 'wait', reason: `data directory of db ${db.uid} is not initialized; waiting for a resync` };
  }
  // Safety: the data directory must still be the one the store knows for this DB.
  if ((obs.systemId ?? '') !== '' && db.status.systemdID !== '' && obs.systemId !== db.status.systemdID) {
    return {
      kind: 'refuse',
      reason:
        `refusing to start: the data directory has system identifier ${obs.systemId}, but db ${db.uid} was ` +
        `${db.status.systemdID}; was the data directory replaced? Move it away to let the sentinel resync this keeper`,
    };
  }
  if (db.spec.role === 'master' && db.spec.shutdownForSwitchover === true) {
    // Planned switchover, or a failover stopping a failed primary before it promotes a standby:
    // a clean (fast) shutdown lets the walsenders hand every WAL record to the standbys before
    // PostgreSQL exits; then stay down until the sentinel says what next.
    const why = cd.cluster.status.failover?.kind === 'failover' ? 'failover' : 'switchover';
    return {
      kind: 'switchover-stop',
      db,
      reason: obs.running ? `${why}: shutting down primary db ${db.uid} cleanly` : `${why}: primary db ${db.uid} is shut down, waiting for the sentinel`,
    };
  }
  if (db.spec.role === 'master') {
    return {
      kind: 'converge',
      db,
      role: 'master',
      follow: undefined,
      external: undefined,
      promote: obs.running && obs.role === 'standby',
      reason:
        obs.running && obs.role === 'standby'
          ? `promoting db ${db.uid} to primary`
          : `primary db ${db.uid} at generation ${db.generation}`,
    };
  }
  if (obs.running && obs.role === 'master') {
    // PostgreSQL cannot step down from primary to standby; the sentinel gives this keeper a new
    // DB (resync) once the new primary is up.
    return {
      kind: 'stop-postgres',
      reason: `db ${db.uid} must be a standby but the local instance is a primary: stopping it until it is resynced`,
    };
  }
  const external = externalFollow(db);
  if (external !== undefined) {
    return {
      kind: 'converge',
      db,
      role: 'standby',
      follow: undefined,
      external,
      promote: false,
      reason: `standby-cluster primary db ${db.uid} following the external primary`,
    };
  }
  const follow = followTarget(cd, db);
  if (typeof follow === 'string') {
    const followed = db.spec.followConfig?.dbuid ?? '';
    if (followed !== '' && cd.dbs[followed] === undefined) {
      // The followed DB was replaced by a failover that has not converged yet (its chosen standby
      // may even have died). Kept stopped, this standby would be unhealthy and never a candidate
      // to replace it; in recovery with no upstream it is read-only, reports its position, and is
      // pointed at the new primary once there is one. A running one converges the same way (its
      // upstream was stopped before the promotion): waiting instead would leave a DB spec changed
      // meanwhile unapplied, and an unconverged standby is no candidate either.
      return {
        kind: 'converge',
        db,
        role: 'standby',
        follow: undefined,
        external: { standbySettings: {}, archiveRecoverySettings: undefined },
        promote: false,
        reason: `standby db ${db.uid}: ${follow}: running as a standby with no upstream until the sentinel names its primary`,
      };
    }
    return { kind: 'wait', reason: `standby db ${db.uid}: ${follow}` };
  }
  return {
    kind: 'converge',
    db,
    role: 'standby',
    follow,
    external: undefined,
    promote: false,
    reason: `standby db ${db.uid} following db ${follow.dbUid} at ${follow.host}:${follow.port}`,
  };
}

/** What {@link internalOnlyHba} decides from. */
export interface InternalOnlyInputs {
  /** The current state: true while this primary keeps normal users out. */
  readonly current: boolean;
  /** This keeper's DB. */
  readonly db: DB;
  /** The DB is (or is being made) the primary. */
  readonly isPrimary: boolean;
  /** PostgreSQL was found stopped and is about to be started. */
  readonly starting: boolean;
  /** DB uids PostgreSQL reports `sync` in pg_stat_replication right now. */
  readonly reportedSync: readonly string[];
}

/**
 * Whether a primary with synchronous replication must run with internal-only pg_hba (superuser
 * and replication rules, no user rules) — Stolon's behaviour after a primary restart. Commits
 * that were waiting for a standby's acknowledgement when the primary stopped are in its WAL;
 * after a restart PostgreSQL would show them to any reader, and a client
 * could build on data no standby has. So when the keeper starts a stopped primary with
 * synchronous replication on, normal users stay out until every synchronous standby of the spec
 * is reported `sync` again; then the normal pg_hba is written and reloaded.
 *
 * Entered only on `starting`; left once every `db.spec.synchronousStandbys` entry is reported
 * (at once when the list is empty: only the fake standby, which blocks every commit anyway), or
 * when the DB is no longer a primary with synchronous replication.
 */
export function internalOnlyHba(inp: InternalOnlyInputs): boolean {
  if (!inp.isPrimary || !inp.db.spec.synchronousReplication) {
    return false;
  }
  if (!inp.current && !inp.starting) {
    return false;
  }
  const reported = new Set(inp.reportedSync);
  return !inp.db.spec.synchronousStandbys.every((uid) => reported.has(uid));
}

/**
 * The `stolonctl reload` generation this keeper has to act on now, or undefined: there is a
 * request (`cluster.status.reloadRequest`), it names this keeper (or every keeper), and its
 * generation is above the last one this process acted on.
 * @param acted the last generation acted on (0: none)
 */
export function reloadDue(cd: ClusterData, keeperUid: string, acted: number): number | undefined {
  const req = cd.cluster.status.reloadRequest;
  if (req === undefined || req.generation <= acted) {
    return undefined;
  }
  return req.keeperUIDs === undefined || req.keeperUIDs.includes(keeperUid) ? req.generation : undefined;
}
