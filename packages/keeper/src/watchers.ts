/**
 * The keeper's two timers besides its pass loop: the fence update (tells the fencer whether to
 * guard PostgreSQL and how long the info lease surely lives) and the crash watch (a pass at once
 * when PostgreSQL stops running).
 */
import { describeActivity } from './activity.js';
import { noteFenced } from './failsafe.js';
import { fenceMarginMs } from './fencer.js';
import type { KeeperRuntime } from './runtime.js';

/** How often the fence deadline is computed even without a pass (the fencer hears it when it moved), in ms. */
const FENCE_UPDATE_MS = 250;
/** How often the crash watch looks at postmaster.pid without an open probe connection, in ms. */
const CRASH_CHECK_MS = 100;
/** How often it looks while the probe connection is open (its close is the faster signal), in ms. */
const CRASH_BACKSTOP_MS = 1000;

/**
 * How long PostgreSQL may keep running as primary, in ms from now: until the info lease could
 * expire, and no later than failInterval after the last publish the store accepted; or, in
 * failsafe mode, until failInterval after the start of the last round every other keeper
 * confirmed, whichever is later (failsafe.ts). The second
 * bound is for a keeper whose pass hangs while its lease keepalive lives: the sentinel fails such a
 * keeper failInterval after its progress marker stopped changing and promotes a standby, so its
 * PostgreSQL must be down by then (docs/architecture.md, "Alive means making progress").
 * @returns ms, -Infinity when there is no lease or no accepted publish
 */
function guardedRemainingMs(rt: KeeperRuntime, leaseRemainingMs: number | undefined): number {
  const now = performance.now();
  const leased =
    leaseRemainingMs === undefined || rt.lastPublishSentAt === undefined
      ? -Infinity
      : Math.min(leaseRemainingMs, rt.lastPublishSentAt + rt.infoTtlMs() - now);
  // Failsafe mode: a round every other keeper confirmed counts as a lease renewal sent at its start.
  const confirmed = rt.spec?.failsafeMode === true ? rt.failsafe.confirmedUntil - now : -Infinity;
  return Math.max(leased, confirmed);
}

/** This keeper's fence deadline, ms from now (see `guardedRemainingMs`); -Infinity without lease or confirmation. */
export function fenceRemainingMs(rt: KeeperRuntime): number {
  return guardedRemainingMs(rt, rt.store.infoLeaseRemainingMs('keepers', rt.config.uid));
}

/**
 * The fence time (`fenceRemainingMs`) a primary must have left before the keeper starts its
 * PostgreSQL, in ms: the fencer's margin (`fenceMarginMs`) plus a twelfth of the TTL (at most
 * 1 s) for `pg_ctl start` to return. Lease keepalives on schedule (every TTL/3) always leave more
 * (at least 2/3 of the TTL), so only a keeper whose lease is overdue — one just reconnected to the
 * store after a cut, before its next keepalive — waits.
 * @param ttlMs the info lease TTL (failInterval), ms
 */
function startFenceTimeMs(ttlMs: number): number {
  return fenceMarginMs(ttlMs) + Math.min(1000, Math.floor(ttlMs / 12));
}

/**
 * Before starting PostgreSQL as the primary: waits (polling every 50 ms, up to `maxWaitMs`) until
 * this keeper's fence time is at least {@link startFenceTimeMs}. A primary started with less
 * would be stopped by the armed fencer at once, and the failed start, published as `startError`,
 * makes the sentinel fail the primary without waiting failInterval: a keeper cut off from the
 * store just long enough to be fenced, then healed before its lease expired, would cause the
 * failover the fence was meant to spare. Without a fencer there is nothing to wait for.
 * @returns undefined when the start may go ahead; otherwise the sentence saying why it waits
 */
export async function awaitFenceTimeForStart(rt: KeeperRuntime, maxWaitMs: number): Promise<string | undefined> {
  if (rt.deps.fencer === undefined) {
    return undefined;
  }
  const need = startFenceTimeMs(rt.infoTtlMs());
  const deadline = performance.now() + maxWaitMs;
  for (;;) {
    const left = fenceRemainingMs(rt);
    if (left >= need) {
      return undefined;
    }
    if (performance.now() >= deadline) {
      return (
        `waiting for the store lease to be renewed before starting postgres as the primary: ` +
        `${left === -Infinity ? 'no lease' : `${Math.max(0, Math.round(left))} ms of fence time left`}, ` +
        `${need} ms needed (the fencer would stop it at once)`
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Tells the fencer (if any) whether to guard PostgreSQL: armed while this keeper runs the
 * primary, with the time it may keep running (`guardedRemainingMs`); disarmed otherwise. Once this keeper's info is under
 * its own lease, the fencer a killed predecessor left armed is retired. See docs/architecture.md,
 * "Self-fencing".
 */
export function updateFence(rt: KeeperRuntime): void {
  const fencer = rt.deps.fencer;
  if (fencer === undefined || rt.state === 'stopping' || rt.state === 'stopped') {
    return;
  }
  const leaseRemainingMs = rt.store.infoLeaseRemainingMs('keepers', rt.config.uid);
  fencer.update(
    rt.isPrimary ? { armed: true, pgData: rt.pgData, leaseRemainingMs: guardedRemainingMs(rt, leaseRemainingMs), ttlMs: rt.infoTtlMs() } : { armed: false },
  );
  if (leaseRemainingMs !== undefined) {
    fencer.retirePrevious();
  }
}

/**
 * Starts the fence updater (every 250 ms: a renewed lease reaches the fencer within that; a
 * frozen or cut-off keeper stops moving its deadline, and the fencer acts on the last one) and
 * the fencer's report of a fence (the activity says so and a pass runs).
 * @returns a function that stops the timer
 */
export function startFenceUpdates(rt: KeeperRuntime): () => void {
  const fencer = rt.deps.fencer;
  if (fencer === undefined) {
    return () => undefined;
  }
  let lastFencedPid: number | undefined;
  fencer.onFenced(({ pid, at }) => {
    rt.activity = { kind: 'fenced', postmasterPid: pid, at };
    noteFenced(rt.failsafe);
    if (pid !== lastFencedPid) {
      // Restarted only on a sentinel decision made after this keeper published again
      // (renewBootUuid). The fencer reports every signal it sends to a postmaster still shutting
      // down: one new boot id per fenced postmaster, not per report.
      lastFencedPid = pid;
      rt.renewBootUuid();
      rt.log.warn({ postmaster: pid, at, bootUUID: rt.bootUuid }, describeActivity(rt.activity, performance.now()));
    }
    rt.trigger('fenced');
  });
  const timer = setInterval(() => updateFence(rt), FENCE_UPDATE_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Crash detection without waiting for the next pass. Two signals: PostgreSQL's kept probe
 * connection (`PostgresManager.watchConnection`), whose close makes the watch check at once — a
 * postmaster that dies (SIGKILL, OOM killer) ends every backend's connection at once, since an
 * idle backend also waits on the postmaster-death pipe — and a poll of postmaster.pid plus
 * kill(pid, 0) (no connection, no query): every {@link CRASH_CHECK_MS} while the last check saw no
 * running postmaster or no open probe connection, every {@link CRASH_BACKSTOP_MS} (the backstop)
 * while both are there. At rest that is one wake-up a second instead of ten, with the same
 * reaction to a crash: a close that comes before the postmaster is gone from the process table
 * is followed by 100 ms polls, as the connection is not open again until a pass reopens it. When
 * PostgreSQL stops running outside a task, a pass runs at once, which restarts it (crash
 * recovery) or reports why it cannot.
 * @returns a function that stops the watch
 */
export function startCrashWatch(rt: KeeperRuntime): () => void {
  let lastRunning: boolean | undefined;
  let checking = false;
  let again = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const conn = rt.pg.watchConnection?.(() => {
    // The probe connection went away: check now (or right after the check in progress).
    if (checking) {
      again = true;
    } else {
      schedule(0);
    }
  });
  const schedule = (ms: number): void => {
    if (stopped) {
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(check, ms);
    timer.unref();
  };
  const nextMs = (): number => (lastRunning === true && conn?.open() === true ? CRASH_BACKSTOP_MS : CRASH_CHECK_MS);
  const check = (): void => {
    if (rt.state !== 'running') {
      schedule(CRASH_CHECK_MS);
      return;
    }
    checking = true;
    void rt.pg
      .isRunning()
      .then((r) => {
        if (lastRunning === true && !r && rt.tasks.current === undefined) {
          rt.log.warn('postgres is no longer running: checking it now');
          rt.trigger('postgres stopped');
        }
        lastRunning = r;
      })
      .catch(() => undefined)
      .finally(() => {
        checking = false;
        const now = again;
        again = false;
        schedule(now ? 0 : nextMs());
      });
  };
  schedule(CRASH_CHECK_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
    conn?.stop();
  };
}
