/**
 * The data-directory lock: one keeper process per `--data-dir`. Two keepers on one data directory
 * would run two PostgreSQL managers on one PGDATA (a restarted keeper starting a second pg_rewind
 * beside the first, two postmasters racing for postmaster.pid). The lock is `<data-dir>/keeper.lock`
 * holding the owner's pid, its start time (field 22 of /proc/<pid>/stat, clock ticks since boot)
 * and the kernel's boot id (/proc/sys/kernel/random/boot_id), as PostgreSQL's postmaster.pid holds
 * a pid checked for liveness; the start time and the boot id tell a live owner from a reused pid
 * (after a reboot, or a pid reused by another process since).
 */
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';

/** Who holds a lock. */
interface LockOwner {
  readonly pid: number;
  /** Start time of the process, in clock ticks since boot (/proc/<pid>/stat field 22). */
  readonly startTicks: number;
  /** /proc/sys/kernel/random/boot_id when the lock was taken. */
  readonly bootId: string;
}

/** How the lock sees the system (replaced in the unit test). */
export interface LockSystem {
  /** This process. */
  readonly self: LockOwner;
  /** The start time of `pid` in clock ticks since boot, or undefined when no such process runs. */
  startTicks(pid: number): number | undefined;
}

/** Start time of `pid` from /proc/<pid>/stat (field 22), or undefined when it does not run. */
function procStartTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; starttime is field 22.
    const n = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The real system: this process, /proc and the kernel's boot id. */
function linuxSystem(): LockSystem {
  let bootId = '';
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // No boot id (not Linux): the start time alone tells a reused pid.
  }
  return { self: { pid: process.pid, startTicks: procStartTicks(process.pid) ?? 0, bootId }, startTicks: procStartTicks };
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    return typeof o.pid === 'number' && typeof o.startTicks === 'number' && typeof o.bootId === 'string'
      ? { pid: o.pid, startTicks: o.startTicks, bootId: o.bootId }
      : undefined;
  } catch {
    return undefined;
  }
}

function sameOwner(a: LockOwner, b: LockOwner): boolean {
  return a.pid === b.pid && a.startTicks === b.startTicks && a.bootId === b.bootId;
}

/** The lock's owner is a process running now: same boot, its pid alive with the recorded start time. */
function alive(owner: LockOwner, sys: LockSystem): boolean {
  return owner.bootId === sys.self.bootId && sys.startTicks(owner.pid) === owner.startTicks;
}

/**
 * Takes `<dataDir>/keeper.lock` for this process. A lock left by a process that no longer runs
 * (a killed keeper, a reboot, a pid now reused by another process) or an unreadable one is taken
 * over; a lock of this very process is kept.
 * @returns `release`, which removes the lock file if this process still holds it
 * @throws ConfigError (field `data-dir`) naming the other keeper's pid when a live keeper holds it
 *   (also when another keeper took the same stale lock over a moment earlier)
 */
export function acquireDataDirLock(dataDir: string, sys: LockSystem = linuxSystem()): { release(): void } {
  const file = join(dataDir, 'keeper.lock');
  const mine = JSON.stringify(sys.self);
  const held = (owner: LockOwner): ConfigError =>
    new ConfigError(
      `--data-dir: ${dataDir} is in use by another keeper (pid ${owner.pid}, ${file}); stop that keeper first, or give this one another --data-dir`,
      { field: 'data-dir' },
    );
  // Create-exclusive; a stale lock is first moved aside under a name of this process's own, and
  // put back if what was moved turns out to be another keeper's fresh lock (two keepers taking
  // over the same stale lock at once: one wins, the other finds the winner's lock live).
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) {
        throw err;
      }
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // removed meanwhile
    }
    const owner = parseOwner(text);
    if (owner !== undefined && sameOwner(owner, sys.self)) {
      break;
    }
    if (owner !== undefined && alive(owner, sys)) {
      throw held(owner);
    }
    const aside = `${file}.stale.${sys.self.pid}`;
    try {
      renameSync(file, aside);
    } catch {
      continue; // moved by another keeper meanwhile
    }
    if (readFileSync(aside, 'utf8') !== text) {
      try {
        linkSync(aside, file);
      } catch {
        // Another lock is there already; it decides.
      }
    }
    rmSync(aside, { force: true });
  }
  return {
    release() {
      try {
        if (readFileSync(file, 'utf8') === mine) {
          rmSync(file, { force: true });
        }
      } catch {
        // Already gone.
      }
    },
  };
}
