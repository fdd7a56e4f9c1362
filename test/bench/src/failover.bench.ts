/**
 * `npm run bench:failover`: the write outage of an unplanned failover through the
 * router clients use, per fault, over N runs (default 10), for stolon-ts with its default spec
 * and the `fast` profile, and for Patroni 3.0.2 (Debian's package, etcd3, HAProxy with
 * `GET /primary` checks) with its default and its most aggressive accepted settings, measured in
 * the same script with the same writer, so the ratio is side by side.
 *
 * The writer is one application connection through the router (stolon-proxy, or HAProxy for
 * Patroni) inserting rows back to back (5 ms apart) and reconnecting 20 ms after any error (the
 * chaos suite's `Recorder`). The outage of a run is the longest gap between two acknowledged
 * inserts from 2 s before the fault until the cluster is healthy again plus a second of writes.
 *
 * Topology, both sides: 2 PostgreSQL nodes (asynchronous replication, the default of both), one
 * router, a single etcd member, everything on loopback; stolon's keepers run in `ip netns`
 * namespaces (so the partition fault can run) with 1 sentinel.
 *
 * Faults: stolon — `killPrimaryNode`, `crashPrimaryPostgres`, `zombiePrimaryKeeper`,
 * `partitionPrimary` (test/harness/src/chaos/faults.ts); Patroni — SIGKILL of the leader's Patroni
 * and postmaster (compared with `killPrimaryNode`), SIGKILL of the leader's postmaster alone
 * (compared with `crashPrimaryPostgres`).
 *
 * Prints the tables; writes one JSON line under test/bench/results/; `--write-doc` regenerates
 * the bench:failover section of docs/benchmarks.md.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  FAST_PROFILE,
  RECORDER_TABLES_SQL,
  Recorder,
  binPath,
  describeCycle,
  longestGap,
  makeTempDir,
  netnsUnavailableReason,
  percentile,
  query,
  removeDir,
  runFaultCycle,
  serverKey,
  startChaosEnv,
  type ChaosEnv,
  type PhaseOffsets,
} from '@stolon-ts/harness';
import { describeMachine, fileStamp, machineInfo, trackLoad, updateDocSection, writeResultLine } from './common.js';
import { HAPROXY_DEFAULT, PATRONI_DEFAULT, patroniUnavailableReason, startPatroniEnv, type HaproxyChecks, type PatroniEnv, type PatroniTimings } from './patroni.js';

const STOLON_FAULTS = ['killPrimaryNode', 'crashPrimaryPostgres', 'zombiePrimaryKeeper', 'partitionPrimary'] as const;
type StolonFault = (typeof STOLON_FAULTS)[number];
/** The Patroni faults, named after the stolon fault they are compared with. */
const PATRONI_FAULTS = ['killPrimaryNode', 'crashPrimaryPostgres'] as const;
type PatroniFault = (typeof PATRONI_FAULTS)[number];

const PROFILES = ['stolon-default', 'stolon-fast', 'patroni-default', 'patroni-aggressive', 'stolon-sync', 'stolon-async3'] as const;
type Profile = (typeof PROFILES)[number];
/** What runs without --profiles: the stolon/Patroni comparison (the sync pair is asked for by name). */
const DEFAULT_PROFILES: readonly Profile[] = ['stolon-default', 'stolon-fast', 'patroni-default', 'patroni-aggressive'];
type StolonProfile = 'stolon-default' | 'stolon-fast' | 'stolon-sync' | 'stolon-async3';
const isStolon = (p: Profile): p is StolonProfile => p.startsWith('stolon-');
/** Synchronous replication as the e2e test and the chaos suite run it: min = max = 1 synchronous standby. */
const SYNC_SPEC = { synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 1 };
/** The synchronous-mode target: synchronous mode's p50 write outage at most this much above asynchronous mode's, ms. */
const SYNC_GAP_TARGET_MS = 500;

/** The aggressive profile gets aggressive checks too: HAProxy is part of Patroni's outage. */
const HAPROXY_AGGRESSIVE: HaproxyChecks = { interMs: 1000, fall: 2, rise: 1 };

const USAGE = `usage: npm run bench:failover -- [--runs N] [--faults LIST] [--profiles LIST] [--patroni-aggressive TTL,LOOP,RETRY] [--reuse FILE] [--write-doc] [--keep] [--log-level L]
  --runs N          runs per fault and profile (default 10, 1..50)
  --faults LIST     stolon faults (default ${STOLON_FAULTS.join(',')}); Patroni runs the first two
  --profiles LIST   default ${DEFAULT_PROFILES.join(',')}; also stolon-sync and stolon-async3
                    (3 keepers, default spec, synchronous / asynchronous replication: run both
                    to get "sync − async p50" against its 500 ms target)
  --patroni-aggressive T,L,R   Patroni ttl,loop_wait,retry_timeout of the aggressive profile (default 10,2,4)
  --reuse FILE      take the runs of the profiles not in --profiles from an earlier result line
                    (test/bench/results/failover-*.json), e.g. re-measure stolon after a change
                    without re-running Patroni; the tables say which rows were reused and when
  --interleave      start the clusters of every stolon profile first and run one fault of each
                    in turn (e.g. stolon-async3,stolon-sync: both see the same machine load)
  --write-doc       regenerate the bench:failover section of docs/benchmarks.md
  --keep            keep the temp directories
  --log-level L     stolon components' log level (default info)`;

interface Options {
  readonly runs: number;
  readonly faults: readonly StolonFault[];
  readonly profiles: readonly Profile[];
  readonly aggressive: PatroniTimings;
  readonly writeDoc: boolean;
  /** Run the stolon profiles side by side, one fault of each in turn. */
  readonly interleave: boolean;
  readonly reuse: string | undefined;
  readonly keep: boolean;
  readonly logLevel: string;
  readonly argv: readonly string[];
}

function list<T extends string>(flag: string, raw: string, allowed: readonly T[]): T[] {
  const xs = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const x of xs) {
    if (!(allowed as readonly string[]).includes(x)) {
      throw new Error(`--${flag}: "${x}" is not one of ${allowed.join(', ')}`);
    }
  }
  if (xs.length === 0) {
    throw new Error(`--${flag}: empty`);
  }
  return xs as T[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string', default: '10' },
      faults: { type: 'string', default: STOLON_FAULTS.join(',') },
      profiles: { type: 'string', default: DEFAULT_PROFILES.join(',') },
      'patroni-aggressive': { type: 'string', default: '10,2,4' },
      'write-doc': { type: 'boolean', default: false },
      interleave: { type: 'boolean', default: false },
      reuse: { type: 'string' },
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
  const [ttl, loopWait, retryTimeout] = values['patroni-aggressive'].split(',').map(Number);
  if (![ttl, loopWait, retryTimeout].every((x) => Number.isInteger(x) && x! > 0)) {
    throw new Error(`--patroni-aggressive: "${values['patroni-aggressive']}" must be three whole numbers of seconds, e.g. 10,2,4`);
  }
  // Patroni's documented rule (docs/dynamic_configuration.rst): loop_wait + 2 × retry_timeout ≤ ttl.
  if (loopWait! + 2 * retryTimeout! > ttl!) {
    throw new Error(`--patroni-aggressive: loop_wait + 2 × retry_timeout (${loopWait! + 2 * retryTimeout!}) must not exceed ttl (${ttl}), Patroni's rule`);
  }
  return {
    runs,
    faults: list('faults', values.faults, STOLON_FAULTS),
    profiles: list('profiles', values.profiles, PROFILES),
    aggressive: { ttl: ttl!, loopWait: loopWait!, retryTimeout: retryTimeout! },
    writeDoc: values['write-doc'],
    interleave: values.interleave,
    reuse: values.reuse,
    keep: values.keep,
    logLevel: values['log-level'],
    argv,
  };
}

interface Run {
  readonly profile: Profile;
  readonly fault: StolonFault;
  readonly run: number;
  /** Write outage (longest gap between acknowledged writes), ms. */
  readonly outageMs: number;
  /**
   * From the fault to the first acknowledged write on the new (or restarted) primary, ms; null when
   * writes did not resume. Longer than the outage when the deposed primary kept acknowledging
   * writes through the router (zombie, partition), which asynchronous replication may then lose.
   */
  readonly toNewPrimaryMs: number | null;
  /** Writes did not resume within the recovery timeout. */
  readonly stuck: boolean;
  /** Time to healthy after the fault ended, ms (null: not within the wait). */
  readonly healthyMs: number | null;
  readonly lost: number;
  readonly phases: PhaseOffsets | null;
  readonly detail: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Environments running now, stopped by the SIGINT/SIGTERM handler (Patroni's PostgreSQL is not in a process group the harness's exit hook kills). */
const running = new Set<() => Promise<void>>();

/** One stolon profile's cluster and writer, started. */
interface StolonBed {
  readonly profile: StolonProfile;
  readonly env: ChaosEnv;
  readonly recorder: Recorder;
  cycle: number;
}

async function startStolonBed(profile: StolonProfile, opts: Options, say: (s: string) => void, dirs: string[], beds: StolonBed[]): Promise<void> {
  const dir = await makeTempDir(`stolon-bench-failover-${profile}-`);
  dirs.push(dir);
  const spec = { initMode: 'new', ...(profile === 'stolon-fast' ? FAST_PROFILE : {}), ...(profile === 'stolon-sync' ? SYNC_SPEC : {}) };
  const keepers = profile === 'stolon-sync' || profile === 'stolon-async3' ? 3 : 2;
  say(`${profile}: starting ${keepers} keepers (ip netns), 1 sentinel, 1 proxy, 1 etcd in ${dir}; spec ${JSON.stringify(spec)}`);
  const env = await startChaosEnv({ dir: join(dir, 'c'), clusterName: `bench-${profile}`, spec, keepers, sentinels: 1, proxies: 1, etcdMembers: 1, logLevel: opts.logLevel });
  running.add(env.stop);
  const cluster = env.cluster;
  const recorder = new Recorder({ proxies: () => [cluster.proxyClientConfig(0)], writers: 1, maxRunMs: 4 * 3_600_000 });
  beds.push({ profile, env, recorder, cycle: 0 });
  recorder.start();
}

/** One fault cycle on `bed`, as run `i` of its profile. */
async function stolonRun(bed: StolonBed, fault: StolonFault, i: number, say: (s: string) => void): Promise<Run> {
  const r = await runFaultCycle(bed.env.target, bed.recorder, fault, { cycle: bed.cycle++ });
  say(`${bed.profile} run ${i}: ${describeCycle(r)}`);
  if (r.healthyAt === null || r.error !== undefined) {
    throw new Error(`${bed.profile}: the cluster did not recover from ${fault} (${r.error ?? r.unhealthyReason})`);
  }
  return {
    profile: bed.profile,
    fault,
    run: i,
    outageMs: r.outage.ms,
    toNewPrimaryMs: r.recoveredAt === null ? null : r.recoveredAt - r.injectedAt,
    stuck: r.recoveredAt === null,
    healthyMs: r.timeToHealthyMs,
    lost: r.lost.length,
    phases: r.phases,
    detail: r.detail,
  };
}

/**
 * Runs `profiles` (stolon) one after the other, or with `opts.interleave` side by side: every
 * cluster started first, then for each fault and run number one cycle of each profile in turn,
 * so that slow drifts of the machine's load fall on all of them alike. Appends to `runs` as it goes.
 */
async function stolonProfiles(profiles: readonly StolonProfile[], opts: Options, say: (s: string) => void, dirs: string[], runs: Run[]): Promise<void> {
  const groups = opts.interleave ? [profiles] : profiles.map((p) => [p]);
  for (const group of groups) {
    const beds: StolonBed[] = [];
    try {
      for (const profile of group) {
        await startStolonBed(profile, opts, say, dirs, beds);
      }
      for (const fault of opts.faults) {
        for (let i = 1; i <= opts.runs; i++) {
          for (const bed of beds) {
            runs.push(await stolonRun(bed, fault, i, say));
          }
        }
      }
    } finally {
      for (const bed of beds) {
        await bed.recorder.stop();
        running.delete(bed.env.stop);
        await bed.env.stop();
      }
    }
  }
}

async function patroniRun(env: PatroniEnv, recorder: Recorder, fault: PatroniFault): Promise<Omit<Run, 'profile' | 'run'>> {
  await recorder.waitForProxyAcks(10, 30_000);
  const leader = await env.leaderIndex();
  if (leader < 0) {
    throw new Error('no Patroni leader');
  }
  const firstIndex = recorder.acked.length;
  const before = recorder.acked.filter((a) => a.ackedAt >= Date.now() - 2000);
  const keys = new Set(before.map((a) => serverKey(a.server)));
  const postmasters = new Set(before.map((a) => `${serverKey(a.server)}@${a.server.postmasterStart}`));
  const startedAt = Date.now();
  if (fault === 'killPrimaryNode') {
    await env.killNode(leader);
  } else {
    await env.crashPostgres(leader);
  }
  const injectedAt = Date.now();
  let recoveredAt: number | null = null;
  for (let scan = firstIndex; recoveredAt === null && Date.now() < injectedAt + 180_000; ) {
    for (; scan < recorder.acked.length; scan++) {
      const a = recorder.acked[scan]!;
      const fresh = fault === 'killPrimaryNode' ? !keys.has(serverKey(a.server)) : !postmasters.has(`${serverKey(a.server)}@${a.server.postmasterStart}`);
      if (a.sentAt >= injectedAt && fresh) {
        recoveredAt = a.ackedAt;
        break;
      }
    }
    await sleep(50);
  }
  if (fault === 'killPrimaryNode') {
    await env.startNode(leader);
  }
  const endedAt = fault === 'killPrimaryNode' ? Date.now() : injectedAt;
  const healthyAt = await env.waitHealthy(240_000);
  await sleep(1000);
  const end = Date.now();
  const from = startedAt - 2000;
  const outage = longestGap(
    recorder.acked.filter((a) => a.ackedAt >= from && a.ackedAt <= end),
    from,
    end,
  );
  return {
    fault,
    outageMs: outage.ms,
    toNewPrimaryMs: recoveredAt === null ? null : recoveredAt - injectedAt,
    stuck: recoveredAt === null,
    healthyMs: healthyAt === null ? null : healthyAt - endedAt,
    lost: 0,
    phases: null,
    detail: fault === 'killPrimaryNode' ? `SIGKILL patroni${leader} and its postmaster` : `SIGKILL postmaster of patroni${leader}`,
  };
}

async function patroniProfile(profile: 'patroni-default' | 'patroni-aggressive', opts: Options, say: (s: string) => void, dirs: string[]): Promise<Run[]> {
  const timings = profile === 'patroni-default' ? PATRONI_DEFAULT : opts.aggressive;
  const checks = profile === 'patroni-default' ? HAPROXY_DEFAULT : HAPROXY_AGGRESSIVE;
  const dir = await makeTempDir(`stolon-bench-failover-${profile}-`);
  dirs.push(dir);
  say(`${profile}: starting 2 Patroni 3.0.2 nodes (ttl ${timings.ttl}, loop_wait ${timings.loopWait}, retry_timeout ${timings.retryTimeout}), HAProxy (inter ${checks.interMs} ms, fall ${checks.fall}, rise ${checks.rise}), 1 etcd in ${dir}`);
  let env: PatroniEnv | undefined;
  let recorder: Recorder | undefined;
  const runs: Run[] = [];
  try {
    env = await startPatroniEnv({ dir, timings, haproxy: checks });
    const e = env;
    running.add(e.stop);
    await query(e.clientConfig(), RECORDER_TABLES_SQL);
    // The replica must have the tables before the first fault (it streams once the leader's next
    // loop has created its slot).
    if ((await e.waitHealthy(120_000, 0)) === null) {
      throw new Error('the Patroni replica did not catch up with the leader within 120 s');
    }
    recorder = new Recorder({ proxies: () => [e.clientConfig()], writers: 1, maxRunMs: 4 * 3_600_000 });
    recorder.start();
    for (const fault of PATRONI_FAULTS.filter((f) => (opts.faults as readonly string[]).includes(f))) {
      for (let i = 1; i <= opts.runs; i++) {
        const r = await patroniRun(e, recorder, fault);
        say(`${profile} run ${i}: ${fault}: ${r.detail}; outage ${r.outageMs} ms${r.stuck ? ' (writes did NOT resume within 180 s)' : ''}; healthy ${r.healthyMs ?? 'NOT'} ms after the fault ended`);
        runs.push({ profile, run: i, ...r });
        if (r.healthyMs === null) {
          throw new Error(`${profile}: the Patroni cluster did not recover from ${fault}; logs:\n${e.logs().split('\n').slice(-60).join('\n')}`);
        }
      }
    }
  } finally {
    await recorder?.stop();
    if (env !== undefined) {
      running.delete(env.stop);
      await env.stop();
    }
  }
  return runs;
}

/** Runs taken from an earlier result line (`--reuse`). */
interface Reused {
  readonly file: string;
  readonly date: string;
  readonly profiles: readonly Profile[];
  readonly runs: readonly Run[];
}

/**
 * Reads the runs of the profiles not measured now from result line `file`.
 * @throws Error naming the file and what is wrong with it (unreadable, not a bench:failover
 *   result, no runs of the missing profiles).
 */
async function loadReused(file: string, measuring: readonly Profile[]): Promise<Reused> {
  let parsed: { date?: unknown; runs?: unknown };
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as { date?: unknown; runs?: unknown };
  } catch (err) {
    throw new Error(`--reuse: cannot read ${file} as a bench:failover result line: ${(err as Error).message}`);
  }
  if (typeof parsed.date !== 'string' || !Array.isArray(parsed.runs)) {
    throw new Error(`--reuse: ${file} has no "date" and "runs": not a bench:failover result line`);
  }
  const runs = (parsed.runs as Run[]).filter(
    (r) => (PROFILES as readonly string[]).includes(r.profile) && !measuring.includes(r.profile) && typeof r.outageMs === 'number',
  );
  if (runs.length === 0) {
    throw new Error(`--reuse: ${file} has no runs of a profile outside --profiles (${measuring.join(',')})`);
  }
  return { file, date: parsed.date, profiles: PROFILES.filter((p) => runs.some((r) => r.profile === p)), runs };
}

interface Stat {
  readonly runs: number;
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  readonly stuck: number;
  /** p50 of `toNewPrimaryMs` over the runs where writes resumed. */
  readonly toNewP50: number;
  /** Acknowledged writes lost, summed. */
  readonly lost: number;
}

function stat(rs: readonly Run[]): Stat | undefined {
  if (rs.length === 0) {
    return undefined;
  }
  const xs = rs.map((r) => r.outageMs);
  const toNew = rs.flatMap((r) => (r.toNewPrimaryMs === null ? [] : [r.toNewPrimaryMs]));
  return {
    runs: rs.length,
    p50: percentile(xs, 50),
    p95: percentile(xs, 95),
    max: Math.max(...xs),
    stuck: rs.filter((r) => r.stuck).length,
    toNewP50: percentile(toNew, 50),
    lost: rs.reduce((n, r) => n + r.lost, 0),
  };
}

const s1 = (ms: number): string => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : '-');

/**
 * The synchronous-mode comparison, per fault measured with both `stolon-sync` and `stolon-async3`:
 * "sync − async p50 = X ms (target ≤ 500): PASS/NOT MET", plus the p95s and lost writes of the
 * synchronous runs (which must be 0: strict mode never acknowledges a commit no synchronous
 * standby has). `[]` when the pair was not run.
 */
function syncGapLines(runs: readonly Run[]): string[] {
  const out: string[] = [];
  for (const fault of STOLON_FAULTS) {
    const sy = stat(runs.filter((r) => r.fault === fault && r.profile === 'stolon-sync'));
    const as = stat(runs.filter((r) => r.fault === fault && r.profile === 'stolon-async3'));
    if (sy === undefined || as === undefined) {
      continue;
    }
    const d = Math.round(sy.p50 - as.p50);
    // Commits still blocked after the proxies were routed: writes resumed this long after `proxiesRouted`.
    const afterRouting = (profile: Profile): string => {
      const xs = runs.flatMap((r) =>
        r.profile === profile && r.fault === fault && r.toNewPrimaryMs !== null && r.phases?.proxiesRouted !== undefined ? [r.toNewPrimaryMs - r.phases.proxiesRouted] : [],
      );
      return xs.length === 0 ? '-' : `${Math.round(percentile(xs, 50))} ms`;
    };
    out.push(
      `${fault}: sync − async p50 = ${d} ms (target ≤ ${SYNC_GAP_TARGET_MS}): ${d <= SYNC_GAP_TARGET_MS ? 'PASS' : 'NOT MET'} ` +
        `(sync p50 ${Math.round(sy.p50)} / p95 ${Math.round(sy.p95)} ms over ${sy.runs} runs, ${sy.lost} acknowledged writes lost${sy.lost > 0 ? ': FAIL' : ''}; ` +
        `async p50 ${Math.round(as.p50)} / p95 ${Math.round(as.p95)} ms over ${as.runs} runs; 3 keepers each; ` +
        `first write on the new primary after the proxies were routed, p50: sync ${afterRouting('stolon-sync')}, async ${afterRouting('stolon-async3')})`,
    );
  }
  return out;
}

function render(
  opts: Options,
  measured: readonly Run[],
  skipped: Readonly<Partial<Record<Profile, string>>>,
  date: string,
  minutes: string,
  load: { readonly before: string; readonly max: number },
  reused?: Reused,
): { text: string; markdown: string } {
  const runs = [...measured, ...(reused?.runs ?? [])];
  const t: string[] = ['', `bench:failover — write outage through the router (${date}, ${minutes} min)`, `machine: ${describeMachine(machineInfo())}`, ''];
  const md: string[] = [];
  const command = `npm run bench:failover -- ${opts.argv.filter((a) => a !== '--write-doc').join(' ')}`.trimEnd().replace(/ --$/, '');
  const loadText = `1-minute load average ${load.before} before the run, at most ${load.max.toFixed(2)} between runs (the benchmark's own clusters included)`;
  md.push(`Measured ${date} with \`${command}\` on ${describeMachine(machineInfo())} in ${minutes} min; ${loadText}.`);
  t.push(loadText);
  if (reused !== undefined) {
    const line = `Rows of ${reused.profiles.join(', ')}: reused from \`${reused.file}\` (measured ${reused.date}), not re-run.`;
    md.push('', line);
    t.push(line.replaceAll('`', ''));
  }
  md.push('');
  md.push('| fault | profile | runs | outage p50 (s) | p95 (s) | max (s) | to the new primary p50 (s) | acknowledged writes lost | writes never resumed |');
  md.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  t.push(`${'fault'.padEnd(22)}${'profile'.padEnd(20)}${'runs'.padEnd(6)}${'p50 s'.padEnd(8)}${'p95 s'.padEnd(8)}${'max s'.padEnd(8)}${'to new p50 s'.padEnd(14)}${'lost'.padEnd(7)}stuck`);
  for (const fault of STOLON_FAULTS) {
    for (const profile of PROFILES) {
      const st = stat(runs.filter((r) => r.fault === fault && r.profile === profile));
      if (st === undefined) {
        continue;
      }
      const lost = profile.startsWith('patroni') ? 'not checked' : String(st.lost);
      t.push(`${fault.padEnd(22)}${profile.padEnd(20)}${String(st.runs).padEnd(6)}${s1(st.p50).padEnd(8)}${s1(st.p95).padEnd(8)}${s1(st.max).padEnd(8)}${s1(st.toNewP50).padEnd(14)}${lost.padEnd(7)}${st.stuck}`);
      md.push(`| \`${fault}\` | ${profile} | ${st.runs} | ${s1(st.p50)} | ${s1(st.p95)} | ${s1(st.max)} | ${s1(st.toNewP50)} | ${lost} | ${st.stuck} |`);
    }
  }
  const compared = runs.some((r) => DEFAULT_PROFILES.includes(r.profile));
  if (compared) {
    t.push('', 'ratio stolon / Patroni (p50):');
    md.push('', '**Ratio stolon / Patroni, p50 write outage** (lower is better for stolon):', '');
    md.push('| fault | stolon default | Patroni default | ratio | stolon fast | Patroni aggressive | ratio |');
    md.push('|---|---:|---:|---:|---:|---:|---:|');
  }
  for (const fault of compared ? PATRONI_FAULTS : []) {
    const p = (profile: Profile) => stat(runs.filter((r) => r.fault === fault && r.profile === profile))?.p50;
    const [sd, pd, sf, pa] = [p('stolon-default'), p('patroni-default'), p('stolon-fast'), p('patroni-aggressive')];
    const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? '-' : (a / b).toFixed(2));
    const sec = (x: number | undefined) => (x === undefined ? '-' : `${s1(x)} s`);
    t.push(`  ${fault}: stolon default ${sec(sd)} / Patroni default ${sec(pd)} = ${ratio(sd, pd)}; stolon fast ${sec(sf)} / Patroni aggressive ${sec(pa)} = ${ratio(sf, pa)}`);
    md.push(`| \`${fault}\` | ${sec(sd)} | ${sec(pd)} | ${ratio(sd, pd)} | ${sec(sf)} | ${sec(pa)} | ${ratio(sf, pa)} |`);
  }
  const phaseLine = (profile: Profile, fault: StolonFault): string | undefined => {
    const rs = runs.filter((r) => r.profile === profile && r.fault === fault && r.phases !== null);
    if (rs.length === 0) {
      return undefined;
    }
    const keys = ['primaryLastSeen', 'declaredFailed', 'proxiesFenced', 'promoted', 'proxiesRouted'] as const;
    return keys
      .map((k) => {
        const xs = rs.flatMap((r) => (r.phases?.[k] === undefined ? [] : [r.phases[k]]));
        return xs.length === 0 ? undefined : `${k} ${percentile(xs, 50)}`;
      })
      .filter((x) => x !== undefined)
      .join(', ');
  };
  t.push('', 'stolon median failover phases, ms after the fault (from `stolonctl events`):');
  md.push('', 'Where stolon\'s time goes — median failover phases, ms after the fault was injected (from the sentinel\'s failover events):', '');
  for (const profile of PROFILES.filter(isStolon)) {
    for (const fault of STOLON_FAULTS) {
      const line = phaseLine(profile, fault);
      if (line !== undefined) {
        t.push(`  ${profile} ${fault}: ${line}`);
        md.push(`- ${profile}, \`${fault}\`: ${line}`);
      }
    }
  }
  const gap = syncGapLines(runs);
  if (gap.length > 0) {
    t.push('', 'synchronous (stolon-sync) against asynchronous (stolon-async3) replication, p50 write outage:', ...gap.map((l) => `  ${l}`));
    md.push('', '**Synchronous against asynchronous replication** (3 keepers each, default spec):', '', ...gap.map((l) => `- ${l}`));
  }
  for (const [profile, why] of Object.entries(skipped)) {
    t.push(`${profile}: NOT RUN: ${why}`);
    md.push('', `**${profile} was not run:** ${why}`);
  }
  return { text: t.join('\n'), markdown: md.join('\n') };
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:failover: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`bench:failover: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  const say = (s: string) => process.stdout.write(`[bench:failover ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const started = Date.now();
  const dirs: string[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await Promise.allSettled([...running].map((stop) => stop()));
      for (const d of dirs) {
        if (opts.keep) {
          say(`kept ${d}`);
        } else {
          await removeDir(d);
        }
      }
    })());
  const runs: Run[] = [];
  const skipped: Partial<Record<Profile, string>> = {};
  const load = trackLoad();
  let reused: Reused | undefined;
  if (opts.reuse !== undefined) {
    try {
      reused = await loadReused(opts.reuse, opts.profiles);
    } catch (err) {
      process.stderr.write(`bench:failover: ${(err as Error).message}\n`);
      return 2;
    }
    say(`reusing ${reused.runs.length} runs of ${reused.profiles.join(', ')} from ${opts.reuse} (${reused.date})`);
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: stopping the clusters; what was measured so far:`);
      // An interrupted run still reports (and records) what it measured.
      const date = new Date().toISOString().slice(0, 10);
      process.stdout.write(`${render(opts, runs, { ...skipped }, date, ((Date.now() - started) / 60_000).toFixed(1), load(), reused).text}\n`);
      void writeResultLine('failover', stamp, { date, machine: machineInfo(), interruptedBy: sig, runs, skipped })
        .catch(() => undefined)
        .then(cleanup)
        .finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }
  try {
    const netns = await netnsUnavailableReason();
    const patroni = await patroniUnavailableReason();
    const stolon = opts.profiles.filter(isStolon);
    if (stolon.length > 0 && netns !== undefined && opts.faults.includes('partitionPrimary')) {
      throw new Error(`partitionPrimary needs ip netns: ${netns}; run without it (--faults)`);
    }
    await stolonProfiles(stolon, opts, say, dirs, runs);
    for (const profile of opts.profiles.filter((p) => !isStolon(p))) {
      if (patroni !== undefined) {
        skipped[profile] = patroni;
        say(`${profile}: NOT RUN: ${patroni}`);
      } else {
        try {
          runs.push(...(await patroniProfile(profile, opts, say, dirs)));
        } catch (err) {
          skipped[profile] = `it failed: ${(err as Error).message.split('\n')[0]}`;
          say(`${profile}: FAILED: ${(err as Error).stack ?? String(err)}`);
        }
      }
    }
    const date = new Date().toISOString().slice(0, 10);
    const minutes = ((Date.now() - started) / 60_000).toFixed(1);
    const { text, markdown } = render(opts, runs, skipped, date, minutes, load(), reused);
    process.stdout.write(`${text}\n`);
    const file = await writeResultLine('failover', stamp, {
      date,
      machine: machineInfo(),
      options: { runs: opts.runs, faults: opts.faults, profiles: opts.profiles, patroniAggressive: opts.aggressive, fast: FAST_PROFILE },
      load: load(),
      runs,
      ...(reused !== undefined ? { reused: { file: reused.file, date: reused.date, profiles: reused.profiles } } : {}),
      skipped,
    });
    say(`result line: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('failover', markdown);
      say('docs/benchmarks.md updated');
    }
    const syncLost = runs.filter((r) => r.profile === 'stolon-sync').reduce((n, r) => n + r.lost, 0);
    if (syncLost > 0) {
      say(`FAIL: stolon-sync lost ${syncLost} acknowledged writes; synchronous replication must lose none`);
    }
    return Object.keys(skipped).length === 0 && syncLost === 0 ? 0 : 1;
  } catch (err) {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
