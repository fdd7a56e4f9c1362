/**
 * `npm run bench:switchover`: what a planned switchover costs an application that opens a new
 * connection per write, through stolon-proxy (`stolonctl switchover`, new connections held from the
 * fence until the new primary is routed) and, side by side on the same machine, through HAProxy in
 * front of Patroni 3.0.2 (`patronictl switchover`, Patroni's defaults and its documented HAProxy
 * checks, the setup `bench:failover` uses), over N runs each (default 10).
 *
 * The writer opens a new connection for every single-row INSERT and closes it; on any error it
 * tries again 20 ms later. Per run: the largest gap between two consecutive acknowledged INSERTs
 * from 1 s before the switchover command until writes have flowed for 1 s after it returned; the
 * failed connection attempts; and the acknowledged writes missing from the new primary (any fails
 * the run). For stolon, an attempt that started before the proxy's fence (its "target changed …
 * to none" log line) was already connected to the old primary: a session on it, which the fence
 * ends like every open session; those are counted apart ("ended by the fence"), every later
 * failure is a failed attempt. For Patroni every failure counts (the counterpart, an attempt in
 * flight when the old primary is demoted, is at most one of them). Runs alternate the primary
 * between the two nodes and wait for the cluster to settle in between.
 *
 * Targets (stolon): largest gap p50 ≤ 0.5 s, 0 failed connection attempts, 0 lost.
 *
 * Prints a table; writes one JSON line under test/bench/results/; `--write-doc` regenerates the
 * bench:switchover section of docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { binPath, type LocalCluster, makeTempDir, query, removeDir, startLocalCluster, waitFor } from '@stolon-ts/harness';
import { describeMachine, fileStamp, machineInfo, trackLoad, updateDocSection, writeResultLine } from './common.js';
import { HAPROXY_DEFAULT, PATRONI_DEFAULT, patroniUnavailableReason, startPatroniEnv, type PatroniEnv } from './patroni.js';

const TARGET_GAP_MS = 500;

const USAGE = `usage: npm run bench:switchover -- [--runs N] [--patroni-runs N] [--write-doc] [--keep] [--log-level L]
  --runs N          stolon switchovers to measure (default 10, 1..50)
  --patroni-runs N  Patroni switchovers to measure (default: --runs; 0: skip Patroni)
  --write-doc       regenerate the bench:switchover section of docs/benchmarks.md
  --keep            keep the temp directories
  --log-level L     stolon components' log level (default info)`;

interface Options {
  readonly runs: number;
  readonly patroniRuns: number;
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly logLevel: string;
  readonly argv: readonly string[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string', default: '10' },
      'patroni-runs': { type: 'string' },
      'write-doc': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) {
    throw new Error(`--runs: "${values.runs}" must be a whole number from 1 to 50`);
  }
  const patroniRuns = Number(values['patroni-runs'] ?? runs);
  if (!Number.isInteger(patroniRuns) || patroniRuns < 0 || patroniRuns > 50) {
    throw new Error(`--patroni-runs: "${values['patroni-runs']}" must be a whole number from 0 to 50`);
  }
  return { runs, patroniRuns, writeDoc: values['write-doc'], keep: values.keep, logLevel: values['log-level'], argv };
}

interface Ack {
  readonly id: number;
  readonly at: number;
}

interface Failure {
  /** Epoch ms when the attempt started. */
  readonly startedAt: number;
  readonly stage: 'connect' | 'insert';
}

/** The writer: a new connection per INSERT, 20 ms pause after a failure. */
class Writer {
  readonly acked: Ack[] = [];
  readonly failures: Failure[] = [];
  private stopped = false;
  private done: Promise<void> | undefined;

  constructor(private readonly config: () => pg.ClientConfig) {}

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  private async loop(): Promise<void> {
    let id = 0;
    const deadline = Date.now() + 10 * 60_000;
    while (!this.stopped && Date.now() < deadline) {
      id += 1;
      const startedAt = Date.now();
      const c = new pg.Client({ ...this.config(), connectionTimeoutMillis: 15_000, query_timeout: 5000 });
      c.on('error', () => undefined);
      let stage: Failure['stage'] = 'connect';
      try {
        await c.connect();
        stage = 'insert';
        await c.query('insert into bench_w values ($1)', [id]);
        this.acked.push({ id, at: Date.now() });
      } catch {
        this.failures.push({ startedAt, stage });
        await new Promise((r) => setTimeout(r, 20));
      } finally {
        await c.end().catch(() => undefined);
      }
    }
  }
}

type System = 'stolon' | 'patroni';

interface RunResult {
  readonly system: System;
  readonly run: number;
  readonly from: string;
  readonly to: string;
  /** Largest gap between consecutive acknowledged writes in the run's window, ms. */
  readonly gapMs: number;
  /** The switchover command's wall time until it returned, ms. */
  readonly commandMs: number;
  readonly acked: number;
  /** Failed connection attempts (stolon: started after the proxy's fence). */
  readonly failedAttempts: number;
  /** stolon: attempts already connected to the old primary when the proxy fenced it (ended). */
  readonly endedByFence: number;
  readonly lost: number;
  /** stolon: when each step of the switchover happened, ms after the sentinel's fence (from the logs; see {@link STEPS}). */
  readonly steps?: Readonly<Record<string, number>>;
}

/**
 * The steps of a stolon switchover found in the components' logs (the first line matching each
 * from 200 ms before the sentinel's fence line on: the sentinel logs a pass after its write, which
 * the others may act on first), in the order they happen, and the writer's acknowledgements
 * around the outage.
 */
const STEPS: readonly { readonly key: string; readonly label: string; readonly who: string; readonly msg: RegExp }[] = [
  { key: 'proxyFenced', label: 'proxy fenced', who: 'proxy', msg: /^target changed from .* to none \(proxy generation/ },
  { key: 'stopOrdered', label: 'shutdown ordered', who: 'sentinel', msg: /^switchover: proxies fenced; shutting down primary/ },
  { key: 'stopped', label: 'old primary stopped', who: 'keeper', msg: /^postgres stopped$/ },
  { key: 'promoteOrdered', label: 'promotion ordered', who: 'sentinel', msg: /^switchover: primary stopped at LSN .*promoting it/ },
  { key: 'promoted', label: 'promoted', who: 'keeper', msg: /^postgres promoted$/ },
  { key: 'routeOrdered', label: 'routing ordered', who: 'sentinel', msg: /^routing proxies .* to primary/ },
  { key: 'routed', label: 'proxy routed', who: 'proxy', msg: /^target changed from none to / },
];

/** The steps of the switchover that started (sentinel fence) at or after `since`, ms after that fence; empty when not found. */
function stolonSteps(logs: string, since: number): Record<string, number> {
  const lines = logs
    .split('\n')
    .map((l) => {
      const m = /^\[(\w+)[^\]]*\] (\{.*\})$/.exec(l);
      if (m === null) {
        return undefined;
      }
      try {
        const j = JSON.parse(m[2]!) as { time?: number; msg?: string };
        return typeof j.time === 'number' && typeof j.msg === 'string' ? { who: m[1]!, t: j.time, msg: j.msg } : undefined;
      } catch {
        return undefined;
      }
    })
    .filter((l): l is { who: string; t: number; msg: string } => l !== undefined && l.t >= since)
    .sort((a, b) => a.t - b.t);
  const fence = lines.find((l) => l.who === 'sentinel' && /^switchover to keeper .*: fencing proxies/.test(l.msg));
  if (fence === undefined) {
    return {};
  }
  const out: Record<string, number> = {};
  for (const step of STEPS) {
    // The sentinel logs its pass after its write, so the proxy may log the fence a few ms earlier.
    const hit = lines.find((l) => l.t >= fence.t - 200 && l.who === step.who && step.msg.test(l.msg));
    if (hit !== undefined) {
      out[step.key] = hit.t - fence.t;
    }
  }
  out.fenceAt = fence.t;
  return out;
}

/** What one system offers the shared measuring loop. */
interface Subject {
  readonly system: System;
  /** Waits until both nodes are healthy and the standby streams. */
  settle(): Promise<void>;
  /** The current primary's index (0 or 1). */
  primary(): Promise<number>;
  name(i: number): string;
  client(): pg.ClientConfig;
  /** Where to check for lost writes and empty the table: the primary (not through HAProxy, which may still send to the old one). */
  primaryClient(): Promise<pg.ClientConfig>;
  /** Runs the switchover to node `to`; throws with the command's output when it fails. */
  switchover(to: number): Promise<void>;
  /** When the proxy fenced (epoch ms) since `since`, for stolon; undefined for Patroni. */
  fencedAt(since: number): number | undefined;
  /** stolon: the steps of the switchover since `since` ({@link stolonSteps}, with `fenceAt` in epoch ms). */
  steps?(since: number): Record<string, number>;
}

async function measure(s: Subject, run: number): Promise<RunResult> {
  await s.settle();
  const from = await s.primary();
  const to = 1 - from;
  const writer = new Writer(() => s.client());
  writer.start();
  try {
    await waitFor(() => (writer.acked.length >= 50 ? true : undefined), { timeoutMs: 60_000, what: 'the writer to get going' });
    const startedAt = Date.now();
    await s.switchover(to);
    const commandMs = Date.now() - startedAt;
    await waitFor(async () => ((await s.primary()) === to ? true : undefined), { timeoutMs: 60_000, what: 'the target to be primary' });
    const resumedFrom = await waitFor(() => writer.acked.find((a) => a.at > startedAt + commandMs)?.at, { timeoutMs: 60_000, what: 'writes to resume' });
    await waitFor(() => (writer.acked.some((a) => a.at > resumedFrom + 1000) ? true : undefined), { timeoutMs: 30_000, what: 'a second of writes' });
    await writer.stop();
    const window = writer.acked.filter((a) => a.at >= startedAt - 1000);
    let gapMs = 0;
    for (let i = 1; i < window.length; i++) {
      gapMs = Math.max(gapMs, window[i]!.at - window[i - 1]!.at);
    }
    const fence = s.fencedAt(startedAt - 1000);
    const inRun = writer.failures.filter((f) => f.startedAt >= startedAt - 1000);
    const ended = fence === undefined ? [] : inRun.filter((f) => f.startedAt < fence);
    const primary = await s.primaryClient();
    const ids = new Set((await query<{ id: number }>(primary, 'select id from bench_w')).map((r) => r.id));
    const lost = writer.acked.filter((a) => !ids.has(a.id));
    if (lost.length > 0) {
      throw new Error(`${s.system} run ${run}: ${lost.length} acknowledged writes lost (first ids ${lost.slice(0, 5).map((a) => a.id).join(', ')})`);
    }
    await query(primary, 'truncate bench_w');
    const steps = s.steps?.(startedAt - 1000);
    const fenceAt = steps?.fenceAt;
    if (steps !== undefined && fenceAt !== undefined) {
      delete steps.fenceAt;
      const before = window.filter((a) => a.at < fenceAt).at(-1);
      const routed = steps.routed;
      const after = routed === undefined ? undefined : window.find((a) => a.at >= fenceAt + routed);
      if (before !== undefined) {
        steps.lastAck = before.at - fenceAt;
      }
      if (after !== undefined) {
        steps.firstAck = after.at - fenceAt;
      }
    }
    return {
      ...(steps !== undefined ? { steps } : {}),
      system: s.system,
      run,
      from: s.name(from),
      to: s.name(to),
      gapMs,
      commandMs,
      acked: window.length,
      failedAttempts: inRun.length - ended.length,
      endedByFence: ended.length,
      lost: lost.length,
    };
  } finally {
    await writer.stop();
  }
}

interface StatusJson {
  keepers: { uid: string; healthy: boolean; pg_healthy?: boolean; pg_wanted_generation?: number; pg_current_generation?: number }[];
}

async function stolonSettled(cluster: LocalCluster): Promise<void> {
  await waitFor(
    async () => {
      const st = await cluster.stolonctl(['status', '--format', 'json']);
      if (st.code !== 0) {
        return undefined;
      }
      const ks = (JSON.parse(st.stdout) as StatusJson).keepers;
      return ks.length === 2 && ks.every((k) => k.healthy && k.pg_healthy === true && k.pg_wanted_generation === k.pg_current_generation) ? true : undefined;
    },
    { timeoutMs: 120_000, what: 'both keepers healthy and converged', intervalMs: 250 },
  );
  const p = await cluster.primaryIndex();
  await waitFor(
    async () => {
      const r = await query<{ n: string }>(
        cluster.directClientConfig(p),
        "select count(*)::text as n from pg_stat_replication where state = 'streaming' and application_name like 'stolon\\_%'",
      );
      return r[0]?.n === '1' ? true : undefined;
    },
    { timeoutMs: 120_000, what: 'the standby to stream', intervalMs: 250 },
  );
}

function stolonSubject(cluster: LocalCluster): Subject {
  return {
    system: 'stolon',
    settle: () => stolonSettled(cluster),
    primary: () => cluster.primaryIndex(),
    name: (i) => cluster.keepers[i]!.uid,
    client: () => cluster.proxyClientConfig(0),
    primaryClient: () => Promise.resolve(cluster.proxyClientConfig(0)),
    async switchover(to) {
      const sw = await cluster.stolonctl(['switchover', '--yes', '--to', cluster.keepers[to]!.uid, '--timeout', '60s']);
      if (sw.code !== 0) {
        throw new Error(`stolonctl switchover failed (exit ${sw.code}): ${sw.stderr || sw.stdout}`);
      }
    },
    fencedAt: (since) =>
      cluster
        .logs()
        .split('\n')
        .filter((l) => l.startsWith('[proxy') && l.includes('"msg":"target changed from') && / to none \(proxy generation/.test(l))
        .map((l) => Number(/"time":(\d+)/.exec(l)?.[1] ?? NaN))
        .find((t) => t >= since),
    steps: (since) => stolonSteps(cluster.logs(), since),
  };
}

function patroniSubject(env: PatroniEnv): Subject {
  return {
    system: 'patroni',
    async settle() {
      if ((await env.waitHealthy(120_000, 0)) === null) {
        throw new Error('the Patroni cluster did not become healthy within 120 s');
      }
    },
    primary: () => env.leaderIndex(),
    name: (i) => env.nodes[i]!.name,
    client: () => env.clientConfig(),
    primaryClient: async () => env.directClientConfig(await env.leaderIndex()),
    async switchover(to) {
      const r = await env.switchover(to);
      if (r.code !== 0) {
        throw new Error(`patronictl switchover failed (exit ${r.code}): ${r.output}`);
      }
    },
    fencedAt: () => undefined,
  };
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) {
    return NaN;
  }
  const rank = Math.max(1, Math.ceil((p / 100) * s.length)); // nearest rank
  return s[rank - 1]!;
}

interface Summary {
  readonly runs: number;
  readonly gapP50: number;
  readonly gapP95: number;
  readonly gapMax: number;
  readonly failedP50: number;
  readonly failedP95: number;
  readonly failedTotal: number;
  readonly endedTotal: number;
  readonly lost: number;
}

function summarize(rs: readonly RunResult[]): Summary {
  const gaps = rs.map((r) => r.gapMs);
  const failed = rs.map((r) => r.failedAttempts);
  return {
    runs: rs.length,
    gapP50: percentile(gaps, 50),
    gapP95: percentile(gaps, 95),
    gapMax: Math.max(...gaps),
    failedP50: percentile(failed, 50),
    failedP95: percentile(failed, 95),
    failedTotal: failed.reduce((a, b) => a + b, 0),
    endedTotal: rs.reduce((a, r) => a + r.endedByFence, 0),
    lost: rs.reduce((a, r) => a + r.lost, 0),
  };
}

const LABEL: Record<System, string> = {
  stolon: 'stolon-ts (`stolonctl switchover`, proxy holds new connections)',
  patroni: 'Patroni 3.0.2 + HAProxy (`patronictl switchover`, defaults)',
};

function render(
  opts: Options,
  runs: readonly RunResult[],
  date: string,
  patroniSkipped: string | undefined,
  load: { before: string; max: number },
): { text: string; markdown: string } {
  const systems = (['stolon', 'patroni'] as const).filter((s) => runs.some((r) => r.system === s));
  const sums = new Map(systems.map((s) => [s, summarize(runs.filter((r) => r.system === s))]));
  const st = sums.get('stolon')!;
  const verdict = `largest gap p50 ≤ ${TARGET_GAP_MS} ms: ${st.gapP50 <= TARGET_GAP_MS ? 'met' : 'NOT met'}; 0 failed connection attempts: ${st.failedTotal === 0 ? 'met' : 'NOT met'}; 0 lost: met`;
  const command = `npm run bench:switchover -- ${opts.argv.filter((a) => a !== '--write-doc').join(' ')}`.trimEnd().replace(/ --$/, '');
  const machine = describeMachine(machineInfo());
  const t: string[] = ['', `bench:switchover — a planned switchover seen by a writer opening a new connection per INSERT (${date})`, `machine: ${machine}`, ''];
  t.push(`${'system'.padEnd(9)}${'run'.padEnd(5)}${'from → to'.padEnd(24)}${'gap ms'.padEnd(8)}${'command ms'.padEnd(12)}${'acked'.padEnd(7)}${'failed'.padEnd(8)}ended by fence`);
  for (const r of runs) {
    t.push(`${r.system.padEnd(9)}${String(r.run).padEnd(5)}${`${r.from} → ${r.to}`.padEnd(24)}${String(r.gapMs).padEnd(8)}${String(r.commandMs).padEnd(12)}${String(r.acked).padEnd(7)}${String(r.failedAttempts).padEnd(8)}${r.system === 'stolon' ? r.endedByFence : '-'}`);
  }
  t.push('');
  const md: string[] = [
    `Measured ${date} with \`${command}\` on ${machine}; 1-minute load average ${load.before} before the run, at most ${load.max.toFixed(2)} during it (the benchmark's own clusters included): ` +
      'stolon-ts with 2 keepers, 1 sentinel, 1 proxy and the default spec; Patroni 3.0.2 with 2 nodes, 1 etcd, its defaults ' +
      '(`ttl` 30, `loop_wait` 10, `retry_timeout` 10) and HAProxy with its documented checks (`inter 3s fall 3 rise 2`, `on-marked-down shutdown-sessions`).',
    '',
    '| system | runs | largest gap p50 (ms) | p95 | max | failed connection attempts p50 / p95 / total | attempts ended by the fence | acknowledged writes lost |',
    '|---|---:|---:|---:|---:|---|---:|---:|',
  ];
  for (const s of systems) {
    const m = sums.get(s)!;
    const line = `${s}: largest gap p50 ${m.gapP50} ms, p95 ${m.gapP95} ms, max ${m.gapMax} ms; failed connection attempts p50 ${m.failedP50}, p95 ${m.failedP95}, total ${m.failedTotal}${s === 'stolon' ? `; ended by the fence ${m.endedTotal}` : ''}; lost ${m.lost} (${m.runs} runs)`;
    t.push(line);
    md.push(`| ${LABEL[s]} | ${m.runs} | ${m.gapP50} | ${m.gapP95} | ${m.gapMax} | ${m.failedP50} / ${m.failedP95} / ${m.failedTotal} | ${s === 'stolon' ? m.endedTotal : '—'} | ${m.lost} |`);
  }
  const timed = runs.filter((r) => r.steps !== undefined && Object.keys(r.steps).length > 0);
  const stepCols = [...STEPS.map((x) => ({ key: x.key, label: x.label })), { key: 'firstAck', label: 'first write acknowledged' }];
  if (timed.length > 0) {
    t.push('', 'stolon steps, ms after the sentinel fenced (last write acknowledged before it: lastAck):');
    for (const r of timed) {
      t.push(`  run ${r.run}: ${['lastAck', ...stepCols.map((c) => c.key)].map((k) => `${k} ${r.steps?.[k] ?? '?'}`).join(', ')}`);
    }
  }
  t.push(`targets (stolon): ${verdict}`);
  md.push('', `Targets for stolon-ts: ${verdict}.${patroniSkipped === undefined ? '' : ` Patroni not run: ${patroniSkipped}.`}`, '');
  md.push('| system | run | from → to | largest gap (ms) | switchover command (ms) | writes acknowledged | failed attempts | ended by the fence |');
  md.push('|---|---:|---|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    md.push(`| ${r.system} | ${r.run} | ${r.from} → ${r.to} | ${r.gapMs} | ${r.commandMs} | ${r.acked} | ${r.failedAttempts} | ${r.system === 'stolon' ? r.endedByFence : '—'} |`);
  }
  if (timed.length > 0) {
    md.push('', `Where stolon-ts's gap goes: each step, ms after the sentinel fenced the proxies (from the components' logs), median and largest over the ${timed.length} runs; the last write acknowledged before the fence was a median ${percentile(timed.map((r) => r.steps?.lastAck ?? NaN).filter(Number.isFinite), 50)} ms after it.`, '');
    md.push('| step | median (ms) | max (ms) |', '|---|---:|---:|');
    for (const c of stepCols) {
      const xs = timed.map((r) => r.steps?.[c.key]).filter((x): x is number => x !== undefined);
      md.push(`| ${c.label} | ${xs.length > 0 ? percentile(xs, 50) : '?'} | ${xs.length > 0 ? Math.max(...xs) : '?'} |`);
    }
  }
  return { text: t.join('\n'), markdown: md.join('\n') };
}

async function runStolon(opts: Options, dir: string, say: (s: string) => void, track: (c: LocalCluster) => void): Promise<RunResult[]> {
  await mkdir(dir, { recursive: true });
  say(`stolon: starting a local cluster in ${dir}: 2 keepers, 1 sentinel, 1 proxy`);
  const cluster = await startLocalCluster({ dir, clusterName: 'bench-switchover', keepers: 2, sentinels: 1, proxies: 1, logLevel: opts.logLevel });
  track(cluster);
  await query(cluster.proxyClientConfig(0), 'create table bench_w (id int primary key)');
  const s = stolonSubject(cluster);
  const runs: RunResult[] = [];
  for (let i = 1; i <= opts.runs; i++) {
    const r = await measure(s, i);
    say(`stolon run ${i}: ${r.from} → ${r.to}: largest gap ${r.gapMs} ms, ${r.failedAttempts} failed attempts, ${r.endedByFence} ended by the fence (command ${r.commandMs} ms)`);
    runs.push(r);
  }
  await cluster.stop();
  return runs;
}

async function runPatroni(opts: Options, dir: string, say: (s: string) => void, track: (e: PatroniEnv) => void): Promise<RunResult[]> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  say(`patroni: starting 2 Patroni 3.0.2 nodes (defaults), HAProxy (inter 3s fall 3 rise 2), 1 etcd in ${dir}`);
  const env = await startPatroniEnv({ dir, timings: PATRONI_DEFAULT, haproxy: HAPROXY_DEFAULT });
  track(env);
  await query(env.clientConfig(), 'create table bench_w (id int primary key)');
  const s = patroniSubject(env);
  const runs: RunResult[] = [];
  for (let i = 1; i <= opts.patroniRuns; i++) {
    const r = await measure(s, i);
    say(`patroni run ${i}: ${r.from} → ${r.to}: largest gap ${r.gapMs} ms, ${r.failedAttempts} failed attempts (command ${r.commandMs} ms)`);
    runs.push(r);
  }
  await env.stop();
  return runs;
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:switchover: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:switchover: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  const say = (s: string) => process.stdout.write(`[bench:switchover ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const load = trackLoad();
  const dir = await makeTempDir('stolon-bench-switchover-');
  let cluster: LocalCluster | undefined;
  let patroni: PatroniEnv | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await cluster?.stop().catch((err: unknown) => say(`stopping the cluster failed: ${(err as Error).message}`));
      await patroni?.stop().catch((err: unknown) => say(`stopping Patroni failed: ${(err as Error).message}`));
      if (opts.keep) {
        say(`kept ${dir}`);
      } else {
        await removeDir(dir);
      }
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  try {
    const runs = await runStolon(opts, join(dir, 'stolon'), say, (c) => (cluster = c));
    cluster = undefined;
    const skipped = opts.patroniRuns === 0 ? 'skipped with --patroni-runs 0' : await patroniUnavailableReason();
    if (skipped === undefined) {
      runs.push(...(await runPatroni(opts, join(dir, 'patroni'), say, (e) => (patroni = e))));
      patroni = undefined;
    } else {
      say(`patroni: not run: ${skipped}`);
    }
    const date = new Date().toISOString().slice(0, 10);
    const { text, markdown } = render(opts, runs, date, skipped, load());
    process.stdout.write(`${text}\n`);
    const file = await writeResultLine('switchover', stamp, { date, machine: machineInfo(), runs });
    say(`result line: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('switchover', markdown);
      say('docs/benchmarks.md updated');
    }
    return 0;
  } catch (err) {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    const logs = cluster?.logs() ?? patroni?.logs();
    if (logs !== undefined) {
      process.stdout.write(`--- logs (tail) ---\n${logs.split('\n').slice(-80).join('\n')}\n`);
    }
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
