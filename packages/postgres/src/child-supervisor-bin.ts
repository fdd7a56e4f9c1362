#!/usr/bin/env node
/**
 * A long-running PostgreSQL binary's guard (pg_basebackup, pg_rewind, a dataRestoreCommand,
 * single-user crash recovery): runs `argv[2]` with `argv[3..]`, and ends it — with every process
 * it started — as soon as its keeper is gone. Node has no PR_SET_PDEATHSIG, so the keeper spawns
 * this process with a stdin pipe it never closes (and writes at most one byte to, see below):
 * when the keeper exits for any reason, SIGKILL included, the kernel closes that pipe and this
 * process reads end-of-file. Without it, a killed
 * keeper's pg_rewind or pg_basebackup kept writing to the data directory while the restarted
 * keeper started a second one on it.
 *
 * - stdin end-of-file (keeper gone): SIGTERM to the child and its descendants, SIGKILL to those
 *   still alive {@link GRACE_MS} later.
 * - SIGTERM / SIGINT (the keeper aborts the command): forwarded to the child and its descendants,
 *   with the same SIGKILL escalation, before the keeper's own SIGKILL could end this process.
 * - the child exits: this process exits with the same code, or dies of the same signal.
 *
 * The child inherits stdout and stderr (the keeper's pipes, so its output is captured as before).
 * With `STOLON_SUPERVISED_ID=<uid>:<gid>` (a root keeper) the child runs with that uid/gid; the
 * variable is not passed on. Node built-ins only, so it starts fast.
 *
 * With `STOLON_SUPERVISED_WAIT=1` (not passed on either) the child is not started before the
 * first byte arrives on stdin: the keeper spawns this process while a step that must come first
 * still runs (creating the replication slot a pg_basebackup uses), so that this process's own
 * start (~50 ms of Node) overlaps that step, and writes one byte when the step succeeded. Stdin
 * end-of-file or SIGTERM/SIGINT before that byte: exit {@link NOT_STARTED} without running it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

const GRACE_MS = 2000;
/** Exit status when stdin ended, or a signal came, before the go byte of `STOLON_SUPERVISED_WAIT=1`. */
const NOT_STARTED = 125;

const [file, ...args] = process.argv.slice(2);
if (file === undefined) {
  process.stderr.write('child-supervisor: no command given\n');
  process.exit(2);
}
const idVar = process.env['STOLON_SUPERVISED_ID'];
delete process.env['STOLON_SUPERVISED_ID'];
const id = idVar === undefined ? undefined : idVar.split(':').map(Number);
const waitForGo = process.env['STOLON_SUPERVISED_WAIT'] === '1';
delete process.env['STOLON_SUPERVISED_WAIT'];

let child: ChildProcess | undefined;

/** Starts the command (once): exit code and signal pass through to this process. */
function startChild(): void {
  if (child !== undefined) {
    return;
  }
  const c = spawn(file as string, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    ...(id !== undefined && id.length === 2 ? { uid: id[0], gid: id[1] } : {}),
  });
  child = c;
  c.on('error', (err) => {
    process.stderr.write(`cannot run ${file}: ${err.message}\n`);
    process.exit(127);
  });
  c.on('exit', (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      // A signal Node keeps ignoring (SIGPIPE) does not end this process: exit all the same.
      setTimeout(() => process.exit(128), 100).unref();
      return;
    }
    process.exit(code ?? 1);
  });
}

/** Pids of every descendant of `root` (from /proc/<pid>/stat's ppid), `root` included. */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid)) {
      continue;
    }
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces and parentheses.
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    for (const [pid, ppid] of parent) {
      if (ppid === out[i]) {
        out.push(pid);
      }
    }
  }
  return out;
}

let ending = false;
/** Signals the child's tree with `signal`, then SIGKILLs what is left after GRACE_MS. */
function end(signal: NodeJS.Signals): void {
  if (child === undefined) {
    // Still waiting for the go byte: nothing was started.
    process.exit(NOT_STARTED);
  }
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const pids = tree(pid);
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch {
      // Gone.
    }
  }
  if (ending) {
    return;
  }
  ending = true;
  setTimeout(() => {
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
  }, GRACE_MS).unref();
}

process.stdin.on('data', () => startChild());
process.stdin.on('end', () => end('SIGTERM'));
process.stdin.on('error', () => end('SIGTERM'));
process.stdin.resume();
process.on('SIGTERM', () => end('SIGTERM'));
process.on('SIGINT', () => end('SIGINT'));
if (!waitForGo) {
  startChild();
}
