/**
 * `npm run bench:idle`: what an idle cluster costs. Target: every stolon daemon (each keeper and
 * its fencer, each sentinel, each proxy) at most 1% of one core while nothing happens.
 *
 * One local cluster (etcd, `--keepers` keepers, `--sentinels` sentinels, `--proxies` proxies,
 * the default spec) is started, waited for until every keeper is healthy and converged
 * (`stolonctl status`), then left alone `--settle` seconds. Over the next `--duration` seconds
 * the CPU time (utime + stime from /proc/<pid>/stat, children excluded) of each daemon, of etcd
 * and of every PostgreSQL process (postmasters and their children, summed, for context) is
 * sampled at the start and the end of the window, and etcd's own counters from its `/metrics`
 * (gRPC messages received and unary requests handled, mvcc puts, txns and ranges) give the store
 * traffic per second. Prints one line per daemon with its share of one core and PASS/NOT MET
 * against 1%, the 1-minute load average before and during the window, and writes one JSON line
 * to test/bench/results/idle-<stamp>.json; `--write-doc` regenerates the bench:idle section of
 * docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import { binPath, makeTempDir, removeDir, startLocalCluster, waitKeepersConverged, type LocalCluster } from '@stolon-ts/harness';
import { BENCH_DOC, describeMachine, fileStamp, machineInfo, processCpuMs, reportBenchFailure, trackLoad, updateDocSection, writeResultLine } from './common.js';
import { parseBenchArgs } from './args.js';

/** Share of one core a daemon may use at idle, in %. */
const TARGET_PCT = 1;

const USAGE = `usage: npm run bench:idle -- [--duration S] [--settle S] [--keepers N] [--sentinels N] [--proxies N]
                                [--write-doc] [--keep] [--pg-bin-path DIR]
  --duration S       length of the measured window in seconds (default 60)
  --settle S         seconds left alone after every keeper is healthy and converged, before the window (default 15)
  --keepers N        keepers (default 3)
  --sentinels N      sentinels (default 1)
  --proxies N        proxies (default 1)
  --write-doc        regenerate the bench:idle section of docs/benchmarks.md
  --keep             keep the cluster directory (data and logs) afterwards
  --pg-bin-path DIR  PostgreSQL binaries (default: $PG_BIN, else pg_config --bindir when it holds postgres,
                     else ${DEFAULT_PG_BIN_DIR})
Run \`npm run build\` first.`;

interface Options {
  readonly durationS: number;
  readonly settleS: number;
  readonly keepers: number;
  readonly sentinels: number;
  readonly proxies: number;
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly pgBinPath: string;
  readonly argv: readonly string[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values, int, pgBinDir } = parseBenchArgs('idle', USAGE, argv, {
    duration: { type: 'string', default: '60' },
    settle: { type: 'string', default: '15' },
    keepers: { type: 'string', default: '3' },
    sentinels: { type: 'string', default: '1' },
    proxies: { type: 'string', default: '1' },
    'write-doc': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'pg-bin-path': { type: 'string' },
  });
  return {
    durationS: int('duration', values.duration, 5, 3600),
    settleS: int('settle', values.settle, 0, 600),
    keepers: int('keepers', values.keepers, 1, 5),
    sentinels: int('sentinels', values.sentinels, 1, 3),
    proxies: int('proxies', values.proxies, 1, 3),
    writeDoc: values['write-doc'],
    keep: values.keep,
    pgBinPath: pgBinDir(values['pg-bin-path']),
    argv,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);

/** A process measured: `judged` ones are held to {@link TARGET_PCT}. */
interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly judged: boolean;
}

/** The fencer's pid from `<dataDir>/fencer.pid` when it runs (a `fencer-bin` command line), else undefined. */
async function fencerPid(dataDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(join(dataDir, 'fencer.pid'), 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) {
    return undefined;
  }
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes('fencer-bin') ? pid : undefined;
}

/** The daemons of `c` (keepers, their fencers, sentinels, proxies) and etcd. */
async function daemons(c: LocalCluster): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const k of c.keepers) {
    out.push({ name: k.uid, pid: k.process.pid, judged: true });
    const fencer = await fencerPid(k.dataDir);
    if (fencer !== undefined) {
      out.push({ name: `${k.uid} fencer`, pid: fencer, judged: true });
    }
  }
  c.sentinels.forEach((s, i) => out.push({ name: `sentinel${i}`, pid: s.pid, judged: true }));
  c.proxies.forEach((p, i) => out.push({ name: `proxy${i}`, pid: p.process.pid, judged: true }));
  out.push({ name: 'etcd', pid: c.etcd.process.pid, judged: false });
  return out;
}

/** Every process of the keepers' PostgreSQL instances: the postmasters and all their descendants. */
async function postgresPids(c: LocalCluster): Promise<number[]> {
  const roots = new Set<number>();
  for (const k of c.keepers) {
    const pm = await k.postmasterPid();
    if (pm !== undefined) {
      roots.add(pm);
    }
  }
  const parent = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (/^\d+$/.test(entry)) {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    }
  }
  const under = (pid: number): boolean => {
    for (let p: number | undefined = pid, depth = 0; p !== undefined && p > 1 && depth < 64; p = parent.get(p), depth++) {
      if (roots.has(p)) {
        return true;
      }
    }
    return false;
  };
  return [...parent.keys()].filter(under);
}

/** etcd's counters this bench reads, summed over every label set. */
interface EtcdCounters {
  /** `grpc_server_msg_received_total`: every request message, stream messages (watch, lease keepalive) included. */
  readonly msgsReceived: number;
  /** `grpc_server_handled_total` of unary calls (Range, Put, Txn, LeaseGrant…). */
  readonly unaryHandled: number;
  readonly puts: number;
  readonly txns: number;
  readonly ranges: number;
  /** `grpc_server_msg_received_total` by method, e.g. `LeaseKeepAlive`. */
  readonly byMethod: Readonly<Record<string, number>>;
}

/**
 * Reads etcd's `/metrics` (Prometheus text) at `endpoint`.
 * @throws Error with the HTTP status when etcd does not answer 200
 */
async function etcdCounters(endpoint: string): Promise<EtcdCounters> {
  const res = await fetch(`${endpoint}/metrics`);
  const text = await res.text();
  if (res.status !== 200) {
    throw new Error(`GET ${endpoint}/metrics: HTTP ${res.status}`);
  }
  let msgsReceived = 0;
  let unaryHandled = 0;
  let puts = 0;
  let txns = 0;
  let ranges = 0;
  const byMethod: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
    if (m === null) {
      continue;
    }
    const [, name, labels = '', raw] = m;
    const v = Number(raw);
    if (name === 'grpc_server_msg_received_total') {
      msgsReceived += v;
      const method = /grpc_method="([^"]+)"/.exec(labels)?.[1] ?? '?';
      byMethod[method] = (byMethod[method] ?? 0) + v;
    } else if (name === 'grpc_server_handled_total' && labels.includes('grpc_type="unary"')) {
      unaryHandled += v;
    } else if (name === 'etcd_mvcc_put_total') {
      puts += v;
    } else if (name === 'etcd_mvcc_txn_total') {
      txns += v;
    } else if (name === 'etcd_mvcc_range_total') {
      ranges += v;
    }
  }
  return { msgsReceived, unaryHandled, puts, txns, ranges, byMethod };
}

interface Row {
  readonly name: string;
  readonly cpuMs: number;
  /** % of one core over the window. */
  readonly pct: number;
  readonly judged: boolean;
}

interface Result {
  readonly windowMs: number;
  readonly rows: readonly Row[];
  readonly postgres: { readonly processes: number; readonly cpuMs: number; readonly pct: number };
  /** Per second over the window. */
  readonly etcd: { readonly msgs: number; readonly unary: number; readonly puts: number; readonly txns: number; readonly ranges: number; readonly byMethod: Readonly<Record<string, number>> };
  readonly met: boolean;
}

async function cpuOf(pids: readonly number[]): Promise<number> {
  let sum = 0;
  for (const pid of pids) {
    sum += (await processCpuMs(pid)) ?? 0;
  }
  return sum;
}

/**
 * Samples every daemon's and PostgreSQL's CPU time and etcd's counters over `durationS` seconds.
 * @throws Error when a daemon exits during the window (its CPU time would be lost)
 */
async function measure(c: LocalCluster, durationS: number): Promise<Result> {
  const procs = await daemons(c);
  const pgPids = await postgresPids(c);
  const endpoint = c.etcd.endpoints[0]!;
  const e0 = await etcdCounters(endpoint);
  const pg0 = await cpuOf(pgPids);
  const cpu0 = await Promise.all(procs.map((p) => processCpuMs(p.pid)));
  const t0 = performance.now();
  await sleep(durationS * 1000);
  const cpu1 = await Promise.all(procs.map((p) => processCpuMs(p.pid)));
  const windowMs = performance.now() - t0;
  const pg1 = await cpuOf(pgPids);
  const e1 = await etcdCounters(endpoint);
  const rows = procs.map((p, i): Row => {
    const a = cpu0[i];
    const b = cpu1[i];
    if (a === undefined || b === undefined) {
      throw new Error(`${p.name} (pid ${p.pid}) exited during the window`);
    }
    return { name: p.name, cpuMs: b - a, pct: ((b - a) / windowMs) * 100, judged: p.judged };
  });
  const perS = (d: number) => (d * 1000) / windowMs;
  const byMethod: Record<string, number> = {};
  for (const [m, v] of Object.entries(e1.byMethod)) {
    const d = perS(v - (e0.byMethod[m] ?? 0));
    if (d > 0) {
      byMethod[m] = Number(d.toFixed(2));
    }
  }
  return {
    windowMs,
    rows,
    postgres: { processes: pgPids.length, cpuMs: pg1 - pg0, pct: ((pg1 - pg0) / windowMs) * 100 },
    etcd: {
      msgs: perS(e1.msgsReceived - e0.msgsReceived),
      unary: perS(e1.unaryHandled - e0.unaryHandled),
      puts: perS(e1.puts - e0.puts),
      txns: perS(e1.txns - e0.txns),
      ranges: perS(e1.ranges - e0.ranges),
      byMethod,
    },
    met: rows.every((r) => !r.judged || r.pct <= TARGET_PCT),
  };
}

function render(opts: Options, r: Result, header: { date: string; machine: string; load: string }): { text: string; markdown: string; verdict: string } {
  const verdict = r.met ? 'PASS' : 'NOT MET';
  const judged = (row: Row) => (row.judged ? (row.pct <= TARGET_PCT ? 'PASS' : 'NOT MET') : '(context)');
  const methods = Object.entries(r.etcd.byMethod)
    .sort((a, b) => b[1] - a[1])
    .map(([m, v]) => `${m} ${f2(v)}`)
    .join(', ');
  const etcdLine =
    `etcd at idle, per second: ${f2(r.etcd.msgs)} gRPC request messages (${f2(r.etcd.unary)} unary calls; by method: ${methods || 'none'}); ` +
    `writes: ${f2(r.etcd.puts)} puts, ${f2(r.etcd.txns)} txns; ${f2(r.etcd.ranges)} ranges`;
  const pgLine = `PostgreSQL (${r.postgres.processes} processes of ${opts.keepers} instances, summed, for context): ${f2(r.postgres.pct)}% of one core`;
  const t: string[] = [];
  t.push(`bench:idle — CPU of an idle cluster over ${f1(r.windowMs / 1000)} s (${header.date})`);
  t.push(`machine: ${header.machine}; load average: ${header.load}`);
  t.push(`${opts.keepers} keepers, ${opts.sentinels} sentinel(s), ${opts.proxies} proxy(ies), default spec; target ≤ ${TARGET_PCT}% of one core per daemon`);
  t.push('');
  t.push(`${'process'.padEnd(18)}${'CPU ms'.padStart(9)}${'% core'.padStart(9)}  verdict`);
  for (const row of r.rows) {
    t.push(`${row.name.padEnd(18)}${String(row.cpuMs).padStart(9)}${f2(row.pct).padStart(9)}  ${judged(row)}`);
  }
  t.push(pgLine);
  t.push(etcdLine);
  t.push(`every daemon ≤ ${TARGET_PCT}% of one core: ${verdict}`);
  const md: string[] = [];
  md.push(`Measured ${header.date} with \`npm run bench:idle -- ${opts.argv.join(' ')}\``.replace(/ -- `$/, '`') + ` on ${header.machine}; load average: ${header.load}.`);
  md.push(`${opts.keepers} keepers, ${opts.sentinels} sentinel(s), ${opts.proxies} proxy(ies), default spec; a ${f1(r.windowMs / 1000)} s window after ${opts.settleS} s of rest (CPU: utime + stime of /proc/<pid>/stat, 10 ms clock ticks).`);
  md.push('');
  md.push('| process | CPU ms | % of one core | ≤ 1% |');
  md.push('|---|---:|---:|---|');
  for (const row of r.rows) {
    md.push(`| ${row.name} | ${row.cpuMs} | ${f2(row.pct)} | ${judged(row)} |`);
  }
  md.push('');
  md.push(`- ${pgLine}.`);
  md.push(`- ${etcdLine}.`);
  md.push(`- **every daemon ≤ ${TARGET_PCT}% of one core: ${verdict}**`);
  return { text: t.join('\n'), markdown: md.join('\n'), verdict };
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:idle: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  const say = (s: string) => process.stdout.write(`[bench:idle ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const machine = machineInfo();
  const dir = await makeTempDir('stolon-bench-idle-');
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
    say(`starting a local cluster in ${dir} (${opts.keepers} keepers, ${opts.sentinels} sentinel(s), ${opts.proxies} proxy(ies))`);
    cluster = await startLocalCluster({
      dir,
      clusterName: 'bench-idle',
      store: 'etcdv3',
      keepers: opts.keepers,
      sentinels: opts.sentinels,
      proxies: opts.proxies,
      pgBinPath: opts.pgBinPath,
    });
    await waitKeepersConverged(cluster, opts.keepers);
    say(`every keeper healthy and converged; resting ${opts.settleS} s`);
    await sleep(opts.settleS * 1000);
    const load = trackLoad();
    say(`measuring for ${opts.durationS} s`);
    const result = await measure(cluster, opts.durationS);
    const { before, max } = load();
    const out = render(opts, result, { date: new Date().toISOString().slice(0, 10), machine: describeMachine(machine), load: `${before} before the window (at most ${max.toFixed(2)} during it)` });
    process.stdout.write(`\n${out.text}\n\n`);
    const file = await writeResultLine('idle', stamp, { bench: 'idle', date: new Date().toISOString(), machine, options: { ...opts, argv: undefined }, ...result, load: { before, max }, verdict: out.verdict });
    say(`results: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('idle', out.markdown);
      say(`updated ${BENCH_DOC}`);
    }
    return 0;
  } catch (err) {
    const failed = cluster;
    await reportBenchFailure('idle', stamp, err, failed === undefined ? undefined : () => failed.logs());
    return 1;
  } finally {
    say('cleaning up');
    await cleanup();
  }
}

process.exitCode = await main();
