/**
 * `stolonctl events [--format table|json] [--last N]`: the failover trace — the finished
 * failovers and switchovers kept in `failoverHistory` (newest last), then the one in progress
 * (`cluster.status.failover`), each with its phases as millisecond offsets from the moment the
 * primary was declared failed and the write-outage bound (proxies routed − primary last seen: at
 * most this long, from the primary's last observed progress, were the proxies without a primary).
 * Building the view is a pure function over clusterdata ({@link buildEvents}); rendering is
 * separate.
 * Also the failsafe spells of primaries during store outages (`failsafeHistory`; docs/architecture.md,
 * "Store outages: failsafe mode").
 * Our addition: Stolon has no failover trace. See docs/architecture.md, "Failover trace".
 */
import { isFailsafeEpisode, type ClusterData, type FailoverEvent, type FailsafeEpisode } from '@stolon-ts/cluster';
import {
  CommandError,
  ExitCode,
  loadClusterData,
  runCommand,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';
import { formatLsn } from './status.js';

/** Output formats of `events`. */
export const EVENTS_FORMATS = ['table', 'json'] as const;
/** One of {@link EVENTS_FORMATS}. */
export type EventsFormat = (typeof EVENTS_FORMATS)[number];

/** Options of {@link runEvents}. */
export interface EventsOptions {
  /** `--format`. @default "table" */
  readonly format?: EventsFormat;
  /** `--last N`: only the N newest events (the one in progress counts as the newest). @default all */
  readonly last?: number;
}

/** The phases of a failover in the order they happen, with their table labels. */
export const PHASES = [
  ['primaryLastSeen', 'primary last seen'],
  ['declaredFailed', 'declared failed'],
  ['proxiesFenced', 'proxies fenced'],
  ['candidateChosen', 'candidate chosen'],
  ['promoted', 'promoted'],
  ['proxiesRouted', 'proxies routed'],
] as const satisfies readonly (readonly [keyof FailoverEvent['phases'], string])[];

/**
 * What the write-outage figure bounds, printed after it. The primary stopped after its last
 * observed progress (`primaryLastSeen`: when the leader sentinel first saw its keeper's last
 * progress marker, or the first report of its postgres failing), so the proxies were without a
 * primary at most that long; clients also need to reconnect once their proxy follows.
 */
const WRITE_OUTAGE_BOUND = "from the primary's last observed progress to routing the proxies to the new primary; clients reconnect after it";

/** A phase name. */
export type PhaseName = (typeof PHASES)[number][0];

/** One event as `events` shows it: the stored event plus what is computed from it. */
export interface EventView {
  /** The event exactly as stored. */
  readonly event: FailoverEvent;
  /** True for `cluster.status.failover`: not finished yet. */
  readonly inProgress: boolean;
  /**
   * Milliseconds from `declaredFailed` to each phase that has a timestamp (negative before it:
   * `primaryLastSeen`); a phase whose time does not parse is left out.
   */
  readonly offsetsMs: Partial<Record<PhaseName, number>>;
  /**
   * `proxiesRouted − primaryLastSeen` in ms when both are known, else null: an upper bound (to a
   * store round trip) on the write outage behind the proxies, since the primary stopped after its
   * last observed progress (`primaryLastSeen`); clients also reconnect after the routing.
   */
  readonly writeOutageMs: number | null;
}

/** What `events` shows. */
export interface EventsReport {
  /** Oldest first; the event in progress, if any, last. */
  readonly events: readonly EventView[];
  /** How many events there were before `--last` cut them. */
  readonly total: number;
  /**
   * The failsafe spells of primaries during store outages (`failsafeHistory`), oldest first, the
   * last `--last` of them; malformed entries are skipped (a record only).
   */
  readonly failsafe: readonly FailsafeEpisode[];
  /** How many well-formed spells there were before `--last` cut them. */
  readonly failsafeTotal: number;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Checks the parts of a stored event that rendering relies on (parseClusterData checks them too;
 * this stays as defence in depth for a document that did not come through it).
 * @throws CommandError (exit 1) naming the event's place in clusterdata.
 */
function checkEvent(v: unknown, where: string): FailoverEvent {
  if (!isObject(v) || !isObject(v['phases']) || typeof v['phases']['declaredFailed'] !== 'string' || !isObject(v['oldPrimary'])) {
    throw new CommandError(
      `clusterdata ${where} is not a failover event (it needs an object oldPrimary and phases.declaredFailed); ` +
        'only the sentinel writes these, so the stored clusterdata was edited by hand: fix or remove that event in the store',
      ExitCode.runtime,
    );
  }
  return v as unknown as FailoverEvent;
}

/** Milliseconds since the epoch of an RFC 3339 time, or null when it does not parse. */
function timeMs(iso: string | undefined): number | null {
  if (iso === undefined) {
    return null;
  }
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

/** The computed part of an event's view. Pure. */
export function viewEvent(event: FailoverEvent, inProgress: boolean): EventView {
  const base = timeMs(event.phases.declaredFailed);
  const offsetsMs: Partial<Record<PhaseName, number>> = {};
  if (base !== null) {
    for (const [phase] of PHASES) {
      const t = timeMs(event.phases[phase]);
      if (t !== null) {
        offsetsMs[phase] = t - base;
      }
    }
  }
  const lastSeen = timeMs(event.phases.primaryLastSeen);
  const routed = timeMs(event.phases.proxiesRouted);
  return { event, inProgress, offsetsMs, writeOutageMs: lastSeen !== null && routed !== null ? routed - lastSeen : null };
}

/**
 * The events of `cd`: `failoverHistory` (oldest first) then `cluster.status.failover`, the last
 * `last` of them when given. Pure.
 * @throws CommandError (exit 1) when a stored event lacks the fields rendering needs.
 */
export function buildEvents(cd: ClusterData, last?: number): EventsReport {
  const history: unknown = cd.failoverHistory ?? [];
  if (!Array.isArray(history)) {
    throw new CommandError(
      'clusterdata failoverHistory is not a list; only the sentinel writes it, so the stored clusterdata was edited by hand: fix or remove it in the store',
      ExitCode.runtime,
    );
  }
  const all = history.map((e: unknown, i) => viewEvent(checkEvent(e, `failoverHistory[${i}]`), false));
  if (cd.cluster.status.failover !== undefined) {
    all.push(viewEvent(checkEvent(cd.cluster.status.failover, 'cluster.status.failover'), true));
  }
  const stored: unknown = cd.failsafeHistory;
  const spells = Array.isArray(stored) ? stored.filter(isFailsafeEpisode) : [];
  return {
    events: last === undefined ? all : all.slice(-last),
    total: all.length,
    failsafe: last === undefined ? spells : spells.slice(-last),
    failsafeTotal: spells.length,
  };
}

/** `1234 ms` between two RFC 3339 times, or `?` when either does not parse. */
function spanMs(from: string, to: string): string {
  const a = timeMs(from);
  const b = timeMs(to);
  return a === null || b === null ? '?' : `${b - a} ms`;
}

/** One block of `events`' table for a failsafe spell. */
function failsafeBlock(e: FailsafeEpisode): string {
  const rows: [string, string][] = [
    ['primary keeper', e.keeperUID],
    ['store unreachable', `${e.since} to ${e.until} (${spanMs(e.since, e.until)}, as this keeper saw it)`],
    ['rounds', `${e.confirmedRounds}/${e.rounds} confirmed by all ${e.members} members`],
    [
      'outcome',
      e.fenced
        ? 'the primary fenced itself (a round was not confirmed and its lease could expire)'
        : e.confirmedRounds === e.rounds
          ? 'kept the primary role throughout'
          : 'kept the primary role (an unconfirmed round was covered by the lease or a later round)',
    ],
    ['last failure', e.lastFailure ?? '-'],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [`=== store outage (failsafe mode) ${e.keeperUID} ${e.since} ===`, '', ...rows.map(([k, val]) => `${k.padEnd(width)}  ${val}`)].join('\n');
}

/** `+35 ms`, `0 ms`, `-5210 ms`. */
function signedMs(ms: number): string {
  return `${ms > 0 ? '+' : ''}${ms} ms`;
}

function primaryLabel(p: { keeperUID?: string; dbUid?: string; xLogPos?: number } | undefined): string {
  if (p === undefined) {
    return '-';
  }
  const lsn = typeof p.xLogPos === 'number' && Number.isSafeInteger(p.xLogPos) && p.xLogPos > 0 ? formatLsn(p.xLogPos) : 'unknown';
  return `${p.keeperUID ?? '(unknown)'} (db ${p.dbUid ?? '(unknown)'}, LSN ${lsn})`;
}

/**
 * The phases line: each phase with a timestamp, in order, with its offset from `declaredFailed`;
 * a time that does not parse is shown as given.
 * @example "primary last seen -5210 ms, declared failed 0 ms, proxies fenced +35 ms"
 */
export function describePhases(v: EventView): string {
  const parts: string[] = [];
  for (const [phase, label] of PHASES) {
    const at = v.event.phases[phase];
    if (at === undefined) {
      continue;
    }
    const off = v.offsetsMs[phase];
    parts.push(off === undefined ? `${label} at ${at} (unparseable time)` : `${label} ${signedMs(off)}`);
  }
  return parts.join(', ');
}

/** Renders the report as one block of aligned `label  value` lines per event. */
export function renderEventsTable(r: EventsReport): string {
  if (r.events.length === 0 && r.failsafe.length === 0) {
    return 'no failovers recorded';
  }
  const blocks = r.events.map((v) => {
    const e = v.event;
    const result = v.inProgress ? 'in progress' : (e.result ?? '-');
    const outage =
      v.writeOutageMs !== null
        ? `at most ${v.writeOutageMs} ms (${WRITE_OUTAGE_BOUND})`
        : v.inProgress
          ? 'not known yet (needs primary last seen and proxies routed)'
          : '- (primary last seen or proxies routed not recorded)';
    const rows: [string, string][] = [
      ['id', e.id],
      ['kind', e.kind],
      ['cause', e.cause],
      ['old primary', primaryLabel(e.oldPrimary)],
      ['new primary', primaryLabel(e.newPrimary)],
      ['choice', e.choice ?? '-'],
      ['result', result],
      ['declared failed at', e.phases.declaredFailed],
      ['phases', describePhases(v)],
      ['write outage', outage],
    ];
    const width = Math.max(...rows.map(([k]) => k.length));
    return [
      `=== ${e.kind} ${e.id}${v.inProgress ? ' (IN PROGRESS)' : ''} ===`,
      '',
      ...rows.map(([k, val]) => `${k.padEnd(width)}  ${val}`),
    ].join('\n');
  });
  if (r.events.length < r.total) {
    blocks.unshift(`(the last ${r.events.length} of ${r.total} events; --last to show more)`);
  }
  if (r.events.length === 0) {
    blocks.push('no failovers recorded');
  }
  if (r.failsafe.length < r.failsafeTotal) {
    blocks.push(`(the last ${r.failsafe.length} of ${r.failsafeTotal} failsafe spells; --last to show more)`);
  }
  blocks.push(...r.failsafe.map(failsafeBlock));
  return blocks.join('\n\n');
}

/**
 * The report as JSON: a list of each stored event's own fields plus `inProgress`, `offsetsMs`
 * (phase → ms from `declaredFailed`) and `writeOutageMs` (or null), then each failsafe spell's
 * fields with `kind: "failsafe"`; the two merged oldest first (by `declaredFailed` and `since`).
 * Readers that want failovers only keep `kind` failover and switchover.
 */
export function eventsJson(r: EventsReport): unknown {
  const failovers = r.events.map((v) => ({
    at: timeMs(v.event.phases.declaredFailed) ?? 0,
    json: { ...v.event, inProgress: v.inProgress, offsetsMs: v.offsetsMs, writeOutageMs: v.writeOutageMs } as object,
  }));
  const spells = r.failsafe.map((e) => ({ at: timeMs(e.since) ?? 0, json: { kind: 'failsafe', ...e } as object }));
  // Stable: failovers keep their stored order among themselves (the one in progress last).
  return [...failovers, ...spells].sort((a, b) => a.at - b.at).map((x) => x.json);
}

/**
 * Prints the failover trace; "no failovers recorded" (table) or `[]` (json) when there is none.
 * @returns 0; 1 when the cluster is not initialised, its clusterdata or a stored event is
 *   invalid, or the store fails; 2 for an unknown format or a `last` that is not a positive
 *   whole number.
 */
export function runEvents(ctx: CommandContext, opts: EventsOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'events', async () => {
    const format = opts.format ?? 'table';
    if (!EVENTS_FORMATS.includes(format)) {
      throw new CommandError(`--format: "${String(format)}" is not one of table, json`, ExitCode.usage, {
        field: 'format',
      });
    }
    const last = opts.last;
    if (last !== undefined && !(Number.isSafeInteger(last) && last >= 1)) {
      const what = Number.isNaN(last) ? 'not a number' : `${last}, not a positive whole number`;
      throw new CommandError(`--last: got ${what}; give how many events to show, e.g. --last 5`, ExitCode.usage, {
        field: 'last',
      });
    }
    const { cd } = await loadClusterData(ctx);
    const report = buildEvents(cd, last);
    ctx.out(format === 'json' ? JSON.stringify(eventsJson(report), null, 2) : renderEventsTable(report));
  });
}
