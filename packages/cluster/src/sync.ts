/**
 * Synchronous replication, the sentinel's side (Stolon's strict mode): which standbys the primary
 * must wait for (`master.spec.synchronousStandbys`, DB uids), the fake standby that makes it block
 * commits when too few are available (`master.spec.externalSynchronousStandbys`), and which of
 * them are *known* to be in sync (`master.status.synchronousStandbys`), the set a failover may
 * promote from. Pure functions over the next clusterdata, called by `decide`.
 *
 * Known vs reported: *reported* is what the primary's keeper sees as `sync` in
 * pg_stat_replication right now (its info's `postgresState.synchronousStandbys`; Stolon keeps it
 * in memory only, `CurSynchronousStandbys`); *known* is persisted and only ever holds standbys
 * that are in the spec, were reported in sync since they entered it, and have caught up (see
 * {@link SyncCatchUp}). The spec only changes once known = spec, and while it changes the primary
 * waits for old ∪ new, so at every instant at least one electable standby is known to have every
 * acknowledged commit. This is Stolon's algorithm (`updateCluster` in Stolon's
 * cmd/sentinel/cmd/sentinel.go), with the deviations listed at {@link manageSynchronousStandbys}.
 */
import { compareFailoverCandidates } from './candidates.js';
import type { ClusterData, DB, KeeperInfo, ResolvedSpec } from './types.js';

/**
 * The name of a standby that never connects (Stolon's): listed in synchronous_standby_names when
 * fewer than `minSynchronousStandbys` real standbys are available, so the primary blocks commits
 * instead of acknowledging writes no standby has.
 */
export const FAKE_SYNC_STANDBY = 'stolonfakestandby';

/** Whether the cluster spec asks for synchronous replication (never in a standby cluster). */
function syncReplicationWanted(spec: ResolvedSpec): boolean {
  return spec.synchronousReplication && spec.role === 'master';
}

function sorted(xs: Iterable<string>): string[] {
  return [...new Set(xs)].sort();
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((x) => sb.has(x));
}

const list = (xs: readonly string[]): string => `[${xs.join(', ')}]`;

/**
 * DB uids the primary's keeper reports `sync` right now; `[]` when its info is missing, belongs to
 * another cluster or DB, or says postgres is down (nothing can be trusted then).
 */
export function reportedSyncStandbys(cd: ClusterData, master: DB, infos: Readonly<Record<string, KeeperInfo>>): string[] {
  const info = infos[master.spec.keeperUID];
  const state = info?.postgresState;
  if (info === undefined || info.clusterUID !== cd.cluster.uid || state === undefined || state.uid !== master.uid || !state.healthy) {
    return [];
  }
  return sorted(state.synchronousStandbys);
}

/** Empties a DB's synchronous replication settings and its known-in-sync list. */
function clearSync(db: DB): void {
  db.spec.synchronousReplication = false;
  db.spec.synchronousStandbys = [];
  db.spec.externalSynchronousStandbys = [];
  db.status.synchronousStandbys = [];
}

/**
 * A standby that entered the synchronous set and was reported `sync`, but may not yet have every
 * commit acknowledged before it entered. PostgreSQL reports a standby `sync` as soon as its
 * walsender is streaming and it is listed in synchronous_standby_names; its flushed WAL can still
 * be behind commits that only the previous synchronous standbys acknowledged (a stalled disk, a
 * lagging standby swapped in for a failed one). So the sentinel records the primary's WAL position
 * of the first report that shows the standby `sync` (the keeper reads pg_stat_replication before
 * the WAL position, so every commit acknowledged without this standby lies below it) and counts
 * the standby as known in sync only once the standby itself reports WAL up to there. Kept in the
 * sentinel's memory: a new leader records it again, later, which only delays the swap.
 */
export interface SyncCatchUp {
  /** The primary DB whose synchronous set the standby entered. */
  readonly primaryUid: string;
  /** The primary's reported WAL position (bytes) when it first reported the standby `sync`. */
  readonly lsn: number;
}

/** What {@link manageSynchronousStandbys} works from. */
export interface SyncInputs {
  /** The next clusterdata (mutated). */
  readonly cd: ClusterData;
  /** The primary DB inside `cd`; healthy and converged. */
  readonly master: DB;
  readonly spec: ResolvedSpec;
  /** Standby DBs that are healthy and converged (Stolon's "good" standbys). */
  readonly good: readonly DB[];
  /**
   * Standby DBs whose keeper is healthy and that are still applying their current generation
   * within their convergence timeout (a standby the failover re-pointed at the new primary).
   * While nothing is known in sync, a pending spec entry among them is not abandoned: abandoning
   * would leave only the fake standby, which blocks commits just the same, and the entry would
   * have to be chosen again (another clusterdata write and reload) once it converged.
   * @default []
   */
  readonly converging?: readonly DB[];
  /** From {@link reportedSyncStandbys}. */
  readonly reported: readonly string[];
  /**
   * Standby DB uid → its catch-up threshold ({@link SyncCatchUp}); from the sentinel's memory,
   * updated in place (entries no longer pending are dropped).
   */
  readonly catchUp: Record<string, SyncCatchUp>;
}

/**
 * One pass of synchronous standby management on a healthy, converged primary (as Stolon's
 * `updateCluster` does it), then clears the sync settings of every other DB.
 *
 * With synchronous replication wanted:
 * 1. while known ≠ spec: known := (known ∩ spec) ∪ (reported ∩ spec ∩ caught up, see
 *    {@link SyncCatchUp}); if a spec entry still not known was deleted or is not good (unless
 *    nothing is known and it is still converging, see `converging`), the pending change is
 *    abandoned (spec := known);
 * 2. if still known ≠ spec, wait: nothing else changes;
 * 3. else the next set starts from spec: drop deleted and not-good entries, drop the surplus over
 *    `maxSynchronousStandbys` (keeping the most advanced), add the best good standbys on the
 *    primary's timeline (most advanced first; keepers with `canBeSynchronousReplica=false`
 *    skipped) up to the max, re-add previous entries (even failed ones, so one that comes back
 *    is still electable) up to `minSynchronousStandbys`, and when a new member enters keep all
 *    previous ones too (the primary waits for old ∪ new until the new ones are known);
 * 4. fewer than `minSynchronousStandbys` → the fake standby, so commits block (strict mode);
 * 5. known := known ∩ spec.
 *
 * Without it (or in a standby cluster) every list is cleared.
 *
 * Deviations from Stolon, on purpose: a reported standby must also have caught up before it is
 * known in sync (Stolon trusts the report alone); the best standbys are taken most advanced first (Stolon
 * sorts ascending, as in its failover choice); the surplus dropped is the least advanced (Stolon:
 * map order); previous entries re-added up to the minimum must still exist (a deleted DB can
 * never come back under the same uid; the fake standby blocks commits just the same); the
 * PostgreSQL ≤ 9.5 special case does not apply (PostgreSQL ≥ 12 is required).
 * @returns one sentence per change, or why it waits; `[]` when nothing changed.
 */
export function manageSynchronousStandbys(inp: SyncInputs): string[] {
  const { cd, master, spec } = inp;
  const reasons: string[] = [];
  for (const db of Object.values(cd.dbs)) {
    if (db.uid !== master.uid) {
      clearSync(db);
    }
  }
  const who = `primary ${master.spec.keeperUID} (db ${master.uid})`;
  if (!syncReplicationWanted(spec)) {
    if (master.spec.synchronousReplication || master.spec.externalSynchronousStandbys.length > 0 || master.spec.synchronousStandbys.length > 0) {
      reasons.push(`synchronous replication off: ${who} no longer waits for standbys`);
    }
    clearSync(master);
    return reasons;
  }
  if (!master.spec.synchronousReplication) {
    reasons.push(`synchronous replication on for ${who}`);
  }
  master.spec.synchronousReplication = true;
  const goodUids = new Set(inp.good.map((d) => d.uid));
  const exists = (uid: string): boolean => cd.dbs[uid] !== undefined && uid !== master.uid;

  // 1. Learn which spec entries are in sync now; abandon a change whose new members failed.
  let known = sorted(master.status.synchronousStandbys);
  let wanted = sorted(master.spec.synchronousStandbys);
  if (!sameSet(known, wanted)) {
    const inSpec = new Set(wanted);
    const caughtUp = learnCaughtUp(inp, known, wanted, reasons);
    known = sorted([...known.filter((u) => inSpec.has(u)), ...caughtUp]);
    const pending = wanted.filter((u) => !known.includes(u));
    const convergingUids = new Set((inp.converging ?? []).map((d) => d.uid));
    const lost = pending.filter((u) => !exists(u) || (!goodUids.has(u) && !(known.length === 0 && convergingUids.has(u))));
    if (lost.length > 0) {
      reasons.push(
        `synchronous standbys ${list(lost)} of ${who} failed or were removed before being in sync: ` +
          `expecting only the known in-sync ones ${list(known)}`,
      );
      wanted = [...known];
    }
  }
  master.status.synchronousStandbys = known;
  master.spec.synchronousStandbys = wanted;
  for (const u of Object.keys(inp.catchUp)) {
    if (known.includes(u) || !wanted.includes(u) || inp.catchUp[u]?.primaryUid !== master.uid) {
      delete inp.catchUp[u];
    }
  }

  // 2. A failover may only trust a set the primary has confirmed; change it only from there.
  if (!sameSet(known, wanted)) {
    reasons.push(
      `waiting for synchronous standbys ${list(wanted.filter((u) => !known.includes(u)))} of ${who} to be reported in sync ` +
        `(known in sync: ${list(known)})`,
    );
    return reasons;
  }

  // 3. The next set.
  const prev = wanted;
  const next = new Set<string>();
  for (const u of prev) {
    if (exists(u) && goodUids.has(u)) {
      next.add(u);
    }
  }
  // Most advanced first (the failover comparator; `canBeMaster` does not rank).
  const rank = (dbs: readonly DB[]): DB[] =>
    dbs
      .map((db) => ({ db, canBeMaster: true, priority: cd.keepers[db.spec.keeperUID]?.status.priority ?? 0 }))
      .sort(compareFailoverCandidates)
      .map((c) => c.db);
  if (next.size > spec.maxSynchronousStandbys) {
    const keep = rank(inp.good.filter((d) => next.has(d.uid))).slice(0, spec.maxSynchronousStandbys);
    next.clear();
    for (const d of keep) {
      next.add(d.uid);
    }
  }
  const best = rank(
    inp.good.filter(
      (d) =>
        exists(d.uid) &&
        d.spec.role === 'standby' &&
        d.status.timelineID === master.status.timelineID &&
        cd.keepers[d.spec.keeperUID]?.status.canBeSynchronousReplica !== false,
    ),
  );
  for (const d of best) {
    if (next.size >= spec.maxSynchronousStandbys) {
      break;
    }
    next.add(d.uid);
  }
  // A failed synchronous standby that comes back must still be electable: keep it listed.
  for (const u of prev) {
    if (next.size >= spec.minSynchronousStandbys) {
      break;
    }
    if (exists(u)) {
      next.add(u);
    }
  }
  // While the set changes, the primary waits for old ∪ new: the old ones stay known in sync
  // (electable) until a later pass sees the new ones reported in sync and drops the old.
  if ([...next].some((u) => !prev.includes(u))) {
    for (const u of prev) {
      if (exists(u)) {
        next.add(u);
      }
    }
  }

  // 4. Strict mode: too few real standbys → a fake one, so commits block rather than go unprotected.
  const real = sorted(next);
  const external = real.length < spec.minSynchronousStandbys ? [FAKE_SYNC_STANDBY] : [];
  if (!sameSet(real, prev)) {
    reasons.push(`synchronous standbys of ${who} now ${list(real)} (were ${list(prev)})`);
  }
  if (external.length > 0 && master.spec.externalSynchronousStandbys.length === 0) {
    const skipped = Object.values(cd.dbs)
      .filter((d) => d.uid !== master.uid && cd.keepers[d.spec.keeperUID]?.status.canBeSynchronousReplica === false)
      .map((d) => d.spec.keeperUID);
    reasons.push(
      `only ${real.length} synchronous standby(s) available for ${who}, minSynchronousStandbys is ${spec.minSynchronousStandbys}: ` +
        `adding ${FAKE_SYNC_STANDBY}, commits block until enough standbys are in sync` +
        (skipped.length > 0 ? ` (keepers with canBeSynchronousReplica=false: ${sorted(skipped).join(', ')})` : ''),
    );
  } else if (external.length === 0 && master.spec.externalSynchronousStandbys.length > 0) {
    reasons.push(`${who} has enough synchronous standbys again: ${FAKE_SYNC_STANDBY} removed`);
  }
  master.spec.synchronousStandbys = real;
  master.spec.externalSynchronousStandbys = external;
  // 5.
  master.status.synchronousStandbys = known.filter((u) => real.includes(u));
  return reasons;
}

/**
 * The pending spec entries (in `wanted`, not in `known`) reported `sync` that have caught up: the
 * first report records the threshold in `inp.catchUp`; an entry counts once the standby's own
 * reported WAL position (its DB status, the flushed WAL it received) reached it.
 */
function learnCaughtUp(inp: SyncInputs, known: readonly string[], wanted: readonly string[], reasons: string[]): string[] {
  const { cd, master } = inp;
  const out: string[] = [];
  for (const u of inp.reported) {
    if (!wanted.includes(u) || known.includes(u)) {
      continue;
    }
    let c = inp.catchUp[u];
    if (c === undefined || c.primaryUid !== master.uid) {
      c = { primaryUid: master.uid, lsn: master.status.xLogPos };
      inp.catchUp[u] = c;
    }
    const db = cd.dbs[u];
    if (db !== undefined && db.status.timelineID === master.status.timelineID && db.status.xLogPos >= c.lsn) {
      out.push(u);
    } else {
      reasons.push(
        `synchronous standby db ${u} is reported in sync by primary ${master.spec.keeperUID} but not yet known in sync: ` +
          `it must reach the primary's WAL position ${c.lsn} when it was first reported (it reports ${db?.status.xLogPos ?? 'nothing'})`,
      );
    }
  }
  return out;
}

/**
 * The standbys a failover may promote when the failed primary ran synchronous replication: those
 * both in its spec and known in sync (Stolon's rule too); `undefined` when it did not (any
 * standby within `maxStandbyLag` may be promoted).
 */
export function failoverSyncSet(master: DB): ReadonlySet<string> | undefined {
  if (!master.spec.synchronousReplication) {
    return undefined;
  }
  const inSpec = new Set(master.spec.synchronousStandbys);
  return new Set(master.status.synchronousStandbys.filter((u) => inSpec.has(u)));
}

/**
 * Sync settings of a primary `w` promoted by a failover, in the clusterdata write that promotes it
 * (`cd` already has the failed primary's DB deleted and `w` as master). It waits from the start
 * for the standbys that will stream from it: the other standbys whose DB reports healthy, keepers
 * with `canBeSynchronousReplica=false` skipped, the old primary's synchronous standbys first, then
 * most advanced first (the failover comparator), up to `maxSynchronousStandbys`; the fake standby
 * is added when that is fewer than `minSynchronousStandbys`. Nothing is known in sync yet: a later
 * pass learns it from the primary's reports ({@link manageSynchronousStandbys}). So commits
 * unblock as soon as the listed standby streams from `w` (the failover re-points the standbys in
 * the same write), instead of after the sentinel saw it on `w`'s timeline and wrote a new list.
 * Safety is unchanged: `w` acknowledges a commit only once every listed standby flushed it, and
 * only standbys known in sync may be promoted.
 * With no such standby: {@link inheritSynchronousStandbys} (Stolon's rule), so commits block until
 * the sentinel picks a standby.
 * Deviation from Stolon, on purpose: Stolon always inherits the old list, which keeps the new
 * primary's commits blocked on the dead old primary until the sentinel's later passes replace it.
 * @returns a sentence when synchronous replication is on, else `[]`.
 */
export function failoverSynchronousStandbys(cd: ClusterData, w: DB, oldMaster: DB, spec: ResolvedSpec): string[] {
  if (!syncReplicationWanted(spec)) {
    return inheritSynchronousStandbys(w, oldMaster, spec);
  }
  const oldSync = new Set(oldMaster.spec.synchronousStandbys);
  const streaming = Object.values(cd.dbs)
    .filter((d) => d.uid !== w.uid && d.uid !== oldMaster.uid && d.status.healthy && cd.keepers[d.spec.keeperUID]?.status.canBeSynchronousReplica !== false)
    .map((db) => ({ db, canBeMaster: true, priority: cd.keepers[db.spec.keeperUID]?.status.priority ?? 0 }))
    .sort((a, b) => Number(oldSync.has(b.db.uid)) - Number(oldSync.has(a.db.uid)) || compareFailoverCandidates(a, b))
    .slice(0, spec.maxSynchronousStandbys)
    .map((c) => c.db.uid);
  if (streaming.length === 0) {
    return inheritSynchronousStandbys(w, oldMaster, spec);
  }
  w.spec.synchronousReplication = true;
  w.spec.synchronousStandbys = sorted(streaming);
  w.spec.externalSynchronousStandbys = streaming.length < spec.minSynchronousStandbys ? [FAKE_SYNC_STANDBY] : [];
  w.status.synchronousStandbys = [];
  return [
    `new primary db ${w.uid} waits for synchronous standbys ${list(w.spec.synchronousStandbys)}` +
      (w.spec.externalSynchronousStandbys.length > 0 ? ` and ${FAKE_SYNC_STANDBY}` : '') +
      ' from the start (they follow it from the same update)',
  ];
}

/**
 * Sync settings of a newly promoted primary `w` (as in Stolon): it waits for the old
 * primary's synchronous standbys with itself replaced by the old primary (so the list keeps its
 * size; `decide` drops the old primary's entry once it is gone), or for the fake standby when that
 * leaves nothing and `minSynchronousStandbys` > 0. Nothing is known in sync yet. Without
 * synchronous replication every list is cleared.
 * @returns a sentence when synchronous replication is on, else `[]`.
 */
export function inheritSynchronousStandbys(w: DB, oldMaster: DB, spec: ResolvedSpec): string[] {
  if (!syncReplicationWanted(spec)) {
    clearSync(w);
    return [];
  }
  const inherited = sorted(oldMaster.spec.synchronousStandbys.map((u) => (u === w.uid ? oldMaster.uid : u)));
  w.spec.synchronousReplication = true;
  w.spec.synchronousStandbys = inherited;
  w.spec.externalSynchronousStandbys = inherited.length === 0 && spec.minSynchronousStandbys > 0 ? [FAKE_SYNC_STANDBY] : [];
  w.status.synchronousStandbys = [];
  return [
    `new primary db ${w.uid} waits for synchronous standbys ${list(inherited)}` +
      (w.spec.externalSynchronousStandbys.length > 0 ? ` and ${FAKE_SYNC_STANDBY}` : '') +
      ' until the sentinel picks standbys of its own',
  ];
}
