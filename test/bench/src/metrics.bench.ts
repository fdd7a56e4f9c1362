/**
 * `npm run bench:metrics`: what `GET /metrics` costs the programs, and whether a real Prometheus
 * scraping every program each second slows the proxy's clients down. Target: pgbench TPS through
 * the proxy with Prometheus scraping at least 0.98 of the TPS without (within 2%).
 *
 * One local cluster (etcd, 3 keepers, 1 sentinel, 1 proxy). First, each program's status endpoint
 * is scraped `--scrapes` times in a row (200 by default): the latency of each scrape, the size of
 * the answer, and the program's CPU time (utime + stime from /proc/<pid>/stat) over the scrapes
 * less its CPU time over as long a stretch at rest, per scrape. Then `pgbench -i -s <scale>` on the
 * primary and `pgbench -n -S -c <clients> -j 2 -T <duration>` through the proxy, alternately
 * without and with Prometheus (Debian's package, `startPrometheus`: every program, 1 s interval),
 * in the order off, on, on, off, … (`--rounds` pairs); medians per mode, their ratio, and the CPU
 * time of the programs and of Prometheus during the runs.
 *
 * Everything (pgbench, PostgreSQL, etcd, the programs, Prometheus) shares the machine's CPUs.
 * Writes one JSON line to test/bench/results/metrics-<stamp>.json; `--write-doc` regenerates the
 * bench:metrics section of docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import { binPath, makeTempDir, removeDir, startLocalCluster, startPrometheus, type LocalCluster, type PrometheusHandle } from '@stolon-ts/harness';
import {
  BENCH_DOC,
  assertSucceeded,
  describeMachine,
  fileStamp,
  killRunningCommands,
  machineInfo,
  median,
  processCpuMs,
  runCommand,
  trackLoad,
  updateDocSection,
  reportBenchFailure,
  writeResultLine,
} from './common.js';
import { parseBenchArgs } from './args.js';

const TARGET_RATIO = 0.98;

const USAGE = `usage: npm run bench:metrics -- [--scrapes N] [--duration S] [--clients N] [--rounds N] [--scale N]
                                   [--write-doc] [--keep] [--pg-bin-path DIR]
  --scrapes N        scrapes of each program's /metrics in a row (default 200)
  --duration S       seconds per pgbench run (default 20)
  --clients N        pgbench clients (default 8)
  --rounds N         pairs of pgbench runs without and with Prometheus, order off,on,on,off,... (default 2)
  --scale N          pgbench scale (default 10)
  --write-doc        regenerate the bench:metrics section of docs/benchmarks.md
  --keep             keep the cluster directory (data and logs) afterwards
  --pg-bin-path DIR  PostgreSQL binaries (default: $PG_BIN, else pg_config --bindir when it holds postgres,
                     else ${DEFAULT_PG_BIN_DIR})
Run \`npm run build\` first. Needs Debian's prometheus package (apt-get install -y prometheus) and pgbench.`;

interface Options {
  readonly scrapes: number;
  readonly durationS: number;
  readonly clients: number;
  readonly rounds: number;
  readonly scale: number;
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly pgBinPath: string;
  readonly argv: readonly string[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values, int, pgBinDir } = parseBenchArgs('metrics', USAGE, argv, {
    scrapes: { type: 'string', default: '200' },
    duration: { type: 'string', default: '20' },
    clients: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '2' },
    scale: { type: 'string', default: '10' },
    'write-doc': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'pg-bin-path': { type: 'string' },
  });
  return {
    scrapes: int('scrapes', values.scrapes, 1, 100_000),
    durationS: int('duration', values.duration, 1, 3600),
    clients: int('clients', values.clients, 1, 500),
    rounds: int('rounds', values.rounds, 1, 20),
    scale: int('scale', values.scale, 1, 1000),
    writeDoc: values['write-doc'],
    keep: values.keep,
    pgBinPath: pgBinDir(values['pg-bin-path']),
    argv,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const f3 = (n: number) => n.toFixed(3);

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

interface Program {
  readonly name: string;
  readonly pid: number;
  readonly endpoint: string;
}

function programs(c: LocalCluster): Program[] {
  return [
    ...c.keepers.map((k) => ({ name: k.uid, pid: k.process.pid, endpoint: `127.0.0.1:${k.statusPort}` })),
    ...c.sentinelStatusPorts.map((p, i) => ({ name: `sentinel${i}`, pid: c.sentinels[i]!.pid, endpoint: `127.0.0.1:${p}` })),
    ...c.proxies.map((p, i) => ({ name: `proxy${i}`, pid: p.process.pid, endpoint: `127.0.0.1:${p.statusPort}` })),
  ];
}

async function cpuMs(pid: number): Promise<number> {
  const ms = await processCpuMs(pid);
  if (ms === undefined) {
    throw new Error(`process ${pid} is gone (no /proc/${pid}/stat)`);
  }
  return ms;
}

interface ScrapeCost {
  readonly program: string;
  readonly bytes: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly maxMs: number;
  /** CPU ms the program spent per scrape, its CPU at rest over as long subtracted. */
  readonly cpuMsPerScrape: number;
  readonly cpuMsBusy: number;
  readonly cpuMsIdle: number;
  readonly wallMs: number;
}

/** `n` scrapes of `p` in a row, then as long at rest, with the program's CPU time over each. */
async function scrapeCost(p: Program, n: number): Promise<ScrapeCost> {
  const latencies: number[] = [];
  let bytes = 0;
  const cpu0 = await cpuMs(p.pid);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    const res = await fetch(`http://${p.endpoint}/metrics`);
    const text = await res.text();
    latencies.push(performance.now() - s);
    if (res.status !== 200) {
      throw new Error(`GET http://${p.endpoint}/metrics (${p.name}): HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    bytes = Buffer.byteLength(text);
  }
  const wallMs = performance.now() - t0;
  const cpu1 = await cpuMs(p.pid);
  await sleep(wallMs);
  const cpu2 = await cpuMs(p.pid);
  const busy = cpu1 - cpu0;
  const idle = cpu2 - cpu1;
  return {
    program: p.name,
    bytes,
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    maxMs: Math.max(...latencies),
    cpuMsPerScrape: Math.max(0, busy - idle) / n,
    cpuMsBusy: busy,
    cpuMsIdle: idle,
    wallMs,
  };
}

interface PgbenchRun {
  readonly order: number;
  readonly prometheus: boolean;
  readonly tps: number;
  readonly latencyMs: number;
  /** CPU ms of the stolon programs during the run. */
  readonly programsCpuMs: number;
  /** CPU ms of Prometheus during the run (0 without). */
  readonly prometheusCpuMs: number;
}

async function pgbench(opts: Options, pgbenchBin: string, c: LocalCluster): Promise<{ tps: number; latencyMs: number }> {
  const args = ['-h', '127.0.0.1', '-p', String(c.proxies[0]!.port), '-U', 'postgres', '-n', '-S', '-c', String(opts.clients), '-j', '2', '-T', String(opts.durationS), 'postgres'];
  const r = await runCommand({ cmd: pgbenchBin, args, env: { PGPASSWORD: c.suPassword, PGAPPNAME: 'bench_metrics' }, timeoutMs: (opts.durationS + 120) * 1000 });
  assertSucceeded(`pgbench ${args.join(' ')}`, r);
  const tps = /tps = ([0-9.]+) \(without initial connection time\)/.exec(r.stdout)?.[1];
  const lat = /latency average = ([0-9.]+) ms/.exec(r.stdout)?.[1];
  if (tps === undefined || lat === undefined) {
    throw new Error(`cannot read pgbench's output:\n${r.stdout}`);
  }
  return { tps: Number(tps), latencyMs: Number(lat) };
}

interface Result {
  readonly costs: readonly ScrapeCost[];
  readonly runs: readonly PgbenchRun[];
  readonly tpsOff: number;
  readonly tpsOn: number;
  readonly ratio: number;
}

function render(opts: Options, r: Result, header: { date: string; machine: string; load: string }): { text: string; markdown: string; verdict: string } {
  const verdict =
    `pgbench -S -c ${opts.clients} through the proxy: ${f1(r.tpsOn)} TPS with Prometheus scraping every program each second, ` +
    `${f1(r.tpsOff)} TPS without (ratio ${f3(r.ratio)}; target ≥ ${TARGET_RATIO}): ${r.ratio >= TARGET_RATIO ? 'PASS' : 'MISS'}`;
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const on = r.runs.filter((x) => x.prometheus);
  const off = r.runs.filter((x) => !x.prometheus);
  const cpuLine =
    `CPU time per pgbench run (${opts.durationS} s): the stolon programs ${f1(mean(off.map((x) => x.programsCpuMs)) / 1000)} s without Prometheus, ` +
    `${f1(mean(on.map((x) => x.programsCpuMs)) / 1000)} s with; Prometheus itself ${f1(mean(on.map((x) => x.prometheusCpuMs)) / 1000)} s`;
  const rows = r.costs.map((c) => [c.program, String(c.bytes), f2(c.p50Ms), f2(c.p95Ms), f2(c.maxMs), f2(c.cpuMsPerScrape)]);
  const t: string[] = [];
  t.push(`bench:metrics — the cost of GET /metrics and of a Prometheus scraping every second (${header.date})`);
  t.push(`machine: ${header.machine}; load average before the run: ${header.load}`);
  t.push('');
  t.push(`${opts.scrapes} scrapes of each program in a row:`);
  t.push(`${'program'.padEnd(10)}${'bytes'.padStart(8)}${'p50 ms'.padStart(9)}${'p95 ms'.padStart(9)}${'max ms'.padStart(9)}${'CPU ms/scrape'.padStart(15)}`);
  for (const row of rows) {
    t.push(`${row[0]!.padEnd(10)}${row[1]!.padStart(8)}${row[2]!.padStart(9)}${row[3]!.padStart(9)}${row[4]!.padStart(9)}${row[5]!.padStart(15)}`);
  }
  t.push('');
  for (const run of r.runs) {
    t.push(`  run ${run.order} ${run.prometheus ? 'with   ' : 'without'} Prometheus: ${f1(run.tps)} TPS, ${f3(run.latencyMs)} ms`);
  }
  t.push(verdict);
  t.push(cpuLine);
  const md: string[] = [];
  md.push(`Measured ${header.date} with \`npm run bench:metrics -- ${opts.argv.join(' ')}\``.replace(/ -- `$/, '`') + ` on ${header.machine}; load average before the run: ${header.load}.`);
  md.push('3 keepers, 1 sentinel, 1 proxy; pgbench, PostgreSQL, etcd, the programs and Prometheus share the machine\'s CPUs.');
  md.push('');
  md.push(`${opts.scrapes} scrapes of each program's \`/metrics\` in a row (CPU: the program's utime + stime over the scrapes, less the same at rest, per scrape; 10 ms clock ticks):`);
  md.push('');
  md.push('| program | bytes | p50 ms | p95 ms | max ms | CPU ms per scrape |');
  md.push('|---|---:|---:|---:|---:|---:|');
  for (const row of rows) {
    md.push(`| ${row.join(' | ')} |`);
  }
  md.push('');
  md.push(`\`pgbench -n -S -c ${opts.clients} -j 2 -T ${opts.durationS}\` through the proxy, scale ${opts.scale}, ${r.runs.length} runs in the order ${r.runs.map((x) => (x.prometheus ? 'on' : 'off')).join(', ')} (on: a real Prometheus scraping the 5 programs every second); medians:`);
  md.push('');
  md.push('| runs | without Prometheus TPS | with Prometheus TPS | with / without |');
  md.push('|---|---:|---:|---:|');
  md.push(`| ${r.runs.map((x) => f1(x.tps)).join(', ')} | ${f1(r.tpsOff)} | ${f1(r.tpsOn)} | ${f3(r.ratio)} |`);
  md.push('');
  md.push(`- **${verdict}**`);
  md.push(`- ${cpuLine}.`);
  return { text: t.join('\n'), markdown: md.join('\n'), verdict };
}

async function measure(opts: Options, c: LocalCluster, pgbenchBin: string, say: (s: string) => void, promRef: { current: PrometheusHandle | undefined }): Promise<Result> {
  const progs = programs(c);
  const costs: ScrapeCost[] = [];
  for (const p of progs) {
    const cost = await scrapeCost(p, opts.scrapes);
    costs.push(cost);
    say(`${p.name}: ${cost.bytes} bytes, p50 ${f2(cost.p50Ms)} ms, p95 ${f2(cost.p95Ms)} ms, ${f2(cost.cpuMsPerScrape)} CPU ms per scrape`);
  }
  const primary = await c.primaryIndex();
  say(`pgbench -i -s ${opts.scale} (keeper${primary}, direct)`);
  const k = c.keepers[primary]!;
  const init = await runCommand({
    cmd: pgbenchBin,
    args: ['-i', '-s', String(opts.scale), '-q', '-h', k.pgHost, '-p', String(k.pgPort), '-U', 'postgres', 'postgres'],
    env: { PGPASSWORD: c.suPassword },
    timeoutMs: 30 * 60_000,
  });
  assertSucceeded('pgbench -i', init);
  // Let the standbys catch up with the initial load before measuring.
  await sleep(5000);
  const order = Array.from({ length: opts.rounds * 2 }, (_, i) => i % 4 === 1 || i % 4 === 2);
  const runs: PgbenchRun[] = [];
  const programsCpu = async () => (await Promise.all(progs.map((p) => cpuMs(p.pid)))).reduce((a, b) => a + b, 0);
  for (const [i, withProm] of order.entries()) {
    if (withProm && promRef.current === undefined) {
      const eps = (prefix: string) => progs.filter((p) => p.name.startsWith(prefix)).map((p) => p.endpoint);
      promRef.current = await startPrometheus({
        jobs: ['keeper', 'sentinel', 'proxy'].map((name) => ({ name, targets: eps(name), labels: { stolon_cluster: c.clusterName } })),
      });
      await sleep(3000); // a few scrapes in before the run
    } else if (!withProm && promRef.current !== undefined) {
      await promRef.current.stop();
      promRef.current = undefined;
    }
    const pc0 = await programsCpu();
    const promCpu0 = promRef.current === undefined ? 0 : await cpuMs(promRef.current.process.pid);
    const r = await pgbench(opts, pgbenchBin, c);
    const promCpu1 = promRef.current === undefined ? 0 : await cpuMs(promRef.current.process.pid);
    const run: PgbenchRun = { order: i + 1, prometheus: withProm, ...r, programsCpuMs: (await programsCpu()) - pc0, prometheusCpuMs: promCpu1 - promCpu0 };
    runs.push(run);
    say(`run ${i + 1}/${order.length} ${withProm ? 'with' : 'without'} Prometheus: ${f1(r.tps)} TPS, ${f3(r.latencyMs)} ms`);
  }
  await promRef.current?.stop();
  promRef.current = undefined;
  const tpsOff = median(runs.filter((x) => !x.prometheus).map((x) => x.tps));
  const tpsOn = median(runs.filter((x) => x.prometheus).map((x) => x.tps));
  return { costs, runs, tpsOff, tpsOn, ratio: tpsOn / tpsOff };
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:metrics: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  const pgbenchBin = ['/usr/bin/pgbench', join(opts.pgBinPath, 'pgbench')].find((p) => existsSync(p));
  if (pgbenchBin === undefined) {
    process.stderr.write(`bench:metrics: no pgbench in /usr/bin or ${opts.pgBinPath}\n`);
    return 2;
  }
  const say = (s: string) => process.stdout.write(`[bench:metrics ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const machine = machineInfo();
  const load = trackLoad();
  const dir = await makeTempDir('stolon-bench-metrics-');
  let cluster: LocalCluster | undefined;
  const prom: { current: PrometheusHandle | undefined } = { current: undefined };
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      killRunningCommands();
      await prom.current?.stop().catch(() => undefined);
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
    say(`starting a local cluster in ${dir} (3 keepers, 1 sentinel, 1 proxy)`);
    cluster = await startLocalCluster({ dir, clusterName: 'bench-metrics', keepers: 3, sentinels: 1, proxies: 1, pgBinPath: opts.pgBinPath });
    const result = await measure(opts, cluster, pgbenchBin, say, prom);
    const { before, max } = load();
    const out = render(opts, result, { date: new Date().toISOString().slice(0, 10), machine: describeMachine(machine), load: `${before} (at most ${max.toFixed(2)} during it)` });
    process.stdout.write(`\n${out.text}\n\n`);
    const file = await writeResultLine('metrics', stamp, { bench: 'metrics', date: new Date().toISOString(), machine, options: { ...opts, argv: undefined }, ...result, verdict: out.verdict });
    say(`results: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('metrics', out.markdown);
      say(`updated ${BENCH_DOC}`);
    }
    return 0;
  } catch (err) {
    const failed = cluster;
    await reportBenchFailure('metrics', stamp, err, failed === undefined ? undefined : () => failed.logs());
    return 1;
  } finally {
    say('cleaning up');
    await cleanup();
  }
}

process.exitCode = await main();
