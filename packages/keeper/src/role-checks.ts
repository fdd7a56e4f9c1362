/**
 * The keeper's role endpoints, in the style of Patroni's REST API health checks, for load
 * balancers such as HAProxy (`option httpchk GET /primary`): `GET /primary`, `GET /replica`
 * (`?lag=`), `GET /read-only`, `GET /sync` and `GET /health` answer 200 or 503 with the same one
 * line of JSON as `/healthz` (status-server.ts). Every decision is a pure function of the
 * keeper's cached facts ({@link KeeperFacts}: its last observation of PostgreSQL and its last
 * publish, with the clusterdata it read), so a check costs no SQL and no store read.
 *
 * The facts also give the role, lag and synchronous figures the metrics export
 * ({@link roleFacts}), so an endpoint and its metric never disagree.
 * @see https://patroni.readthedocs.io/en/latest/rest_api.html (Patroni's health check endpoints)
 */
import { FAKE_SYNC_STANDBY, resolveSpec, DEFAULT_SPEC, parseDurationMs, type ClusterData, type DB } from '@stolon-ts/cluster';
import type { CheckResult } from '@stolon-ts/common';
import type { PgObservation } from '@stolon-ts/postgres';
import { assignedDb } from './plan.js';
import type { KeeperFacts, KeeperState } from './types.js';

/** A role as the metrics' `role` label says it. */
export type MetricRole = 'primary' | 'standby' | 'none';

/** What {@link roleFacts} derives from the cached facts; every field as of the last pass. */
export interface RoleFacts {
  /** The role PostgreSQL is in: running and probed without error, else `none`. */
  readonly localRole: MetricRole;
  /** The role clusterdata gives this keeper's DB (`none`: no DB assigned, or no clusterdata). */
  readonly targetRole: MetricRole;
  /** This keeper's DB in the last clusterdata read, and the cluster's primary DB. */
  readonly db: DB | undefined;
  readonly primaryDb: DB | undefined;
  /**
   * Standby only: the primary's WAL position clusterdata holds (what its keeper last reported)
   * minus this standby's replay position, in bytes, at least 0; undefined when either is unknown.
   */
  readonly lagBytes: number | undefined;
  /**
   * Standby only: 0 when {@link lagBytes} is 0, else the time from the commit of the last
   * transaction replayed (`pg_last_xact_replay_timestamp()`) to the observation, in seconds;
   * undefined when unknown.
   */
  readonly lagSeconds: number | undefined;
  /** This standby's DB is in the primary's synchronous set and known in sync (clusterdata). */
  readonly synchronousStandby: boolean;
  /** Primary only: its synchronous standbys known in sync, and the ones it waits for (fake one excluded). */
  readonly synchronousStandbys: number;
  readonly synchronousStandbysWanted: number;
}

function roleOfObs(obs: PgObservation | undefined): MetricRole {
  if (obs === undefined || !obs.running || obs.error !== undefined || obs.role === undefined) {
    return 'none';
  }
  return obs.role === 'master' ? 'primary' : 'standby';
}

function knownInSync(primary: DB): string[] {
  if (!primary.spec.synchronousReplication) {
    return [];
  }
  const wanted = new Set(primary.spec.synchronousStandbys);
  return primary.status.synchronousStandbys.filter((u) => wanted.has(u));
}

function primaryOf(cd: ClusterData | undefined): DB | undefined {
  const uid = cd?.cluster.status.master;
  return cd === undefined || uid === undefined || uid === '' ? undefined : cd.dbs[uid];
}

/**
 * The role, lag and synchronous figures of this keeper from its cached facts (see
 * {@link RoleFacts} for each field's rule).
 * @param keeperUid this keeper's uid
 */
export function roleFacts(f: KeeperFacts, keeperUid: string): RoleFacts {
  const cd = f.view?.cd;
  const db = cd === undefined ? undefined : assignedDb(cd, keeperUid);
  const primaryDb = primaryOf(cd);
  const localRole = roleOfObs(f.obs);
  const targetRole: MetricRole = db === undefined ? 'none' : db.spec.role === 'master' ? 'primary' : 'standby';
  let lagBytes: number | undefined;
  let lagSeconds: number | undefined;
  const obs = f.obs;
  if (localRole === 'standby' && obs !== undefined && primaryDb !== undefined && primaryDb.uid !== db?.uid && primaryDb.status.xLogPos > 0) {
    const replay = obs.replayedXLogPos ?? obs.xLogPos;
    lagBytes = Math.max(0, primaryDb.status.xLogPos - replay);
    if (lagBytes === 0) {
      lagSeconds = 0;
    } else if (obs.lastReplayAtMs !== undefined && f.obsWallMs !== undefined) {
      lagSeconds = Math.max(0, f.obsWallMs - obs.lastReplayAtMs) / 1000;
    }
  }
  const isPrimary = db !== undefined && primaryDb?.uid === db.uid;
  return {
    localRole,
    targetRole,
    db,
    primaryDb,
    lagBytes,
    lagSeconds,
    synchronousStandby: db !== undefined && primaryDb !== undefined && !isPrimary && knownInSync(primaryDb).includes(db.uid),
    synchronousStandbys: isPrimary ? knownInSync(db).length : 0,
    synchronousStandbysWanted: isPrimary && db.spec.synchronousReplication ? db.spec.synchronousStandbys.filter((u) => u !== FAKE_SYNC_STANDBY).length : 0,
  };
}

const UNITS: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/**
 * Parses a `?lag=` value as Patroni does: a whole number of bytes, or a number with one of
 * PostgreSQL's memory units `B`, `kB`, `MB`, `GB`, `TB` (multiples of 1024; any case here).
 * @returns bytes, or undefined when the text is not such a size
 * @see https://patroni.readthedocs.io/en/latest/rest_api.html (`GET /replica?lag=<max-lag>`)
 */
export function parseLag(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const factor = m === null ? undefined : m[2] === '' ? 1 : UNITS[m[2]!.toLowerCase()];
  if (m === null || factor === undefined) {
    return undefined;
  }
  return Math.floor(Number(m[1]) * factor);
}

/** Everything a role check decides from. */
export interface RoleCheckInput {
  readonly keeperUid: string;
  readonly state: KeeperState;
  readonly facts: KeeperFacts;
  /** Monotonic ms now, on the facts' clock. */
  readonly nowMs: number;
}

/** How old an observation or a publish may be, in ms: the spec's failInterval (the info's TTL). */
function maxAgeMs(cd: ClusterData | undefined): number {
  return cd === undefined ? (parseDurationMs(DEFAULT_SPEC.failInterval) ?? 6000) : resolveSpec(cd.cluster.spec).failIntervalMs;
}

const fail = (reason: string): CheckResult => ({ ok: false, reason });

/** PostgreSQL observed running, probed without error, within failInterval; the reason of the first "no" otherwise. */
function runningCheck(i: RoleCheckInput): CheckResult {
  const { facts, nowMs } = i;
  if (i.state !== 'running') {
    return fail(`keeper ${i.state}`);
  }
  const obs = facts.obs;
  if (obs === undefined || facts.obsAtMs === undefined) {
    return fail('postgres not observed yet');
  }
  const age = nowMs - facts.obsAtMs;
  if (age > maxAgeMs(facts.view?.cd)) {
    return fail(`postgres last observed ${Math.round(age)} ms ago (the keeper's passes are stuck)`);
  }
  if (!obs.running) {
    return fail(`postgres is not running${obs.error !== undefined ? `: ${obs.error}` : ''}`);
  }
  if (obs.error !== undefined) {
    return fail(`postgres is not answering: ${obs.error}`);
  }
  return { ok: true, reason: `postgres running as ${obs.role === 'master' ? 'primary' : 'standby'}` };
}

/**
 * `GET /health` (Patroni's): 200 when PostgreSQL is up and answering, as the keeper observed it
 * within failInterval, whatever its role.
 */
export function healthCheck(i: RoleCheckInput): CheckResult {
  return runningCheck(i);
}

/**
 * `GET /primary` (Patroni's `/primary`, `/read-write`): 200 only on the running, writable primary
 * that clusterdata wants as primary and that the proxies may route to. Every condition:
 * PostgreSQL running out of recovery (observed within failInterval); the keeper's info published
 * within failInterval (its lease is current, so no other keeper can have been promoted); the
 * keeper's DB is the cluster's master DB, not a standby cluster's primary, not being shut down for
 * a switchover, and the one `proxy.spec.masterDbUid` names (so during a failover or switchover it
 * turns 503 as soon as the sentinel fences the proxies, as stolon-proxy stops routing then); not
 * self-fenced. In a store outage it turns 503 after failInterval even when failsafe mode keeps the
 * primary serving, as the proxies stop routing after `proxyTimeout`.
 */
export function primaryCheck(i: RoleCheckInput): CheckResult {
  const up = runningCheck(i);
  if (!up.ok) {
    return up;
  }
  const { facts, nowMs } = i;
  if (facts.obs?.role !== 'master') {
    return fail('postgres is in recovery (a standby)');
  }
  const view = facts.view;
  if (view === undefined || facts.viewAtMs === undefined) {
    return fail('no keeper info published yet');
  }
  const cd = view.cd;
  const age = nowMs - facts.viewAtMs;
  if (age > maxAgeMs(cd)) {
    return fail(`keeper info last published ${Math.round(age)} ms ago: the store is not reachable, another primary may exist`);
  }
  if (view.fenced === true) {
    return fail('self-fenced');
  }
  const { db, primaryDb } = roleFacts(facts, i.keeperUid);
  if (cd === undefined || db === undefined) {
    return fail('no db assigned to this keeper in clusterdata');
  }
  if (primaryDb?.uid !== db.uid || db.spec.role !== 'master') {
    return fail(`clusterdata wants db ${db.uid} as a standby (the primary is ${primaryDb?.uid ?? 'none'})`);
  }
  if (db.spec.followConfig?.type === 'external') {
    return fail('a standby cluster\'s primary: it follows an external primary and is read-only');
  }
  if (db.spec.shutdownForSwitchover === true) {
    return fail('being shut down for a switchover or failover');
  }
  if (cd.proxy.spec.masterDbUid !== db.uid) {
    return fail(`the proxies are ${cd.proxy.spec.masterDbUid === '' ? 'fenced (failover or switchover in progress)' : `routing to db ${cd.proxy.spec.masterDbUid}`}`);
  }
  return { ok: true, reason: `primary db ${db.uid}` };
}

/**
 * `GET /replica` (Patroni's, with `?lag=<max>`): 200 on a running standby whose WAL receiver
 * streams and whose DB clusterdata names (an internal standby, or a standby cluster's primary,
 * which follows an external primary). With `lag`, also 503 when {@link RoleFacts.lagBytes}
 * exceeds it, when the lag is unknown, or when `lag` is not a size ({@link parseLag}). Patroni
 * measures lag from the received-or-replayed position; this uses the replayed one, what the
 * standby's readers see (as stolon-proxy's `--ro-max-lag-bytes` does). It needs no fresh publish:
 * standbys keep serving reads through a store outage.
 */
export function replicaCheck(i: RoleCheckInput, query: URLSearchParams): CheckResult {
  const up = runningCheck(i);
  if (!up.ok) {
    return up;
  }
  const obs = i.facts.obs;
  if (obs?.role !== 'standby') {
    return fail('postgres is not in recovery (a primary)');
  }
  if (obs.walReceiverStreaming !== true) {
    return fail('the WAL receiver is not streaming');
  }
  const rf = roleFacts(i.facts, i.keeperUid);
  const db = rf.db;
  if (db === undefined) {
    return fail('no db assigned to this keeper in clusterdata');
  }
  if (db.spec.role !== 'standby' && db.spec.followConfig?.type !== 'external') {
    return fail(`clusterdata wants db ${db.uid} as the primary`);
  }
  const lagText = query.get('lag');
  const lagNote = rf.lagBytes === undefined ? '' : `, ${rf.lagBytes} bytes behind`;
  if (lagText !== null) {
    const max = parseLag(lagText);
    if (max === undefined) {
      return fail(`lag=${lagText} is not a size: bytes, or a number with kB, MB, GB or TB`);
    }
    if (rf.lagBytes === undefined) {
      return fail('replication lag unknown (no primary position in clusterdata)');
    }
    if (rf.lagBytes > max) {
      return fail(`replication lag ${rf.lagBytes} bytes is over ${max}`);
    }
  }
  return { ok: true, reason: `standby db ${db.uid} streaming${lagNote}` };
}

/**
 * `GET /read-only` (Patroni's): 200 where reads may go: the node {@link primaryCheck} accepts,
 * or one {@link replicaCheck} accepts (with its `?lag=`).
 */
export function readOnlyCheck(i: RoleCheckInput, query: URLSearchParams): CheckResult {
  const primary = primaryCheck(i);
  if (primary.ok) {
    return primary;
  }
  const replica = replicaCheck(i, query);
  return replica.ok ? replica : fail(`neither the primary (${primary.reason}) nor a readable standby (${replica.reason})`);
}

/**
 * `GET /sync` (Patroni's `/sync`, `/synchronous`): 200 on a standby {@link replicaCheck} accepts
 * whose DB clusterdata lists among the primary's synchronous standbys and knows in sync
 * (`status.synchronousStandbys`, the set a failover may promote from).
 */
export function syncCheck(i: RoleCheckInput): CheckResult {
  const replica = replicaCheck(i, new URLSearchParams());
  if (!replica.ok) {
    return replica;
  }
  const rf = roleFacts(i.facts, i.keeperUid);
  if (!rf.synchronousStandby) {
    return fail(`db ${rf.db?.uid ?? '?'} is not a synchronous standby known in sync`);
  }
  return { ok: true, reason: `synchronous standby db ${rf.db?.uid ?? '?'}` };
}
