/**
 * `npm run bench:proxy`: what stolon-proxy's forwarding costs, next to a direct
 * connection and to HAProxy 2.6 in plain TCP mode, on the same PostgreSQL primary in the same run.
 * Targets: select-only at 16 clients, stolon-proxy's TPS ≥ HAProxy's; at 1 client, at most
 * 0.1 ms of mean latency added over direct.
 *
 * One local cluster (etcd, 1 sentinel, 1 keeper, 1 proxy: the proxy is the real program, fed
 * by the real etcd) and one HAProxy (`haproxy -db`, Debian's package, installed with apt-get
 * when missing) on another loopback port, both forwarding to the keeper's PostgreSQL. After
 * `pgbench -i -s <scale>` and a VACUUM, each round runs pgbench (`-n`, simple protocol, `-T
 * <duration>`) for every workload (select-only `-S`, TPC-B-like) and client count (1, 16, 64),
 * against direct, stolon-proxy and HAProxy in an order that rotates from round to round. The
 * table reports, per cell, the median TPS and mean latency over the rounds, and the ratios
 * stolon/direct and stolon/HAProxy. Then 1,000 idle TCP connections are opened through each
 * proxy to PostgreSQL and each proxy's RSS is read from /proc (PostgreSQL forks a backend per
 * connection that waits for a startup packet; none is sent).
 *
 * Everything (pgbench, PostgreSQL, both proxies) shares the machine's CPUs: on a 2-core machine
 * the proxy's CPU time is taken from PostgreSQL and pgbench, which is what the figures show.
 * Writes one JSON line to test/bench/results/proxy-<stamp>.json; `--write-doc` regenerates the
 * bench:proxy section of docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import { binPath, makeTempDir, removeDir, startLocalCluster, startProcess, type LocalCluster, type ProcessHandle } from '@stolon-ts/harness';
import {
  BENCH_DOC,
  assertSucceeded,
  describeMachine,
  fileStamp,
  killRunningCommands,
  machineInfo,
  median,
  runCommand,
  updateDocSection,
  reportBenchFailure,
  writeResultLine,
  type MachineInfo,
} from './common.js';
import { parseBenchArgs } from './args.js';

const TARGET_ADDED_LATENCY_MS = 0.1;
/** Target: stolon-proxy's select-only TPS at 16 clients, as a multiple of HAProxy's, in every round (and for the medians). */
const TARGET_TPS_RATIO = 1.15;
const HAPROXY_CANDIDATES = ['/usr/sbin/haproxy', '/usr/bin/haproxy'];

const USAGE = `usage: npm run bench:proxy -- [--quick] [--duration S] [--rounds N] [--clients LIST] [--scale N]
                                 [--idle N] [--data-path native|event-loop] [--write-doc] [--keep] [--pg-bin-path DIR]
  --quick            a smoke run: 3 s per run, 1 round, clients 1,16, 200 idle connections
  --duration S       seconds per pgbench run (default 12)
  --rounds N         rounds of direct / stolon-proxy / HAProxy, order rotated each round (default 3)
  --clients LIST     pgbench client counts (default 1,16,64)
  --scale N          pgbench scale (default 10)
  --idle N           idle connections for the RSS figure (default 1000)
  --data-path P      stolon-proxy's --data-path: native (default) or event-loop
  --write-doc        regenerate the bench:proxy section of docs/benchmarks.md
  --keep             keep the cluster directory (data and logs) afterwards
  --pg-bin-path DIR  PostgreSQL binaries (default: $PG_BIN, else pg_config --bindir when it holds postgres,
                     else ${DEFAULT_PG_BIN_DIR})
Run \`npm run build\` first. Installs HAProxy with apt-get when it is missing (needs root).`;

interface Options {
  readonly durationS: number;
  readonly rounds: number;
  readonly clients: readonly number[];
  readonly scale: number;
  readonly idle: number;
  /** stolon-proxy's `--data-path`. */
  readonly dataPath: 'native' | 'event-loop';
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly pgBinPath: string;
  readonly argv: readonly string[];
}

type Target = 'direct' | 'stolon' | 'haproxy';
type Workload = 'select-only' | 'tpcb-like';
const TARGETS: readonly Target[] = ['direct', 'stolon', 'haproxy'];
const WORKLOADS: readonly Workload[] = ['select-only', 'tpcb-like'];
const TARGET_NAME: Record<Target, string> = { direct: 'direct', stolon: 'stolon-proxy', haproxy: 'HAProxy' };

function parseOptions(argv: readonly string[]): Options {
  const { values, int, bad, pgBinDir } = parseBenchArgs('proxy', USAGE, argv, {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    clients: { type: 'string' },
    scale: { type: 'string', default: '10' },
    idle: { type: 'string' },
    'data-path': { type: 'string', default: 'native' },
    'write-doc': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'pg-bin-path': { type: 'string' },
  });
  const quick = values.quick;
  const clients = (values.clients ?? (quick ? '1,16' : '1,16,64')).split(',').map((c) => int('clients', c.trim(), 1, 500));
  return {
    durationS: int('duration', values.duration ?? (quick ? '3' : '12'), 1, 3600),
    rounds: int('rounds', values.rounds ?? (quick ? '1' : '3'), 1, 20),
    clients,
    scale: int('scale', values.scale, 1, 1000),
    idle: int('idle', values.idle ?? (quick ? '200' : '1000'), 0, 5000),
    dataPath:
      values['data-path'] === 'native' || values['data-path'] === 'event-loop'
        ? values['data-path']
        : bad(`--data-path must be native or event-loop, got ${JSON.stringify(values['data-path'])}`),
    writeDoc: values['write-doc'],
    keep: values.keep,
    pgBinPath: pgBinDir(values['pg-bin-path']),
    argv,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Finds HAProxy, installing Debian's package when it is missing and we are root. */
async function ensureHaproxy(say: (s: string) => void): Promise<string> {
  const found = HAPROXY_CANDIDATES.find((p) => existsSync(p));
  if (found !== undefined) {
    return found;
  }
  if (process.getuid?.() !== 0) {
    throw new Error('haproxy is not installed and this is not root: run `apt-get install -y haproxy` first');
  }
  say('haproxy missing: apt-get install -y haproxy');
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  let r = await runCommand({ cmd: 'apt-get', args: ['install', '-y', 'haproxy'], env, timeoutMs: 10 * 60_000 });
  if (r.code !== 0) {
    // A fresh machine may have no package lists yet.
    assertSucceeded('apt-get update', await runCommand({ cmd: 'apt-get', args: ['update'], env, timeoutMs: 10 * 60_000 }));
    r = await runCommand({ cmd: 'apt-get', args: ['install', '-y', 'haproxy'], env, timeoutMs: 10 * 60_000 });
  }
  assertSucceeded('apt-get install -y haproxy', r);
  const installed = HAPROXY_CANDIDATES.find((p) => existsSync(p));
  if (installed === undefined) {
    throw new Error('apt-get installed haproxy but no binary is at /usr/sbin/haproxy');
  }
  return installed;
}

/** Starts HAProxy in the foreground in plain TCP mode, forwarding `port` to `backendPort`. */
async function startHaproxy(bin: string, dir: string, port: number, backendPort: number): Promise<ProcessHandle> {
  const cfg = join(dir, 'haproxy.cfg');
  // Defaults otherwise (threads: one per CPU, as HAProxy 2.6 picks); timeouts long enough for
  // idle connections; no health checks, no logging.
  await writeFile(
    cfg,
    [
      'global',
      '  maxconn 4000', // needs 2 descriptors each: within a 20000 open-files limit
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 1h',
      '  timeout server 1h',
      'listen postgres',
      `  bind 127.0.0.1:${port}`,
      `  server pg 127.0.0.1:${backendPort}`,
      '',
    ].join('\n'),
  );
  const check = await runCommand({ cmd: bin, args: ['-c', '-f', cfg], timeoutMs: 30_000 });
  assertSucceeded('haproxy -c', check);
  const p = startProcess({ name: 'haproxy', cmd: bin, args: ['-db', '-f', cfg] });
  for (let i = 0; i < 100; i++) {
    if ((await tcpConnect(port)) !== null) {
      return p;
    }
    if (!p.running()) {
      break;
    }
    await sleep(100);
  }
  throw new Error(`haproxy did not listen on ${port}:\n${p.logs()}`);
}

/** Opens a TCP connection; resolves with the socket, or null when refused. */
function tcpConnect(port: number): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(null));
  });
}

async function freePortLocal(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen({ host: '127.0.0.1', port: 0 }, r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
}

/**
 * RSS of process `pid` (a proxy) before, and while `n` idle TCP connections to `port` are open;
 * the connections are closed afterwards.
 */
async function holdIdle(port: number, n: number, pid: number): Promise<IdleRss> {
  const beforeKiB = await rssKiB(pid);
  const fdsBefore = (await readdir(`/proc/${pid}/fd`)).length;
  const socks: net.Socket[] = [];
  try {
    for (let i = 0; i < n; i += 100) {
      const batch = await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => tcpConnect(port)));
      for (const s of batch) {
        if (s === null) {
          throw new Error(`a connection to port ${port} was refused after ${socks.length}`);
        }
        s.on('error', () => undefined);
        socks.push(s);
      }
    }
    // Two descriptors per forwarded connection (client side and PostgreSQL side) show the proxy
    // holds them all, not just the kernel's accept queue; give slow backend connects 10 s. The
    // count can be a few off either way (descriptors the proxy opens or closes for other work),
    // so it is reported, not required.
    let extraFds = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(500);
      extraFds = (await readdir(`/proc/${pid}/fd`)).length - fdsBefore;
      if (i >= 2 && extraFds >= 2 * n) {
        break;
      }
    }
    const alive = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
    if (alive !== n) {
      throw new Error(`only ${alive} of ${n} idle connections through port ${port} stayed open`);
    }
    return { beforeKiB, withKiB: await rssKiB(pid), extraFds };
  } finally {
    for (const s of socks) {
      s.destroy();
    }
    await sleep(1000);
  }
}

interface PgbenchResult {
  readonly tps: number;
  readonly latencyMs: number;
  readonly transactions: number;
}

async function pgbench(opts: Options, port: number, password: string, workload: Workload, clients: number): Promise<PgbenchResult> {
  const args = [
    '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres',
    '-n', // no VACUUM before each run: done once after init
    ...(workload === 'select-only' ? ['-S'] : []),
    '-c', String(clients), '-j', String(Math.min(clients, 2)),
    '-T', String(opts.durationS),
    'postgres',
  ];
  const r = await runCommand({
    cmd: join(opts.pgBinPath, 'pgbench'),
    args,
    env: { PGPASSWORD: password, PGAPPNAME: 'bench_proxy' },
    timeoutMs: (opts.durationS + 120) * 1000,
  });
  assertSucceeded(`pgbench ${args.join(' ')}`, r);
  const tps = /tps = ([0-9.]+) \(without initial connection time\)/.exec(r.stdout)?.[1];
  const lat = /latency average = ([0-9.]+) ms/.exec(r.stdout)?.[1];
  const tx = /number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1];
  if (tps === undefined || lat === undefined || tx === undefined) {
    throw new Error(`cannot read pgbench's output:\n${r.stdout}`);
  }
  return { tps: Number(tps), latencyMs: Number(lat), transactions: Number(tx) };
}

interface Run {
  readonly round: number;
  readonly workload: Workload;
  readonly clients: number;
  readonly target: Target;
  readonly order: number;
  readonly result: PgbenchResult;
}

interface Cell {
  readonly workload: Workload;
  readonly clients: number;
  readonly tps: Record<Target, number>;
  readonly latencyMs: Record<Target, number>;
}

function cells(opts: Options, runs: readonly Run[]): Cell[] {
  const out: Cell[] = [];
  for (const workload of WORKLOADS) {
    for (const clients of opts.clients) {
      const pick = (t: Target, f: (r: PgbenchResult) => number) =>
        median(runs.filter((r) => r.workload === workload && r.clients === clients && r.target === t).map((r) => f(r.result)));
      out.push({
        workload,
        clients,
        tps: { direct: pick('direct', (r) => r.tps), stolon: pick('stolon', (r) => r.tps), haproxy: pick('haproxy', (r) => r.tps) },
        latencyMs: {
          direct: pick('direct', (r) => r.latencyMs),
          stolon: pick('stolon', (r) => r.latencyMs),
          haproxy: pick('haproxy', (r) => r.latencyMs),
        },
      });
    }
  }
  return out;
}

interface IdleRss {
  readonly beforeKiB: number;
  readonly withKiB: number;
  /** Descriptors the proxy opened for the idle connections (2 per connection). */
  readonly extraFds: number;
}

interface Rss {
  readonly stolon: IdleRss;
  readonly haproxy: IdleRss;
}

function render(
  opts: Options,
  machine: MachineInfo,
  pgVersion: string,
  haproxyVersion: string,
  table: readonly Cell[],
  runs: readonly Run[],
  rss: Rss | null,
  rssError: string,
  date: string,
  loadBefore: string,
): { text: string; markdown: string; verdicts: string[] } {
  const f1 = (n: number) => n.toFixed(1);
  const f3 = (n: number) => n.toFixed(3);
  const verdicts: string[] = [];
  const sel16 = table.find((c) => c.workload === 'select-only' && c.clients === 16);
  if (sel16 !== undefined) {
    const ok = sel16.tps.stolon >= TARGET_TPS_RATIO * sel16.tps.haproxy;
    // The target holds for every round, not only for the medians: each round's stolon/HAProxy pair.
    const tpsOf = (round: number, t: Target) => runs.find((r) => r.round === round && r.workload === 'select-only' && r.clients === 16 && r.target === t)?.result.tps;
    const perRound = [...new Set(runs.map((r) => r.round))].flatMap((round) => {
      const [st, ha] = [tpsOf(round, 'stolon'), tpsOf(round, 'haproxy')];
      return st !== undefined && ha !== undefined && ha > 0 ? [st / ha] : [];
    });
    const met = perRound.filter((x) => x >= TARGET_TPS_RATIO).length;
    verdicts.push(
      `select-only, 16 clients: stolon-proxy ${f1(sel16.tps.stolon)} TPS vs HAProxy ${f1(sel16.tps.haproxy)} TPS ` +
        `(ratio of medians ${f3(sel16.tps.stolon / sel16.tps.haproxy)}; target ≥ ${TARGET_TPS_RATIO}): ${ok ? 'PASS' : 'MISS'}`,
      `select-only, 16 clients, per round: ${perRound.map(f3).join(', ')}; target ≥ ${TARGET_TPS_RATIO} in every round: ` +
        `${perRound.length > 0 && met === perRound.length ? 'PASS' : 'MISS'} (${met} of ${perRound.length})`,
    );
  }
  const sel1 = table.find((c) => c.workload === 'select-only' && c.clients === 1);
  if (sel1 !== undefined) {
    const added = sel1.latencyMs.stolon - sel1.latencyMs.direct;
    verdicts.push(
      `select-only, 1 client: stolon-proxy adds ${f3(added)} ms of mean latency over direct ` +
        `(HAProxy adds ${f3(sel1.latencyMs.haproxy - sel1.latencyMs.direct)} ms; target ≤ ${TARGET_ADDED_LATENCY_MS} ms): ${added <= TARGET_ADDED_LATENCY_MS ? 'PASS' : 'MISS'}`,
    );
  }
  const command = `npm run bench:proxy -- ${opts.argv.join(' ')}`.trimEnd();
  const header =
    `pgbench -n, simple protocol, ${opts.durationS} s per run, ${opts.rounds} round${opts.rounds === 1 ? '' : 's'} ` +
    `(direct / stolon-proxy / HAProxy, order rotated each round), pgbench scale ${opts.scale}; medians over the rounds; ` +
    `stolon-proxy --data-path ${opts.dataPath}`;

  const t: string[] = [];
  t.push(`bench:proxy — stolon-proxy vs direct vs HAProxy (${date})`);
  t.push(`machine:    ${describeMachine(machine)}; load average before the run: ${loadBefore}`);
  t.push(`postgres:   ${pgVersion}; ${haproxyVersion}`);
  t.push(header);
  t.push('');
  const h = (s: string, w: number) => s.padStart(w);
  t.push(
    `${'workload'.padEnd(13)}${h('clients', 8)}${h('direct TPS', 12)}${h('stolon TPS', 12)}${h('HAProxy TPS', 13)}` +
      `${h('direct ms', 11)}${h('stolon ms', 11)}${h('HAProxy ms', 12)}${h('st/direct', 11)}${h('st/HAProxy', 12)}`,
  );
  for (const c of table) {
    t.push(
      `${c.workload.padEnd(13)}${h(String(c.clients), 8)}${h(f1(c.tps.direct), 12)}${h(f1(c.tps.stolon), 12)}${h(f1(c.tps.haproxy), 13)}` +
        `${h(f3(c.latencyMs.direct), 11)}${h(f3(c.latencyMs.stolon), 11)}${h(f3(c.latencyMs.haproxy), 12)}` +
        `${h(f3(c.tps.stolon / c.tps.direct), 11)}${h(f3(c.tps.stolon / c.tps.haproxy), 12)}`,
    );
  }
  t.push('');
  for (const v of verdicts) {
    t.push(v);
  }
  const mib = (kib: number) => (kib / 1024).toFixed(1);
  const rssLine =
    rss === null
      ? `RSS with idle connections: ${rssError}`
      : `RSS with ${opts.idle} idle connections: stolon-proxy ${mib(rss.stolon.beforeKiB)} → ${mib(rss.stolon.withKiB)} MiB ` +
        `(+${((rss.stolon.withKiB - rss.stolon.beforeKiB) / Math.max(1, opts.idle)).toFixed(1)} KiB per connection), ` +
        `HAProxy ${mib(rss.haproxy.beforeKiB)} → ${mib(rss.haproxy.withKiB)} MiB (each holding 2 descriptors per connection: ` +
        `+${rss.stolon.extraFds} and +${rss.haproxy.extraFds}; RSS is read after the pgbench runs, so the proxy's heap has already grown)`;
  t.push(rssLine);
  t.push('');
  t.push('every run (TPS / mean latency ms):');
  for (const r of runs) {
    t.push(
      `  round ${r.round} ${r.workload.padEnd(12)} c=${String(r.clients).padEnd(3)} #${r.order} ${TARGET_NAME[r.target].padEnd(13)}` +
        `${f1(r.result.tps).padStart(10)} TPS ${f3(r.result.latencyMs).padStart(8)} ms`,
    );
  }

  const md: string[] = [];
  md.push(`Measured ${date} with \`${command}\` on ${describeMachine(machine)}; ${pgVersion}; ${haproxyVersion}.`);
  md.push(
    `pgbench, PostgreSQL, etcd, the keeper, the sentinel and both proxies share the machine's CPUs; load average before the run: ${loadBefore}.`,
  );
  md.push('');
  md.push(`${header}.`);
  md.push('');
  md.push('| workload | clients | direct TPS | stolon-proxy TPS | HAProxy TPS | direct ms | stolon-proxy ms | HAProxy ms | stolon/direct TPS | stolon/HAProxy TPS |');
  md.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of table) {
    md.push(
      `| ${c.workload} | ${c.clients} | ${f1(c.tps.direct)} | ${f1(c.tps.stolon)} | ${f1(c.tps.haproxy)} | ${f3(c.latencyMs.direct)} | ` +
        `${f3(c.latencyMs.stolon)} | ${f3(c.latencyMs.haproxy)} | ${f3(c.tps.stolon / c.tps.direct)} | ${f3(c.tps.stolon / c.tps.haproxy)} |`,
    );
  }
  md.push('');
  for (const v of verdicts) {
    md.push(`- **${v}**`);
  }
  md.push(`- ${rssLine}.`);
  return { text: t.join('\n'), markdown: md.join('\n'), verdicts };
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:proxy: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  if (!existsSync(join(opts.pgBinPath, 'pgbench'))) {
    process.stderr.write(`bench:proxy: ${join(opts.pgBinPath, 'pgbench')} is missing; pass --pg-bin-path\n`);
    return 2;
  }
  const say = (s: string) => process.stdout.write(`[bench:proxy ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const machine = machineInfo();
  const loadBefore = (await readFile('/proc/loadavg', 'utf8').catch(() => '? ? ?')).split(' ').slice(0, 3).join(', ');
  const dir = await makeTempDir('stolon-bench-proxy-');
  let cluster: LocalCluster | undefined;
  let haproxy: ProcessHandle | undefined;
  let cleaning: Promise<void> | undefined;
  let interrupted = false;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      killRunningCommands();
      await haproxy?.stop('SIGTERM', 5000).catch(() => undefined);
      await cluster?.stop().catch((err: unknown) => say(`stopping the cluster failed: ${(err as Error).message}`));
      if (opts.keep) {
        say(`kept ${dir}`);
      } else {
        await removeDir(dir);
      }
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      say(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }

  try {
    const haproxyBin = await ensureHaproxy(say);
    const hv = await runCommand({ cmd: haproxyBin, args: ['-v'], timeoutMs: 10_000 });
    const haproxyVersion = /HAProxy version (\S+)/.exec(hv.stdout)?.[0] ?? 'HAProxy (version unknown)';
    say(`starting a local cluster in ${dir} (1 keeper, 1 sentinel, 1 proxy)`);
    cluster = await startLocalCluster({
      dir,
      clusterName: 'bench-proxy',
      keepers: 1,
      sentinels: 1,
      proxies: 1,
      proxyArgs: ['--data-path', opts.dataPath],
      logLevel: 'info',
      pgBinPath: opts.pgBinPath,
      // Room for the idle connections of the RSS figure: PostgreSQL forks a backend for each, and
      // refuses to fork more than about twice max_connections children.
      spec: { initMode: 'new', pgParameters: { max_connections: String(Math.max(100, opts.idle + 100)) } },
    });
    const c = cluster;
    const pgPort = c.keepers[0]!.pgPort;
    const stolonPort = c.proxies[0]!.port;
    const haproxyPort = await freePortLocal();
    haproxy = await startHaproxy(haproxyBin, dir, haproxyPort, pgPort);
    const ports: Record<Target, number> = { direct: pgPort, stolon: stolonPort, haproxy: haproxyPort };

    say(`pgbench -i -s ${opts.scale} (direct, port ${pgPort})`);
    const init = await runCommand({
      cmd: join(opts.pgBinPath, 'pgbench'),
      args: ['-i', '-s', String(opts.scale), '-q', '-h', '127.0.0.1', '-p', String(pgPort), '-U', 'postgres', 'postgres'],
      env: { PGPASSWORD: c.suPassword },
      timeoutMs: 30 * 60_000,
    });
    assertSucceeded('pgbench -i', init);
    const pgVersion = await (async () => {
      const cl = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: c.suPassword, database: 'postgres' });
      await cl.connect();
      try {
        await cl.query('vacuum analyze');
        await cl.query('checkpoint');
        return String((await cl.query<{ v: string }>('select version() as v')).rows[0]?.v).replace(/ on .*$/, '');
      } finally {
        await cl.end().catch(() => undefined);
      }
    })();

    const runs: Run[] = [];
    const total = opts.rounds * WORKLOADS.length * opts.clients.length * TARGETS.length;
    for (let round = 1; round <= opts.rounds; round++) {
      for (const workload of WORKLOADS) {
        for (const clients of opts.clients) {
          // Rotate the order each round so no target always runs first (cache, checkpoints).
          const order = TARGETS.map((_, i) => TARGETS[(i + round - 1) % TARGETS.length]!);
          for (const [i, target] of order.entries()) {
            const result = await pgbench(opts, ports[target], c.suPassword, workload, clients);
            runs.push({ round, workload, clients, target, order: i + 1, result });
            say(
              `${runs.length}/${total} round ${round} ${workload} c=${clients} ${TARGET_NAME[target]}: ` +
                `${result.tps.toFixed(1)} TPS, ${result.latencyMs.toFixed(3)} ms`,
            );
          }
        }
      }
    }

    let rss: Rss | null = null;
    let rssError = opts.idle === 0 ? 'not measured (--idle 0)' : '';
    if (opts.idle > 0) {
      say(`RSS with ${opts.idle} idle connections through each proxy`);
      // PostgreSQL forks a backend per connection; it waits for a startup packet up to
      // authentication_timeout (60 s), far longer than this takes.
      try {
        const stolon = await holdIdle(stolonPort, opts.idle, c.proxies[0]!.process.pid);
        const ha = await holdIdle(haproxyPort, opts.idle, haproxy.pid);
        rss = { stolon, haproxy: ha };
      } catch (err) {
        // The pgbench figures are worth keeping even when this step fails.
        rssError = (err as Error).message;
        say(`RSS measurement failed: ${rssError}`);
      }
    }

    const date = new Date().toISOString().slice(0, 10);
    const table = cells(opts, runs);
    const out = render(opts, machine, pgVersion, haproxyVersion, table, runs, rss, rssError, date, loadBefore);
    process.stdout.write(`\n${out.text}\n\n`);
    const file = await writeResultLine('proxy', stamp, {
      bench: 'proxy',
      date: new Date().toISOString(),
      command: `npm run bench:proxy -- ${opts.argv.join(' ')}`.trimEnd(),
      machine,
      loadBefore,
      pgVersion,
      haproxyVersion,
      options: { ...opts, argv: undefined },
      runs,
      table,
      rss,
      verdicts: out.verdicts,
    });
    say(`results: ${file} (${runs.reduce((a, r) => a + r.result.transactions, 0)} transactions in all)`);
    if (opts.writeDoc) {
      await updateDocSection('proxy', out.markdown);
      say(`updated ${BENCH_DOC}`);
    }
    return 0;
  } catch (err) {
    if (interrupted) {
      return 130;
    }
    const failed = cluster;
    await reportBenchFailure('proxy', stamp, err, failed === undefined ? undefined : () => failed.logs());
    return 1;
  } finally {
    say('cleaning up');
    await cleanup();
  }
}

process.exitCode = await main();
