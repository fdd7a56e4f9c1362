/**
 * `stolonctl history [--format table|json]`: the cluster's timelines, one row per recorded
 * failover or switchover (Patroni's `patronictl history` shows the same from the timeline
 * history files): the timeline it started and the LSN where (`FailoverEvent.newTimeline`), when,
 * why, from which keeper to which, and the WAL the old primary had past that point, which was
 * thrown away (`FailoverEvent.discardedWal`, as its keeper reported it when it rejoined). What is
 * not recorded is said to be unknown, never guessed as nothing. Timelines of the current
 * primary's history file (the last two, as its keeper publishes them) that no recorded event
 * started are listed too, as `unrecorded` (a promotion before the history was kept, or by
 * `stolonctl promote` of a standby cluster). Building the view is a pure function over
 * clusterdata ({@link buildHistory}); at most the last 20 events are kept (`failoverHistory`).
 */
import type { ClusterData, FailoverEvent } from '@stolon-ts/cluster';
import { CommandError, ExitCode, loadClusterData, runCommand, type CommandContext, type ExitCodeValue } from './context.js';
import { formatLsn, table } from './status.js';

/** Output formats of `history`. */
export const HISTORY_FORMATS = ['table', 'json'] as const;
/** One of {@link HISTORY_FORMATS}. */
export type HistoryFormat = (typeof HISTORY_FORMATS)[number];

/**
 * What is known of the WAL thrown away on the old primary:
 * - `reported`: its keeper reported the range when it rejoined (pg_rewind or a new clone);
 * - `none`: nothing was discarded by design (a completed switchover waits until the target has
 *   all the WAL; an aborted event kept the old primary);
 * - `atLeast`: the old primary's last reported LSN was past the switch point, so at least that
 *   range was lost, but its keeper has not reported the discard (yet);
 * - `unknown`: not recorded; `why` says what is missing.
 * LSNs in bytes.
 */
export type DiscardedView =
  | { readonly status: 'reported'; readonly fromLsn: number; readonly toLsn: number; readonly method: string }
  | { readonly status: 'none'; readonly why: string }
  | { readonly status: 'atLeast'; readonly fromLsn: number; readonly toLsn: number }
  | { readonly status: 'unknown'; readonly why: string };

/** One row of `history`. */
export interface HistoryRow {
  /** The timeline the event started; null when not recorded (or the event was aborted). */
  readonly timeline: number | null;
  /** LSN (bytes) where that timeline left the previous one; null when not recorded. */
  readonly switchPoint: number | null;
  /** RFC 3339 time of the promotion (else of the end, else of the start); null for `unrecorded`. */
  readonly at: string | null;
  readonly kind: FailoverEvent['kind'] | 'unrecorded';
  /** `completed`, `aborted` or `in progress`; `completed` for `unrecorded`. */
  readonly result: string;
  /** Why: the failover's cause or who asked for the switchover; PostgreSQL's history-file reason for `unrecorded`. */
  readonly cause: string;
  readonly fromKeeper: string | null;
  readonly toKeeper: string | null;
  readonly discarded: DiscardedView;
}

/** What `history` shows. */
export interface HistoryReport {
  /** The current primary's keeper and timeline (as its keeper last reported it); null without a primary. */
  readonly primary: { readonly keeperUID: string; readonly timeline: number } | null;
  /** Unrecorded timelines first (by timeline), then the recorded events oldest first, the one in progress last. */
  readonly rows: readonly HistoryRow[];
}

function discardedOf(ev: FailoverEvent, inProgress: boolean): DiscardedView {
  if (ev.discardedWal !== undefined) {
    return { status: 'reported', fromLsn: ev.discardedWal.fromLsn, toLsn: ev.discardedWal.toLsn, method: ev.discardedWal.method };
  }
  if (ev.result === 'aborted') {
    return { status: 'none', why: 'aborted: the old primary kept its data and role' };
  }
  if (ev.kind === 'switchover' && ev.result === 'completed') {
    return { status: 'none', why: 'a completed switchover promotes the target only once it has all of the old primary\'s WAL' };
  }
  if (inProgress) {
    return { status: 'unknown', why: 'in progress' };
  }
  if (ev.newTimeline === undefined) {
    return { status: 'unknown', why: 'the new timeline was not recorded' };
  }
  if (ev.oldPrimary.xLogPos > ev.newTimeline.switchPoint) {
    return { status: 'atLeast', fromLsn: ev.newTimeline.switchPoint, toLsn: ev.oldPrimary.xLogPos };
  }
  return { status: 'unknown', why: "the old primary's keeper has not reported a discard; its last reported LSN was not past the switch point" };
}

/**
 * Derives the history from clusterdata: one row per event of `failoverHistory` and the one in
 * progress, plus the current primary's reported timeline-history entries that no event started.
 * Pure; never throws.
 */
export function buildHistory(cd: ClusterData): HistoryReport {
  const events: { ev: FailoverEvent; inProgress: boolean }[] = [
    ...(cd.failoverHistory ?? []).map((ev) => ({ ev, inProgress: false })),
    ...(cd.cluster.status.failover !== undefined ? [{ ev: cd.cluster.status.failover, inProgress: true }] : []),
  ];
  const recorded: HistoryRow[] = events.map(({ ev, inProgress }) => ({
    timeline: ev.newTimeline?.timelineID ?? null,
    switchPoint: ev.newTimeline?.switchPoint ?? null,
    at: ev.phases.promoted ?? ev.phases.proxiesRouted ?? ev.phases.declaredFailed,
    kind: ev.kind,
    result: ev.result ?? 'in progress',
    cause: ev.cause,
    fromKeeper: ev.oldPrimary.keeperUID,
    toKeeper: ev.result === 'aborted' ? ev.oldPrimary.keeperUID : (ev.newPrimary?.keeperUID ?? null),
    discarded: discardedOf(ev, inProgress),
  }));
  const master = cd.dbs[cd.cluster.status.master];
  const known = new Set(recorded.map((r) => r.timeline).filter((t) => t !== null));
  const unrecorded: HistoryRow[] = (master?.status.timelinesHistory ?? [])
    .filter((h) => !known.has(h.timelineID + 1))
    .sort((a, b) => a.timelineID - b.timelineID)
    .map((h) => ({
      timeline: h.timelineID + 1,
      switchPoint: h.switchPoint,
      at: null,
      kind: 'unrecorded',
      result: 'completed',
      cause: h.reason === '' ? 'not recorded' : `not recorded; PostgreSQL's history file says: ${h.reason}`,
      fromKeeper: null,
      toKeeper: null,
      discarded: { status: 'unknown', why: 'not recorded' },
    }));
  return {
    primary: master === undefined ? null : { keeperUID: master.spec.keeperUID, timeline: master.status.timelineID },
    rows: [...unrecorded, ...recorded],
  };
}

/** The discarded-WAL cell of the table. */
export function describeDiscarded(d: DiscardedView): string {
  switch (d.status) {
    case 'reported':
      return `${formatLsn(d.fromLsn)}–${formatLsn(d.toLsn)} (${d.toLsn - d.fromLsn} bytes, ${d.method})`;
    case 'atLeast':
      return `at least ${formatLsn(d.fromLsn)}–${formatLsn(d.toLsn)} (${d.toLsn - d.fromLsn} bytes; not reported by its keeper)`;
    case 'none':
      return `none (${d.why})`;
    case 'unknown':
      return `unknown (${d.why})`;
  }
}

/** The report as a table: a line about the current primary, then one row per timeline. */
export function renderHistoryTable(r: HistoryReport): string {
  const head = r.primary === null ? 'no primary now' : `current primary: keeper ${r.primary.keeperUID}, timeline ${r.primary.timeline}`;
  if (r.rows.length === 0) {
    return `${head}\nno failovers or switchovers recorded`;
  }
  const rows = r.rows.map((x) => [
    x.timeline ?? '-',
    x.switchPoint === null ? '-' : formatLsn(x.switchPoint),
    x.at ?? 'unknown',
    x.kind,
    x.result,
    x.fromKeeper ?? '?',
    x.toKeeper ?? '?',
    describeDiscarded(x.discarded),
    x.cause,
  ]);
  return `${head}\n${table(['TL', 'SWITCH LSN', 'WHEN', 'KIND', 'RESULT', 'FROM', 'TO', 'DISCARDED WAL', 'CAUSE'], rows)}`;
}

/**
 * Prints the history.
 * @returns 0; 1 when the cluster is not initialised, its clusterdata is invalid or the store
 *   fails; 2 for an unknown format.
 */
export function runHistory(ctx: CommandContext, opts: { readonly format?: HistoryFormat } = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'history', async () => {
    const format = opts.format ?? 'table';
    if (!HISTORY_FORMATS.includes(format)) {
      throw new CommandError(`--format: "${String(format)}" is not one of table, json`, ExitCode.usage, { field: 'format' });
    }
    const { cd } = await loadClusterData(ctx);
    const report = buildHistory(cd);
    ctx.out(format === 'json' ? JSON.stringify(report, null, 2) : renderHistoryTable(report));
  });
}
