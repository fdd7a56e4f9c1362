/**
 * `npm run test:chaos`: the chaos suite's long form. For each replication mode (sync,
 * then async by default) a fresh chaos environment (3 keepers in `ip netns` namespaces, 2
 * sentinels, 2 proxies, a 3-member etcd) runs the recorder's writers (2 through the proxies, one
 * direct writer per keeper) and N fault cycles, the faults taken round-robin so each gets the
 * same share (default 8 cycles per fault in all, split between the modes; `--faults` picks
 * some). Every cycle is
 * bounded (writes must resume within 60 s, healthy within 90 s) and the whole run by
 * `--max-minutes`; a cycle that leaves the cluster unhealthy ends its mode's loop.
 *
 * Checks, per cycle (test/harness/src/chaos/checker.ts):
 * - sync mode: no acknowledged write missing on the primary;
 * - async mode: lost writes are reported, and how far past the fork their WAL reached must stay
 *   within `maxStandbyLag` (1 MiB by default);
 * - both: no two servers accepted proxy writes in overlapping windows; healthy within 30 s
 *   after the fault ended; writes through the proxies resumed.
 * Direct-writer split brain (clients bypassing the proxy: a deposed primary that took a direct
 * write had not fenced itself) fails the run too, unless `--no-self-fencing` (then it is only
 * reported, for comparing with a keeper built without the fencer).
 *
 * Prints a table per mode (cycles, outage p50/p95/max, acknowledged writes lost, split-brain
 * windows, time to healthy, median failover phases); writes one JSON line under
 * test/bench/results/; `--write-doc` regenerates the bench:chaos section of docs/chaos.md. Exit
 * code 1 when a check failed.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  FAULTS,
  FAULT_NAMES,
  Recorder,
  binPath,
  describeCycle,
  makeTempDir,
  netnsUnavailableReason,
  removeDir,
  renderMarkdown,
  renderText,
  runFaultCycle,
  startChaosEnv,
  summarize,
  type ChaosEnv,
  type CycleResult,
  type FaultName,
} from '@stolon-ts/harness';
import { CHAOS_DOC, describeMachine, fileStamp, machineInfo, updateDocSection, writeResultLine } from './common.js';

const MODES = ['sync', 'async'] as const;
type Mode = (typeof MODES)[number];
const HEALTHY_WITHIN_MS = 30_000;
const MAX_STANDBY_LAG = 1024 * 1024;

const SPECS: Record<Mode, Record<string, unknown>> = {
  sync: { initMode: 'new', synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 1 },
  async: { initMode: 'new' },
};

const USAGE = `usage: npm run test:chaos -- [--cycles N] [--faults LIST] [--modes sync,async] [--max-minutes M] [--no-self-fencing] [--write-doc] [--keep] [--log-level L]
  --cycles N        fault cycles in all, split evenly between the modes, faults round-robin (default 8 per fault)
  --faults LIST     only these faults, comma-separated (default all: ${FAULT_NAMES.join(', ')})
  --modes LIST      replication modes to run, in order (default sync,async)
  --max-minutes M   stop starting new cycles after M minutes (default 120)
  --no-self-fencing only report, do not fail on, direct writes taken by a deposed primary
  --write-doc       regenerate the bench:chaos section of docs/chaos.md
  --keep            keep the temp directories
  --log-level L     components' log level (default info)`;

interface Options {
  readonly cycles: number;
  readonly faults: readonly FaultName[];
  readonly modes: readonly Mode[];
  readonly maxMinutes: number;
  readonly selfFencing: boolean;
  readonly writeDoc: boolean;
  readonly keep: boolean;
  readonly logLevel: string;
  readonly argv: readonly string[];
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      cycles: { type: 'string' },
      faults: { type: 'string', default: FAULT_NAMES.join(',') },
      modes: { type: 'string', default: 'sync,async' },
      'max-minutes': { type: 'string', default: '120' },
      'self-fencing': { type: 'boolean', default: true },
      'no-self-fencing': { type: 'boolean', default: false },
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
  const faults = values.faults.split(',').map((f) => f.trim()).filter((f) => f !== '');
  for (const f of faults) {
    if (!(FAULT_NAMES as readonly string[]).includes(f)) {
      throw new Error(`--faults: "${f}" is not a fault; the faults are ${FAULT_NAMES.join(', ')}`);
    }
  }
  if (faults.length === 0) {
    throw new Error('--faults: give at least one fault');
  }
  const cycles = Number(values.cycles ?? String(8 * faults.length));
  if (!Number.isInteger(cycles) || cycles < 1 || cycles > 1000) {
    throw new Error(`--cycles: "${values.cycles}" must be a whole number from 1 to 1000`);
  }
  const modes = values.modes.split(',').map((m) => m.trim());
  for (const m of modes) {
    if (!(MODES as readonly string[]).includes(m)) {
      throw new Error(`--modes: "${m}" is not one of ${MODES.join(', ')}`);
    }
  }
  if (modes.length === 0) {
    throw new Error('--modes: give at least one mode');
  }
  const maxMinutes = Number(values['max-minutes']);
  if (!Number.isFinite(maxMinutes) || maxMinutes <= 0) {
    throw new Error(`--max-minutes: "${values['max-minutes']}" must be a positive number`);
  }
  return {
    cycles,
    faults: faults as FaultName[],
    modes: modes as Mode[],
    maxMinutes,
    selfFencing: values['self-fencing'] && !values['no-self-fencing'],
    writeDoc: values['write-doc'],
    keep: values.keep,
    logLevel: values['log-level'],
    argv,
  };
}

/** What a cycle violated, per the rules of its mode (empty: it passed). */
function violations(r: CycleResult, mode: Mode, selfFencing: boolean): string[] {
  const v: string[] = [];
  if (r.error !== undefined) {
    v.push(r.error);
  }
  if (r.recoveredAt === null) {
    v.push('writes through the proxies did not resume within 60 s');
  }
  if (r.timeToHealthyMs === null || r.timeToHealthyMs > HEALTHY_WITHIN_MS) {
    v.push(`not healthy within ${HEALTHY_WITHIN_MS} ms (${r.timeToHealthyMs ?? `never: ${r.unhealthyReason}`})`);
  }
  if (mode === 'sync' && r.lost.length > 0) {
    v.push(`${r.lost.length} acknowledged writes lost`);
  }
  if (mode === 'async' && r.lost.length > 0 && (r.lostBytesPastFork === null || r.lostBytesPastFork > MAX_STANDBY_LAG)) {
    v.push(`${r.lost.length} acknowledged writes lost, ${r.lostBytesPastFork ?? 'unknown'} bytes past the fork (maxStandbyLag ${MAX_STANDBY_LAG})`);
  }
  if (FAULTS[r.fault].expect === 'no-failover' && (r.phases !== null || r.primaryAfter !== r.primaryBefore)) {
    // Also an aborted one: declaring the primary failed fences the proxies (a write stall).
    v.push(
      `expected no failover, but ${r.primaryAfter !== r.primaryBefore ? `the primary moved ${r.primaryBefore} → ${r.primaryAfter}` : 'the sentinel declared the primary failed'}` +
        (r.phases !== null ? ` (failover event, ms after the fault: ${Object.entries(r.phases).map(([k, ms]) => `${k} ${ms}`).join(', ')})` : ''),
    );
  }
  if (r.proxySplitBrain.length > 0) {
    v.push(`split brain through the proxies: ${r.proxySplitBrain.map((w) => `${w.a} and ${w.b} for ${w.ms} ms`).join('; ')}`);
  }
  if (selfFencing && (r.anySplitBrain.length > 0 || r.deposedDirectWrites.length > 0)) {
    v.push(`a deposed primary accepted ${r.deposedDirectWrites.length} direct writes (split brain for clients bypassing the proxy)`);
  }
  return v;
}

/** The JSON form of a cycle (bigints as strings, lost writes cut to the first 20). */
function jsonCycle(r: CycleResult, mode: Mode, v: readonly string[]): unknown {
  return {
    mode,
    ...r,
    lost: r.lost.length,
    lostFirst: r.lost.slice(0, 20).map((w) => ({ writer: w.writer, seq: w.seq, ackedAt: w.ackedAt, lsn: w.lsn.toString(), server: w.server })),
    deposedDirectWrites: r.deposedDirectWrites.length,
    violations: v,
  };
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`test:chaos: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  for (const c of ['keeper', 'sentinel', 'proxy', 'stolonctl'] as const) {
    if (!existsSync(binPath(c))) {
      process.stderr.write(`test:chaos: ${binPath(c)} is missing; run \`npm run build\` first\n`);
      return 2;
    }
  }
  const why = await netnsUnavailableReason();
  if (why !== undefined) {
    process.stderr.write(`test:chaos: ip netns partitions are not available here: ${why}\n`);
    return 2;
  }
  const say = (s: string) => process.stdout.write(`[test:chaos ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const stamp = fileStamp();
  const deadline = Date.now() + opts.maxMinutes * 60_000;
  const started = Date.now();
  const dirs: string[] = [];
  let env: ChaosEnv | undefined;
  let recorder: Recorder | undefined;
  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await recorder?.stop();
      await env?.stop();
      for (const d of dirs) {
        if (opts.keep) {
          say(`kept ${d}`);
        } else {
          await removeDir(d);
        }
      }
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
    });
  }

  const results: { mode: Mode; r: CycleResult; v: string[] }[] = [];
  const notes: string[] = [];
  try {
    const perMode = opts.modes.map((_, i) => Math.floor(opts.cycles / opts.modes.length) + (i < opts.cycles % opts.modes.length ? 1 : 0));
    for (const [mi, mode] of opts.modes.entries()) {
      const n = perMode[mi]!;
      if (n === 0) {
        continue;
      }
      if (Date.now() > deadline) {
        notes.push(`${mode}: not run, --max-minutes ${opts.maxMinutes} reached`);
        break;
      }
      const dir = await makeTempDir(`stolon-chaos-${mode}-`);
      dirs.push(dir);
      say(`${mode}: starting a chaos environment in ${dir} (3 keepers in ip netns namespaces, 2 sentinels, 2 proxies, 3 etcd members)`);
      env = await startChaosEnv({ dir: join(dir, 'c'), clusterName: `chaos-${mode}`, spec: SPECS[mode], logLevel: opts.logLevel });
      const cluster = env.cluster;
      recorder = new Recorder({
        proxies: () => cluster.proxies.map((_, i) => cluster.proxyClientConfig(i)),
        direct: () => cluster.keepers.map((_, i) => cluster.directClientConfig(i)),
        // Bounded by the run's own limit (the recorder's default is 30 minutes).
        maxRunMs: opts.maxMinutes * 60_000,
      });
      recorder.start();
      for (let i = 0; i < n; i++) {
        if (Date.now() > deadline) {
          notes.push(`${mode}: stopped after ${i} of ${n} cycles, --max-minutes ${opts.maxMinutes} reached`);
          break;
        }
        const fault = opts.faults[i % opts.faults.length]!;
        const r = await runFaultCycle(env.target, recorder, fault, { cycle: i });
        const v = violations(r, mode, opts.selfFencing);
        results.push({ mode, r, v });
        say(`${mode} ${describeCycle(r)}${v.length > 0 ? `\n  VIOLATIONS: ${v.join('; ')}` : ''}`);
        if (r.healthyAt === null || r.error !== undefined) {
          notes.push(`${mode}: stopped after cycle ${i} (${fault}): the cluster did not recover (${r.error ?? r.unhealthyReason})`);
          process.stdout.write(`--- logs (tail) ---\n${cluster.logs().split('\n').slice(-120).join('\n')}\n`);
          break;
        }
      }
      await recorder.stop();
      say(`${mode}: ${recorder.proxyAcks().length} proxy writes and ${recorder.acked.length - recorder.proxyAcks().length} direct writes acknowledged; ${recorder.failed.length} failed attempts kept`);
      recorder = undefined;
      await env.stop();
      env = undefined;
    }

    const date = new Date().toISOString().slice(0, 10);
    const minutes = ((Date.now() - started) / 60_000).toFixed(1);
    const failedChecks = results.filter((x) => x.v.length > 0);
    const command = `npm run test:chaos -- ${opts.argv.filter((a) => a !== '--write-doc').join(' ')}`.trimEnd().replace(/ --$/, '');
    const text: string[] = ['', `test:chaos — ${results.length} fault cycles in ${minutes} min (${date})`, `machine: ${describeMachine(machineInfo())}`];
    const md: string[] = [
      `Measured ${date} with \`${command}\` on ${describeMachine(machineInfo())}: ${results.length} cycles in ${minutes} min. ` +
        'The machine was shared with other work while this ran, so outage and healthy times are pessimistic.',
    ];
    for (const mode of opts.modes) {
      const rs = results.filter((x) => x.mode === mode).map((x) => x.r);
      if (rs.length === 0) {
        continue;
      }
      const s = summarize(rs);
      text.push('', `${mode} replication (${rs.length} cycles):`, renderText(s));
      md.push('', `**${mode === 'sync' ? 'Synchronous' : 'Asynchronous'} replication** (${rs.length} cycles${mode === 'sync' ? ', min = max = 1 synchronous standby' : `, maxStandbyLag ${MAX_STANDBY_LAG} B`}):`, '', renderMarkdown(s));
    }
    text.push('', ...notes);
    text.push(failedChecks.length === 0 ? 'all checks passed' : `${failedChecks.length} cycles FAILED a check:`);
    for (const f of failedChecks) {
      text.push(`  ${f.mode} cycle ${f.r.cycle} ${f.r.fault}: ${f.v.join('; ')}`);
    }
    md.push('', ...notes.map((n) => `- ${n}`));
    md.push('', failedChecks.length === 0 ? 'All checks passed.' : `**${failedChecks.length} cycles failed a check:**`);
    for (const f of failedChecks) {
      md.push(`- ${f.mode} cycle ${f.r.cycle} \`${f.r.fault}\`: ${f.v.join('; ')}`);
    }
    process.stdout.write(`${text.join('\n')}\n`);
    const file = await writeResultLine('chaos', stamp, {
      date,
      machine: machineInfo(),
      options: { cycles: opts.cycles, faults: opts.faults, modes: opts.modes, maxMinutes: opts.maxMinutes, selfFencing: opts.selfFencing },
      cycles: results.map((x) => jsonCycle(x.r, x.mode, x.v)),
      notes,
    });
    say(`result line: ${file}`);
    if (opts.writeDoc) {
      await updateDocSection('chaos', md.join('\n'), CHAOS_DOC);
      say('docs/chaos.md updated');
    }
    return failedChecks.length === 0 && results.length > 0 ? 0 : 1;
  } catch (err) {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    if (env !== undefined) {
      process.stdout.write(`--- logs (tail) ---\n${env.cluster.logs().split('\n').slice(-120).join('\n')}\n`);
    }
    return 1;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
