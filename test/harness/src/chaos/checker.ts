/**
 * The chaos suite's checker (docs/design.md#faults-and-history): decides from the recorded history
 * (see `recorder.ts`) and from the final primary's table whether anything acknowledged was lost,
 * whether two servers accepted writes in overlapping windows (split brain), how long writes were
 * unavailable around a fault, and how long the cluster took to be healthy again. Definitions
 * (server window, split-brain window, outage): docs/chaos.md, "The checker". All times are epoch
 * ms of this host's clock; the servers run on the same host.
 *
 * The analysis functions are pure (history in, verdict out) and unit-tested; the functions that
 * read the cluster (`readPresentWrites`, `waitHealthy`) are documented with what they query.
 */
import pg from 'pg';
import { parseClusterData, type ClusterData } from '@stolon-ts/cluster';
import type { Store } from '@stolon-ts/store';
import type { LocalCluster } from '../cluster.js';
import { serverKey, type AckedWrite } from './recorder.js';

/** One server's write window. */
export interface ServerWindow {
  /** {@link serverKey} of the server. */
  readonly server: string;
  /** Server time of the first insert, epoch ms. */
  readonly from: number;
  /** Client time of the last acknowledgement, epoch ms. */
  readonly to: number;
  readonly writes: number;
}

/** Two servers whose windows overlap. */
export interface SplitBrainWindow {
  readonly a: string;
  readonly b: string;
  /** Start and end of the overlap, epoch ms. */
  readonly from: number;
  readonly to: number;
  /** Length of the overlap, ms (> 0). */
  readonly ms: number;
}

/** Groups writes by server and returns each server's window, earliest first. */
export function serverWindows(writes: readonly AckedWrite[]): ServerWindow[] {
  const by = new Map<string, { from: number; to: number; writes: number }>();
  for (const w of writes) {
    const k = serverKey(w.server);
    const cur = by.get(k);
    if (cur === undefined) {
      by.set(k, { from: w.serverAt, to: w.ackedAt, writes: 1 });
    } else {
      cur.from = Math.min(cur.from, w.serverAt);
      cur.to = Math.max(cur.to, w.ackedAt);
      cur.writes += 1;
    }
  }
  return [...by.entries()].map(([server, v]) => ({ server, ...v })).sort((x, y) => x.from - y.from);
}

/** Every pair of windows that overlap (split-brain windows), longest first. */
export function splitBrainWindows(windows: readonly ServerWindow[]): SplitBrainWindow[] {
  const out: SplitBrainWindow[] = [];
  for (let i = 0; i < windows.length; i++) {
    for (let j = i + 1; j < windows.length; j++) {
      const a = windows[i]!;
      const b = windows[j]!;
      const from = Math.max(a.from, b.from);
      const to = Math.min(a.to, b.to);
      if (to > from) {
        out.push({ a: a.server, b: b.server, from, to, ms: to - from });
      }
    }
  }
  return out.sort((x, y) => y.ms - x.ms);
}

/** The longest stretch without an acknowledged write. */
export interface Outage {
  /** Length in ms. */
  readonly ms: number;
  /** Ack time before the gap (or the range start), epoch ms. */
  readonly from: number;
  /** Ack time after the gap (or the range end when writes never resumed), epoch ms. */
  readonly to: number;
}

/**
 * The longest gap between consecutive acknowledgements (by `ackedAt`) of `writes` within
 * `[from, to]`, including the gap from the last one to `to`; `from` itself is not a boundary (the
 * caller starts the range while writes flow). With no write in the range the whole range is the
 * outage.
 */
export function longestGap(writes: readonly AckedWrite[], from: number, to: number): Outage {
  const times = writes
    .map((w) => w.ackedAt)
    .filter((t) => t >= from && t <= to)
    .sort((x, y) => x - y);
  if (times.length === 0) {
    return { ms: to - from, from, to };
  }
  let best: Outage = { ms: 0, from: times[0]!, to: times[0]! };
  for (let i = 1; i < times.length; i++) {
    const gap = times[i]! - times[i - 1]!;
    if (gap > best.ms) {
      best = { ms: gap, from: times[i - 1]!, to: times[i]! };
    }
  }
  const tail = to - times[times.length - 1]!;
  if (tail > best.ms) {
    best = { ms: tail, from: times[times.length - 1]!, to };
  }
  return best;
}

/** `writer/seq`, the key of a recorded row. */
export const rowKey = (writer: string, seq: number): string => `${writer}/${seq}`;

/** The acknowledged writes whose row is not in `present` (keys from {@link rowKey}). */
export function missingWrites(acked: readonly AckedWrite[], present: ReadonlySet<string>): AckedWrite[] {
  return acked.filter((a) => !present.has(rowKey(a.writer, a.seq)));
}

/**
 * Writes acknowledged by a server after another server had acknowledged one, for servers that
 * were primary before `since`: the writes a deposed primary accepted after another keeper was
 * promoted. `writes` should hold every kind of write (proxy and direct) so the promotion is seen.
 */
export function writesAfterDeposition(writes: readonly AckedWrite[], since: number): AckedWrite[] {
  const sorted = [...writes].sort((x, y) => x.ackedAt - y.ackedAt);
  const before = new Set(sorted.filter((w) => w.ackedAt < since).map((w) => serverKey(w.server)));
  const firstNew = new Map<string, number>();
  for (const w of sorted) {
    const k = serverKey(w.server);
    if (w.ackedAt >= since && !before.has(k) && !firstNew.has(k)) {
      firstNew.set(k, w.serverAt);
    }
  }
  if (firstNew.size === 0) {
    return [];
  }
  const promotedAt = Math.min(...firstNew.values());
  return sorted.filter((w) => before.has(serverKey(w.server)) && w.ackedAt > promotedAt);
}

/** The `p`-th percentile (nearest rank) of `xs`; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) {
    return NaN;
  }
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

/**
 * Timeline history of a primary: each ancestor timeline and the LSN where it ended (from
 * `pg_wal/<tl>.history`). Used to tell how far past the fork point a lost async write was.
 */
export interface TimelineSwitch {
  readonly timeline: number;
  /** Where that timeline ended on this server's history, bytes. */
  readonly switchpoint: bigint;
}

/** Parses a timeline history file (`1\t0/3000000\tno recovery target specified` lines). */
export function parseTimelineHistory(text: string): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)/.exec(line);
    if (m !== null) {
      out.push({ timeline: Number(m[1]), switchpoint: (BigInt(`0x${m[2]!}`) << 32n) + BigInt(`0x${m[3]!}`) });
    }
  }
  return out;
}

/**
 * How many bytes of WAL past its timeline's fork point the furthest lost write was, using the
 * final primary's history; undefined when no lost write's timeline is in the history (it was not
 * an ancestor, e.g. a zombie branch) or nothing was lost.
 */
export function lostBytesPastFork(lost: readonly AckedWrite[], history: readonly TimelineSwitch[]): bigint | undefined {
  let worst: bigint | undefined;
  for (const w of lost) {
    const sw = history.find((h) => h.timeline === w.server.timeline);
    if (sw === undefined) {
      continue;
    }
    const past = w.lsn - sw.switchpoint;
    if (worst === undefined || past > worst) {
      worst = past;
    }
  }
  return worst;
}

// ---- reading the cluster ----

/**
 * Reads the keys of every row in `chaos_w` (or `table`) on `config` (the final primary, direct)
 * with `sent_at >= sinceSentAt`.
 * @throws whatever `pg` throws (connection refused, SQL errors).
 */
export async function readPresentWrites(config: pg.ClientConfig, sinceSentAt = 0, table = 'chaos_w'): Promise<Set<string>> {
  const c = new pg.Client({ ...config, query_timeout: 60_000 });
  c.on('error', () => undefined); // a FATAL while idle; a query in flight still rejects
  try {
    await c.connect();
    const r = await c.query<{ writer: string; seq: number }>(`select writer, seq from ${table} where sent_at >= $1`, [sinceSentAt]);
    return new Set(r.rows.map((x) => rowKey(x.writer, x.seq)));
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * The primary's timeline history (empty on timeline 1).
 * @throws whatever `pg` throws.
 */
export async function readTimelineHistory(config: pg.ClientConfig): Promise<TimelineSwitch[]> {
  const c = new pg.Client(config);
  c.on('error', () => undefined); // a FATAL while idle; a query in flight still rejects
  try {
    await c.connect();
    const tl = (
      await c.query<{ tl: number }>(`select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int as tl`)
    ).rows[0]?.tl;
    if (tl === undefined || tl <= 1) {
      return [];
    }
    const name = `pg_wal/${tl.toString(16).toUpperCase().padStart(8, '0')}.history`;
    const text = (await c.query<{ t: string }>('select pg_read_file($1) as t', [name])).rows[0]?.t ?? '';
    return parseTimelineHistory(text);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Reads and parses clusterdata. @throws Error when there is none; store and parse errors. */
export async function readClusterData(store: Store): Promise<ClusterData> {
  const rec = await store.getClusterData();
  if (rec === null) {
    throw new Error('no clusterdata in the store');
  }
  return parseClusterData(rec.text);
}

/** Index in `cluster.keepers` of the keeper clusterdata names primary, or -1. */
export function primaryKeeperIndex(cluster: LocalCluster, cd: ClusterData): number {
  const db = cd.dbs[cd.cluster.status.master];
  return db === undefined ? -1 : cluster.keepers.findIndex((k) => k.uid === db.spec.keeperUID);
}

/**
 * Why the cluster is not healthy yet according to clusterdata (undefined when it is): phase
 * normal, no failover in progress, a primary, every one of `expectKeepers` keepers registered and
 * healthy with a DB that is healthy and converged (generation applied), the synchronous
 * standbys the spec needs known in sync, a leader sentinel, and every live proxy enforcing the
 * current proxy generation.
 */
export async function unhealthyReason(store: Store, expectKeepers: number): Promise<string | undefined> {
  const cd = await readClusterData(store);
  const st = cd.cluster.status;
  if (st.phase !== 'normal') {
    return `cluster phase ${st.phase}`;
  }
  if (st.failover !== undefined) {
    return `a ${st.failover.kind} is in progress`;
  }
  const master = cd.dbs[st.master];
  if (master === undefined) {
    return 'no primary';
  }
  const keepers = Object.values(cd.keepers);
  if (keepers.length !== expectKeepers) {
    return `${keepers.length} keepers registered, expected ${expectKeepers}`;
  }
  for (const k of keepers) {
    if (!k.status.healthy) {
      return `keeper ${k.uid} unhealthy`;
    }
    const db = Object.values(cd.dbs).find((d) => d.spec.keeperUID === k.uid);
    if (db === undefined) {
      return `keeper ${k.uid} has no db`;
    }
    if (!db.status.healthy) {
      return `db of ${k.uid} unhealthy`;
    }
    if (db.status.currentGeneration !== db.generation) {
      return `db of ${k.uid} not converged (generation ${db.status.currentGeneration}/${db.generation})`;
    }
  }
  const spec = cd.cluster.spec;
  if (spec.synchronousReplication === true) {
    const need = spec.minSynchronousStandbys ?? 1;
    const known = master.status.synchronousStandbys.filter((u) => master.spec.synchronousStandbys.includes(u));
    if (known.length < need) {
      return `${known.length} synchronous standby(s) known in sync, ${need} needed`;
    }
  }
  if ((await store.getLeader()) === null) {
    return 'no leader sentinel';
  }
  const proxies = await store.listInfos('proxies');
  const stale = Object.values(proxies).filter((p) => p.Generation !== cd.proxy.generation);
  if (stale.length > 0) {
    return `proxies ${stale.map((p) => p.UID).join(', ')} not at proxy generation ${cd.proxy.generation}`;
  }
  return undefined;
}

/** Options of {@link waitHealthy}. */
export interface WaitHealthyOptions {
  /** Keepers that must be registered and healthy. @default cluster.keepers.length */
  readonly expectKeepers?: number;
  /** Give up after this long, ms. @default 90000 */
  readonly timeoutMs?: number;
  /** Pause between polls, ms. @default 200 */
  readonly intervalMs?: number;
}

/** Outcome of {@link waitHealthy}. */
export interface HealthyResult {
  /** Epoch ms when every check passed, or null on timeout. */
  readonly healthyAt: number | null;
  /** The last reason it was not healthy (on timeout), or ''. */
  readonly lastReason: string;
}

interface StatusJsonKeeper {
  uid: string;
  healthy: boolean;
  pg_healthy: boolean;
  pg_wanted_generation: number;
  pg_current_generation: number;
}

/**
 * Polls until the cluster is healthy: {@link unhealthyReason} says so from clusterdata (cheap,
 * read through `store`), a write (`insert into chaos_probe`) through every running proxy
 * succeeds, and `stolonctl status --format json` agrees that every keeper is healthy, its
 * PostgreSQL healthy and converged. Never throws; a timeout returns `healthyAt: null`.
 * Creates `chaos_probe` through the first proxy if needed.
 */
export async function waitHealthy(cluster: LocalCluster, store: Store, opts: WaitHealthyOptions = {}): Promise<HealthyResult> {
  const expect = opts.expectKeepers ?? cluster.keepers.length;
  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  let lastReason = '';
  const sleep = () => new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  while (Date.now() < deadline) {
    try {
      const why = await unhealthyReason(store, expect);
      if (why !== undefined) {
        lastReason = why;
        await sleep();
        continue;
      }
      let failedProxy: string | undefined;
      for (let i = 0; i < cluster.proxies.length; i++) {
        if (!cluster.proxies[i]!.process.running()) {
          failedProxy = `proxy ${i} is not running`;
          break;
        }
        const c = new pg.Client({ ...cluster.proxyClientConfig(i), connectionTimeoutMillis: 1000, query_timeout: 3000 });
        c.on('error', () => undefined);
        try {
          await c.connect();
          await c.query('create table if not exists chaos_probe (id bigserial primary key, at timestamptz default now())');
          await c.query('insert into chaos_probe default values');
        } catch (err) {
          failedProxy = `a write through proxy ${i} failed: ${(err as Error).message}`;
        } finally {
          await c.end().catch(() => undefined);
        }
        if (failedProxy !== undefined) {
          break;
        }
      }
      if (failedProxy !== undefined) {
        lastReason = failedProxy;
        await sleep();
        continue;
      }
      // stolonctl is a process (about half a second): it confirms, the time is taken before it.
      const writableAt = Date.now();
      const st = await cluster.stolonctl(['status', '--format', 'json']);
      if (st.code !== 0) {
        lastReason = `stolonctl status failed: ${st.stderr.trim()}`;
        await sleep();
        continue;
      }
      const ks = (JSON.parse(st.stdout) as { keepers: StatusJsonKeeper[] }).keepers;
      const bad = ks.filter((k) => !(k.healthy && k.pg_healthy && k.pg_wanted_generation === k.pg_current_generation));
      if (ks.length !== expect || bad.length > 0) {
        lastReason = `stolonctl status: ${ks.length} keepers, not healthy/converged: ${bad.map((k) => k.uid).join(', ') || '-'}`;
        await sleep();
        continue;
      }
      return { healthyAt: writableAt, lastReason: '' };
    } catch (err) {
      lastReason = `error: ${(err as Error).message}`;
      await sleep();
    }
  }
  return { healthyAt: null, lastReason };
}
