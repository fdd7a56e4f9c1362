/**
 * Per-fault summaries of chaos cycles and their table (text and Markdown): cycles, write outage
 * p50/p95/max, acknowledged writes lost, split-brain windows, time to healthy, and the median
 * failover phases (which phase took the time). Pure.
 */
import { percentile } from './checker.js';
import type { CycleResult, PhaseOffsets } from './cycle.js';
import { FAULT_NAMES, type FaultName } from './faults.js';

/** What {@link summarize} computes for one fault. */
export interface FaultSummary {
  readonly fault: FaultName;
  readonly cycles: number;
  /** Outage through the proxies, ms. */
  readonly outageP50: number;
  readonly outageP95: number;
  readonly outageMax: number;
  /** Acknowledged writes lost, summed over the cycles. */
  readonly lost: number;
  /** Largest lost WAL past the fork over the cycles, bytes (null when nothing was lost or unknown). */
  readonly lostBytesMax: number | null;
  /** Cycles with a split-brain window between two servers for proxy writes, and the longest (ms). */
  readonly proxySplitBrainCycles: number;
  readonly proxySplitBrainMaxMs: number;
  /** The same over all writes including direct writers. */
  readonly anySplitBrainCycles: number;
  readonly anySplitBrainMaxMs: number;
  /** Direct writes accepted by a deposed primary, summed. */
  readonly deposedDirectWrites: number;
  /** Time to healthy after the fault ended, ms (over the cycles that got healthy). */
  readonly healthyP50: number;
  readonly healthyMax: number;
  /** Cycles not healthy within the wait, or where writes did not resume, or with an error. */
  readonly failedCycles: number;
  /** Median phase offsets (ms after the fault) over cycles with a failover event. */
  readonly phases: PhaseOffsets;
}

const PHASE_ORDER = ['primaryLastSeen', 'declaredFailed', 'proxiesFenced', 'candidateChosen', 'promoted', 'proxiesRouted'] as const;

/** Summaries per fault, in {@link FAULT_NAMES} order, for the faults that ran. */
export function summarize(results: readonly CycleResult[]): FaultSummary[] {
  const out: FaultSummary[] = [];
  for (const fault of FAULT_NAMES) {
    const rs = results.filter((r) => r.fault === fault);
    if (rs.length === 0) {
      continue;
    }
    const outages = rs.map((r) => r.outage.ms);
    const healthy = rs.flatMap((r) => (r.timeToHealthyMs === null ? [] : [r.timeToHealthyMs]));
    const phases: PhaseOffsets = {};
    for (const k of PHASE_ORDER) {
      const xs = rs.flatMap((r) => (r.phases?.[k] === undefined ? [] : [r.phases[k]]));
      if (xs.length > 0) {
        phases[k] = percentile(xs, 50);
      }
    }
    const lostBytes = rs.flatMap((r) => (r.lostBytesPastFork === null ? [] : [r.lostBytesPastFork]));
    out.push({
      fault,
      cycles: rs.length,
      outageP50: percentile(outages, 50),
      outageP95: percentile(outages, 95),
      outageMax: Math.max(...outages),
      lost: rs.reduce((n, r) => n + r.lost.length, 0),
      lostBytesMax: lostBytes.length === 0 ? null : Math.max(...lostBytes),
      proxySplitBrainCycles: rs.filter((r) => r.proxySplitBrain.length > 0).length,
      proxySplitBrainMaxMs: Math.max(0, ...rs.flatMap((r) => r.proxySplitBrain.map((w) => w.ms))),
      anySplitBrainCycles: rs.filter((r) => r.anySplitBrain.length > 0).length,
      anySplitBrainMaxMs: Math.max(0, ...rs.flatMap((r) => r.anySplitBrain.map((w) => w.ms))),
      deposedDirectWrites: rs.reduce((n, r) => n + r.deposedDirectWrites.length, 0),
      healthyP50: percentile(healthy, 50),
      healthyMax: healthy.length === 0 ? NaN : Math.max(...healthy),
      failedCycles: rs.filter((r) => r.error !== undefined || r.recoveredAt === null || r.healthyAt === null).length,
      phases,
    });
  }
  return out;
}

const n = (x: number): string => (Number.isFinite(x) ? String(Math.round(x)) : '-');

function phaseText(p: PhaseOffsets): string {
  const parts = PHASE_ORDER.filter((k) => p[k] !== undefined).map((k) => `${k} ${n(p[k]!)}`);
  return parts.length === 0 ? '-' : parts.join(', ');
}

/** The table's columns: header and cell per summary. */
const COLUMNS: readonly [string, (s: FaultSummary) => string][] = [
  ['fault', (s) => s.fault],
  ['cycles', (s) => String(s.cycles)],
  ['outage p50 ms', (s) => n(s.outageP50)],
  ['p95 ms', (s) => n(s.outageP95)],
  ['max ms', (s) => n(s.outageMax)],
  ['acked lost', (s) => `${s.lost}${s.lostBytesMax === null ? '' : ` (${s.lostBytesMax} B)`}`],
  ['split brain: proxy', (s) => `${s.proxySplitBrainCycles}${s.proxySplitBrainCycles > 0 ? ` (max ${s.proxySplitBrainMaxMs} ms)` : ''}`],
  ['incl. direct', (s) => `${s.anySplitBrainCycles}${s.anySplitBrainCycles > 0 ? ` (max ${s.anySplitBrainMaxMs} ms, ${s.deposedDirectWrites} writes)` : ''}`],
  ['healthy p50 ms', (s) => n(s.healthyP50)],
  ['healthy max ms', (s) => n(s.healthyMax)],
  ['failed cycles', (s) => String(s.failedCycles)],
];

/** A plain-text table (one row per fault) plus the median phases per fault. */
export function renderText(summaries: readonly FaultSummary[]): string {
  const rows = [COLUMNS.map(([h]) => h), ...summaries.map((s) => COLUMNS.map(([, f]) => f(s)))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  lines.push('', 'median failover phases, ms after the fault (from the sentinel’s failover events):');
  for (const s of summaries) {
    lines.push(`  ${s.fault}: ${phaseText(s.phases)}`);
  }
  return lines.join('\n');
}

/** The same as a Markdown table plus a phase list. */
export function renderMarkdown(summaries: readonly FaultSummary[]): string {
  const lines = [
    `| ${COLUMNS.map(([h]) => h).join(' | ')} |`,
    `|${COLUMNS.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...summaries.map((s) => `| ${COLUMNS.map(([, f]) => f(s)).join(' | ')} |`),
    '',
    'Median failover phases, ms after the fault was injected (from the sentinel’s failover events):',
    '',
    ...summaries.map((s) => `- \`${s.fault}\`: ${phaseText(s.phases)}`),
  ];
  return lines.join('\n');
}
