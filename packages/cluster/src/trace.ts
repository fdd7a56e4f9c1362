/**
 * The failover trace: every failover records an event in clusterdata with a
 * wall-clock timestamp per phase — primary last seen, declared failed, proxies fenced, candidate
 * chosen (and why), promoted, proxies routed — so `stolonctl events` can show where the write
 * outage went. Pure helpers over the next clusterdata; called from `decide`.
 */
import { isFailsafeEpisode } from './clusterdata-schema.js';
import type { ClusterData, DB, FailoverEvent, KeeperInfo } from './types.js';

/** Finished events kept in `failoverHistory`. */
export const FAILOVER_HISTORY_LIMIT = 20;

/** Failsafe spells kept in `failsafeHistory`. */
export const FAILSAFE_HISTORY_LIMIT = 20;

/**
 * Records in `failsafeHistory` every failsafe spell a live keeper publishes (`KeeperInfo.failsafeEpisode`)
 * that is not there yet (same keeper and start time), oldest first, keeping the last
 * {@link FAILSAFE_HISTORY_LIMIT}. Entries that are not well-formed spells are dropped (a record only).
 * @returns one reason per spell recorded
 */
export function recordFailsafeEpisodes(cd: ClusterData, infos: Readonly<Record<string, KeeperInfo>>): string[] {
  const stored: unknown = cd.failsafeHistory;
  const history = Array.isArray(stored) ? stored.filter(isFailsafeEpisode) : [];
  const fresh = Object.values(infos)
    .map((i) => i.failsafeEpisode)
    .filter((e) => e !== undefined && isFailsafeEpisode(e) && !history.some((h) => h.keeperUID === e.keeperUID && h.since === e.since))
    .map((e) => e!)
    .sort((a, b) => a.since.localeCompare(b.since));
  if (fresh.length === 0) {
    if (stored !== undefined && (!Array.isArray(stored) || history.length !== stored.length)) {
      cd.failsafeHistory = history;
    }
    return [];
  }
  cd.failsafeHistory = [...history, ...fresh].slice(-FAILSAFE_HISTORY_LIMIT);
  return fresh.map(
    (e) =>
      `recorded a failsafe spell of keeper ${e.keeperUID} (store unreachable ${e.since} to ${e.until}: ` +
      `${e.confirmedRounds}/${e.rounds} rounds confirmed by all ${e.members} members${e.fenced ? '; it fenced itself' : ''})`,
  );
}

/** Starts the event for a failing primary, unless one is already in progress. */
export function traceDeclared(cd: ClusterData, master: DB, cause: string, wallTime: string, lastSeen: string | undefined): FailoverEvent {
  const existing = cd.cluster.status.failover;
  if (existing !== undefined) {
    return existing;
  }
  const ev: FailoverEvent = {
    id: `${master.uid}-${Date.parse(wallTime).toString(36)}`,
    kind: 'failover',
    cause,
    oldPrimary: { keeperUID: master.spec.keeperUID, dbUid: master.uid, xLogPos: master.status.xLogPos },
    phases: { declaredFailed: wallTime, ...(lastSeen !== undefined ? { primaryLastSeen: lastSeen } : {}) },
  };
  cd.cluster.status.failover = ev;
  return ev;
}

/** Every live proxy acknowledged the fence generation (first time only). */
export function traceFenced(cd: ClusterData, wallTime: string): void {
  const ev = cd.cluster.status.failover;
  if (ev !== undefined && ev.phases.proxiesFenced === undefined) {
    ev.phases.proxiesFenced = wallTime;
  }
}

/** A candidate was chosen for promotion, with the reason. */
export function traceChosen(cd: ClusterData, chosen: DB, choice: string, wallTime: string): void {
  const ev = cd.cluster.status.failover;
  if (ev !== undefined) {
    ev.newPrimary = { keeperUID: chosen.spec.keeperUID, dbUid: chosen.uid, xLogPos: chosen.status.xLogPos };
    ev.choice = choice;
    ev.phases.candidateChosen = wallTime;
  }
}

/** No candidate could be chosen (yet); the event stays open with the reason. */
export function traceNoCandidate(cd: ClusterData, why: string): void {
  const ev = cd.cluster.status.failover;
  if (ev !== undefined && ev.newPrimary === undefined) {
    ev.choice = why;
  }
}

/** The chosen primary converged and is healthy: promotion applied (first time only). */
export function tracePromoted(cd: ClusterData, master: DB, wallTime: string): void {
  const ev = cd.cluster.status.failover;
  if (ev?.newPrimary?.dbUid === master.uid && ev.phases.promoted === undefined) {
    ev.phases.promoted = wallTime;
  }
}

/**
 * Proxies now route to `master`: the event ends, `completed` when `master` is the chosen one,
 * `aborted` otherwise (the old primary recovered before any standby could be promoted), and
 * moves to the bounded history.
 */
export function traceRouted(cd: ClusterData, master: DB, wallTime: string): void {
  const ev = cd.cluster.status.failover;
  if (ev === undefined) {
    return;
  }
  ev.phases.proxiesRouted = wallTime;
  ev.result = ev.newPrimary?.dbUid === master.uid ? 'completed' : 'aborted';
  if (ev.result === 'aborted') {
    ev.choice = `${ev.choice ?? 'no candidate'}; primary ${master.spec.keeperUID} (db ${master.uid}) is serving again`;
  }
  cd.failoverHistory = [...(cd.failoverHistory ?? []), ev].slice(-FAILOVER_HISTORY_LIMIT);
  delete cd.cluster.status.failover;
}

/**
 * Completes the recorded events (the one in progress and `failoverHistory`) with what is only
 * known after the promotion, so `stolonctl history` can say it after the DBs involved are gone:
 * - `newTimeline`: once the new primary's DB reports a timeline above the old primary's, that
 *   timeline and its switch point (from the DB's `timelinesHistory`; both as it reports them);
 * - `discardedWal`: once a DB of the old primary's keeper reports WAL it discarded (pg_rewind or
 *   a new clone) at or after the event's promotion.
 * Events already complete are left alone; at most the history's length is visited.
 * @returns one reason per event completed
 */
export function recordEventOutcomes(cd: ClusterData): string[] {
  const reasons: string[] = [];
  const events = [...(cd.failoverHistory ?? []), ...(cd.cluster.status.failover !== undefined ? [cd.cluster.status.failover] : [])];
  for (const ev of events) {
    if (ev.newTimeline === undefined && ev.newPrimary !== undefined && ev.phases.promoted !== undefined) {
      const db = cd.dbs[ev.newPrimary.dbUid];
      const tl = db?.status.timelineID ?? 0;
      const prev = db?.status.timelinesHistory.find((h) => h.timelineID === tl - 1);
      if (db !== undefined && tl > (ev.oldPrimary.timelineID ?? 0) && prev !== undefined) {
        ev.newTimeline = { timelineID: tl, switchPoint: prev.switchPoint };
        reasons.push(`${ev.kind} ${ev.id}: keeper ${ev.newPrimary.keeperUID} started timeline ${tl} at LSN ${prev.switchPoint}`);
      }
    }
    if (ev.discardedWal === undefined && ev.result === 'completed' && ev.phases.promoted !== undefined) {
      const since = Date.parse(ev.phases.promoted);
      const found = Object.values(cd.dbs)
        .filter((d) => d.spec.keeperUID === ev.oldPrimary.keeperUID)
        .map((d) => d.status.discardedWal)
        .find((w) => w !== undefined && Date.parse(w.at) >= since);
      if (found !== undefined) {
        ev.discardedWal = { ...found };
        reasons.push(`${ev.kind} ${ev.id}: keeper ${ev.oldPrimary.keeperUID} discarded WAL ${found.fromLsn}–${found.toLsn} when it rejoined (${found.method})`);
      }
    }
  }
  return reasons;
}
