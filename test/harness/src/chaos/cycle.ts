/**
 * One fault cycle of the chaos suite, shared by the short form (`test/e2e/chaos.e2e.test.ts`) and
 * the long form (`npm run test:chaos`): with the recorder's writers running on a healthy cluster,
 * inject a fault, wait (bounded) until proxy writes resume as the fault's expectation says, hold
 * the fault for its minimum duration, heal it, wait (bounded) until the cluster is healthy, let
 * writes flow for another second, then judge the cycle from the recorded history and the current
 * primary's table (a fault that leaves nothing safe to promote, `resumeAfterHeal`, is held and
 * healed first, and writes must resume after the heal). Every wait is bounded; a timeout is
 * recorded in the result, not thrown, so a loop can report it and stop.
 */
import { type ClusterData, type FailoverEvent } from '@stolon-ts/cluster';
import {
  longestGap,
  lostBytesPastFork,
  missingWrites,
  primaryKeeperIndex,
  readClusterData,
  readPresentWrites,
  readTimelineHistory,
  rowKey,
  serverWindows,
  splitBrainWindows,
  waitHealthy,
  writesAfterDeposition,
  type Outage,
  type SplitBrainWindow,
} from './checker.js';
import { FAULTS, type ChaosTarget, type FaultName } from './faults.js';
import { serverKey, type AckedWrite, type Recorder } from './recorder.js';

/** Options of {@link runFaultCycle}. */
export interface CycleOptions {
  /** Cycle number (rotates which proxy / etcd member a fault picks). @default 0 */
  readonly cycle?: number;
  /** How long writes may take to resume after the fault, ms. @default 60000 */
  readonly recoveryTimeoutMs?: number;
  /** How long to wait for the cluster to be healthy after the heal, ms. @default 90000 */
  readonly healthyTimeoutMs?: number;
  /** Writes that must flow after healthy before the cycle is judged, ms. @default 1000 */
  readonly settleMs?: number;
}

/** Phase offsets (ms after the fault was injected) of the failover the sentinel recorded. */
export type PhaseOffsets = Partial<Record<keyof FailoverEvent['phases'], number>>;

/** What one cycle measured and found. */
export interface CycleResult {
  readonly fault: FaultName;
  readonly cycle: number;
  readonly detail: string;
  readonly primaryBefore: string;
  /** Keeper clusterdata names primary after the cycle ('' when none). */
  readonly primaryAfter: string;
  /** Epoch ms. */
  readonly injectedAt: number;
  /**
   * First acknowledged proxy write sent after the fault that meets the expectation (a new
   * server for a failover, a new server or postmaster for a crash, any for the rest), epoch ms;
   * null when writes did not resume within the recovery timeout.
   */
  readonly recoveredAt: number | null;
  /** When the fault ended: the heal, or the injection for an instantaneous fault (crash), epoch ms. */
  readonly faultEndedAt: number;
  /** Epoch ms when the cluster was healthy again, or null on timeout. */
  readonly healthyAt: number | null;
  /** `healthyAt − faultEndedAt`, ms, or null on timeout. */
  readonly timeToHealthyMs: number | null;
  /** Why it was not healthy at the timeout ('' when it was). */
  readonly unhealthyReason: string;
  /** Longest gap between acknowledged proxy writes around the fault. */
  readonly outage: Outage;
  /** Proxy writes acknowledged from 2 s before the fault to the end of the cycle. */
  readonly proxyAcks: number;
  /** Direct writes acknowledged from 2 s before the fault to the end of the cycle. */
  readonly directAcks: number;
  /**
   * Acknowledged proxy writes of this cycle (and the minute before) missing on the primary, less
   * those an earlier cycle already reported (`Recorder.reportedLost`).
   */
  readonly lost: readonly AckedWrite[];
  /** For lost writes: furthest WAL position past their timeline's fork, bytes (async mode). */
  readonly lostBytesPastFork: number | null;
  /** Overlapping windows of two servers, proxy writes only (from 2 s before the fault). */
  readonly proxySplitBrain: readonly SplitBrainWindow[];
  /** Overlapping windows of two servers, all writes (proxy and direct). */
  readonly anySplitBrain: readonly SplitBrainWindow[];
  /** Direct writes a deposed primary acknowledged after another server's first write. */
  readonly deposedDirectWrites: readonly AckedWrite[];
  /** The sentinel's failover event of this cycle, as offsets from `injectedAt`, if there was one. */
  readonly phases: PhaseOffsets | null;
  /** Set when the cycle could not run (fault unavailable, injection failed). */
  readonly error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function eventOfCycle(cd: ClusterData, injectedAt: number): FailoverEvent | undefined {
  const events = [...(cd.failoverHistory ?? []), ...(cd.cluster.status.failover ? [cd.cluster.status.failover] : [])];
  return events.filter((e) => Date.parse(e.phases.declaredFailed) >= injectedAt - 1000).at(-1);
}

function offsets(ev: FailoverEvent, injectedAt: number): PhaseOffsets {
  const out: PhaseOffsets = {};
  for (const [k, v] of Object.entries(ev.phases) as [keyof FailoverEvent['phases'], string | undefined][]) {
    const t = v === undefined ? NaN : Date.parse(v);
    if (Number.isFinite(t)) {
      out[k] = t - injectedAt;
    }
  }
  return out;
}

/**
 * Runs one cycle of `fault` against `t` with `recorder` running (started by the caller on a
 * healthy cluster). Never throws for a cluster misbehaving (it is in the result); throws for
 * harness problems (the recorder produces nothing before the fault within 20 s).
 */
export async function runFaultCycle(t: ChaosTarget, recorder: Recorder, fault: FaultName, opts: CycleOptions = {}): Promise<CycleResult> {
  const def = FAULTS[fault];
  const cycle = opts.cycle ?? 0;
  const startedAt = Date.now();
  const base = {
    fault,
    cycle,
    proxyAcks: 0,
    directAcks: 0,
    lost: [],
    lostBytesPastFork: null,
    proxySplitBrain: [],
    anySplitBrain: [],
    deposedDirectWrites: [],
    phases: null,
  };
  const why = def.unavailable(t);
  if (why !== undefined) {
    return {
      ...base,
      detail: '',
      primaryBefore: '',
      primaryAfter: '',
      injectedAt: startedAt,
      recoveredAt: null,
      faultEndedAt: startedAt,
      healthyAt: null,
      timeToHealthyMs: null,
      unhealthyReason: '',
      outage: { ms: 0, from: startedAt, to: startedAt },
      error: `${fault} cannot run here: ${why}`,
    };
  }
  await recorder.waitForProxyAcks(10, 20_000);
  const firstIndex = recorder.acked.length;
  // What served proxy writes just before the fault.
  const before = recorder.acked.filter((a) => a.kind === 'proxy' && a.ackedAt >= Date.now() - 2000);
  const keysBefore = new Set(before.map((a) => serverKey(a.server)));
  const postmastersBefore = new Set(before.map((a) => `${serverKey(a.server)}@${a.server.postmasterStart}`));

  const inj = await def.inject(t, { cycle });
  const primaryBefore = t.cluster.keepers[inj.primaryBefore]?.uid ?? '';

  // Writes resume?
  const resumed = (a: AckedWrite): boolean => {
    if (a.kind !== 'proxy' || a.sentAt < inj.injectedAt) {
      return false;
    }
    switch (def.expect) {
      case 'failover':
        return !keysBefore.has(serverKey(a.server));
      case 'restart-or-failover':
        return !postmastersBefore.has(`${serverKey(a.server)}@${a.server.postmasterStart}`);
      case 'no-failover':
        return true;
    }
  };
  let recoveredAt: number | null = null;
  let scan = firstIndex;
  const holdUntil = inj.injectedAt + inj.minHoldMs;
  let healedAt: number | undefined;
  if (inj.resumeAfterHeal === true) {
    // No server may be promoted before the heal: hold, heal, then wait for writes to resume.
    await sleep(Math.max(0, holdUntil - Date.now()));
    await inj.heal();
    healedAt = Date.now();
  }
  const recoveryDeadline = (healedAt ?? inj.injectedAt) + (opts.recoveryTimeoutMs ?? 60_000);
  while (recoveredAt === null && Date.now() < recoveryDeadline) {
    for (; scan < recorder.acked.length; scan++) {
      const a = recorder.acked[scan]!;
      if (resumed(a)) {
        recoveredAt = a.ackedAt;
        break;
      }
    }
    if (recoveredAt === null) {
      await sleep(50);
    }
  }
  if (Date.now() < holdUntil) {
    await sleep(holdUntil - Date.now());
  }
  await inj.heal();
  const faultEndedAt = fault === 'crashPrimaryPostgres' ? inj.injectedAt : (healedAt ?? Date.now());
  const health = await waitHealthy(t.cluster, t.store, { timeoutMs: opts.healthyTimeoutMs ?? 90_000 });
  if (health.healthyAt !== null) {
    await sleep(opts.settleMs ?? 1000);
  }
  const endedAt = Date.now();

  // Judge the writes from 2 s before the fault (the writers were running: the cycle waited for
  // them) to the end, not only those after `firstIndex`: when none was acknowledged between then
  // and the fault, the gap before the first write after it, and which server was primary before
  // it, would be lost.
  const from = inj.injectedAt - 2000;
  const acks = recorder.acked.filter((a) => a.ackedAt >= from && a.ackedAt <= endedAt);
  const proxy = acks.filter((a) => a.kind === 'proxy');
  const outage = longestGap(proxy, from, endedAt);
  const proxySplitBrain = splitBrainWindows(serverWindows(proxy));
  const anySplitBrain = splitBrainWindows(serverWindows(acks));
  const deposedDirectWrites = writesAfterDeposition(acks, inj.injectedAt).filter((a) => a.kind === 'direct');

  let lost: AckedWrite[] = [];
  let lostBytes: number | null = null;
  let primaryAfter = '';
  let phases: PhaseOffsets | null = null;
  try {
    const cd = await readClusterData(t.store);
    const p = primaryKeeperIndex(t.cluster, cd);
    primaryAfter = t.cluster.keepers[p]?.uid ?? '';
    const ev = eventOfCycle(cd, inj.injectedAt);
    phases = ev === undefined ? null : offsets(ev, inj.injectedAt);
    if (p >= 0) {
      // Every acknowledged write of this cycle and of the minute before it must be there.
      const since = startedAt - 60_000;
      const present = await readPresentWrites(t.cluster.directClientConfig(p), since);
      lost = missingWrites(
        recorder.acked.filter((a) => a.kind === 'proxy' && a.sentAt >= since && a.ackedAt <= endedAt),
        present,
      ).filter((w) => !recorder.reportedLost.has(rowKey(w.writer, w.seq)));
      for (const w of lost) {
        recorder.reportedLost.add(rowKey(w.writer, w.seq));
      }
      if (lost.length > 0) {
        const b = lostBytesPastFork(lost, await readTimelineHistory(t.cluster.directClientConfig(p)));
        lostBytes = b === undefined ? null : Number(b);
      }
    }
  } catch (err) {
    return {
      ...base,
      detail: inj.detail,
      primaryBefore,
      primaryAfter,
      injectedAt: inj.injectedAt,
      recoveredAt,
      faultEndedAt,
      healthyAt: health.healthyAt,
      timeToHealthyMs: health.healthyAt === null ? null : health.healthyAt - faultEndedAt,
      unhealthyReason: health.lastReason,
      outage,
      error: `reading the primary after the cycle failed: ${(err as Error).message}`,
    };
  }
  return {
    fault,
    cycle,
    detail: inj.detail,
    primaryBefore,
    primaryAfter,
    injectedAt: inj.injectedAt,
    recoveredAt,
    faultEndedAt,
    healthyAt: health.healthyAt,
    timeToHealthyMs: health.healthyAt === null ? null : health.healthyAt - faultEndedAt,
    unhealthyReason: health.lastReason,
    outage,
    proxyAcks: proxy.length,
    directAcks: acks.length - proxy.length,
    lost,
    lostBytesPastFork: lostBytes,
    proxySplitBrain,
    anySplitBrain,
    deposedDirectWrites,
    phases,
  };
}

/** One-line summary of a cycle, for logs. */
export function describeCycle(r: CycleResult): string {
  if (r.error !== undefined && r.recoveredAt === null && r.detail === '') {
    return `cycle ${r.cycle} ${r.fault}: ${r.error}`;
  }
  const ph =
    r.phases === null
      ? 'no failover event'
      : `phases ms after the fault: ${Object.entries(r.phases)
          .sort((a, b) => (a[1] ?? 0) - (b[1] ?? 0))
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`;
  return (
    `cycle ${r.cycle} ${r.fault}: ${r.detail}; primary ${r.primaryBefore} → ${r.primaryAfter}; ` +
    `outage ${r.outage.ms} ms; resumed ${r.recoveredAt === null ? 'NOT within the timeout' : `+${r.recoveredAt - r.injectedAt} ms`}; ` +
    `healthy ${r.timeToHealthyMs === null ? `NOT (${r.unhealthyReason})` : `${r.timeToHealthyMs} ms after the fault ended`}; ` +
    `${r.proxyAcks} proxy / ${r.directAcks} direct writes acknowledged; lost ${r.lost.length}` +
    `${r.lostBytesPastFork === null ? '' : ` (${r.lostBytesPastFork} bytes past the fork)`}; ` +
    `split brain: proxy ${r.proxySplitBrain.length}, any ${r.anySplitBrain.length}` +
    `${r.anySplitBrain.length > 0 ? ` (longest ${r.anySplitBrain[0]!.ms} ms)` : ''}; deposed-primary direct writes ${r.deposedDirectWrites.length}; ${ph}` +
    `${r.error !== undefined ? `; ERROR ${r.error}` : ''}`
  );
}
