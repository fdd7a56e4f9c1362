/**
 * The keeper's two timers besides its pass loop: the fence update (tells the fencer whether to
 * guard PostgreSQL and how long the info lease surely lives) and the crash watch (a pass at once
 * when PostgreSQL stops running).
 */
import { describeActivity } from './activity.js';
import type { KeeperRuntime } from './runtime.js';

/** How often the fencer hears the lease's remaining time even without a pass, in ms. */
const FENCE_UPDATE_MS = 250;
/** How often the crash watch looks at postmaster.pid, in ms. */
const CRASH_CHECK_MS = 100;

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
 * Starts the fence updater (every 250 ms, so a frozen or cut-off keeper stops refreshing the
 * fencer) and the fencer's report of a fence (the activity says so and a pass runs).
 * @returns a function that stops the timer
 */
export function startFenceUpdates(rt: KeeperRuntime): () => void {
  const fencer = rt.deps.fencer;
  if (fencer === undefined) {
    return () => undefined;
  }
  fencer.onFenced(({ pid, at }) => {
    rt.activity = { kind: 'fenced', postmasterPid: pid, at };
    rt.log.warn({ postmaster: pid, at }, describeActivity(rt.activity, performance.now()));
    rt.trigger('fenced');
  });
  const timer = setInterval(() => updateFence(rt), FENCE_UPDATE_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Crash detection without waiting for the next pass: postmaster.pid plus kill(pid, 0) every
 * 100 ms (no connection, no query). When PostgreSQL stops running outside a task, a pass runs at
 * once, which restarts it (crash recovery) or reports why it cannot.
 * @returns a function that stops the watch
 */
export function startCrashWatch(rt: KeeperRuntime): () => void {
  let lastRunning: boolean | undefined;
  let checking = false;
  const timer = setInterval(() => {
    if (checking || rt.state !== 'running') {
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
      });
  }, CRASH_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
