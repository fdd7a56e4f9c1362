/**
 * Failover candidate ranking: one exported comparator, tested one ordering key at a time, and a
 * filter in front of it. Stolon sorts its candidates by LSN ascending and takes the first, i.e.
 * the LEAST advanced standby (`findBestNewMasters` in
 * https://github.com/sorintlab/stolon/blob/master/cmd/sentinel/cmd/sentinel.go); we take the
 * most advanced, which loses the least data.
 */
import type { DB } from './types.js';

/** What the ranking needs to know about one candidate DB. */
export interface Candidate {
  readonly db: DB;
  /** From the owning keeper's info; `false` excludes the keeper from promotion. */
  readonly canBeMaster: boolean;
  /** The owning keeper's `--priority`; higher wins between equally advanced candidates. @default 0 */
  readonly priority?: number;
}

/**
 * Orders candidates best first: higher reported LSN (`status.xLogPos`; losing less data comes
 * first), then higher keeper priority, then lower DB uid (a stable tie-breaker so every sentinel
 * picks the same one).
 */
export function compareFailoverCandidates(a: Candidate, b: Candidate): number {
  if (a.db.status.xLogPos !== b.db.status.xLogPos) {
    return b.db.status.xLogPos - a.db.status.xLogPos;
  }
  const pa = a.priority ?? 0;
  const pb = b.priority ?? 0;
  if (pa !== pb) {
    return pb - pa;
  }
  return a.db.uid < b.db.uid ? -1 : a.db.uid > b.db.uid ? 1 : 0;
}

/** Eligibility options shared by {@link ineligibility} and {@link findBestCandidates}. */
export interface EligibilityOptions {
  /** Bytes of WAL a candidate may be behind the primary's last report (async mode only). */
  readonly maxStandbyLag: number;
  /**
   * Set when the failed primary ran synchronous replication: the DB uids known to be in sync
   * (its status ∩ spec synchronous standbys). Only these may be promoted, and the lag check does
   * not apply to them: they have every acknowledged commit whatever LSN they last reported.
   * Stolon does the same: in synchronous mode only a standby both in the spec list and known in
   * sync may be promoted, and its lag is not checked.
   */
  readonly syncSet?: ReadonlySet<string> | undefined;
}

/** Why a DB is not a candidate, or undefined when it is one. */
export function ineligibility(
  c: Candidate,
  primary: DB,
  opts: EligibilityOptions & { readonly healthy: boolean },
): string | undefined {
  const { db } = c;
  if (db.spec.role !== 'standby') {
    return 'not a standby';
  }
  if (!opts.healthy) {
    return 'unhealthy';
  }
  if (db.status.currentGeneration !== db.generation) {
    return `not converged (generation ${db.status.currentGeneration}/${db.generation})`;
  }
  if (!c.canBeMaster) {
    return 'keeper has canBeMaster=false';
  }
  if (db.status.timelineID !== primary.status.timelineID) {
    return `on timeline ${db.status.timelineID}, primary was on ${primary.status.timelineID}`;
  }
  if (opts.syncSet !== undefined) {
    return opts.syncSet.has(db.uid) ? undefined : 'not a synchronous standby known to be in sync';
  }
  const lag = primary.status.xLogPos - db.status.xLogPos;
  if (lag > opts.maxStandbyLag) {
    return `lags ${lag} bytes behind the primary (maxStandbyLag ${opts.maxStandbyLag})`;
  }
  return undefined;
}

/** Eligible candidates, best first. */
export function findBestCandidates(
  candidates: readonly Candidate[],
  primary: DB,
  opts: EligibilityOptions & { readonly isHealthy: (db: DB) => boolean },
): Candidate[] {
  return candidates
    .filter(
      (c) =>
        ineligibility(c, primary, { healthy: opts.isHealthy(c.db), maxStandbyLag: opts.maxStandbyLag, syncSet: opts.syncSet }) ===
        undefined,
    )
    .sort(compareFailoverCandidates);
}
