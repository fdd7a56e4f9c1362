/**
 * `npm run bench:clone`: how long a new keeper takes from its start to a streaming
 * standby of a ~1 GiB primary (pgbench scale 70), next to a raw `pg_basebackup` of the same
 * primary in the same run. Target: stolon / raw ≤ 1.15.
 *
 * One local cluster (etcd, 1 sentinel, 1 proxy) with `1 + runs` keepers configured and only
 * keeper0 started. After `pgbench -i` through the proxy, each run measures, in alternating order
 * and each after `sync`, a CHECKPOINT, a reset of the page cache (as root: `drop_caches`, then
 * keeper0's PGDATA and both programs read back in; `--no-cache-reset` skips it) and a short
 * pause (`--settle`):
 * - raw: `pg_basebackup -X stream -c fast` of keeper0's PostgreSQL as the replication user (the
 *   keeper's own flags minus `--slot --progress --verbose`), from spawn to exit;
 * - stolon: `startKeeper(r + 1)`, from spawn of the keeper process until keeper0's
 *   `pg_stat_replication` shows a new `stolon_*` walsender in state `streaming` (polled every
 *   20 ms): the standby's walreceiver. The keeper runs pg_basebackup with PGAPPNAME
 *   `stolon-ts-clone-stolon_<db>`, so the copy's walsenders (`backup` and its WAL stream) are
 *   told apart by name.
 * Each run uses a fresh keeper, which leaves the cluster again after its measurement (stopped,
 * `stolonctl removekeeper`, its slot dropped by the primary's keeper): every run's keeper joins
 * the primary alone.
 *
 * Both sides sample the primary's walsenders every 20 ms, which splits each time into the
 * transfer and what comes before and after it, and read the CPU time of the stolon processes
 * around each measurement. Prints the figures, the ratio of medians and a phase breakdown of
 * each stolon run taken from the component logs; writes one JSON line to
 * test/bench/results/clone-<stamp>.json, and with `--write-doc` regenerates the bench:clone
 * section of docs/benchmarks.md. Method and findings: docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { chown, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import { binPath, makeTempDir, removeDir, startLocalCluster, waitFor, type LocalCluster, type ProcessHandle } from '@stolon-ts/harness';
import {
  BENCH_DOC,
  assertSucceeded,
  describeMachine,
  diskUsage,
  fileStamp,
  killRunningCommands,
  machineInfo,
  median,
  mib,
  osIdentity,
  processCpuMs,
  runCommand,
  secs,
  updateDocSection,
  reportBenchFailure,
  writeResultLine,
  type MachineInfo,
  type OsIdentity,
} from './common.js';
import { parseBenchArgs } from './args.js';

const TARGET_RATIO = 1.15;
/** The keeper's default `--pg-repl-username` (the harness does not override it). */
const REPL_USER = 'repluser';
/**
 * How often both sides read the primary's walsenders. The stolon time ends at a sample, the raw
 * one at pg_basebackup's exit: at 100 ms (until 2026-12-07) the stolon side was charged 50 ms on
 * average for sampling alone.
 */
const POLL_MS = 20;
/** Application name of the raw copy, so its walsenders can be told apart. */
const RAW_APP = 'bench_raw_basebackup';

const USAGE = `usage: npm run bench:clone -- [--scale N] [--runs N] [--write-doc] [--keep] [--clone-timeout S]
                                 [--settle S] [--no-cache-reset] [--log-level L] [--pg-bin-path DIR]
  --scale N          pgbench scale of the primary (default 70, about 1 GiB)
  --runs N           raw/stolon pairs, in alternating order, one new keeper each (default 1, max 10)
  --write-doc        regenerate the bench:clone section of docs/benchmarks.md
  --keep             keep the cluster directory (data and logs) afterwards
  --clone-timeout S  give up on one copy after S seconds (default 600)
  --settle S         pause after sync and CHECKPOINT before each measurement (default 3)
  --no-cache-reset   do not drop the page cache and read the primary's PGDATA and both programs back
                     in before each measurement (done by default when run as root; needs root)
  --log-level L      component log level (default info; the phase breakdown needs info or lower)
  --pg-bin-path DIR  PostgreSQL binaries (default: $PG_BIN, else pg_config --bindir when it holds postgres,
                     else ${DEFAULT_PG_BIN_DIR})
Run \`npm run build\` first.`;

interface Options {
  readonly scale: number;
  readonly runs: number;
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly cloneTimeoutMs: number;
  readonly settleMs: number;
  /** Drop the page cache and read keeper0's PGDATA and both programs back in before each measurement. */
  readonly cacheReset: boolean;
  readonly logLevel: string;
  readonly pgBinPath: string;
  readonly argv: readonly string[];
}

/** Parses and validates the flags; exits 2 with the usage on a bad one. */
function parseOptions(argv: readonly string[]): Options {
  const { values, int, bad, pgBinDir } = parseBenchArgs('clone', USAGE, argv, {
    scale: { type: 'string', default: '70' },
    runs: { type: 'string', default: '1' },
    'write-doc': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'clone-timeout': { type: 'string', default: '600' },
    settle: { type: 'string', default: '3' },
    'no-cache-reset': { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'info' },
    'pg-bin-path': { type: 'string' },
  });
  if (!['trace', 'debug', 'info'].includes(values['log-level'])) {
    bad(`--log-level must be trace, debug or info (the phase breakdown reads info lines), got ${JSON.stringify(values['log-level'])}`);
  }
  return {
    scale: int('scale', values.scale, 1, 10_000),
    runs: int('runs', values.runs, 1, 10),
    writeDoc: values['write-doc'],
    keep: values.keep,
    cloneTimeoutMs: int('clone-timeout', values['clone-timeout'], 10, 86_400) * 1000,
    settleMs: int('settle', values.settle, 0, 600) * 1000,
    cacheReset: !values['no-cache-reset'] && process.getuid?.() === 0,
    logLevel: values['log-level'],
    pgBinPath: pgBinDir(values['pg-bin-path']),
    argv,
  };
}

/** One event of the stolon clone, `at` in ms after the keeper process was spawned. */
interface Phase {
  readonly at: number;
  readonly what: string;
}

/** The raw copy: spawn → exit, and spawn → its walsenders gone from the primary (≤ 20 ms late). */
interface RawResult {
  readonly ms: number;
  readonly bytes: number;
  readonly transferMs: number | null;
  /** CPU time the stolon components (keepers, sentinel, proxy, etcd) used meanwhile. */
  readonly componentCpuMs: number;
  readonly componentCpuByProcess: Readonly<Record<string, number>>;
}

/**
 * The stolon clone, spawn → streaming, split at the start of the (last) pg_basebackup attempt,
 * its walsenders leaving the primary, and the keeper's "base backup complete".
 */
interface StolonResult {
  readonly ms: number;
  readonly bytes: number;
  readonly attempts: number;
  /** CPU time the stolon components used meanwhile, the new keeper included. */
  readonly componentCpuMs: number;
  /** Of which the new keeper's own process (its pg_basebackup and postgres not included). */
  readonly newKeeperCpuMs: number;
  readonly componentCpuByProcess: Readonly<Record<string, number>>;
  readonly split: {
    /** Spawn → the successful pg_basebackup starts (includes failed attempts). */
    readonly beforeCopyMs: number;
    /** pg_basebackup start → its walsenders gone (the transfer). */
    readonly transferMs: number;
    /** Walsenders gone → "base backup complete" (pg_basebackup's fsync, rename into place). */
    readonly copyTailMs: number;
    /** "base backup complete" → streaming (config, pg_ctl start, recovery, walreceiver). */
    readonly afterCopyMs: number;
  } | null;
  readonly phases: readonly Phase[];
}

interface RunResult {
  readonly run: number;
  readonly order: 'raw first' | 'stolon first';
  readonly keeper: string;
  readonly raw: RawResult;
  readonly stolon: StolonResult;
}

interface LogEntry {
  readonly proc: string;
  readonly time: number;
  readonly msg: string;
}

/** Parses the harness's `[name] {pino json}` lines; other lines are skipped. */
function parseLogs(text: string): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^\[([^\]]+)\] (\{.*\})$/.exec(line);
    if (m === null) {
      continue;
    }
    try {
      const j = JSON.parse(m[2] ?? '') as { time?: unknown; msg?: unknown };
      if (typeof j.time === 'number' && typeof j.msg === 'string') {
        out.push({ proc: m[1] ?? '', time: j.time, msg: j.msg });
      }
    } catch {
      // A non-JSON line (e.g. a stack trace) has no timestamp to place.
    }
  }
  return out;
}

/** `2026-11-23 11:23:07.123 UTC [42] LOG:  …` lines of a PostgreSQL log (UTC only). */
function parsePgLog(text: string): { time: number; msg: string }[] {
  const out: { time: number; msg: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3}) (?:UTC|GMT) \[\d+\] \w+:\s+(.*)$/.exec(line);
    if (m !== null) {
      out.push({ time: Date.parse(`${m[1]}T${m[2]}Z`), msg: m[3] ?? '' });
    }
  }
  return out;
}

function pgConfig(cluster: LocalCluster, port: number): pg.ClientConfig {
  return {
    host: '127.0.0.1',
    port,
    user: 'postgres',
    password: cluster.suPassword,
    database: 'postgres',
    connectionTimeoutMillis: 3000,
    application_name: 'bench_clone',
  };
}

async function withClient<T>(config: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(config);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Walsenders on the primary whose application name is LIKE `pattern`. */
interface WalSender {
  readonly app: string;
  readonly state: string;
}

async function walSenders(c: pg.Client, pattern: string): Promise<WalSender[]> {
  const r = await c.query<WalSender>(
    'select application_name as app, state from pg_stat_replication where application_name like $1 order by 1, 2',
    [pattern],
  );
  return r.rows;
}

/** PGAPPNAME prefix of the keeper's pg_basebackup (pg-clone.ts): `stolon-ts-clone-stolon_<db>`. */
const CLONE_APP_PREFIX = 'stolon-ts-clone-';
/** LIKE pattern of a keeper's walsenders: its standby's (`stolon_<db>`) and its clone's. */
const KEEPER_APPS = '%stolon\\_%';

function describeSenders(rows: readonly WalSender[]): string {
  return rows.length === 0 ? 'no new stolon walsender' : rows.map((r) => `${r.app} ${r.state}`).join(', ');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * CPU ms used so far by each running stolon component process (node keepers, sentinels,
 * proxies, and etcd), keyed by name. On a 2-core machine the copy itself needs both cores, so
 * whatever these use during a measurement shows up in its time.
 */
async function componentCpu(cluster: LocalCluster): Promise<Map<string, number>> {
  const procs: ProcessHandle[] = [
    // Keepers not started yet have no process handle.
    ...cluster.keepers.map((k) => k.process as ProcessHandle | undefined).filter((p): p is ProcessHandle => p !== undefined),
    ...cluster.sentinels,
    ...cluster.proxies.map((p) => p.process),
    cluster.etcd.process,
  ];
  const out = new Map<string, number>();
  for (const p of procs) {
    const ms = p.running() ? await processCpuMs(p.pid) : undefined;
    if (ms !== undefined) {
      out.set(p.name, ms);
    }
  }
  return out;
}

/** CPU ms each process used between two {@link componentCpu} samples (one new in `after` counts from 0). */
function cpuDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, ms] of after) {
    out[name] = ms - (before.get(name) ?? 0);
  }
  return out;
}

const total = (byProcess: Readonly<Record<string, number>>): number => Object.values(byProcess).reduce((a, b) => a + b, 0);

/** "sentinel 0 0.41, etcd 0.30, …": the biggest CPU users first. */
function topCpu(byProcess: Readonly<Record<string, number>>, n = 4): string {
  return Object.entries(byProcess)
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, ms]) => `${name} ${secs(ms)}`)
    .join(', ');
}

/**
 * One raw `pg_basebackup` of the primary into `<dir>/raw-<run>`, sampling the primary's
 * walsenders every 20 ms like the stolon run does, to see when the transfer ends. The copy is
 * kept until the end, like the standbys: removing it between runs let the next raw copy write
 * into just-freed blocks while every stolon copy wrote into new ones, and on this VM's disk
 * (ext4 with `discard`) that made the raw side up to 2x faster in the following run.
 */
async function rawCopy(
  cluster: LocalCluster,
  dir: string,
  run: number,
  opts: Options,
  pgpassFile: string,
  identity: OsIdentity | null,
): Promise<RawResult> {
  const primary = cluster.keepers[0]!;
  const target = join(dir, `raw-${run}`);
  await mkdir(target, { mode: 0o700 });
  if (identity !== null) {
    await chown(target, identity.uid, identity.gid);
  }
  const client = new pg.Client(pgConfig(cluster, primary.pgPort));
  await client.connect();
  try {
    let exited = false;
    let seen = false;
    let goneAt: number | undefined;
    const cpuBefore = await componentCpu(cluster);
    const t0 = Date.now();
    const copy = runCommand({
      cmd: join(opts.pgBinPath, 'pg_basebackup'),
      args: ['-D', target, '-X', 'stream', '-c', 'fast', '-h', '127.0.0.1', '-p', String(primary.pgPort), '-U', REPL_USER, '-w'],
      env: { PGPASSFILE: pgpassFile, PGAPPNAME: RAW_APP },
      identity,
      timeoutMs: opts.cloneTimeoutMs,
    });
    const sampler = (async () => {
      while (!exited) {
        const rows = await walSenders(client, RAW_APP).catch(() => undefined);
        if (rows !== undefined && rows.length > 0) {
          seen = true;
        } else if (rows !== undefined && seen) {
          goneAt ??= Date.now();
        }
        await sleep(POLL_MS);
      }
    })();
    const r = await copy.finally(() => (exited = true));
    const cpuAfter = await componentCpu(cluster);
    await sampler;
    assertSucceeded('raw pg_basebackup', r);
    const bytes = await diskUsage(target);
    const byProcess = cpuDelta(cpuBefore, cpuAfter);
    return { ms: r.ms, bytes, transferMs: goneAt === undefined ? null : goneAt - t0, componentCpuMs: total(byProcess), componentCpuByProcess: byProcess };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Starts keeper `index` and waits until the primary streams to it. Returns spawn and end times,
 * the walsender changes seen on the primary, and when the last copy's walsenders left.
 */
async function stolonCopy(
  cluster: LocalCluster,
  index: number,
  opts: Options,
): Promise<{ t0: number; tDone: number; primaryPhases: Phase[]; goneAt: number | undefined; cpuByProcess: Record<string, number>; newKeeperName: string }> {
  const primary = cluster.keepers[0]!;
  const keeper = cluster.keepers[index]!;
  const client = new pg.Client(pgConfig(cluster, primary.pgPort));
  await client.connect();
  try {
    const before = new Set((await walSenders(client, KEEPER_APPS)).map((r) => r.app));
    const primaryPhases: Phase[] = [];
    let lastSeen = '';
    let goneAt: number | undefined;
    let copySeen = false;
    const cpuBefore = await componentCpu(cluster);
    const t0 = Date.now();
    await cluster.startKeeper(index);
    const streaming = waitFor(
      async () => {
        const rows = (await walSenders(client, KEEPER_APPS)).filter((r) => !before.has(r.app));
        const now = Date.now();
        const seen = describeSenders(rows);
        if (seen !== lastSeen) {
          primaryPhases.push({ at: now - t0, what: `primary: ${seen}` });
          lastSeen = seen;
        }
        const copying = rows.some((r) => r.app.startsWith(CLONE_APP_PREFIX));
        if (copying) {
          copySeen = true;
          goneAt = undefined;
        } else if (copySeen) {
          goneAt ??= now;
        }
        const standby = rows.some((r) => r.app.startsWith('stolon_') && r.state === 'streaming');
        return standby ? now : undefined;
      },
      { timeoutMs: opts.cloneTimeoutMs, intervalMs: POLL_MS, what: `keeper ${keeper.uid} to be a streaming standby of ${primary.uid}` },
    );
    const died = keeper.process.exited.then((code) => {
      throw new Error(`keeper ${keeper.uid} exited (code ${code}) before streaming`);
    });
    const tDone = await Promise.race([streaming, died]);
    const cpuAfter = await componentCpu(cluster);
    return { t0, tDone, primaryPhases, goneAt, cpuByProcess: cpuDelta(cpuBefore, cpuAfter), newKeeperName: keeper.process.name };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The stolon run's phases from the component logs and keeper `index`'s PostgreSQL log. */
async function logPhases(
  cluster: LocalCluster,
  index: number,
  t0: number,
): Promise<{ phases: Phase[]; attempts: number; lastStartAt: number | undefined; doneAt: number | undefined }> {
  const keeper = cluster.keepers[index]!;
  const primaryUid = cluster.keepers[0]!.uid;
  const me = `keeper ${keeper.uid}`;
  const entries = parseLogs(cluster.logs()).filter((e) => e.time >= t0 - 1000);
  const phases: Phase[] = [];
  const first = (pred: (e: LogEntry) => boolean, what: string): LogEntry | undefined => {
    const e = entries.find(pred);
    if (e !== undefined) {
      phases.push({ at: e.time - t0, what });
    }
    return e;
  };
  first((e) => e.proc === me && e.msg === 'keeper started', 'keeper: started (node up, store connected)');
  first((e) => e.proc === me && e.msg.includes('waiting for the sentinel to register this keeper'), 'keeper: first pass, waits for the sentinel to register it');
  first((e) => e.proc.startsWith('sentinel') && e.msg.includes(`new keeper ${keeper.uid} registered`), 'sentinel: keeper registered in clusterdata');
  const assigned = first(
    (e) => e.proc.startsWith('sentinel') && e.msg.includes(`keeper ${keeper.uid} assigned new standby db`),
    'sentinel: standby db assigned',
  );
  const dbUid = assigned === undefined ? undefined : new RegExp(`keeper ${keeper.uid} assigned new standby db (\\w+)`).exec(assigned.msg)?.[1];
  if (dbUid !== undefined) {
    first((e) => e.proc === `keeper ${primaryUid}` && e.msg.includes(`created replication slot stolon_${dbUid}`), `primary keeper: slot stolon_${dbUid} created`);
  }
  const starts = entries.filter((e) => e.proc === me && e.msg.startsWith('taking a base backup'));
  starts.forEach((e, i) => phases.push({ at: e.time - t0, what: `keeper: pg_basebackup started (attempt ${i + 1})` }));
  // The error line of a failed attempt (the next pass's "resyncing … (last attempt: …)" repeats it).
  for (const e of entries.filter((x) => x.proc === me && x.msg.includes('pg_basebackup failed') && !x.msg.startsWith('resyncing'))) {
    phases.push({ at: e.time - t0, what: `keeper: ${e.msg.split('\n')[0]?.slice(0, 160) ?? ''}` });
  }
  const done = first((e) => e.proc === me && e.msg === 'base backup complete', 'keeper: base backup complete (pg_basebackup exited, PGDATA renamed into place)');
  first((e) => e.proc === me && e.msg === 'starting postgres', 'keeper: pg_ctl start');
  first((e) => e.proc === me && e.msg === 'postgres started', 'keeper: pg_ctl start returned');
  first((e) => e.proc === me && e.msg.startsWith('standby db ') && e.msg.includes(' following db '), 'keeper: pass reports the standby converged');
  try {
    const pgLog = parsePgLog(await readFile(join(keeper.dataDir, 'postgres.log'), 'utf8')).filter((e) => e.time >= t0 - 1000);
    for (const [needle, what] of [
      ['redo starts at', 'postgres: recovery (redo) starts'],
      ['database system is ready to accept read-only connections', 'postgres: consistent, accepts read-only connections'],
      ['started streaming WAL from primary', 'postgres: walreceiver started streaming'],
    ] as const) {
      const e = pgLog.find((x) => x.msg.includes(needle));
      if (e !== undefined) {
        phases.push({ at: e.time - t0, what });
      }
    }
  } catch {
    // No PostgreSQL log (should not happen after a successful clone): the keeper phases remain.
  }
  const lastStart = starts.at(-1);
  return {
    phases,
    attempts: starts.length,
    lastStartAt: lastStart === undefined ? undefined : lastStart.time - t0,
    doneAt: done === undefined ? undefined : done.time - t0,
  };
}

async function measureStolon(cluster: LocalCluster, index: number, opts: Options): Promise<StolonResult> {
  const s = await stolonCopy(cluster, index, opts);
  const ms = s.tDone - s.t0;
  const lp = await logPhases(cluster, index, s.t0);
  const goneAt = s.goneAt === undefined ? undefined : s.goneAt - s.t0;
  const phases = [...lp.phases, ...s.primaryPhases, { at: ms, what: 'bench: primary shows the new standby streaming (end)' }];
  return {
    ms,
    bytes: await diskUsage(join(cluster.keepers[index]!.dataDir, 'postgres')),
    attempts: lp.attempts,
    componentCpuMs: total(s.cpuByProcess),
    newKeeperCpuMs: s.cpuByProcess[s.newKeeperName] ?? 0,
    componentCpuByProcess: s.cpuByProcess,
    split:
      lp.lastStartAt === undefined || lp.doneAt === undefined || goneAt === undefined
        ? null
        : { beforeCopyMs: lp.lastStartAt, transferMs: goneAt - lp.lastStartAt, copyTailMs: lp.doneAt - goneAt, afterCopyMs: ms - lp.doneAt },
    phases: phases.sort((a, b) => a.at - b.at),
  };
}

async function checkpoint(cluster: LocalCluster): Promise<void> {
  await withClient(pgConfig(cluster, cluster.keepers[0]!.pgPort), (c) => c.query('checkpoint'));
}

/**
 * After its measurement, run `index`'s keeper leaves the cluster: stopped (SIGTERM; it stops its
 * PostgreSQL), removed with `stolonctl removekeeper --yes`, and waited for until the primary has
 * no `stolon_*` slot left (its keeper drops the removed DB's). So every run's keeper joins the
 * same cluster, the primary alone; until 2026-12-07 earlier standbys stayed up and each woke on
 * every new generation, which made each stolon run about 0.1 s slower than the one before.
 * @throws Error when removekeeper fails or the slot is still there after 60 s
 */
async function retireKeeper(cluster: LocalCluster, index: number): Promise<void> {
  const k = cluster.keepers[index]!;
  await k.process.stop('SIGTERM', 60_000);
  const r = await cluster.stolonctl(['removekeeper', k.uid, '--yes']);
  if (r.code !== 0) {
    throw new Error(`stolonctl removekeeper ${k.uid} failed (exit ${r.code}): ${r.stderr.trim()}`);
  }
  await waitFor(
    () =>
      withClient(pgConfig(cluster, cluster.keepers[0]!.pgPort), async (c) => {
        const left = await c.query<{ n: string }>("select count(*)::text as n from pg_replication_slots where slot_name like 'stolon\\_%'");
        return left.rows[0]?.n === '0' ? true : undefined;
      }),
    { timeoutMs: 60_000, what: `the primary to drop ${k.uid}'s slot` },
  );
}

/** Whether each measurement started from a reset page cache, as printed and recorded. */
function cacheResetSentence(opts: Options): string {
  return opts.cacheReset
    ? 'dropped before each measurement, the primary\'s PGDATA and both programs read back in'
    : 'not reset between measurements (--no-cache-reset, or not root)';
}

/**
 * Before each measurement: `sync` (the previous copy's dirty pages and the removal of the raw
 * copy must not be written back during the next one), a CHECKPOINT (so `-c fast` costs both sides
 * the same), with `opts.cacheReset` a reset of the page cache, then a pause for background work
 * to settle. The reset (`sync`, `echo 3 > /proc/sys/vm/drop_caches`, every file of keeper0's
 * PGDATA read once, then `stolon-keeper --help` and `pg_basebackup --version` so that both
 * programs' own files are cached again) gives every measurement the same start: the primary's
 * files and both programs cached, nothing of the earlier copies. Without it, on the 2-CPU VM of
 * docs/benchmarks.md, the first two or three pairs of a set copied at 380–500 MiB/s and the later
 * ones at 150–230 MiB/s, and a pair that straddled the change decided the set's median.
 */
async function settle(cluster: LocalCluster, opts: Options): Promise<void> {
  assertSucceeded('sync', await runCommand({ cmd: 'sync', args: [], timeoutMs: 10 * 60_000 }));
  await checkpoint(cluster);
  if (opts.cacheReset) {
    assertSucceeded('sync', await runCommand({ cmd: 'sync', args: [], timeoutMs: 10 * 60_000 }));
    assertSucceeded('drop_caches', await runCommand({ cmd: 'sh', args: ['-c', 'echo 3 > /proc/sys/vm/drop_caches'], timeoutMs: 60_000 }));
    const pgdata = join(cluster.keepers[0]!.dataDir, 'postgres');
    const readBack = await runCommand({ cmd: 'sh', args: ['-c', 'find "$0" -type f -exec cat {} + > /dev/null', pgdata], timeoutMs: 10 * 60_000 });
    assertSucceeded(`reading ${pgdata} back in`, readBack);
    // Both programs' own files back in too, as they were before the reset: the keeper's bundle
    // and code cache (its --help loads both), pg_basebackup and libpq.
    assertSucceeded('stolon-keeper --help', await runCommand({ cmd: process.execPath, args: [binPath('keeper'), '--help'], timeoutMs: 60_000 }));
    assertSucceeded('pg_basebackup --version', await runCommand({ cmd: join(opts.pgBinPath, 'pg_basebackup'), args: ['--version'], timeoutMs: 60_000 }));
  }
  await sleep(opts.settleMs);
}

/** SIGQUITs any postmaster still running on a data dir under `dir` (a keeper that was SIGKILLed). */
async function killStrayPostmasters(dir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    try {
      const pid = Number((await readFile(join(dir, name, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0]);
      if (Number.isInteger(pid) && pid > 0) {
        process.kill(pid, 'SIGQUIT');
        for (let i = 0; i < 50; i++) {
          process.kill(pid, 0);
          await sleep(100);
        }
      }
    } catch {
      // No pid file, or the process is gone.
    }
  }
}

interface Summary {
  readonly rawMs: number;
  readonly stolonMs: number;
  /** Median stolon / median raw: the figure the target applies to. */
  readonly ratio: number;
  /** Median of each run's stolon / raw (robust to a slow period hitting one pair). */
  readonly pairRatio: number;
  /** Median stolon − raw. */
  readonly overheadMs: number;
  /** Median of stolon's steps outside the copy (before pg_basebackup + after "base backup complete"). */
  readonly ownStepsMs: number | null;
  readonly verdict: 'PASS' | 'OVER';
}

function summarize(runs: readonly RunResult[]): Summary {
  const rawMs = median(runs.map((r) => r.raw.ms));
  const stolonMs = median(runs.map((r) => r.stolon.ms));
  const ratio = stolonMs / rawMs;
  return {
    rawMs,
    stolonMs,
    ratio,
    pairRatio: median(runs.map((r) => r.stolon.ms / r.raw.ms)),
    overheadMs: median(runs.map((r) => r.stolon.ms - r.raw.ms)),
    ownStepsMs: runs.every((r) => r.stolon.split !== null)
      ? median(runs.map((r) => r.stolon.split!.beforeCopyMs + r.stolon.split!.afterCopyMs))
      : null,
    verdict: ratio <= TARGET_RATIO ? 'PASS' : 'OVER',
  };
}

const rate = (bytes: number, ms: number): string => mib((bytes * 1000) / ms);
const opt = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '?' : secs(ms));

function splitLine(r: RunResult): string {
  const s = r.stolon.split;
  const raw = `raw ${secs(r.raw.ms)} s = transfer ${opt(r.raw.transferMs)} + until exit ${opt(r.raw.transferMs === null ? null : r.raw.ms - r.raw.transferMs)}`;
  const stolon =
    s === null
      ? `stolon ${secs(r.stolon.ms)} s (no split: log lines missing)`
      : `stolon ${secs(r.stolon.ms)} s = to pg_basebackup ${secs(s.beforeCopyMs)} + transfer ${secs(s.transferMs)} + until "base backup complete" ${secs(s.copyTailMs)} + to streaming ${secs(s.afterCopyMs)}`;
  const cpu =
    `; CPU of the stolon components during raw ${secs(r.raw.componentCpuMs)} s (${topCpu(r.raw.componentCpuByProcess)}), ` +
    `during stolon ${secs(r.stolon.componentCpuMs)} s (${topCpu(r.stolon.componentCpuByProcess)})`;
  return `${raw}; ${stolon}${r.stolon.attempts > 1 ? ` (${r.stolon.attempts} pg_basebackup attempts)` : ''}${cpu}`;
}

function render(
  opts: Options,
  machine: MachineInfo,
  pgVersion: string,
  sizes: { dbBytes: number; clusterBytes: number },
  runs: readonly RunResult[],
  sum: Summary,
  date: string,
): { text: string; markdown: string } {
  const command = `npm run bench:clone -- ${opts.argv.filter((a) => a !== '--write-doc').join(' ')}`.trimEnd().replace(/ --$/, '');
  const t: string[] = [];
  t.push('');
  t.push(`bench:clone — new keeper to streaming standby vs raw pg_basebackup (${date})`);
  t.push(`machine:    ${describeMachine(machine)}`);
  t.push(`postgres:   ${pgVersion}`);
  t.push(`primary:    pgbench scale ${opts.scale}, database ${mib(sizes.dbBytes)} MiB, all databases ${mib(sizes.clusterBytes)} MiB`);
  t.push(`cache:      ${cacheResetSentence(opts)}`);
  t.push('');
  t.push(`${'run'.padEnd(5)}${'order'.padEnd(14)}${'raw s'.padEnd(8)}${'MiB'.padEnd(9)}${'MiB/s'.padEnd(8)}${'stolon s'.padEnd(10)}${'MiB/s'.padEnd(8)}ratio`);
  for (const r of runs) {
    t.push(
      `${String(r.run).padEnd(5)}${r.order.padEnd(14)}${secs(r.raw.ms).padEnd(8)}${mib(r.raw.bytes).padEnd(9)}${rate(r.raw.bytes, r.raw.ms).padEnd(8)}` +
        `${secs(r.stolon.ms).padEnd(10)}${rate(r.raw.bytes, r.stolon.ms).padEnd(8)}${(r.stolon.ms / r.raw.ms).toFixed(3)}`,
    );
  }
  t.push('');
  t.push(
    `median raw ${secs(sum.rawMs)} s, median stolon ${secs(sum.stolonMs)} s: ratio ${sum.ratio.toFixed(3)} (target ≤ ${TARGET_RATIO}) ${sum.verdict}` +
      `; median of per-run ratios ${sum.pairRatio.toFixed(3)}; median stolon − raw ${secs(sum.overheadMs)} s; ` +
      `stolon's own steps outside the copy: median ${opt(sum.ownStepsMs)} s`,
  );
  const md: string[] = [];
  md.push(`Measured ${date} with \`${command}\` on ${describeMachine(machine)}; ${pgVersion}.`);
  md.push('');
  md.push(`Primary: pgbench scale ${opts.scale}, \`pg_database_size\` ${mib(sizes.dbBytes)} MiB (all databases ${mib(sizes.clusterBytes)} MiB). Page cache: ${cacheResetSentence(opts)}.`);
  md.push('');
  md.push('| run | order | raw `pg_basebackup` | stolon: keeper start → streaming | ratio |');
  md.push('|---:|---|---|---|---:|');
  for (const r of runs) {
    md.push(
      `| ${r.run} | ${r.order} | ${secs(r.raw.ms)} s (${mib(r.raw.bytes)} MiB, ${rate(r.raw.bytes, r.raw.ms)} MiB/s) | ${secs(r.stolon.ms)} s | ${(r.stolon.ms / r.raw.ms).toFixed(3)} |`,
    );
  }
  md.push('');
  md.push(
    `**Median raw ${secs(sum.rawMs)} s, median stolon ${secs(sum.stolonMs)} s: ratio ${sum.ratio.toFixed(3)} (target ≤ ${TARGET_RATIO}): ${sum.verdict}.** ` +
      `Median of the per-run ratios ${sum.pairRatio.toFixed(3)}; median stolon − raw ${secs(sum.overheadMs)} s; ` +
      `stolon's own steps outside the copy (before pg_basebackup starts and after "base backup complete") take a median ${opt(sum.ownStepsMs)} s.`,
  );
  md.push('');
  md.push('Per run (seconds; "transfer" ends when the copy\'s walsenders leave `pg_stat_replication`, sampled every 20 ms):');
  md.push('');
  for (const r of runs) {
    md.push(`- run ${r.run}: ${splitLine(r)}`);
  }
  // The phase table of the run with the median stolon time, as the typical case.
  const typical = [...runs].sort((a, b) => a.stolon.ms - b.stolon.ms)[Math.floor((runs.length - 1) / 2)]!;
  for (const r of runs) {
    t.push('');
    t.push(`run ${r.run}: ${splitLine(r)}`);
    t.push(`stolon run ${r.run} (${r.keeper}), seconds after the keeper process was spawned:`);
    if (r === typical) {
      md.push('');
      md.push(`Phases of run ${r.run} (${r.keeper}, the median stolon time), seconds after the keeper process was spawned:`);
      md.push('');
      md.push('| at | +Δ | event |');
      md.push('|---:|---:|---|');
    }
    let prev = 0;
    for (const p of r.stolon.phases) {
      t.push(`  ${secs(p.at).padStart(7)}  +${secs(p.at - prev).padStart(6)}  ${p.what}`);
      if (r === typical) {
        md.push(`| ${secs(p.at)} | +${secs(p.at - prev)} | ${p.what.replaceAll('|', '\\|')} |`);
      }
      prev = p.at;
    }
  }
  return { text: t.join('\n'), markdown: md.join('\n') };
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:clone: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  for (const b of ['pgbench', 'pg_basebackup']) {
    if (!existsSync(join(opts.pgBinPath, b))) {
      process.stderr.write(`bench:clone: ${join(opts.pgBinPath, b)} is missing; pass --pg-bin-path\n`);
      return 2;
    }
  }
  const say = (s: string) => process.stdout.write(`[bench:clone ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const machine = machineInfo();
  const identity = await osIdentity('postgres');
  const dir = await makeTempDir('stolon-bench-clone-');
  let cluster: LocalCluster | undefined;
  let cleaning: Promise<void> | undefined;
  let interrupted = false;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      killRunningCommands();
      await cluster?.stop().catch((err: unknown) => say(`stopping the cluster failed: ${(err as Error).message}`));
      await killStrayPostmasters(dir);
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
    say(`starting a local cluster in ${dir} (${1 + opts.runs} keepers configured, keeper0 started)`);
    cluster = await startLocalCluster({
      dir,
      clusterName: 'bench-clone',
      keepers: 1 + opts.runs,
      startKeepers: 1,
      sentinels: 1,
      proxies: 1,
      logLevel: opts.logLevel,
      pgBinPath: opts.pgBinPath,
      // One new standby per run; the default maxStandbysPerSender (3) would cap --runs.
      spec: { initMode: 'new', maxStandbysPerSender: Math.max(3, opts.runs) },
    });
    const c = cluster;
    const primary = c.keepers[0]!;
    const proxyPort = c.proxies[0]!.port;
    const inRecovery = await withClient(pgConfig(c, primary.pgPort), async (cl) => (await cl.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0]?.r);
    if (inRecovery !== false) {
      throw new Error(`${primary.uid} is not a primary (pg_is_in_recovery = ${String(inRecovery)})`);
    }

    say(`pgbench -i -s ${opts.scale} through the proxy (port ${proxyPort})`);
    const init = await runCommand({
      cmd: join(opts.pgBinPath, 'pgbench'),
      args: ['-i', '-s', String(opts.scale), '-q', '-h', '127.0.0.1', '-p', String(proxyPort), '-U', 'postgres', 'postgres'],
      env: { PGPASSWORD: c.suPassword, PGAPPNAME: 'bench_pgbench_init' },
      timeoutMs: 60 * 60_000,
    });
    assertSucceeded('pgbench -i', init);
    await checkpoint(c);
    const facts = await withClient(pgConfig(c, primary.pgPort), async (cl) => {
      const r = await cl.query<{ db: string; total: string; version: string }>(
        'select pg_database_size(current_database())::text as db, (select sum(pg_database_size(oid)) from pg_database)::text as total, version() as version',
      );
      return r.rows[0]!;
    });
    const sizes = { dbBytes: Number(facts.db), clusterBytes: Number(facts.total) };
    const pgVersion = facts.version.replace(/ on .*$/, '');
    say(`pgbench -i took ${secs(init.ms)} s; database ${mib(sizes.dbBytes)} MiB`);

    const replPassword = (await readFile(c.replPasswordFile, 'utf8')).trim();
    const pgpassDir = join(dir, 'bench-pgpass');
    await mkdir(pgpassDir, { mode: 0o700 });
    const pgpassFile = join(pgpassDir, 'pgpass');
    const esc = (s: string) => s.replaceAll('\\', '\\\\').replaceAll(':', '\\:');
    await writeFile(pgpassFile, `127.0.0.1:${primary.pgPort}:*:${esc(REPL_USER)}:${esc(replPassword)}\n`, { mode: 0o600 });
    if (identity !== null) {
      await chown(pgpassDir, identity.uid, identity.gid);
      await chown(pgpassFile, identity.uid, identity.gid);
    }

    const runs: RunResult[] = [];
    for (let run = 1; run <= opts.runs; run++) {
      const rawFirst = run % 2 === 1;
      let raw: RawResult | undefined;
      let stolon: StolonResult | undefined;
      for (const which of rawFirst ? (['raw', 'stolon'] as const) : (['stolon', 'raw'] as const)) {
        await settle(c, opts);
        if (which === 'raw') {
          say(`run ${run}: raw pg_basebackup`);
          raw = await rawCopy(c, dir, run, opts, pgpassFile, identity);
          say(`run ${run}: raw ${secs(raw.ms)} s, ${mib(raw.bytes)} MiB`);
        } else {
          say(`run ${run}: starting ${c.keepers[run]!.uid}, waiting until it streams`);
          stolon = await measureStolon(c, run, opts);
          say(`run ${run}: stolon ${secs(stolon.ms)} s; ${c.keepers[run]!.uid} leaves the cluster again`);
          await retireKeeper(c, run);
        }
      }
      runs.push({ run, order: rawFirst ? 'raw first' : 'stolon first', keeper: c.keepers[run]!.uid, raw: raw!, stolon: stolon! });
    }

    const date = new Date().toISOString().slice(0, 10);
    const sum = summarize(runs);
    const out = render(opts, machine, pgVersion, sizes, runs, sum, date);
    process.stdout.write(`${out.text}\n\n`);
    const file = await writeResultLine('clone', stamp, {
      bench: 'clone',
      date: new Date().toISOString(),
      command: `npm run bench:clone -- ${opts.argv.join(' ')}`.trimEnd(),
      machine,
      pgVersion,
      scale: opts.scale,
      settleMs: opts.settleMs,
      cacheReset: opts.cacheReset,
      dbBytes: sizes.dbBytes,
      clusterBytes: sizes.clusterBytes,
      pgbenchInitMs: init.ms,
      runs,
      ...sum,
      target: TARGET_RATIO,
    });
    say(`results: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('clone', out.markdown);
      say(`updated ${BENCH_DOC}`);
    }
    return 0;
  } catch (err) {
    if (interrupted) {
      return 130;
    }
    const failed = cluster;
    await reportBenchFailure('clone', stamp, err, failed === undefined ? undefined : () => failed.logs());
    return 1;
  } finally {
    say('cleaning up');
    await cleanup();
  }
}

process.exitCode = await main();
