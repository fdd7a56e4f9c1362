/**
 * The keeper's side of self-fencing (docs/architecture.md, "Self-fencing primary"): keeps the fencer process (`fencer-bin.ts`)
 * running and tells it, whenever it changes, whether this keeper's PostgreSQL is the primary
 * and until when the keeper's info lease is certain to live. If no later deadline comes — the keeper
 * is frozen, killed, or cannot reach the store to renew its lease — the fencer shuts PostgreSQL
 * down before the lease can expire, i.e. before any sentinel could promote another keeper.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Logger } from '@stolon-ts/common';
import { writeStateFileSync } from './state-file.js';

/** What the keeper tells the fencer on every update. */
type FenceState =
  | { readonly armed: false }
  | {
      readonly armed: true;
      /** PGDATA of the primary to fence. */
      readonly pgData: string;
      /** Ms the keeper's info lease is certain to live (from the store's `infoLeaseRemainingMs`). */
      readonly leaseRemainingMs: number;
      /** The lease's TTL in ms (failInterval); the safety margin is derived from it. */
      readonly ttlMs: number;
    };

/** The keeper-facing control of a fencer. */
export interface FenceControl {
  /**
   * Takes the current state; cheap, call it often (every ≤ 250 ms). The fencer hears of it only
   * when it differs from what it was last told: armed or not, the PGDATA, or the absolute fence
   * deadline (now + `leaseRemainingMs` − margin) moved by {@link DEADLINE_SLACK_MS} or more. A
   * lease that is neither renewed nor shortened leaves the deadline where it is, and the fencer
   * acts on it with no further message.
   */
  update(state: FenceState): void;
  /** Called when the fencer fenced PostgreSQL. */
  onFenced(listener: (info: { pid: number; at: string }) => void): void;
  /**
   * This keeper's info is now under its own store lease: SIGKILLs the fencer that a previous
   * keeper process on the same data directory left behind (found through `pidFile`), if it still
   * runs. That fencer guards the old process's lease, which stopped mattering once the info key
   * was written under the new one; left alone it would shut down a healthy primary at its old
   * deadline. Idempotent; does nothing without a previous fencer.
   */
  retirePrevious(): void;
  /** Clean shutdown: the fencer exits without fencing. */
  stop(): Promise<void>;
}

/**
 * True when `pid` runs a fencer started with `tag` (its pid file's path) as argument, so neither a
 * reused pid nor another keeper's fencer on the same host is ever hit.
 */
function isFencer(pid: number, tag: string): boolean {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return args.some((a) => a.includes('fencer-bin')) && args.includes(tag);
  } catch {
    return false;
  }
}

/** The fencer pid recorded in `pidFile`, if that process still runs a fencer. */
function previousFencer(pidFile: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && isFencer(pid, pidFile) ? pid : undefined;
}

/**
 * How far the absolute fence deadline must move, in ms, before the fencer is told again: the
 * lease's remaining time and the clock are read at slightly different instants, so a deadline
 * that did not move is computed a few microseconds apart from one update to the next.
 */
const DEADLINE_SLACK_MS = 1;

/**
 * How long before the lease could expire the fencer acts: a quarter of the TTL, at least 1 s.
 * The fence (SIGINT to the postmaster) refuses connections within milliseconds; the margin covers
 * IPC delay and a scheduler stall of the fencer itself (its deadline timer firing late).
 */
export function fenceMarginMs(ttlMs: number): number {
  return Math.max(1000, Math.floor(ttlMs / 4));
}

/** What the fencer is told: not armed, or armed for a PGDATA until `deadline` (performance.now() ms). */
type Told = { readonly armed: false } | { readonly armed: true; readonly pgData: string; readonly deadline: number };

/**
 * Whether the fencer, told `a`, needs not hear `b`: both disarmed, or both armed for the same
 * PGDATA with deadlines less than {@link DEADLINE_SLACK_MS} apart (two deadlines already past
 * count as the same: both mean fence now).
 */
function sameFence(
  a: Told | undefined,
  b: Told,
): boolean {
  if (a === undefined || a.armed !== b.armed) {
    return false;
  }
  if (!a.armed || !b.armed) {
    return true;
  }
  const now = performance.now();
  return a.pgData === b.pgData && ((a.deadline <= now && b.deadline <= now) || Math.abs(a.deadline - b.deadline) < DEADLINE_SLACK_MS);
}

/**
 * Starts the fencer process (a child in its own session, so that freezing or killing the keeper's
 * process group leaves it running; with an IPC channel and no inherited stdio: its log lines are
 * sent over the channel and logged here) and restarts it if it dies while the keeper runs. With `pidFile` (the keeper's
 * `<data-dir>/fencer.pid`), the child's pid is recorded there, and a fencer left running by a
 * previous keeper process (killed or crashed while its postgres was the primary) is remembered
 * for {@link FenceControl.retirePrevious}.
 */
export function startFencer(log: Logger, opts: { readonly script?: string; readonly pidFile?: string } = {}): FenceControl {
  // Compiled next to this module (dist/fencer-bin.js); tests run from src and pass the dist path.
  const script = opts.script ?? fileURLToPath(new URL('./fencer-bin.js', import.meta.url));
  const pidFile = opts.pidFile;
  let previous = pidFile === undefined ? undefined : previousFencer(pidFile);
  if (previous !== undefined) {
    log.warn(
      { previousFencer: previous },
      `a fencer left by a previous keeper process still runs (pid ${previous}); it is stopped once this keeper holds its own store lease, and fences postgres if that does not happen before the old lease could expire`,
    );
  }
  const recordPid = (pid: number | undefined): void => {
    if (pidFile === undefined || pid === undefined) {
      return;
    }
    try {
      // A new temp file renamed over the pid file: a link at either name is replaced, not followed.
      writeStateFileSync(pidFile, `${pidFile}.tmp`, `${pid}\n`, 0o600);
    } catch (err) {
      log.warn({ err, pidFile }, `cannot record the fencer's pid in ${pidFile}: ${(err as Error).message}`);
    }
  };
  let child: ChildProcess | undefined;
  let stopping = false;
  const listeners: ((info: { pid: number; at: string }) => void)[] = [];
  let lastArmed = false;
  /**
   * What the fencer was last told (`deadline`: performance.now() ms, -Infinity to fence at once);
   * undefined when it must be told again: nothing sent yet, a new child, or the fencer fenced
   * (which disarms it).
   */
  let told: Told | undefined;

  /** Set once the current child said `ready`; until then the latest message waits in `pending`. */
  let ready = false;
  let pending: Told | { readonly type: 'exit' } | undefined;
  const spawnChild = (): void => {
    // The pid file's path as argument tags the process for isFencer; fencer-bin writes its log
    // lines to `fencer.log` next to it while no keeper listens.
    // Its own session (detached: setsid): a SIGSTOP or SIGKILL of the keeper's process group must
    // not reach the fencer, whose whole point is to act while the keeper cannot. No inherited
    // stdio: its log lines come over the IPC channel (logged below), so an orphaned fencer never
    // holds the keeper's output pipes open.
    const c = fork(script, pidFile === undefined ? [] : [pidFile], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], execArgv: [], detached: true });
    child = c;
    ready = false;
    told = undefined;
    recordPid(c.pid);
    c.on('message', (m: { type?: string; pid?: number; at?: string; level?: string; msg?: string; fields?: Record<string, unknown> }) => {
      if (m.type === 'log' && typeof m.msg === 'string') {
        const level = m.level === 'error' || m.level === 'warn' ? m.level : 'info';
        log[level]({ ...m.fields, fencerPid: c.pid }, m.msg);
      } else if (m.type === 'ready' && child === c) {
        ready = true;
        if (pending !== undefined) {
          send(pending);
        }
      } else if (m.type === 'fenced' && typeof m.pid === 'number' && typeof m.at === 'string') {
        // A fence disarms the fencer: the next update tells it the keeper's state again.
        told = undefined;
        for (const l of listeners) {
          l({ pid: m.pid, at: m.at });
        }
      }
    });
    c.on('error', (err) => log.error({ err }, `fencer process error: ${err.message}`));
    c.on('exit', (code, signal) => {
      if (child === c) {
        child = undefined;
      }
      if (!stopping) {
        log.error({ code, signal }, 'fencer process exited; starting a new one');
        setTimeout(() => {
          if (!stopping) {
            spawnChild();
          }
        }, 100).unref();
      }
    });
  };
  spawnChild();

  /** The message for `state`; an arm's `validForMs` is taken from its absolute deadline when it is sent. */
  const message = (state: Told): unknown =>
    state.armed
      ? { type: 'arm', pgData: state.pgData, validForMs: Number.isFinite(state.deadline) ? Math.max(0, state.deadline - performance.now()) : 0 }
      : { type: 'disarm' };
  /**
   * Sends `m` once the child said `ready` (the latest one waits in `pending` until then); a state
   * is turned into its message at the moment it is sent, so an arm that waited for a new child
   * carries the time left then, not when it was queued.
   */
  const send = (m: Told | { readonly type: 'exit' }): void => {
    pending = m;
    if (ready && child?.connected === true) {
      child.send(('type' in m ? m : message(m)) as Parameters<ChildProcess['send']>[0], () => undefined);
    }
  };

  return {
    update(state) {
      if (state.armed !== lastArmed) {
        log.info(state.armed ? 'self-fencing armed: this keeper runs the primary' : 'self-fencing disarmed');
        lastArmed = state.armed;
      }
      // No lease (-Infinity) or one already past the margin: fence now (JSON has no Infinity).
      const next: Told = state.armed
        ? { armed: true, pgData: state.pgData, deadline: performance.now() + state.leaseRemainingMs - fenceMarginMs(state.ttlMs) }
        : { armed: false };
      if (!sameFence(told, next)) {
        told = next;
        send(next);
      }
    },
    onFenced(listener) {
      listeners.push(listener);
    },
    retirePrevious() {
      const pid = previous;
      previous = undefined;
      if (pid === undefined || pidFile === undefined || !isFencer(pid, pidFile)) {
        return;
      }
      try {
        process.kill(pid, 'SIGKILL');
        log.info({ previousFencer: pid }, `stopped the previous keeper process's fencer (pid ${pid}): this keeper's own lease now covers postgres`);
      } catch {
        // Already gone.
      }
    },
    async stop() {
      stopping = true;
      const c = child;
      if (c === undefined || c.exitCode !== null) {
        return;
      }
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      send({ type: 'exit' });
      const t = setTimeout(() => c.kill('SIGKILL'), 2000);
      await exited;
      clearTimeout(t);
      if (pidFile !== undefined) {
        rmSync(pidFile, { force: true });
      }
    },
  };
}
