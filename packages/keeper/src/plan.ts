/**
 * The keeper's pure planner (STYLE.md rule 12): from clusterdata, the keeper's own local state and
 * what it observes of PostgreSQL, decide the one next step. The daemon executes it through the
 * PostgresManager. No I/O here; table-tested in plan.test.ts.
 * @see shared/reference/stolon.md §5.3–5.5 (Stolon's keeper state machine)
 */
import type { ClusterData, DB } from '@stolon-ts/cluster';

/** What the keeper persists in `<data-dir>/dbstate` (Stolon's dbstate file). */
export interface LocalDbState {
  /** DB uid the data directory holds ("" when none). */
  readonly uid: string;
  /** Last DB generation applied successfully. */
  readonly generation: number;
}

/** What the keeper observed of its instance this pass. */
export interface LocalObservation {
  readonly initialized: boolean;
  readonly running: boolean;
  readonly role: 'master' | 'standby' | undefined;
}

/** The followed primary's address, for standbys. */
export interface FollowTarget {
  readonly dbUid: string;
  readonly host: string;
  readonly port: number;
}

/** One step. The daemon runs it, then re-plans on the next pass. */
export type KeeperAction =
  | { readonly kind: 'wait'; readonly reason: string }
  | { readonly kind: 'stop-postgres'; readonly reason: string }
  | { readonly kind: 'init-new'; readonly db: DB; readonly reason: string }
  | { readonly kind: 'resync'; readonly db: DB; readonly from: FollowTarget; readonly reason: string }
  | {
      readonly kind: 'converge';
      readonly db: DB;
      readonly role: 'master' | 'standby';
      /** Set for standbys. */
      readonly follow: FollowTarget | undefined;
      /** Promote the running standby instance. */
      readonly promote: boolean;
      readonly reason: string;
    };

/** Finds the DB assigned to `keeperUid`, if any. */
export function assignedDb(cd: ClusterData, keeperUid: string): DB | undefined {
  return Object.values(cd.dbs).find((d) => d.spec.keeperUID === keeperUid);
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
  return { dbUid: followed, host: f.status.listenAddress, port };
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
  if (db.uid !== local.uid) {
    switch (db.spec.initMode) {
      case 'new':
        return { kind: 'init-new', db, reason: `initializing new db ${db.uid} (initdb)` };
      case 'resync': {
        const from = followTarget(cd, db);
        if (typeof from === 'string') {
          return { kind: 'wait', reason: `cannot resync db ${db.uid} yet: ${from}` };
        }
        return {
          kind: 'resync',
          db,
          from,
          reason: `resyncing db ${db.uid} from db ${from.dbUid} at ${from.host}:${from.port} (pg_basebackup)`,
        };
      }
      case 'none':
      case 'existing':
      case 'pitr':
        return {
          kind: 'wait',
          reason: `db ${db.uid} is new to this keeper but its initMode is "${db.spec.initMode}"; waiting for the sentinel`,
        };
    }
  }
  if (!obs.initialized) {
    return { kind: 'wait', reason: `data directory of db ${db.uid} is not initialized; waiting for a resync` };
  }
  if (db.spec.role === 'master') {
    return {
      kind: 'converge',
      db,
      role: 'master',
      follow: undefined,
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
  const follow = followTarget(cd, db);
  if (typeof follow === 'string') {
    return { kind: 'wait', reason: `standby db ${db.uid}: ${follow}` };
  }
  return {
    kind: 'converge',
    db,
    role: 'standby',
    follow,
    promote: false,
    reason: `standby db ${db.uid} following db ${follow.dbUid} at ${follow.host}:${follow.port}`,
  };
}
