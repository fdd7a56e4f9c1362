/**
 * `npm run bench:backup`: what pgBackRest costs with the options the keeper gives it
 * (`pgbackrestRepoOptions`, a POSIX repository, lz4), on a plain PostgreSQL 15 (no keeper: the
 * keeper only renders these options and runs the same commands, so the figures are pgBackRest's and
 * PostgreSQL's either way, without the noise of a cluster).
 *
 * (a) Base backup throughput of a ~1 GiB primary (pgbench scale 70): a full `pgbackrest backup`
 * with `--process-max` 1 and 2, next to raw `pg_basebackup -X stream` (plain format) and
 * `pg_basebackup -Ft -z` (tar, gzip) and `-Ft --compress=client-lz4` (tar, lz4: the same
 * compressor as pgBackRest) of the same primary; every variant with a fast checkpoint, after
 * `sync`, a CHECKPOINT and `--settle`, in an order rotated each round. MiB/s are of the cluster
 * size (all databases), ratio = pgBackRest time / `pg_basebackup -X stream` time.
 *
 * (b) Archive lag under pgbench TPC-B saturation (`-c --clients -j 2 -T --duration`), with
 * `archive_command = pgbackrest archive-push` synchronous and with `--archive-async` (spool path):
 * every 500 ms the `.ready` files in `pg_wal/archive_status`, `pg_stat_archiver` and the current
 * WAL LSN; lag in segments, in bytes (current LSN − end of the last archived segment) and in seconds
 * (now − when the current LSN passed the end of the last archived segment); then how long the
 * backlog takes to drain after pgbench stops.
 *
 * Prints the figures, writes one JSON line to test/bench/results/backup-<stamp>.json, and with
 * `--write-doc` regenerates the bench:backup section of docs/benchmarks.md.
 */
import { chown, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pgbackrestRepoOptions, pgbackrestRepoSettings, renderPgbackrestConf, type BackupSpec } from '@stolon-ts/cluster';
import { makeTempDir, removeDir, startPlainPostgres, type PlainPostgres } from '@stolon-ts/harness';
import { parseBenchArgs } from './args.js';
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
  reportBenchFailure,
  runCommand,
  secs,
  trackLoad,
  updateDocSection,
  writeResultLine,
  type MachineInfo,
  type OsIdentity,
} from './common.js';

const USAGE = `usage: npm run bench:backup -- [--scale N] [--rounds N] [--duration S] [--clients N] [--settle S]
                                  [--drain-timeout S] [--write-doc] [--keep] [--pg-bin-path DIR]
  --scale N          pgbench scale of the primary (default 70, about 1 GiB)
  --rounds N         rounds of the base backup variants, order rotated each round (default 2, max 10)
  --duration S       pgbench seconds per archiving mode (default 60)
  --clients N        pgbench clients (default 8)
  --settle S         pause after sync and CHECKPOINT before each base backup (default 2)
  --drain-timeout S  how long to wait for the archive backlog after pgbench (default 120)
  --write-doc        regenerate the bench:backup section of docs/benchmarks.md
  --keep             keep the data directories, repository and logs afterwards
  --pg-bin-path DIR  PostgreSQL binaries (default: $PG_BIN, else pg_config --bindir)`;

const STANZA = 'bench';
const SEGMENT = 16 * 1024 * 1024;
const SAMPLE_MS = 500;

interface Options {
  readonly scale: number;
  readonly rounds: number;
  readonly durationS: number;
  readonly clients: number;
  readonly settleMs: number;
  readonly drainTimeoutMs: number;
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly pgBinPath: string;
  readonly argv: readonly string[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values, int, pgBinDir } = parseBenchArgs('backup', USAGE, argv, {
    scale: { type: 'string', default: '70' },
    rounds: { type: 'string', default: '2' },
    duration: { type: 'string', default: '60' },
    clients: { type: 'string', default: '8' },
    settle: { type: 'string', default: '2' },
    'drain-timeout': { type: 'string', default: '120' },
    'write-doc': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'pg-bin-path': { type: 'string' },
  });
  return {
    scale: int('scale', values.scale, 1, 10_000),
    rounds: int('rounds', values.rounds, 1, 10),
    durationS: int('duration', values.duration, 5, 3600),
    clients: int('clients', values.clients, 1, 200),
    settleMs: int('settle', values.settle, 0, 600) * 1000,
    drainTimeoutMs: int('drain-timeout', values['drain-timeout'], 5, 3600) * 1000,
    writeDoc: values['write-doc'],
    keep: values.keep,
    pgBinPath: pgBinDir(values['pg-bin-path']),
    argv,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

/** LSN text (`16/B374D848`) to a byte position. */
const lsnBytes = (lsn: string): number => {
  const [hi, lo] = lsn.split('/');
  return Number.parseInt(hi ?? '0', 16) * 2 ** 32 + Number.parseInt(lo ?? '0', 16);
};

/** Byte position just past WAL segment `name` (24 hex digits: timeline, log, seg; 16 MiB segments). */
const segmentEnd = (name: string): number => Number.parseInt(name.slice(8, 16), 16) * 2 ** 32 + (Number.parseInt(name.slice(16, 24), 16) + 1) * SEGMENT;

/** The bench's environment: the primary, its pgBackRest configuration and the copies' directory. */
interface Env {
  readonly dir: string;
  readonly pg: PlainPostgres;
  readonly identity: OsIdentity | null;
  readonly conf: string;
  readonly spoolDir: string;
  readonly logDir: string;
  readonly spec: BackupSpec;
  readonly opts: Options;
}

async function owned(env: { identity: OsIdentity | null }, path: string, mode = 0o700): Promise<void> {
  await mkdir(path, { recursive: true, mode });
  if (env.identity !== null) {
    await chown(path, env.identity.uid, env.identity.gid);
  }
}

/** Writes the keeper's repository settings as a pgBackRest configuration file (`pgbackrestRepoSettings`: the options the keeper passes on the command line), plus async archiving when asked. */
async function writeConf(env: Env, archiveAsync: boolean): Promise<void> {
  const extra: Record<string, string> = { 'log-path': env.logDir, 'lock-path': env.logDir, 'log-level-file': 'warn' };
  if (archiveAsync) {
    Object.assign(extra, { 'archive-async': 'y', 'spool-path': env.spoolDir });
  }
  const text = renderPgbackrestConf(
    { ...pgbackrestRepoSettings(env.spec), ...extra },
    { [STANZA]: { 'pg1-path': env.pg.dataDir, 'pg1-port': String(env.pg.port), 'pg1-socket-path': env.pg.socketDir } },
  );
  await writeFile(env.conf, text, { mode: 0o600 });
  if (env.identity !== null) {
    await chown(env.conf, env.identity.uid, env.identity.gid);
  }
}

async function pgbackrest(env: Env, args: readonly string[], timeoutMs = 30 * 60_000) {
  return runCommand({ cmd: 'pgbackrest', args: [`--config=${env.conf}`, ...args, '--log-level-console=warn'], identity: env.identity, timeoutMs });
}

/** One base backup variant. */
type Variant = 'pgbackrest p1' | 'pgbackrest p2' | 'pg_basebackup -X stream' | 'pg_basebackup -Ft -z' | 'pg_basebackup -Ft lz4';
const VARIANTS: readonly Variant[] = ['pgbackrest p1', 'pgbackrest p2', 'pg_basebackup -X stream', 'pg_basebackup -Ft -z', 'pg_basebackup -Ft lz4'];

interface Copy {
  readonly variant: Variant;
  readonly ms: number;
  /** What it wrote: the repository's backup size, or the directory's size. */
  readonly outBytes: number;
}

async function baseBackup(env: Env, variant: Variant): Promise<Copy> {
  if (variant.startsWith('pgbackrest')) {
    const processMax = variant === 'pgbackrest p2' ? 2 : 1;
    // Exactly the keeper's options (all valid for `backup`), plus a fast checkpoint like pg_basebackup -c fast.
    const argv = pgbackrestRepoOptions({ ...env.spec, processMax }, STANZA);
    const r = await pgbackrest(env, [...argv, '--type=full', '--start-fast', 'backup']);
    assertSucceeded(`pgbackrest backup (${variant})`, r);
    const info = await pgbackrest(env, [`--stanza=${STANZA}`, '--output=json', 'info']);
    assertSucceeded('pgbackrest info', info);
    const [stanza] = JSON.parse(info.stdout) as { backup: { info: { repository: { delta: number } } }[] }[];
    return { variant, ms: r.ms, outBytes: stanza?.backup.at(-1)?.info.repository.delta ?? NaN };
  }
  const target = join(env.dir, 'basebackup');
  await rm(target, { recursive: true, force: true });
  await owned(env, target);
  const format = variant === 'pg_basebackup -X stream' ? ['-Fp'] : variant === 'pg_basebackup -Ft -z' ? ['-Ft', '-z'] : ['-Ft', '--compress=client-lz4'];
  const r = await runCommand({
    cmd: join(env.opts.pgBinPath, 'pg_basebackup'),
    args: ['-D', target, ...format, '-X', 'stream', '-c', 'fast', '--no-sync', '-h', env.pg.socketDir, '-p', String(env.pg.port), '-U', 'postgres'],
    identity: env.identity,
    timeoutMs: 30 * 60_000,
  });
  assertSucceeded(`${variant}`, r);
  const outBytes = await diskUsage(target);
  await rm(target, { recursive: true, force: true });
  return { variant, ms: r.ms, outBytes };
}

/** `sync`, CHECKPOINT, pause: the previous copy's dirty pages must not be written during the next one. */
async function settle(env: Env): Promise<void> {
  assertSucceeded('sync', await runCommand({ cmd: 'sync', args: [], timeoutMs: 10 * 60_000 }));
  await env.pg.query('checkpoint');
  await sleep(env.opts.settleMs);
}

async function throughput(env: Env, say: (s: string) => void): Promise<Copy[][]> {
  const rounds: Copy[][] = [];
  for (let round = 0; round < env.opts.rounds; round++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
    const copies: Copy[] = [];
    for (const v of order) {
      await settle(env);
      const c = await baseBackup(env, v);
      say(`round ${round + 1}: ${v} ${secs(c.ms)} s, wrote ${mib(c.outBytes)} MiB`);
      copies.push(c);
    }
    rounds.push(copies);
  }
  return rounds;
}

interface Sample {
  /** ms since pgbench started. */
  readonly t: number;
  readonly ready: number;
  readonly lagBytes: number;
  /** null when the archived position was passed before sampling began. */
  readonly lagS: number | null;
  readonly archived: number;
  readonly failed: number;
}

interface LagResult {
  readonly mode: 'sync' | 'async';
  readonly tps: number;
  readonly walBytes: number;
  readonly samples: readonly Sample[];
  readonly maxReady: number;
  readonly p95Ready: number;
  readonly maxLagBytes: number;
  readonly p95LagBytes: number;
  readonly maxLagS: number | null;
  readonly p95LagS: number | null;
  /** Least-squares slope of `.ready` over the pgbench run, segments per minute. */
  readonly readySlopePerMin: number;
  /** ms from pgbench's end to no `.ready` file; null when not within --drain-timeout. */
  readonly drainMs: number | null;
  readonly archivedSegments: number;
  readonly failed: number;
  readonly keptUp: boolean;
}

/** WAL segments PostgreSQL has not had archived yet: `pg_wal/archive_status/*.ready`. */
async function readyCount(env: Env): Promise<number> {
  return (await readdir(join(env.pg.dataDir, 'pg_wal', 'archive_status'))).filter((f) => f.endsWith('.ready')).length;
}

async function sample(env: Env, t0: number, history: { t: number; lsn: number }[], archivedEnd: { value: number }): Promise<Sample> {
  const [row] = await env.pg.query<{ lsn: string; last: string | null; archived: string; failed: string }>(
    'select pg_current_wal_lsn()::text as lsn, last_archived_wal as last, archived_count::text as archived, failed_count::text as failed from pg_stat_archiver',
  );
  const ready = await readyCount(env);
  const t = Date.now() - t0;
  const lsn = lsnBytes(row!.lsn);
  history.push({ t, lsn });
  // last_archived_wal can also be a backup history file (`<segment>.<offset>.backup`) or a
  // timeline history file; only a segment name moves the archived position.
  if (row!.last !== null && /^[0-9A-F]{24}$/.test(row!.last)) {
    archivedEnd.value = Math.max(archivedEnd.value, segmentEnd(row!.last));
  }
  const end = archivedEnd.value;
  const lagBytes = Math.max(0, lsn - end);
  const passed = history.find((h) => h.lsn >= end);
  const lagS = lagBytes === 0 ? 0 : passed === undefined || passed === history[0] ? null : (t - passed.t) / 1000;
  return { t, ready, lagBytes, lagS, archived: Number(row!.archived), failed: Number(row!.failed) };
}

function slopePerMin(samples: readonly Sample[]): number {
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.t, 0) / n;
  const my = samples.reduce((a, s) => a + s.ready, 0) / n;
  const num = samples.reduce((a, s) => a + (s.t - mx) * (s.ready - my), 0);
  const den = samples.reduce((a, s) => a + (s.t - mx) ** 2, 0);
  return den === 0 ? 0 : (num / den) * 60_000;
}

async function archiveLag(env: Env, mode: 'sync' | 'async', say: (s: string) => void): Promise<LagResult> {
  await writeConf(env, mode === 'async');
  await env.pg.query('checkpoint');
  // Start with no backlog, so that everything before the current segment is archived.
  for (const until = Date.now() + env.opts.drainTimeoutMs; (await readyCount(env)) > 0; await sleep(SAMPLE_MS)) {
    if (Date.now() > until) {
      throw new Error(`${mode}: WAL from before the run still not archived after --drain-timeout ${secs(env.opts.drainTimeoutMs)} s`);
    }
  }
  const [before] = await env.pg.query<{ lsn: string; archived: string; failed: string }>(
    'select pg_current_wal_lsn()::text as lsn, archived_count::text as archived, failed_count::text as failed from pg_stat_archiver',
  );
  const t0 = Date.now();
  const history: { t: number; lsn: number }[] = [];
  // Before pgbench, everything up to the current LSN's segment start is archived or about to be.
  const archivedEnd = { value: Math.floor(lsnBytes(before!.lsn) / SEGMENT) * SEGMENT };
  const bench = runCommand({
    cmd: join(env.opts.pgBinPath, 'pgbench'),
    args: ['-n', '-c', String(env.opts.clients), '-j', '2', '-T', String(env.opts.durationS), '-h', env.pg.socketDir, '-p', String(env.pg.port), '-U', 'postgres', 'postgres'],
    identity: env.identity,
    timeoutMs: (env.opts.durationS + 120) * 1000,
  });
  let done = false;
  void bench.finally(() => {
    done = true;
  });
  const during: Sample[] = [];
  while (!done) {
    during.push(await sample(env, t0, history, archivedEnd));
    await sleep(SAMPLE_MS);
  }
  const r = await bench;
  assertSucceeded('pgbench', r);
  const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
  const tEnd = Date.now() - t0;
  let drainMs: number | null = null;
  const after: Sample[] = [];
  while (Date.now() - t0 - tEnd < env.opts.drainTimeoutMs) {
    const s = await sample(env, t0, history, archivedEnd);
    after.push(s);
    if (s.ready === 0) {
      drainMs = s.t - tEnd;
      break;
    }
    await sleep(SAMPLE_MS);
  }
  const [last] = await env.pg.query<{ lsn: string; archived: string }>('select pg_current_wal_lsn()::text as lsn, archived_count::text as archived from pg_stat_archiver');
  const lagS = during.map((s) => s.lagS).filter((x): x is number => x !== null);
  const slope = slopePerMin(during);
  const res: LagResult = {
    mode,
    tps,
    walBytes: lsnBytes(last!.lsn) - lsnBytes(before!.lsn),
    samples: [...during, ...after],
    maxReady: Math.max(...during.map((s) => s.ready)),
    p95Ready: percentile(during.map((s) => s.ready), 95),
    maxLagBytes: Math.max(...during.map((s) => s.lagBytes)),
    p95LagBytes: percentile(during.map((s) => s.lagBytes), 95),
    maxLagS: lagS.length === 0 ? null : Math.max(...lagS),
    p95LagS: lagS.length === 0 ? null : percentile(lagS, 95),
    readySlopePerMin: slope,
    drainMs,
    archivedSegments: Number(last!.archived) - Number(before!.archived),
    failed: Math.max(...[...during, ...after].map((s) => s.failed)) - Number(before!.failed),
    // Kept up: the backlog does not grow by a segment a minute or more, and it drains afterwards.
    keptUp: drainMs !== null && slope < 1,
  };
  say(
    `${mode}: ${res.tps.toFixed(0)} TPS, ${mib(res.walBytes)} MiB WAL, .ready max ${res.maxReady} p95 ${res.p95Ready}, ` +
      `lag max ${mib(res.maxLagBytes)} MiB / ${res.maxLagS?.toFixed(1) ?? '?'} s, drained in ${res.drainMs === null ? 'NOT within the timeout' : `${secs(res.drainMs)} s`}`,
  );
  return res;
}

interface Facts {
  readonly pgVersion: string;
  readonly clusterBytes: number;
  readonly initMs: number;
  readonly load: { before: string; max: number };
}

function summarizeCopies(rounds: readonly Copy[][], clusterBytes: number) {
  const base = median(rounds.map((r) => r.find((c) => c.variant === 'pg_basebackup -X stream')!.ms));
  return VARIANTS.map((v) => {
    const ms = rounds.map((r) => r.find((c) => c.variant === v)!.ms);
    const m = median(ms);
    return {
      variant: v,
      ms,
      medianMs: m,
      mibPerS: (clusterBytes / 2 ** 20) / (m / 1000),
      outBytes: median(rounds.map((r) => r.find((c) => c.variant === v)!.outBytes)),
      ratio: m / base,
    };
  });
}

const VARIANT_TEXT: Record<Variant, string> = {
  'pgbackrest p1': 'pgBackRest `backup --type=full`, lz4, `--process-max=1`',
  'pgbackrest p2': 'pgBackRest `backup --type=full`, lz4, `--process-max=2`',
  'pg_basebackup -X stream': '`pg_basebackup -X stream` (plain, uncompressed)',
  'pg_basebackup -Ft -z': '`pg_basebackup -Ft -z -X stream` (tar, gzip)',
  'pg_basebackup -Ft lz4': '`pg_basebackup -Ft --compress=client-lz4 -X stream` (tar, lz4)',
};

function render(opts: Options, machine: MachineInfo, facts: Facts, rounds: readonly Copy[][], lag: readonly LagResult[], date: string): string {
  const command = `npm run bench:backup -- ${opts.argv.filter((a) => a !== '--write-doc').join(' ')}`.trimEnd().replace(/ --$/, '');
  const sum = summarizeCopies(rounds, facts.clusterBytes);
  const md: string[] = [];
  md.push(`Measured ${date} with \`${command}\` on ${describeMachine(machine)}; ${facts.pgVersion}.`);
  md.push(
    `**The machine was shared with other jobs**: load average before the run ${facts.load.before}, at most ${facts.load.max.toFixed(2)} during it, so absolute figures are low and spread; the ratios within a round are the figure to read.`,
  );
  md.push('');
  md.push(`### Base backup of a ${mib(facts.clusterBytes)} MiB primary (pgbench scale ${opts.scale}), ${opts.rounds} round(s), order rotated each round`);
  md.push('');
  md.push('| variant | seconds per round | median s | MiB/s (cluster size / time) | written MiB | time / `pg_basebackup -X stream` |');
  md.push('|---|---|---:|---:|---:|---:|');
  for (const s of sum) {
    md.push(`| ${VARIANT_TEXT[s.variant]} | ${s.ms.map(secs).join(', ')} | ${secs(s.medianMs)} | ${s.mibPerS.toFixed(1)} | ${mib(s.outBytes)} | ${s.ratio.toFixed(2)} |`);
  }
  md.push('');
  md.push(`### Archive lag under \`pgbench -c ${opts.clients} -j 2 -T ${opts.durationS}\` (TPC-B), sampled every ${SAMPLE_MS} ms`);
  md.push('');
  md.push('| archive-push | TPS | WAL written MiB | segments archived | `.ready` max / p95 | lag MiB max / p95 | lag s max / p95 | `.ready` trend (segments/min) | drained after pgbench | kept up |');
  md.push('|---|---:|---:|---:|---|---|---|---:|---|---|');
  for (const l of lag) {
    const s = (x: number | null) => (x === null ? '?' : x.toFixed(1));
    md.push(
      `| ${l.mode === 'sync' ? 'synchronous' : '`--archive-async`'} | ${l.tps.toFixed(0)} | ${mib(l.walBytes)} | ${l.archivedSegments} | ${l.maxReady} / ${l.p95Ready} | ` +
        `${mib(l.maxLagBytes)} / ${mib(l.p95LagBytes)} | ${s(l.maxLagS)} / ${s(l.p95LagS)} | ${l.readySlopePerMin.toFixed(2)} | ` +
        `${l.drainMs === null ? `not within ${secs(opts.drainTimeoutMs)} s` : `${secs(l.drainMs)} s`} | ${l.keptUp ? 'yes' : 'NO'}${l.failed > 0 ? ` (${l.failed} failed attempts)` : ''} |`,
    );
  }
  return md.join('\n');
}

async function setUp(opts: Options, dir: string, identity: OsIdentity | null, say: (s: string) => void): Promise<{ env: Env; initMs: number }> {
  const repo = join(dir, 'repo');
  const logDir = join(dir, 'pgbackrest');
  const spoolDir = join(dir, 'spool');
  const conf = join(logDir, 'pgbackrest.conf');
  for (const d of [repo, logDir, spoolDir]) {
    await owned({ identity }, d);
  }
  const pg = await startPlainPostgres({
    dataDir: join(dir, 'primary'),
    binDir: opts.pgBinPath,
    settings: {
      archive_mode: 'on',
      archive_command: `pgbackrest --config=${conf} --stanza=${STANZA} archive-push %p`,
      max_wal_size: '4GB',
      shared_buffers: '256MB',
    },
  });
  const env: Env = { dir, pg, identity, conf, spoolDir, logDir, spec: { repository: { path: repo } }, opts };
  await writeConf(env, false);
  assertSucceeded('pgbackrest stanza-create', await pgbackrest(env, [`--stanza=${STANZA}`, 'stanza-create']));
  say(`pgbench -i -s ${opts.scale}`);
  const init = await runCommand({
    cmd: join(opts.pgBinPath, 'pgbench'),
    args: ['-i', '-q', '-s', String(opts.scale), '-h', pg.socketDir, '-p', String(pg.port), '-U', 'postgres', 'postgres'],
    identity,
    timeoutMs: 60 * 60_000,
  });
  assertSucceeded('pgbench -i', init);
  return { env, initMs: init.ms };
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  const say = (s: string) => process.stdout.write(`[bench:backup ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const machine = machineInfo();
  const load = trackLoad();
  const dir = await makeTempDir('stolon-bench-backup-');
  const identity = await osIdentity('postgres');
  let env: Env | undefined;
  const cleanup = async (): Promise<void> => {
    killRunningCommands();
    await env?.pg.stop().catch((err: unknown) => say(`stopping PostgreSQL failed: ${(err as Error).message}`));
    if (opts.keep) {
      say(`kept ${dir}`);
    } else {
      await removeDir(dir);
    }
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const s = await setUp(opts, dir, identity, say);
    env = s.env;
    const [row] = await env.pg.query<{ total: string; version: string }>('select (select sum(pg_database_size(oid)) from pg_database)::text as total, version() as version');
    const facts: Facts = { pgVersion: row!.version.replace(/ on .*$/, ''), clusterBytes: Number(row!.total), initMs: s.initMs, load: load() };
    say(`pgbench -i took ${secs(s.initMs)} s; cluster ${mib(facts.clusterBytes)} MiB`);
    const rounds = await throughput(env, say);
    const lag = [await archiveLag(env, 'sync', say), await archiveLag(env, 'async', say)];
    const done: Facts = { ...facts, load: load() };
    const markdown = render(opts, machine, done, rounds, lag, new Date().toISOString().slice(0, 10));
    process.stdout.write(`\n${markdown}\n\n`);
    const file = await writeResultLine('backup', stamp, {
      bench: 'backup',
      date: new Date().toISOString(),
      command: `npm run bench:backup -- ${opts.argv.join(' ')}`.trimEnd(),
      machine,
      ...done,
      copies: summarizeCopies(rounds, facts.clusterBytes),
      lag: lag.map((l) => ({ ...l, samples: l.samples.map((x) => [x.t, x.ready, x.lagBytes, x.lagS]) })),
    });
    say(`results: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('backup', markdown);
      say(`updated ${BENCH_DOC}`);
    }
    return 0;
  } catch (err) {
    await reportBenchFailure('backup', stamp, err, undefined);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
