/**
 * Child processes of the test harness (docs/design.md#the-harness): started in their own process group,
 * output captured line by line with a `[name] ` prefix (and optionally appended to a log file),
 * and registered so that `stopAll()` and a `process.on('exit')` hook kill whatever survives a
 * test, including grandchildren such as postgres started by a keeper.
 */
import { spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { scaleTimeout } from './wait.js';

/** How to start a child process. */
export interface StartProcessOptions {
  /** Short label used as the log prefix (`[name] `), e.g. `etcd` or `keeper k1`. */
  readonly name: string;
  /** Executable (absolute path or looked up in PATH). */
  readonly cmd: string;
  /** Arguments, passed as is (no shell). */
  readonly args: readonly string[];
  /** Extra environment variables, merged over the test process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory. @default the test process's */
  readonly cwd?: string;
  /** When given, every captured (prefixed) line is also appended to this file. */
  readonly logFile?: string;
}

/** A running (or exited) child process and its captured output. */
export interface ProcessHandle {
  readonly name: string;
  /** OS pid of the child, which is also its process group id. */
  readonly pid: number;
  /** Resolves with the exit code (null when killed by a signal) once the child has exited. */
  readonly exited: Promise<number | null>;
  /** All output captured so far (stdout and stderr interleaved), one `[name] `-prefixed line each. */
  logs(): string;
  /**
   * Resolves when a captured line matches `pattern` (lines already captured count).
   * Timeout scaled by the harness timeout factor.
   * @throws Error with the last 30 log lines on timeout, or when the process exits first.
   */
  waitForLog(pattern: RegExp | string, timeoutMs: number): Promise<void>;
  /**
   * Sends `signal` to the child, waits up to `timeoutMs` for it to exit, then SIGKILLs its whole
   * process group; afterwards SIGKILLs the group anyway so no grandchild survives. Resolves once
   * the child has exited. Safe to call on an exited process.
   * @param signal @default 'SIGTERM'
   * @param timeoutMs @default 10000
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<void>;
  /** SIGKILLs the whole process group; resolves once the child has exited. */
  kill(): Promise<void>;
  /** SIGSTOPs the child itself (not its group: a paused keeper leaves its postgres running). */
  pause(): void;
  /** SIGCONTs the child. */
  resume(): void;
  /**
   * SIGSTOPs the child's whole process group (a keeper and whatever it runs in its group; not
   * what runs in its own session, such as postgres or the keeper's fencer).
   */
  pauseGroup(): void;
  /** SIGCONTs the child's whole process group. */
  resumeGroup(): void;
  /** True until the child has exited. */
  running(): boolean;
}

const MAX_LINES = 100_000;

/** Every handle whose process group may still have members. */
const registry = new Set<ChildHandle>();
let exitHookInstalled = false;

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

function installExitHook(): void {
  if (exitHookInstalled) {
    return;
  }
  exitHookInstalled = true;
  // Last resort when a test run dies without cleanup: no etcd or postgres may outlive it.
  process.on('exit', () => {
    for (const h of registry) {
      killGroup(h.pid, 'SIGKILL');
    }
    for (const fn of exitCleanups) {
      try {
        fn();
      } catch {
        // Best effort: the process is exiting.
      }
    }
  });
}

/** Synchronous last-resort cleanups run by the exit hook (see {@link onHarnessExit}). */
const exitCleanups = new Set<() => void>();

/**
 * Registers `fn` to run (synchronously, errors ignored) if this process exits while it is still
 * registered: for what the group kill cannot reach, such as a postmaster or a fencer that runs in
 * its own session. Call the returned function once the normal cleanup has run.
 */
export function onHarnessExit(fn: () => void): () => void {
  installExitHook();
  exitCleanups.add(fn);
  return () => {
    exitCleanups.delete(fn);
  };
}

class ChildHandle implements ProcessHandle {
  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<number | null>;
  private readonly lines: string[] = [];
  private readonly lineListeners = new Set<(line: string) => void>();
  private readonly exitListeners = new Set<() => void>();
  private isRunning = true;
  private exitDescription = '';
  private readonly logStream: WriteStream | undefined;

  constructor(opts: StartProcessOptions) {
    this.name = opts.name;
    this.logStream = opts.logFile === undefined ? undefined : createWriteStream(opts.logFile, { flags: 'a' });
    this.logStream?.on('error', () => undefined);
    const child = spawn(opts.cmd, [...opts.args], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group, so the whole tree can be signalled with kill(-pid).
      detached: true,
    });
    this.exited = new Promise<number | null>((resolve) => {
      let spawnError: Error | undefined;
      child.once('error', (err) => {
        spawnError = err;
        this.addLine(`failed to start ${opts.cmd}: ${err.message}`);
        if (child.pid === undefined) {
          this.markExited(`failed to start: ${err.message}`);
          resolve(null);
        }
      });
      child.once('close', (code, signal) => {
        this.markExited(spawnError ? `failed to start: ${spawnError.message}` : `exited with code ${code} signal ${signal}`);
        resolve(code);
      });
    });
    this.pid = child.pid ?? -1;
    this.capture(child.stdout);
    this.capture(child.stderr);
    if (this.pid > 0) {
      registry.add(this);
      installExitHook();
    }
  }

  private capture(stream: NodeJS.ReadableStream): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      partial += chunk;
      let nl = partial.indexOf('\n');
      while (nl >= 0) {
        this.addLine(partial.slice(0, nl));
        partial = partial.slice(nl + 1);
        nl = partial.indexOf('\n');
      }
    });
    stream.on('end', () => {
      if (partial.length > 0) {
        this.addLine(partial);
        partial = '';
      }
    });
  }

  private addLine(raw: string): void {
    const line = `[${this.name}] ${raw.replace(/\r$/, '')}`;
    this.lines.push(line);
    if (this.lines.length > MAX_LINES) {
      this.lines.splice(0, this.lines.length - MAX_LINES);
    }
    this.logStream?.write(`${line}\n`);
    for (const l of this.lineListeners) {
      l(line);
    }
  }

  private markExited(description: string): void {
    if (!this.isRunning) {
      return;
    }
    this.isRunning = false;
    this.exitDescription = description;
    this.logStream?.end();
    for (const l of this.exitListeners) {
      l();
    }
  }

  logs(): string {
    return this.lines.join('\n');
  }

  running(): boolean {
    return this.isRunning;
  }

  waitForLog(pattern: RegExp | string, timeoutMs: number): Promise<void> {
    const matches = (line: string): boolean => (typeof pattern === 'string' ? line.includes(pattern) : pattern.test(line));
    if (this.lines.some(matches)) {
      return Promise.resolve();
    }
    const scaled = scaleTimeout(timeoutMs);
    return new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.lineListeners.delete(onLine);
        this.exitListeners.delete(onExit);
      };
      const fail = (why: string): void => {
        cleanup();
        const tail = this.lines.slice(-30).join('\n');
        reject(new Error(`${this.name}: ${why} waiting for log line ${String(pattern)}; last 30 lines:\n${tail}`));
      };
      const onLine = (line: string): void => {
        if (matches(line)) {
          cleanup();
          resolve();
        }
      };
      const onExit = (): void => fail(`process ${this.exitDescription}`);
      const timer = setTimeout(() => fail(`timed out after ${scaled} ms`), scaled);
      this.lineListeners.add(onLine);
      if (!this.isRunning) {
        onExit();
        return;
      }
      this.exitListeners.add(onExit);
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
    if (this.isRunning) {
      try {
        process.kill(this.pid, signal);
      } catch {
        // already gone
      }
      // A SIGSTOPped child (or group) would never handle the signal.
      killGroup(this.pid, 'SIGCONT');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        killGroup(this.pid, 'SIGKILL');
      }
    }
    await this.exited;
    // Grandchildren (postgres under a keeper) must not outlive the handle.
    killGroup(this.pid, 'SIGKILL');
    registry.delete(this);
  }

  async kill(): Promise<void> {
    killGroup(this.pid, 'SIGKILL');
    await this.exited;
    killGroup(this.pid, 'SIGKILL');
    registry.delete(this);
  }

  pause(): void {
    if (this.isRunning) {
      process.kill(this.pid, 'SIGSTOP');
    }
  }

  resume(): void {
    if (this.isRunning) {
      process.kill(this.pid, 'SIGCONT');
    }
  }

  pauseGroup(): void {
    if (this.isRunning) {
      killGroup(this.pid, 'SIGSTOP');
    }
  }

  resumeGroup(): void {
    if (this.isRunning) {
      killGroup(this.pid, 'SIGCONT');
    }
  }
}

/**
 * Starts a child process in its own process group with captured output.
 * @returns the handle at once; a spawn failure (missing binary) shows up as an immediate exit
 *   with a log line, not as a throw.
 */
export function startProcess(opts: StartProcessOptions): ProcessHandle {
  return new ChildHandle(opts);
}

/**
 * Stops every process started by this harness that has not been stopped yet (SIGTERM, then
 * SIGKILL of the group after `timeoutMs`). For `afterAll`/`afterEach` hooks.
 * @param timeoutMs grace period per process in ms. @default 5000
 */
export async function stopAll(timeoutMs = 5000): Promise<void> {
  await Promise.all([...registry].map((h) => h.stop('SIGTERM', timeoutMs)));
}

/** Pids of harness children whose groups have not been cleaned up yet (for leak checks). */
export function livePids(): number[] {
  return [...registry].filter((h) => h.running()).map((h) => h.pid);
}

/**
 * Pids of the direct children of `pid` whose command line matches `pattern` (read from /proc),
 * e.g. a postmaster's walreceiver: `childPids(postmaster, /walreceiver/)`.
 */
export async function childPids(pid: number, pattern: RegExp): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && pattern.test((await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' '))) {
        out.push(Number(entry));
      }
    } catch {
      // The process went away while we looked.
    }
  }
  return out;
}
