/**
 * `npm run bench:store-outage`: the write outage while the store is frozen, for four systems in one
 * run: stolon-ts with failsafe mode (the spec's `failsafeMode: true`, keepers with the member API),
 * stolon-ts without it (`failsafeMode: false`), Patroni 3.0.2 (Debian's package, etcd3, HAProxy
 * with `GET /primary` checks) with `failsafe_mode: true` in bootstrap.dcs, and Patroni without it.
 *
 * Each system gets its own cluster: 2 PostgreSQL 15 nodes (asynchronous replication), one router
 * (stolon-proxy, or HAProxy as Patroni documents it), a single etcd member, everything on
 * 127.0.0.1, default timings on both sides (stolon: failInterval 6 s, proxyTimeout 4 s; Patroni:
 * ttl 30, loop_wait 10, retry_timeout 10, HAProxy `inter 3s fall 3 rise 2`). For each freeze length
 * (default 20 s, then 60 s) etcd is stopped with SIGSTOP and continued with SIGCONT, while two
 * writers run: one through the router and one straight to the primary's PostgreSQL port. A writer
 * is one connection inserting rows back to back (5 ms apart) with a 2 s client-side connect and
 * query timeout, reconnecting 20 ms after any error, each a Python process with psycopg2 when
 * /usr/bin/python3 has it (`--writer`; else a Node worker thread): neither the benchmark's log
 * reading nor a Node writer's own garbage collections then delay its acknowledgements. Per writer: the largest gap between
 * consecutive acknowledged inserts within [freeze start, resume + 10 s] (the last ack before the
 * freeze counts as the first boundary, the end of the window as the last), the failed attempts in
 * that window, whether the primary afterwards is the same node on the same timeline with the same
 * postmaster, and how many acknowledged rows are missing once the cluster is healthy again.
 *
 * With `--rounds N` every system measures its freezes N times in a row on the same cluster, and the
 * ratios and the target compare the median of each cell's N largest gaps: at this machine's noise
 * floor (tens of ms) one stall decides a single round.
 *
 * Prints the table and the ratios (stolon-ts failsafe / Patroni failsafe, failsafe / not); writes
 * one JSON line under test/bench/results/; `--write-doc` regenerates the bench:store-outage
 * section of docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import {
  binPath,
  makeTempDir,
  query,
  removeDir,
  startLocalCluster,
  waitFor,
  waitKeepersConverged,
  type LocalCluster,
  type ProcessHandle,
} from '@stolon-ts/harness';
import { describeMachine, fileStamp, machineInfo, median, runCommand, trackLoad, updateDocSection, writeResultLine } from './common.js';
import { ProcessWriter, pythonWriterUnavailable, ThreadWriter, type Writer } from './store-outage-writer.js';
import { HAPROXY_DEFAULT, PATRONI_DEFAULT, patroniUnavailableReason, startPatroniEnv, type PatroniEnv } from './patroni.js';

const SYSTEMS = ['stolon-failsafe', 'stolon-nofailsafe', 'patroni-failsafe', 'patroni-nofailsafe'] as const;
type System = (typeof SYSTEMS)[number];
type WriterKind = 'proxy' | 'direct';
/** What runs a writer's loop: a Python process (psycopg2) or a Node worker thread (node-postgres). */
type WriterImpl = 'python' | 'node';

/** Client-side connect and query timeout of the writers, ms. */
const QUERY_TIMEOUT_MS = 2000;
/** Pause after an acknowledged insert, ms. */
const PAUSE_MS = 5;
/** Pause before reconnecting after an error, ms. */
const RECONNECT_MS = 20;
/** The measured window ends this long after SIGCONT, ms. */
const AFTER_RESUME_MS = 10_000;
/** The target: with failsafe mode, no gap longer than this, ms. */
const TARGET_GAP_MS = 1000;
/** Bound on waiting for a cluster to be healthy between freezes, ms. */
const HEALTHY_TIMEOUT_MS = 180_000;

const USAGE = `usage: npm run bench:store-outage -- [--freezes LIST] [--rounds N] [--systems LIST] [--write-doc] [--keep] [--log-level L]
  --freezes LIST   etcd freeze lengths in seconds (default 20,60; each 1..600)
  --rounds N       measure every freeze N times per system (default 1, at most 10); the ratios
                   and the target use the median of each cell's N largest gaps
  --systems LIST   default ${SYSTEMS.join(',')}
  --write-doc      regenerate the bench:store-outage section of docs/benchmarks.md
  --keep           keep the temp directories
  --writer W       python (psycopg2, /usr/bin/python3), node (node-postgres in a worker thread)
                   or auto (default: python when psycopg2 is there, else node)
  --log-level L    stolon components' log level (default info)`;

interface Options {
  readonly freezesS: readonly number[];
  readonly rounds: number;
  readonly systems: readonly System[];
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly logLevel: string;
  readonly writer: WriterImpl | 'auto';
  readonly argv: readonly string[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      freezes: { type: 'string', default: '20,60' },
      rounds: { type: 'string', default: '1' },
      systems: { type: 'string', default: SYSTEMS.join(',') },
      'write-doc': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      'log-level': { type: 'string', default: 'info' },
      writer: { type: 'string', default: 'auto' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const freezesS = values.freezes.split(',').map((s) => Number(s.trim()));
  if (freezesS.length === 0 || !freezesS.every((x) => Number.isInteger(x) && x >= 1 && x <= 600)) {
    throw new Error(`--freezes: "${values.freezes}" must be whole numbers of seconds from 1 to 600, e.g. 20,60`);
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) {
    throw new Error(`--rounds: "${values.rounds}" must be a whole number from 1 to 10`);
  }
  if (new Set(freezesS).size !== freezesS.length) {
    throw new Error(`--freezes: "${values.freezes}" lists a length twice; use --rounds to repeat`);
  }
  const systems = values.systems.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const s of systems) {
    if (!(SYSTEMS as readonly string[]).includes(s)) {
      throw new Error(`--systems: "${s}" is not one of ${SYSTEMS.join(', ')}`);
    }
  }
  if (systems.length === 0) {
    throw new Error('--systems: empty');
  }
  const writer = values.writer;
  if (writer !== 'auto' && writer !== 'python' && writer !== 'node') {
    throw new Error(`--writer: "${writer}" is not one of python, node, auto`);
  }
  return { freezesS, rounds, systems: systems as System[], writeDoc: values['write-doc'], keep: values.keep, logLevel: values['log-level'], writer, argv };
}

/** The writer kind `opts` resolved to (`auto` is resolved in `main` before any measurement). */
const implOf = (opts: Options): WriterImpl => (opts.writer === 'python' ? 'python' : 'node');

/** A writer for one freeze: it runs at most the freeze plus 2 minutes. */
function newWriter(impl: WriterImpl, name: string, config: pg.ClientConfig, freezeS: number): Writer {
  const init = { name, config, maxRunMs: (freezeS + 120) * 1000, pauseMs: PAUSE_MS, reconnectMs: RECONNECT_MS, queryTimeoutMs: QUERY_TIMEOUT_MS, warmAcks: 20 };
  return impl === 'python' ? new ProcessWriter(init) : new ThreadWriter(init);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `p` settles or after `ms`, whichever first (never rejects). */
function bounded(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    (p ?? Promise.resolve()).then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((r) => {
      timer = setTimeout(r, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const TABLE_SQL = 'create table if not exists bench_outage (writer text not null, seq int not null, primary key (writer, seq))';

/**
 * The largest gap, ms, between consecutive acknowledgements (`acks`, ascending epoch ms) within
 * `[from, to]`: the last ack at or before `from` (else `from`) opens the first gap, `to` closes
 * the last one; `startMs` and `endMs` say where it starts and ends, ms after `from`.
 */
function largestGap(acks: readonly number[], from: number, to: number): { ms: number; startMs: number; endMs: number } {
  let prev = from;
  for (const t of acks) {
    if (t <= from) {
      prev = t;
    }
  }
  let best = { ms: 0, startMs: prev - from, endMs: prev - from };
  for (const t of acks) {
    if (t > from && t <= to) {
      if (t - prev > best.ms) {
        best = { ms: t - prev, startMs: prev - from, endMs: t - from };
      }
      prev = t;
    }
  }
  if (to - prev > best.ms) {
    best = { ms: to - prev, startMs: prev - from, endMs: to - from };
  }
  return best;
}

/** The primary's identity: node index, timeline, postmaster start. */
interface PrimaryId {
  readonly index: number;
  readonly name: string;
  readonly timeline: number;
  readonly postmasterStart: string;
}

/** What the benchmark needs of one system. */
interface SystemEnv {
  /** The etcd process (SIGSTOP / SIGCONT). */
  readonly etcd: ProcessHandle;
  proxyConfig(): pg.ClientConfig;
  directConfig(i: number): pg.ClientConfig;
  nodeName(i: number): string;
  /** Index of the node that is primary now, or -1. */
  primaryIndex(): Promise<number>;
  /** Resolves once both nodes are healthy and a write through the router succeeds; throws after `timeoutMs`. */
  waitHealthy(timeoutMs: number): Promise<void>;
  logs(): string;
  stop(): Promise<void>;
}

async function stolonEnv(system: 'stolon-failsafe' | 'stolon-nofailsafe', dir: string, opts: Options): Promise<SystemEnv> {
  const spec = { initMode: 'new', failsafeMode: system === 'stolon-failsafe' };
  const cluster: LocalCluster = await startLocalCluster({
    dir,
    clusterName: `bench-${system}`,
    keepers: 2,
    sentinels: 1,
    proxies: 1,
    memberApi: true,
    spec,
    logLevel: opts.logLevel,
  });
  const timeouts = { connectionTimeoutMillis: 3000, query_timeout: 5000 };
  return {
    etcd: cluster.etcd.process,
    proxyConfig: () => cluster.proxyClientConfig(0),
    directConfig: (i) => cluster.directClientConfig(i),
    nodeName: (i) => `keeper${i}`,
    primaryIndex: () => cluster.primaryIndex(),
    async waitHealthy(timeoutMs) {
      const until = Date.now() + timeoutMs;
      await waitKeepersConverged(cluster, 2, timeoutMs);
      await waitFor(async () => ((await query({ ...cluster.proxyClientConfig(0), ...timeouts }, 'select 1').catch(() => undefined)) === undefined ? undefined : true), {
        timeoutMs: Math.max(5000, until - Date.now()),
        what: 'a query through the proxy',
      });
    },
    logs: () => cluster.logs(),
    stop: () => cluster.stop(),
  };
}

async function patroniEnv(system: 'patroni-failsafe' | 'patroni-nofailsafe', dir: string, say: (s: string) => void): Promise<SystemEnv> {
  const failsafe = system === 'patroni-failsafe';
  const env: PatroniEnv = await startPatroniEnv({ dir, timings: PATRONI_DEFAULT, haproxy: HAPROXY_DEFAULT, failsafeMode: failsafe });
  const etcd = env.etcd;
  if (etcd === undefined) {
    throw new Error('the Patroni baseline of bench:store-outage runs on etcd');
  }
  const failsafeMembers = async (): Promise<number> => {
    for (const n of env.nodes) {
      try {
        const res = await fetch(`http://127.0.0.1:${n.restPort}/failsafe`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) {
          return Object.keys((await res.json()) as Record<string, unknown>).length;
        }
        await res.text();
      } catch {
        // not up
      }
    }
    return 0;
  };
  return {
    etcd: etcd.process,
    proxyConfig: () => env.clientConfig(),
    directConfig: (i) => env.directClientConfig(i),
    nodeName: (i) => env.nodes[i]?.name ?? `node${i}`,
    primaryIndex: () => env.leaderIndex(),
    async waitHealthy(timeoutMs) {
      const until = Date.now() + timeoutMs;
      if ((await env.waitHealthy(timeoutMs)) === null) {
        throw new Error(`the Patroni cluster was not healthy within ${timeoutMs} ms; logs:\n${env.logs().split('\n').slice(-40).join('\n')}`);
      }
      if (failsafe) {
        // The leader publishes the members it must reach (the /failsafe key) with its leader key:
        // without both members there, failsafe mode cannot keep it primary.
        while ((await failsafeMembers()) < 2) {
          if (Date.now() > until) {
            throw new Error(`Patroni's /failsafe key did not list both members within ${timeoutMs} ms`);
          }
          await sleep(500);
        }
        say(`${system}: the /failsafe key lists both members`);
      }
    },
    logs: () => env.logs(),
    stop: () => env.stop(),
  };
}

/** One writer's figures for one freeze. */
interface Row {
  readonly system: System;
  /** 1-based round (`--rounds`). */
  readonly round: number;
  /** Freeze length, s. */
  readonly freezeS: number;
  readonly writer: WriterKind;
  /** Largest gap between consecutive acks within [freeze start, resume + 10 s], ms. */
  readonly gapMs: number;
  /** Where that gap starts and ends, ms after the freeze started. */
  readonly gapStartMs: number;
  readonly gapEndMs: number;
  /** Acknowledged inserts within the window. */
  readonly acked: number;
  /** Failed attempts within the window. */
  readonly failed: number;
  /** The writer's three most frequent failure messages (digits as `N`), with counts. */
  readonly errors: Readonly<Record<string, number>>;
  /** Acknowledged rows missing once the cluster was healthy again; null: not checked. */
  readonly lost: number | null;
  readonly primaryBefore: PrimaryId;
  readonly primaryAfter: PrimaryId | null;
  /** `same`, `same node, …` or `changed …` in words. */
  readonly primaryVerdict: string;
  /** The freeze really lasted this long (SIGSTOP to SIGCONT), ms. */
  readonly frozenMs: number;
}

async function primaryId(env: SystemEnv, index: number): Promise<PrimaryId> {
  const r = await query<{ tl: number; pst: string }>(
    { ...env.directConfig(index), connectionTimeoutMillis: 3000, query_timeout: 5000 },
    `select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int as tl, pg_postmaster_start_time()::text as pst`,
  );
  return { index, name: env.nodeName(index), timeline: r[0]?.tl ?? -1, postmasterStart: r[0]?.pst ?? '' };
}

function verdict(before: PrimaryId, after: PrimaryId | null): string {
  if (after === null) {
    return 'no primary within 60 s';
  }
  if (after.index !== before.index) {
    return `changed: ${before.name} → ${after.name} (timeline ${before.timeline} → ${after.timeline})`;
  }
  if (after.timeline !== before.timeline) {
    return `same node, new timeline ${before.timeline} → ${after.timeline}`;
  }
  if (after.postmasterStart !== before.postmasterStart) {
    return 'same node, PostgreSQL restarted';
  }
  return 'same';
}

async function lostRows(env: SystemEnv, w: Writer): Promise<number | null> {
  try {
    const rows = await query<{ seq: number }>({ ...env.proxyConfig(), connectionTimeoutMillis: 3000, query_timeout: 20_000 }, 'select seq from bench_outage where writer = $1', [w.name]);
    const present = new Set(rows.map((r) => r.seq));
    return w.ackedSeqs.filter((s) => !present.has(s)).length;
  } catch {
    return null;
  }
}

/**
 * Freezes etcd for `freezeS` seconds under a router writer and a direct writer and appends their
 * two rows to `rows`.
 * @throws Error when the cluster is not healthy before or after (within 3 minutes), or the writers
 *   get no acknowledgements before the freeze; the rows are appended first when the freeze ran.
 */
async function measureFreeze(system: System, env: SystemEnv, freezeS: number, round: number, impl: WriterImpl, say: (s: string) => void, rows: Row[]): Promise<void> {
  await env.waitHealthy(HEALTHY_TIMEOUT_MS);
  const p = await env.primaryIndex();
  if (p < 0) {
    throw new Error('no primary before the freeze');
  }
  const before = await primaryId(env, p);
  const writers: Record<WriterKind, Writer> = {
    proxy: newWriter(impl, `${system}-${freezeS}s-r${round}-proxy`, env.proxyConfig(), freezeS),
    direct: newWriter(impl, `${system}-${freezeS}s-r${round}-direct`, env.directConfig(p), freezeS),
  };
  let start = 0;
  let resumed = 0;
  let end = 0;
  try {
    for (const w of Object.values(writers)) {
      w.start();
    }
    const warm = Date.now() + 30_000;
    while (!writers.proxy.warm || !writers.direct.warm) {
      if (Date.now() > warm) {
        throw new Error(`writers did not get 20 acks each within 30 s (proxy warm: ${writers.proxy.warm}, direct warm: ${writers.direct.warm})`);
      }
      await sleep(50);
    }
    say(`${system}: freezing etcd (SIGSTOP) for ${freezeS} s (round ${round}); primary ${before.name} (timeline ${before.timeline})`);
    start = Date.now();
    try {
      env.etcd.pause();
      await sleep(freezeS * 1000);
    } finally {
      env.etcd.resume();
      resumed = Date.now();
    }
    await sleep(AFTER_RESUME_MS);
    end = Date.now();
  } finally {
    await Promise.all(Object.values(writers).map((w) => w.stop()));
  }
  let after: PrimaryId | null = null;
  for (const until = Date.now() + 60_000; after === null && Date.now() < until; ) {
    const i = await env.primaryIndex();
    after = i < 0 ? null : await primaryId(env, i).catch(() => null);
    if (after === null) {
      await sleep(500);
    }
  }
  const primaryVerdict = verdict(before, after);
  let unhealthy: Error | undefined;
  try {
    await env.waitHealthy(HEALTHY_TIMEOUT_MS);
  } catch (err) {
    unhealthy = err as Error;
  }
  const mine: Row[] = [];
  for (const kind of ['proxy', 'direct'] as const) {
    const w = writers[kind];
    const gap = largestGap(w.acks, start, end);
    const errors = Object.fromEntries([...w.errors.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3));
    mine.push({
      system,
      round,
      freezeS,
      writer: kind,
      gapMs: gap.ms,
      gapStartMs: gap.startMs,
      gapEndMs: gap.endMs,
      acked: w.acks.filter((t) => t >= start && t <= end).length,
      failed: w.failures.filter((t) => t >= start && t <= end).length,
      errors,
      lost: unhealthy === undefined ? await lostRows(env, w) : null,
      primaryBefore: before,
      primaryAfter: after,
      primaryVerdict,
      frozenMs: resumed - start,
    });
  }
  rows.push(...mine);
  for (const r of mine) {
    say(
      `${system} ${freezeS} s freeze (round ${round}), ${r.writer}: largest gap ${r.gapMs} ms (${s2(r.gapStartMs)}–${s2(r.gapEndMs)} s after the freeze), ${r.acked} acked, ${r.failed} failed, lost ${r.lost ?? 'not checked'}; primary after: ${r.primaryVerdict}` +
        (Object.keys(r.errors).length > 0 ? `; errors: ${JSON.stringify(r.errors)}` : ''),
    );
  }
  if (unhealthy !== undefined) {
    throw unhealthy;
  }
}

const s2 = (ms: number): string => (ms / 1000).toFixed(2);

/** Environments running now, stopped by the SIGINT/SIGTERM handler. */
const running = new Set<() => Promise<void>>();

/** Starts `system`, measures every freeze length and appends the rows to `rows`; stops the system. */
async function runSystem(system: System, opts: Options, say: (s: string) => void, dirs: string[], rows: Row[]): Promise<void> {
  const dir = await makeTempDir(`stolon-bench-store-outage-${system}-`);
  dirs.push(dir);
  say(
    system.startsWith('stolon')
      ? `${system}: starting 2 keepers (member API), 1 sentinel, 1 proxy, 1 etcd in ${dir}; spec failsafeMode ${system === 'stolon-failsafe'}`
      : `${system}: starting 2 Patroni 3.0.2 nodes (ttl 30, loop_wait 10, retry_timeout 10${system === 'patroni-failsafe' ? ', failsafe_mode' : ''}), HAProxy, 1 etcd in ${dir}`,
  );
  let env: SystemEnv | undefined;
  try {
    env =
      system === 'stolon-failsafe' || system === 'stolon-nofailsafe'
        ? await stolonEnv(system, join(dir, 'c'), opts)
        : await patroniEnv(system, dir, say);
    running.add(env.stop);
    await query({ ...env.proxyConfig(), connectionTimeoutMillis: 3000, query_timeout: 10_000 }, TABLE_SQL);
    for (let round = 1; round <= opts.rounds; round++) {
      for (const freezeS of opts.freezesS) {
        await measureFreeze(system, env, freezeS, round, implOf(opts), say, rows);
      }
    }
  } catch (err) {
    throw new Error(`${(err as Error).message}${env === undefined ? '' : `\nlast log lines:\n${env.logs().split('\n').slice(-40).join('\n')}`}`, { cause: err });
  } finally {
    if (env !== undefined) {
      running.delete(env.stop);
      await bounded(env.stop(), 60_000);
    }
  }
}

const WRITER_LABEL: Record<WriterImpl, string> = {
  python: 'each writer a Python process with psycopg2',
  node: 'each writer a Node worker thread with node-postgres',
};

const LABEL: Record<System, string> = {
  'stolon-failsafe': 'stolon-ts, failsafe',
  'stolon-nofailsafe': 'stolon-ts, no failsafe',
  'patroni-failsafe': 'Patroni, failsafe_mode',
  'patroni-nofailsafe': 'Patroni, no failsafe_mode',
};

function render(
  opts: Options,
  rows: readonly Row[],
  skipped: Partial<Record<System, string>>,
  header: { date: string; minutes: string; load: { before: string; max: number }; versions: string },
): { text: string; markdown: string } {
  const t: string[] = [];
  const md: string[] = [];
  const args = opts.argv.filter((a) => a !== '--write-doc');
  const cmd = `npm run bench:store-outage${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`;
  md.push(
    `Measured ${header.date} with \`${cmd}\` on ${describeMachine(machineInfo())} in ${header.minutes} min; ${header.versions}; 1-minute load average ${header.load.before} before the run, at most ${header.load.max.toFixed(2)} during it (the benchmark's own clusters included).`,
    '',
    `Largest gap between consecutive acknowledged writes within [freeze start, resume + 10 s], per writer (one connection, 2 s query timeout, reconnecting on error; ${WRITER_LABEL[implOf(opts)]}):`,
    '',
    `| etcd frozen | system | writer |${opts.rounds > 1 ? ' round |' : ''} largest gap (ms) | gap from–to (s after the freeze) | acknowledged | failed | acknowledged rows lost | primary after |`,
    `|---:|---|---|${opts.rounds > 1 ? '---:|' : ''}---:|---|---:|---:|---:|---|`,
  );
  t.push('', `bench:store-outage, ${header.date}, ${header.minutes} min; ${header.versions}; writers: ${WRITER_LABEL[implOf(opts)]}`, '');
  t.push(`${'freeze'.padEnd(7)}${'system'.padEnd(27)}${'writer'.padEnd(8)}${'gap ms'.padStart(8)}  ${'gap at (s)'.padEnd(14)}${'acked'.padStart(7)}${'failed'.padStart(8)}${'lost'.padStart(6)}  primary after`);
  for (const freezeS of opts.freezesS) {
    for (const system of opts.systems) {
      for (const r of rows.filter((x) => x.system === system && x.freezeS === freezeS)) {
        const at = `${s2(r.gapStartMs)}–${s2(r.gapEndMs)}`;
        const lost = r.lost === null ? 'not checked' : String(r.lost);
        t.push(`${`${freezeS} s`.padEnd(7)}${LABEL[system].padEnd(27)}${r.writer.padEnd(8)}${opts.rounds > 1 ? `r${r.round} ` : ''}${String(r.gapMs).padStart(8)}  ${at.padEnd(14)}${String(r.acked).padStart(7)}${String(r.failed).padStart(8)}${lost.padStart(6)}  ${r.primaryVerdict}`);
        md.push(`| ${freezeS} s | ${LABEL[system]} | ${r.writer === 'proxy' ? (system.startsWith('stolon') ? 'stolon-proxy' : 'HAProxy') : 'direct'} |${opts.rounds > 1 ? ` ${r.round} |` : ''} ${r.gapMs} | ${at} | ${r.acked} | ${r.failed} | ${lost} | ${r.primaryVerdict} |`);
      }
    }
  }
  // One round: that round's gap; several: the median of the cell's rounds.
  const gap = (system: System, freezeS: number, writer: WriterKind): number | undefined => {
    const xs = rows.filter((r) => r.system === system && r.freezeS === freezeS && r.writer === writer).map((r) => r.gapMs);
    return xs.length === 0 ? undefined : median(xs);
  };
  const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '-' : b === 0 ? 'inf' : (a / b).toFixed(3));
  const ms = (x: number | undefined): string => (x === undefined ? '-' : `${x} ms`);
  const of = opts.rounds > 1 ? ` (median of ${opts.rounds} rounds per cell)` : '';
  t.push('', `ratios of the largest gaps${of} (lower is better for the first):`);
  md.push(
    '',
    `**Ratios of the largest gaps**${of} (lower is better for the first of each pair):`,
    '',
    '| etcd frozen | writer | stolon-ts failsafe / Patroni failsafe_mode | stolon-ts failsafe / no failsafe | Patroni failsafe_mode / no failsafe_mode |',
    '|---:|---|---|---|---|',
  );
  for (const freezeS of opts.freezesS) {
    for (const writer of ['proxy', 'direct'] as const) {
      const sf = gap('stolon-failsafe', freezeS, writer);
      const sn = gap('stolon-nofailsafe', freezeS, writer);
      const pf = gap('patroni-failsafe', freezeS, writer);
      const pn = gap('patroni-nofailsafe', freezeS, writer);
      const cells = [`${ms(sf)} / ${ms(pf)} = ${ratio(sf, pf)}`, `${ms(sf)} / ${ms(sn)} = ${ratio(sf, sn)}`, `${ms(pf)} / ${ms(pn)} = ${ratio(pf, pn)}`];
      t.push(`  ${freezeS} s, ${writer}: stolon failsafe / Patroni failsafe ${cells[0]}; stolon failsafe / not ${cells[1]}; Patroni failsafe / not ${cells[2]}`);
      md.push(`| ${freezeS} s | ${writer} | ${cells.join(' | ')} |`);
    }
  }
  // The target: with failsafe, every largest gap ≤ 1 s (every round), and no larger than Patroni's
  // with failsafe_mode (per cell; the median of the rounds with several).
  const all = rows.filter((r) => r.system === 'stolon-failsafe');
  if (all.length > 0) {
    const worst = Math.max(...all.map((r) => r.gapMs));
    const within = worst <= TARGET_GAP_MS;
    const mine = all.filter((r) => r.round === 1).map((r) => ({ ...r, gapMs: gap('stolon-failsafe', r.freezeS, r.writer)! }));
    const vsPatroni = mine.map((r) => ({ r, p: gap('patroni-failsafe', r.freezeS, r.writer) }));
    const compared = vsPatroni.filter((x) => x.p !== undefined);
    const notWorse = compared.filter((x) => x.r.gapMs <= x.p!).length;
    const line1 = `Target: with failsafe mode, largest gap ≤ ${TARGET_GAP_MS} ms through the proxy and direct: ${within ? 'met' : 'NOT met'} (worst ${worst} ms).`;
    const line2 =
      compared.length === 0
        ? 'Target: at least as good as Patroni with failsafe_mode: not compared (Patroni with failsafe_mode was not measured).'
        : `Target: at least as good as Patroni with failsafe_mode${of}: ${notWorse === compared.length ? 'met' : 'NOT met'} (stolon-ts's gap ≤ Patroni's in ${notWorse} of ${compared.length} cells: ${compared.map((x) => `${x.r.freezeS} s ${x.r.writer} ${x.r.gapMs} vs ${x.p} ms`).join(', ')}).`;
    t.push('', line1, line2);
    md.push('', `- ${line1}`, `- ${line2}`);
  }
  for (const [system, why] of Object.entries(skipped)) {
    t.push(`${system}: NOT RUN: ${why}`);
    md.push('', `**${system} was not run:** ${why}`);
  }
  return { text: t.join('\n'), markdown: md.join('\n') };
}

async function versions(): Promise<string> {
  const first = async (cmd: string, args: string[]): Promise<string | undefined> => {
    try {
      const r = await runCommand({ cmd, args, timeoutMs: 20_000 });
      return r.code === 0 ? `${r.stdout}${r.stderr}`.trim().split('\n')[0] : undefined;
    } catch {
      return undefined;
    }
  };
  const parts = [await first('etcd', ['--version']), await first('patroni', ['--version']), (await first('haproxy', ['-v']))?.replace(/ \d{4}\/\d\d\/\d\d.*$/, '')];
  return parts.filter((x) => x !== undefined).join(', ');
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:store-outage: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:store-outage: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  const say = (s: string) => process.stdout.write(`[bench:store-outage ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const noPython = opts.writer === 'node' ? undefined : await pythonWriterUnavailable();
  if (noPython !== undefined) {
    if (opts.writer === 'python') {
      process.stderr.write(`bench:store-outage: --writer python: ${noPython}\n`);
      return 2;
    }
    say(`writers: node-postgres in worker threads (${noPython})`);
  }
  opts = { ...opts, writer: opts.writer === 'node' || noPython !== undefined ? 'node' : 'python' };
  const stamp = fileStamp();
  const started = Date.now();
  const dirs: string[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await Promise.allSettled([...running].map((stop) => bounded(stop(), 60_000)));
      for (const d of dirs) {
        if (opts.keep) {
          say(`kept ${d}`);
        } else {
          await removeDir(d);
        }
      }
    })());
  const rows: Row[] = [];
  const skipped: Partial<Record<System, string>> = {};
  const load = trackLoad();
  const vers = await versions();
  const header = () => ({ date: new Date().toISOString().slice(0, 10), minutes: ((Date.now() - started) / 60_000).toFixed(1), load: load(), versions: vers });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: stopping the clusters; what was measured so far:`);
      process.stdout.write(`${render(opts, rows, { ...skipped }, header()).text}\n`);
      void writeResultLine('store-outage', stamp, { date: header().date, machine: machineInfo(), interruptedBy: sig, rows, skipped })
        .catch(() => undefined)
        .then(cleanup)
        .finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  try {
    const patroni = opts.systems.some((s) => s.startsWith('patroni')) ? await patroniUnavailableReason() : undefined;
    for (const system of opts.systems) {
      if (system.startsWith('patroni') && patroni !== undefined) {
        skipped[system] = patroni;
        say(`${system}: NOT RUN: ${patroni}`);
        continue;
      }
      try {
        await runSystem(system, opts, say, dirs, rows);
      } catch (err) {
        skipped[system] = `it failed: ${(err as Error).message.split('\n')[0]}`;
        say(`${system}: FAILED: ${(err as Error).stack ?? String(err)}`);
      }
    }
    const h = header();
    const { text, markdown } = render(opts, rows, skipped, h);
    process.stdout.write(`${text}\n`);
    const file = await writeResultLine('store-outage', stamp, {
      date: h.date,
      machine: machineInfo(),
      versions: vers,
      options: { freezesS: opts.freezesS, rounds: opts.rounds, systems: opts.systems, writer: opts.writer, queryTimeoutMs: QUERY_TIMEOUT_MS, afterResumeMs: AFTER_RESUME_MS },
      load: load(),
      rows,
      skipped,
    });
    say(`result line: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('store-outage', markdown);
      say('docs/benchmarks.md updated');
    }
    return Object.keys(skipped).length === 0 ? 0 : 1;
  } catch (err) {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
