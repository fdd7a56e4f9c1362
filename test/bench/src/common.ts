/**
 * What every benchmark under test/bench shares (docs/design.md#benchmarks): the machine description that
 * goes next to each figure, bounded child commands that are killed on timeout and on Ctrl-C, one
 * JSON result line per run under `test/bench/results/` (gitignored), and the regeneration of a
 * benchmark's section of `docs/benchmarks.md` between `<!-- bench:<name>:start -->` and
 * `<!-- bench:<name>:end -->`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file is test/bench/{src,dist}/common.*). */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const RESULTS_DIR = join(REPO, 'test', 'bench', 'results');
export const BENCH_DOC = join(REPO, 'docs', 'benchmarks.md');
export const CHAOS_DOC = join(REPO, 'docs', 'chaos.md');

export interface MachineInfo {
  readonly nproc: number;
  readonly memBytes: number;
  readonly cpuModel: string;
  readonly kernel: string;
  readonly node: string;
}

export function machineInfo(): MachineInfo {
  return {
    nproc: availableParallelism(),
    memBytes: totalmem(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.version,
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.nproc} CPUs (${m.cpuModel}), ${gib(m.memBytes)} GiB RAM, Linux ${m.kernel}, Node ${m.node}`;
}

export const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
const gib = (bytes: number): string => (bytes / 2 ** 30).toFixed(1);
export const secs = (ms: number): string => (ms / 1000).toFixed(2);

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

/** UTC timestamp usable in a file name: `2026-11-23T11-23-07Z`. */
export function fileStamp(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
}

export interface CommandOptions {
  readonly cmd: string;
  readonly args: readonly string[];
  /** Merged over the environment minus every `PG*` variable of the caller. */
  readonly env?: Readonly<Record<string, string>>;
  /** Run as this OS identity (when root). */
  readonly identity?: OsIdentity | null;
  /** Killed (SIGTERM, then SIGKILL after 5 s) when still running after this long. */
  readonly timeoutMs: number;
}

export interface CommandOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Last 64 KiB of each. */
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
  /** Wall-clock ms from spawn to exit. */
  readonly ms: number;
}

const running = new Set<ChildProcess>();
const OUTPUT_LIMIT = 64 * 1024;

/**
 * Runs a command without a shell and resolves when it exits (never rejects for a non-zero exit:
 * the caller decides). Secrets go in `env`, never in `args`.
 */
export function runCommand(opts: CommandOptions): Promise<CommandOutcome> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // The caller's PGHOST, PGPASSWORD… must not change what the client programs do.
    if (v !== undefined && !k.startsWith('PG')) {
      env[k] = v;
    }
  }
  Object.assign(env, opts.env);
  const started = Date.now();
  return new Promise((res, rej) => {
    const child = spawn(opts.cmd, [...opts.args], {
      cwd: '/',
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.identity ? { uid: opts.identity.uid, gid: opts.identity.gid } : {}),
    });
    running.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), 5000);
    }, opts.timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout = (stdout + d).slice(-OUTPUT_LIMIT);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-OUTPUT_LIMIT);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      rej(new Error(`cannot run ${opts.cmd}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      running.delete(child);
      res({ code, signal, stdout, stderr, timedOut, ms: Date.now() - started });
    });
  });
}

/** SIGKILLs every command started by {@link runCommand} that is still running. */
export function killRunningCommands(): void {
  for (const c of running) {
    c.kill('SIGKILL');
  }
}

/** Throws with the command's last output lines unless it exited 0. */
export function assertSucceeded(what: string, r: CommandOutcome): void {
  if (r.code === 0) {
    return;
  }
  const how = r.timedOut ? `timed out after ${secs(r.ms)} s` : r.signal !== null ? `killed by ${r.signal}` : `exit ${r.code}`;
  const tail = (r.stderr || r.stdout).trimEnd().split('\n').slice(-15).join('\n');
  throw new Error(`${what} failed (${how}):\n${tail}`);
}

export interface OsIdentity {
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * The identity PostgreSQL client programs run as: `user` when this process is root (as the
 * keeper does), else null (run as ourselves).
 */
export async function osIdentity(user: string): Promise<OsIdentity | null> {
  if (process.getuid?.() !== 0) {
    return null;
  }
  const id = async (flag: string): Promise<number> => {
    const r = await runCommand({ cmd: 'id', args: [flag, user], timeoutMs: 10_000 });
    assertSucceeded(`id ${flag} ${user}`, r);
    return Number.parseInt(r.stdout.trim(), 10);
  };
  return { user, uid: await id('-u'), gid: await id('-g') };
}

/**
 * Apparent size in bytes of everything under `path` (`du -sb`). A running PostgreSQL or keeper
 * renames and removes files under it (a config written to a temporary file and renamed, WAL
 * segments recycled): a `du` that failed only because a file vanished while it walked is run
 * again, up to 3 times.
 * @throws Error when `du` fails otherwise, or still fails after 3 tries
 */
export async function diskUsage(path: string): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const r = await runCommand({ cmd: 'du', args: ['-sb', path], timeoutMs: 120_000 });
    const vanished = r.code !== 0 && r.stderr.trim() !== '' && r.stderr.trim().split('\n').every((l) => /No such file or directory/.test(l));
    if (!vanished || attempt === 3) {
      assertSucceeded(`du -sb ${path}`, r);
      return Number.parseInt(r.stdout.split('\t')[0] ?? '', 10);
    }
  }
}

/** Writes `result` as one JSON line to `test/bench/results/<name>-<stamp>.json`; returns the path. */
export async function writeResultLine(name: string, stamp: string, result: unknown): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}-${stamp}.json`);
  await writeFile(file, `${JSON.stringify(result)}\n`);
  return file;
}

/**
 * Reports a failed benchmark on stderr (`bench:<name> failed: <stack>`) and, when a cluster ran,
 * saves its component logs as `test/bench/results/<name>-<stamp>-failed.json` and names the file.
 * Never throws (a log that cannot be saved is only not named).
 * @param logs the cluster's logs, or undefined when no cluster was started
 */
export async function reportBenchFailure(name: string, stamp: string, err: unknown, logs: (() => string) | undefined): Promise<void> {
  process.stderr.write(`bench:${name} failed: ${(err as Error).stack ?? String(err)}\n`);
  if (logs !== undefined) {
    const file = await writeResultLine(name, `${stamp}-failed`, { error: (err as Error).message, logs: logs() }).catch(() => undefined);
    if (file !== undefined) {
      process.stderr.write(`component logs saved in ${file}\n`);
    }
  }
}

/**
 * Replaces the text between `<!-- bench:<name>:start -->` and `<!-- bench:<name>:end -->` in
 * `doc` (atomically: temp file, rename).
 * @param doc @default docs/benchmarks.md
 * @throws Error naming the missing marker, so the fix is to add the pair where the section goes.
 */
export async function updateDocSection(name: string, markdown: string, doc = BENCH_DOC): Promise<void> {
  const start = `<!-- bench:${name}:start -->`;
  const end = `<!-- bench:${name}:end -->`;
  const text = await readFile(doc, 'utf8');
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i < 0 || j < i) {
    throw new Error(`${doc} has no "${start}" … "${end}" pair (in that order); add both lines where the section belongs`);
  }
  const next = `${text.slice(0, i + start.length)}\n${markdown.trimEnd()}\n${text.slice(j)}`;
  const tmp = `${doc}.${process.pid}.tmp`;
  await writeFile(tmp, next);
  await rename(tmp, doc);
}

/**
 * CPU time (user + system, ms) a process has used itself, children excluded, from
 * `/proc/<pid>/stat`; undefined when it is gone or there is no /proc. Assumes USER_HZ = 100,
 * which Linux uses on every common architecture.
 */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is the 1st, utime the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts watching the 1-minute load average (every 5 s, unref'd timer) for the length of a run.
 * @returns the load averages before the run (1, 5, 15 min, as text) and the highest 1-minute one seen since
 */
export function trackLoad(): () => { before: string; max: number } {
  const before = loadavg().map((x) => x.toFixed(2)).join(', ');
  let max = loadavg()[0]!;
  const timer = setInterval(() => {
    max = Math.max(max, loadavg()[0]!);
  }, 5000);
  timer.unref();
  return () => ({ before, max });
}
