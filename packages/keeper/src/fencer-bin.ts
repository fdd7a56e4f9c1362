#!/usr/bin/env node
/**
 * stolon-keeper's fencer: a tiny separate process the keeper spawns (with an IPC channel) so that
 * a primary whose keeper can no longer renew its store lease stops taking writes even when the
 * keeper itself cannot act — it is frozen (SIGSTOP, a stuck event loop), killed, or cut off from
 * the store (docs/architecture.md, "Self-fencing primary"; Stolon has no such thing; Patroni's
 * watchdog is the model, without needing /dev/watchdog).
 *
 * Protocol (messages from the keeper, JSON over the IPC channel):
 * - `{ type: 'arm', pgData, validForMs }`: this keeper's PostgreSQL in `pgData` is the primary,
 *   and the keeper's info lease is certain to live `validForMs` more ms (already minus the
 *   keeper's safety margin). The fencer fences when that time has passed with no newer `arm`.
 *   The keeper sends one only when that deadline moves; the fencer sleeps on a timer armed for
 *   it (the monotonic clock), so it wakes for nothing else while its keeper listens.
 * - `{ type: 'disarm' }`: not a primary (or stopped on purpose): never fence until armed again.
 * - `{ type: 'exit' }`: clean keeper shutdown; exit now without fencing.
 * Messages to the keeper: `{ type: 'ready' }` once it listens (messages sent earlier may be
 * lost), `{ type: 'fenced', pid, at }` once it fenced.
 *
 * Fencing = a fast shutdown of the postmaster (SIGINT: new connections are refused and every
 * session ends at once, @see PostgreSQL docs "Shutting Down the Server"), escalated to an
 * immediate shutdown (SIGQUIT) if the postmaster still runs 1.5 s later. The postmaster is the
 * pid in `pgData/postmaster.pid` whose command line names `pgData` and that runs as PGDATA's
 * owner, so neither a reused pid nor a process named there by PGDATA's owner is ever hit.
 *
 * The fencer runs in its own session (the keeper forks it detached), so a SIGSTOP or SIGKILL of
 * the keeper's process group does not reach it. It has no stdio: log lines go to the keeper over
 * the IPC channel, or, with no keeper listening, to `fencer.log` next to the pid file named by its
 * first argument. If the keeper goes away (IPC channel closed), an armed fencer still waits for
 * its deadline, fences, and exits — at once if no postmaster runs any more (it looks every 50 ms
 * once the keeper is gone); a disarmed one exits
 * at once. It never outlives its keeper by more than the lease's remaining time plus the 1.5 s
 * escalation. It imports nothing but Node's own modules so
 * that it starts fast and cannot fail on the keeper's dependencies.
 */
import { closeSync, constants, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The longest delay setTimeout takes as given (a longer one fires after 1 ms), in ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often a fencer whose keeper is gone looks whether its postmaster still runs, in ms. */
const ORPHAN_CHECK_MS = 50;
const ESCALATE_MS = 1500;

interface ArmMessage {
  readonly type: 'arm';
  readonly pgData: string;
  readonly validForMs: number;
}
type Message = ArmMessage | { readonly type: 'disarm' } | { readonly type: 'exit' };

let armed: { pgData: string; deadline: number } | undefined;
/** Set once a fence without a keeper schedules the exit after the escalation (SIGQUIT) check. */
let exitScheduled = false;
/** `process.connected`, not a 'disconnect' listener: a keeper that dies at once may close the channel before this module has loaded. */
const connected = (): boolean => process.connected === true;

const now = (): number => Number(process.hrtime.bigint() / 1_000_000n);

/** `<data-dir>/fencer.log` (next to the pid file given as argument), for lines no keeper hears. */
const pidFileArg = process.argv[2];
const orphanLog = pidFileArg === undefined ? undefined : join(dirname(pidFileArg), 'fencer.log');

/**
 * A log line: to the keeper over the IPC channel (it logs it with its own logger), or, once no
 * keeper listens, appended to `orphanLog` as a JSON line. The fencer has no stdio of its own: it
 * runs in its own session and must not hold the keeper's output pipes.
 */
function log(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  if (connected()) {
    process.send?.({ type: 'log', level, msg, fields }, undefined, {}, () => undefined);
    return;
  }
  if (orphanLog !== undefined) {
    const lvl = { info: 30, warn: 40, error: 50 }[level];
    try {
      // O_NOFOLLOW: the fencer of a root keeper never appends to what a link points to.
      const fd = openSync(orphanLog, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
      try {
        writeSync(fd, `${JSON.stringify({ level: lvl, time: Date.now(), pid: process.pid, component: 'keeper-fencer', ...fields, msg })}\n`);
      } finally {
        closeSync(fd);
      }
    } catch {
      // Nowhere to write: the fence matters, its log line does not.
    }
  }
}

/** The postmaster pid of `pgData`, or undefined when none runs. */
function postmasterPid(pgData: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) {
    return undefined;
  }
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    // PGDATA's owner writes postmaster.pid, and the postmaster runs as that owner (PostgreSQL
    // refuses otherwise): a pid of another user's process (root's, named there by PGDATA's owner
    // to have a root fencer signal it) is never the postmaster.
    return cmdline.includes(pgData) && processUid(pid) === statSync(pgData).uid ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The real uid of `pid` (/proc/<pid>/status, `Uid:` line), or undefined. */
function processUid(pid: number): number | undefined {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'));
  const uid = Number(line?.split(/\s+/)[1]);
  return Number.isInteger(uid) ? uid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function fence(pgData: string, lateByMs: number): void {
  const pid = postmasterPid(pgData);
  if (pid === undefined) {
    log('info', `lease about to expire, but no postmaster runs in ${pgData}: nothing to fence`);
    return;
  }
  // Signal first, log after: a log write can block (a full stderr pipe), the fence must not wait for it.
  try {
    process.kill(pid, 'SIGINT');
  } catch (err) {
    log('error', `cannot signal postmaster ${pid}: ${(err as Error).message}`);
    return;
  }
  log('warn', `self-fencing: the keeper's store lease could expire now and another keeper be promoted; fast shutdown of postgres (postmaster ${pid})`, {
    pgData,
    postmaster: pid,
    lateByMs,
  });
  if (connected()) {
    process.send?.({ type: 'fenced', pid, at: new Date().toISOString() }, undefined, {}, () => undefined);
  }
  const escalate = setTimeout(() => {
    if (alive(pid)) {
      log('warn', `postmaster ${pid} still running ${ESCALATE_MS} ms after SIGINT: immediate shutdown (SIGQUIT)`);
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // Gone meanwhile.
      }
    }
    if (!connected()) {
      process.exit(0);
    }
  }, ESCALATE_MS);
  escalate.unref();
}

/**
 * The fencer's one check: fences once the armed deadline has passed; without a keeper, exits when
 * there is nothing left to guard (disarmed, or no postmaster runs any more). Runs when the deadline
 * timer fires, on every message, when the keeper goes away, and every {@link ORPHAN_CHECK_MS}
 * while no keeper listens; then arms the timer for the next deadline.
 */
function check(): void {
  if (armed !== undefined && !connected() && postmasterPid(armed.pgData) === undefined) {
    // The keeper is gone and so is its postgres (the whole node was killed): nothing left to fence.
    process.exit(0);
  }
  if (armed !== undefined && now() >= armed.deadline) {
    const { pgData, deadline } = armed;
    armed = undefined;
    fence(pgData, now() - deadline);
    if (!connected()) {
      // Wait for the escalation timer, then exit.
      exitScheduled = true;
      setTimeout(() => process.exit(0), ESCALATE_MS + 100);
    }
  } else if (armed === undefined && !connected() && !exitScheduled) {
    process.exit(0);
  }
  armTimer();
}

/** The timer for the armed deadline (Node's timers run on the monotonic clock, as `now` does). */
let deadlineTimer: NodeJS.Timeout | undefined;
function armTimer(): void {
  clearTimeout(deadlineTimer);
  deadlineTimer = undefined;
  if (armed !== undefined) {
    // A timer may fire up to a millisecond early (whole ms): `check` then arms it again.
    deadlineTimer = setTimeout(check, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(armed.deadline - now()))));
  }
}

/** Started once no keeper listens: the postmaster's presence has no event to wait for. */
let orphanPoll: NodeJS.Timeout | undefined;
function keeperGone(): void {
  orphanPoll ??= setInterval(check, ORPHAN_CHECK_MS);
  check();
}

process.on('message', (m: Message) => {
  switch (m.type) {
    case 'arm':
      armed = { pgData: m.pgData, deadline: now() + (Number.isFinite(m.validForMs) ? Math.max(0, m.validForMs) : 0) };
      break;
    case 'disarm':
      armed = undefined;
      break;
    case 'exit':
      process.exit(0);
  }
  check();
});
process.on('disconnect', () => {
  if (armed !== undefined) {
    log('warn', `keeper gone; postgres in ${armed.pgData} will be fenced in ${Math.max(0, armed.deadline - now())} ms unless it is already stopped`);
  }
  keeperGone();
});
if (!connected()) {
  // The channel closed before this module loaded (a keeper that died at once): no 'disconnect' comes.
  keeperGone();
}
if (connected()) {
  process.send?.({ type: 'ready' }, undefined, {}, () => undefined);
}
// The keeper's signals (Ctrl-C to the process group) must not kill the fencer before it acted.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => {
  if (armed === undefined) {
    process.exit(0);
  }
  log('warn', 'SIGTERM while armed: staying until the deadline');
});
