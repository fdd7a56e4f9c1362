/**
 * `npm run bench:switchover`: the write-unavailability window of a planned switchover
 * (`stolonctl switchover`) under a steady writer through stolon-proxy, over N runs (default 10),
 * with p50/p95/max, and a check that every acknowledged write is on the new primary.
 *
 * The writer is one application connection through the proxy doing single-row INSERTs back to
 * back; on any error it reconnects (after 20 ms) and goes on, as a pooled application would.
 * The window of a run is the longest gap between two consecutive acknowledged INSERTs from the
 * moment `stolonctl switchover` is started until writes have resumed for 1 s. Runs alternate the
 * primary between keeper0 and keeper1; between runs the cluster is left to settle (both keepers
 * healthy, converged, the standby streaming).
 *
 * Target: p50 ≤ 1 s. For comparison, Patroni 3.0.2's `switchover` took 2.0 s on this kind of
 * machine (a figure measured outside this repository, not by this script).
 *
 * Prints a table; writes one JSON line under test/bench/results/; `--write-doc` regenerates the
 * bench:switchover section of docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { binPath, type LocalCluster, makeTempDir, query, removeDir, startLocalCluster, waitFor } from '@stolon-ts/harness';
import { describeMachine, fileStamp, machineInfo, updateDocSection, writeResultLine } from './common.js';

const TARGET_P50_MS = 1000;
/** Patroni 3.0.2's `switchover` on this kind of machine, in ms: measured outside this repository, not by this script. */
const PATRONI_MS = 2000;

const USAGE = `usage: npm run bench:switchover -- [--runs N] [--write-doc] [--keep] [--log-level L]
  --runs N       switchovers to measure (default 10, 1..50)
  --write-doc    regenerate the bench:switchover section of docs/benchmarks.md
  --keep         keep the temp directory
  --log-level L  components' log level (default info)`;

interface Options {
  readonly runs: number;
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
  return { runs, writeDoc: values['write-doc'], keep: values.keep, logLevel: values['log-level'], argv };
}

interface Ack {
  readonly id: number;
  readonly at: number;
}

/** A steady writer through the proxy: one connection, reconnect on error. */
class Writer {
  readonly acked: Ack[] = [];
  errors = 0;
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
    let client: pg.Client | undefined;
    const deadline = Date.now() + 30 * 60_000;
    while (!this.stopped && Date.now() < deadline) {
      try {
        if (client === undefined) {
          const c = new pg.Client({ ...this.config(), connectionTimeoutMillis: 1000, query_timeout: 5000 });
          c.on('error', () => undefined);
          client = c;
          await c.connect();
        }
        id += 1;
        await client.query('insert into bench_w values ($1)', [id]);
        this.acked.push({ id, at: Date.now() });
      } catch {
        this.errors += 1;
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    await client?.end().catch(() => undefined);
  }
}

interface Phase {
  readonly name: string;
  readonly ms: number;
}

interface RunResult {
  readonly run: number;
  readonly from: string;
  readonly to: string;
  /** Longest gap between consecutive acknowledged writes in the run's window, ms. */
  readonly outageMs: number;
  /** `stolonctl switchover` wall time until it reported the outcome, ms. */
  readonly commandMs: number;
  readonly acked: number;
  readonly failedAttempts: number;
  /** Phases of the recorded switchover event, ms after the request was accepted. */
  readonly phases: readonly Phase[];
}

interface StatusJson {
  keepers: { uid: string; healthy: boolean; role?: string; pg_healthy?: boolean; pg_wanted_generation?: number; pg_current_generation?: number }[];
}

interface EventJson {
  kind?: string;
  result?: string;
  phases?: Record<string, string>;
}

async function settled(cluster: LocalCluster): Promise<void> {
  await waitFor(
    async () => {
      const st = await cluster.stolonctl(['status', '--format', 'json']);
      if (st.code !== 0) {
        return undefined;
      }
      const ks = (JSON.parse(st.stdout) as StatusJson).keepers;
      return ks.length === 2 && ks.every((k) => k.healthy && k.pg_healthy === true && k.pg_wanted_generation === k.pg_current_generation)
        ? true
        : undefined;
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

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) {
    return NaN;
  }
  // Nearest rank.
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

function lastSwitchoverPhases(stdout: string): Phase[] {
  const parsed = JSON.parse(stdout) as unknown;
  const list = (Array.isArray(parsed) ? parsed : ((parsed as { events?: unknown[] }).events ?? [])) as EventJson[];
  const ev = [...list].reverse().find((e) => e.kind === 'switchover');
  const phases = ev?.phases ?? {};
  const t0 = Date.parse(phases['declaredFailed'] ?? '');
  return Object.entries(phases)
    .map(([name, iso]) => ({ name, ms: Date.parse(iso) - t0 }))
    .filter((p) => Number.isFinite(p.ms))
    .sort((a, b) => a.ms - b.ms);
}

async function measure(cluster: LocalCluster, run: number): Promise<RunResult> {
  await settled(cluster);
  const from = await cluster.primaryIndex();
  const to = 1 - from;
  const writer = new Writer(() => cluster.proxyClientConfig(0));
  writer.start();
  try {
    await waitFor(() => (writer.acked.length >= 50 ? true : undefined), { timeoutMs: 30_000, what: 'the writer to get going' });
    const startedAt = Date.now();
    const sw = await cluster.stolonctl(['switchover', '--yes', '--to', cluster.keepers[to]!.uid, '--timeout', '60s']);
    const commandMs = Date.now() - startedAt;
    if (sw.code !== 0) {
      throw new Error(`stolonctl switchover failed (exit ${sw.code}): ${sw.stderr || sw.stdout}`);
    }
    await waitFor(async () => ((await cluster.primaryIndex()) === to ? true : undefined), { timeoutMs: 60_000, what: 'the target to be primary' });
    const resumedFrom = await waitFor(() => writer.acked.find((a) => a.at > startedAt + commandMs)?.at, {
      timeoutMs: 60_000,
      what: 'writes to resume',
    });
    await waitFor(() => (writer.acked.some((a) => a.at > resumedFrom + 1000) ? true : undefined), { timeoutMs: 30_000, what: 'a second of writes' });
    await writer.stop();
    const window = writer.acked.filter((a) => a.at >= startedAt - 1000);
    let outageMs = 0;
    for (let i = 1; i < window.length; i++) {
      outageMs = Math.max(outageMs, window[i]!.at - window[i - 1]!.at);
    }
    const ids = new Set((await query<{ id: number }>(cluster.proxyClientConfig(0), 'select id from bench_w')).map((r) => r.id));
    const lost = writer.acked.filter((a) => !ids.has(a.id));
    if (lost.length > 0) {
      throw new Error(`run ${run}: ${lost.length} acknowledged writes lost (first ids ${lost.slice(0, 5).map((a) => a.id).join(', ')})`);
    }
    await query(cluster.proxyClientConfig(0), 'truncate bench_w');
    const ev = await cluster.stolonctl(['events', '--format', 'json']);
    return {
      run,
      from: cluster.keepers[from]!.uid,
      to: cluster.keepers[to]!.uid,
      outageMs,
      commandMs,
      acked: writer.acked.length,
      failedAttempts: writer.errors,
      phases: ev.code === 0 ? lastSwitchoverPhases(ev.stdout) : [],
    };
  } finally {
    await writer.stop();
  }
}

function render(opts: Options, runs: readonly RunResult[], date: string): { text: string; markdown: string } {
  const outages = runs.map((r) => r.outageMs);
  const p50 = percentile(outages, 50);
  const p95 = percentile(outages, 95);
  const max = Math.max(...outages);
  const verdict = p50 <= TARGET_P50_MS ? 'met' : 'NOT met';
  const command = `npm run bench:switchover -- ${opts.argv.filter((a) => a !== '--write-doc').join(' ')}`.trimEnd().replace(/ --$/, '');
  const phaseNames = [...new Set(runs.flatMap((r) => r.phases.map((p) => p.name)))];
  const medianPhase = (name: string): string => {
    const xs = runs.flatMap((r) => r.phases.filter((p) => p.name === name).map((p) => p.ms));
    return xs.length === 0 ? '-' : String(percentile(xs, 50));
  };
  const t: string[] = [];
  t.push('');
  t.push(`bench:switchover — write outage of a planned switchover through stolon-proxy (${date})`);
  t.push(`machine: ${describeMachine(machineInfo())}`);
  t.push('');
  t.push(`${'run'.padEnd(5)}${'from → to'.padEnd(22)}${'outage ms'.padEnd(11)}${'command ms'.padEnd(12)}${'acked'.padEnd(8)}failed attempts`);
  for (const r of runs) {
    t.push(`${String(r.run).padEnd(5)}${`${r.from} → ${r.to}`.padEnd(22)}${String(r.outageMs).padEnd(11)}${String(r.commandMs).padEnd(12)}${String(r.acked).padEnd(8)}${r.failedAttempts}`);
  }
  t.push('');
  t.push(
    `outage p50 ${p50} ms, p95 ${p95} ms, max ${max} ms over ${runs.length} runs; target p50 ≤ ${TARGET_P50_MS} ms: ${verdict}; ` +
      `p50 / Patroni's ${PATRONI_MS} ms = ${(p50 / PATRONI_MS).toFixed(2)}; acknowledged writes lost: 0`,
  );
  t.push(`median phase times after the request was accepted (ms): ${phaseNames.map((n) => `${n} ${medianPhase(n)}`).join(', ')}`);
  const md: string[] = [];
  md.push(`Measured ${date} with \`${command}\` on ${describeMachine(machineInfo())}: 2 keepers, 1 sentinel, 1 proxy, default timings.`);
  md.push('');
  md.push('| run | from → to | write outage (ms) | `stolonctl switchover` (ms) | writes acknowledged | failed attempts |');
  md.push('|---:|---|---:|---:|---:|---:|');
  for (const r of runs) {
    md.push(`| ${r.run} | ${r.from} → ${r.to} | ${r.outageMs} | ${r.commandMs} | ${r.acked} | ${r.failedAttempts} |`);
  }
  md.push('');
  md.push(
    `**Write outage p50 ${p50} ms, p95 ${p95} ms, max ${max} ms over ${runs.length} runs (target p50 ≤ ${TARGET_P50_MS} ms: ${verdict}); ` +
      `0 acknowledged writes lost.** Patroni 3.0.2's switchover: ${PATRONI_MS} ms (measured outside this repository), so p50 is ${(p50 / PATRONI_MS).toFixed(2)} of it.`,
  );
  md.push('');
  md.push(`Median phase times (ms after the sentinel accepted the request, from \`stolonctl events\`): ${phaseNames.map((n) => `${n} ${medianPhase(n)}`).join(', ')}.`);
  return { text: t.join('\n'), markdown: md.join('\n') };
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
  const dir = await makeTempDir('stolon-bench-switchover-');
  let cluster: LocalCluster | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await cluster?.stop().catch((err: unknown) => say(`stopping the cluster failed: ${(err as Error).message}`));
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
    say(`starting a local cluster in ${dir}: 2 keepers, 1 sentinel, 1 proxy`);
    cluster = await startLocalCluster({ dir, clusterName: 'bench-switchover', keepers: 2, sentinels: 1, proxies: 1, logLevel: opts.logLevel });
    await query(cluster.proxyClientConfig(0), 'create table bench_w (id int primary key)');
    const runs: RunResult[] = [];
    for (let i = 1; i <= opts.runs; i++) {
      const r = await measure(cluster, i);
      say(`run ${i}: ${r.from} → ${r.to}: write outage ${r.outageMs} ms (command ${r.commandMs} ms, ${r.failedAttempts} failed attempts)`);
      runs.push(r);
    }
    const date = new Date().toISOString().slice(0, 10);
    const { text, markdown } = render(opts, runs, date);
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
    if (cluster !== undefined) {
      process.stdout.write(`--- logs (tail) ---\n${cluster.logs().split('\n').slice(-80).join('\n')}\n`);
    }
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
