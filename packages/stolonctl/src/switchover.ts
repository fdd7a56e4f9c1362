/**
 * `stolonctl switchover [--to KEEPER] [-y] [--no-wait] [--timeout 60s]`: a planned change of
 * primary (Stolon has none; Patroni's `switchover` and CloudNativePG's `promote` are the models).
 * It records a switchover request in clusterdata by compare-and-set; the leader sentinel then
 * fences the proxies, shuts the primary down cleanly, waits until the target received all its
 * WAL, promotes the target and re-points the old primary as a standby (no clone). Nothing
 * acknowledged is lost, even without synchronous replication. By default the command waits for
 * the outcome and prints the phases. The sentinel ends a switchover that cannot finish (past the
 * spec's `switchoverTimeout`, or when the target fails: aborted, the old primary resumes; when
 * the old primary's keeper is lost: it becomes a failover); the command says which, and for a
 * failover waits for it and prints its outcome too. It returns as soon as the sentinel routed the
 * proxies to the new primary (the event's `proxiesRouted`, written together with the routing), i.e.
 * when writes through the proxies resume.
 *
 * `--at <RFC 3339 time | duration>` schedules it instead (Patroni's `switchover --scheduled`): the
 * request is recorded with `scheduledAt` and the command returns; the leader sentinel starts it at
 * that time (up to `SCHEDULED_SWITCHOVER_MAX_LATE_MS` late, e.g. when no sentinel led at the time;
 * later it is dropped and recorded as aborted). `stolonctl status` shows it; `--cancel` removes a
 * request not started yet.
 */
import { nowIso } from '@stolon-ts/common';
import {
  compareFailoverCandidates,
  formatDurationMs,
  ineligibility,
  parseDurationMs,
  resolveSpec,
  SCHEDULED_SWITCHOVER_MAX_LATE_MS,
  SWITCHOVER_BECAME_FAILOVER,
  type ClusterData,
  type FailoverEvent,
} from '@stolon-ts/cluster';
import {
  CommandError,
  ExitCode,
  loadClusterData,
  runCommand,
  updateClusterData,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';
import { describePhases, viewEvent } from './events.js';

/** Options of {@link runSwitchover}. */
export interface SwitchoverOptions {
  /** `--to`: the keeper to promote; default: the best candidate the sentinel finds. */
  readonly to?: string;
  /** `--yes`: do not ask. @default false */
  readonly yes?: boolean;
  /** `--no-wait`: return once the request is recorded. @default false */
  readonly noWait?: boolean;
  /**
   * `--timeout` as a duration string. Default: the spec's `switchoverTimeout` plus 30 s, so the
   * sentinel's own verdict (completed, aborted, or a failover) is seen.
   */
  readonly timeout?: string;
  /** Poll period while waiting, ms. @default 200 */
  readonly pollMs?: number;
  /**
   * `--at`: schedule the switchover at this RFC 3339 time (with a time zone, e.g.
   * `2026-12-07T03:00:00Z`) or after this duration from now (`10m`); the command returns once it is
   * recorded.
   */
  readonly at?: string;
  /** `--cancel`: remove the switchover requested or scheduled and not started yet. */
  readonly cancel?: boolean;
  /** Clock for `--at`, epoch ms (tests). @default Date.now */
  readonly now?: () => number;
}

/** Scheduled switchovers may be this far ahead at most, ms (a week): a typo in a date is caught. */
const MAX_SCHEDULE_AHEAD_MS = 7 * 24 * 3_600_000;

/** RFC 3339 date-time with a time zone (the form `--at` accepts besides a duration). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * `--at`'s time as epoch ms: an RFC 3339 time with a time zone, or a duration from `nowMs`.
 * @throws CommandError (exit 2) naming `--at`: unparseable, not in the future, or more than a week ahead.
 */
export function parseSwitchoverAt(text: string, nowMs: number): number {
  const dur = parseDurationMs(text);
  const at = dur !== undefined ? nowMs + dur : RFC3339.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isFinite(at)) {
    throw new CommandError(`--at: "${text}" is neither an RFC 3339 time with a time zone (2026-12-07T03:00:00Z) nor a duration (10m)`, ExitCode.usage, { field: 'at' });
  }
  if (at <= nowMs) {
    throw new CommandError(`--at: ${new Date(at).toISOString()} is not in the future; give a later time, or no --at to switch over now`, ExitCode.usage, { field: 'at' });
  }
  if (at - nowMs > MAX_SCHEDULE_AHEAD_MS) {
    throw new CommandError(`--at: ${new Date(at).toISOString()} is more than ${formatDurationMs(MAX_SCHEDULE_AHEAD_MS)} ahead; schedule it nearer the time`, ExitCode.usage, { field: 'at' });
  }
  return at;
}

/** `--cancel`: removes the request not started yet. */
async function cancelSwitchover(ctx: CommandContext): Promise<ExitCodeValue> {
  const cancelled = await updateClusterData(ctx, ({ cd }) => {
    const req = cd.cluster.status.switchoverRequest;
    if (req === undefined) {
      const inProgress = cd.cluster.status.failover?.kind === 'switchover';
      throw new CommandError(
        inProgress ? 'the switchover already started and cannot be cancelled; see stolonctl events' : 'no switchover is requested or scheduled; nothing to cancel',
        ExitCode.runtime,
      );
    }
    const next = structuredClone(cd);
    delete next.cluster.status.switchoverRequest;
    return { write: next, result: req };
  });
  ctx.out(`cancelled the switchover ${cancelled.scheduledAt !== undefined ? `scheduled at ${cancelled.scheduledAt}` : `requested at ${cancelled.requestedAt}`}`);
  return ExitCode.ok;
}

/** Refuses a second request while one waits (the sentinel keeps only one). */
function noPendingRequest(cd: ClusterData): void {
  const req = cd.cluster.status.switchoverRequest;
  if (req?.scheduledAt !== undefined) {
    throw new CommandError(`a switchover is already scheduled at ${req.scheduledAt}; run stolonctl switchover --cancel first`, ExitCode.runtime);
  }
}

/** Refuses early what the sentinel would refuse, so the operator gets the reason at once. */
function precheck(cd: ClusterData, to: string | undefined): void {
  if (cd.cluster.status.phase !== 'normal') {
    throw new CommandError('the cluster is still initializing; switch over once it is up', ExitCode.runtime);
  }
  if ((cd.cluster.spec.role ?? 'master') !== 'master') {
    throw new CommandError('a standby cluster has no writable primary to switch over; use stolonctl promote', ExitCode.runtime);
  }
  if (cd.cluster.spec.paused === true) {
    throw new CommandError('the cluster is paused; run stolonctl resume first', ExitCode.runtime);
  }
  if (cd.cluster.status.failover !== undefined) {
    throw new CommandError(`a ${cd.cluster.status.failover.kind} is already in progress; see stolonctl events`, ExitCode.runtime);
  }
  const master = cd.dbs[cd.cluster.status.master];
  if (master === undefined) {
    throw new CommandError('the cluster has no primary now', ExitCode.runtime);
  }
  const spec = resolveSpec(cd.cluster.spec);
  const standbys = Object.values(cd.dbs).filter((d) => d.spec.followConfig?.type === 'internal' && d.spec.followConfig.dbuid === master.uid);
  const why = (uid: string): string | undefined => {
    const db = standbys.find((d) => d.spec.keeperUID === uid);
    if (db === undefined) {
      return 'it holds no standby of the primary';
    }
    return ineligibility(
      { db, canBeMaster: cd.keepers[uid]?.status.canBeMaster !== false },
      master,
      { healthy: db.status.healthy && cd.keepers[uid]?.status.healthy === true, maxStandbyLag: spec.maxStandbyLag },
    );
  };
  if (to !== undefined) {
    if (cd.keepers[to] === undefined) {
      throw new CommandError(`keeper ${to} is not in the cluster (known: ${Object.keys(cd.keepers).sort().join(', ')})`, ExitCode.runtime, { field: 'to' });
    }
    if (master.spec.keeperUID === to) {
      throw new CommandError(`keeper ${to} already holds the primary`, ExitCode.runtime, { field: 'to' });
    }
    const problem = why(to);
    if (problem !== undefined) {
      throw new CommandError(`keeper ${to} cannot be promoted now: ${problem}`, ExitCode.runtime, { field: 'to' });
    }
  } else {
    const ok = standbys
      .filter((d) => why(d.spec.keeperUID) === undefined)
      .map((db) => ({ db, canBeMaster: true }))
      .sort(compareFailoverCandidates);
    if (ok.length === 0) {
      throw new CommandError('no healthy, caught-up standby to promote; see stolonctl status', ExitCode.runtime);
    }
  }
}

/** Sleeps of the wait loop that end early on a clusterdata change. */
interface Wake {
  /** Resolves after `ms`, or at once on a change seen since the last call, or at the next change. */
  sleep(ms: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Watches clusterdata so the wait loop reads the outcome as soon as the sentinel writes it (the
 * routing to the new primary), not up to a poll period later. Without a watch (the store refused
 * it) the loop only polls.
 */
async function openWake(ctx: CommandContext): Promise<Wake> {
  let changed = false;
  let wake: (() => void) | undefined;
  const watch = await ctx.store
    .watch(['clusterdata'], () => {
      changed = true;
      wake?.();
    })
    .catch(() => undefined);
  return {
    sleep: (ms) =>
      new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          wake = undefined;
          changed = false;
          resolve();
        };
        const timer = setTimeout(done, ms);
        if (changed) {
          done();
        } else {
          wake = done;
        }
      }),
    close: async () => {
      await watch?.close().catch(() => undefined);
    },
  };
}

function describe(ev: FailoverEvent): string {
  return [
    `${ev.kind} ${ev.result ?? 'in progress'}: ${ev.oldPrimary.keeperUID} → ${ev.newPrimary?.keeperUID ?? '?'} (${ev.choice ?? ''})`,
    `  ${describePhases(viewEvent(ev, ev.result === undefined))}`,
  ].join('\n');
}

/** Whether the sentinel ended this switchover because its old primary was lost (a failover follows). */
function becameFailover(ev: FailoverEvent): boolean {
  return ev.kind === 'switchover' && ev.result === 'aborted' && (ev.choice ?? '').endsWith(SWITCHOVER_BECAME_FAILOVER);
}

/** Polls until the failover that followed the switchover `sw` ended, then prints it. */
async function awaitFailover(ctx: CommandContext, sw: FailoverEvent, deadline: number, timeout: string, pollMs: number): Promise<void> {
  ctx.out(`switchover became a failover: the old primary's keeper ${sw.oldPrimary.keeperUID} was lost; waiting for the failover`);
  for (;;) {
    const { cd } = await loadClusterData(ctx);
    const ev = (cd.failoverHistory ?? []).find(
      (e) => e.kind === 'failover' && e.oldPrimary.dbUid === sw.oldPrimary.dbUid && e.result !== undefined,
    );
    if (ev !== undefined) {
      ctx.out(describe(ev));
      return;
    }
    if (Date.now() > deadline) {
      throw new CommandError(`the failover that replaced the switchover did not finish within ${timeout}; see stolonctl events`, ExitCode.runtime);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Requests a switchover and (unless `noWait`) waits for its outcome.
 * @returns 0 when completed (or recorded, with `noWait`); 1 when refused, aborted by the sentinel
 *   (also when it became a failover, whose outcome is printed), or not finished within the
 *   timeout; 2 for a bad `--timeout`.
 */
export function runSwitchover(ctx: CommandContext, opts: SwitchoverOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'switchover', async () => {
    const given = opts.timeout === undefined ? undefined : parseDurationMs(opts.timeout);
    if (opts.timeout !== undefined && (given === undefined || given <= 0)) {
      throw new CommandError(`--timeout: "${opts.timeout}" is not a positive duration such as 60s`, ExitCode.usage, { field: 'timeout' });
    }
    if (opts.cancel === true) {
      if (opts.at !== undefined || opts.to !== undefined) {
        throw new CommandError('--cancel: give it alone (not with --at or --to)', ExitCode.usage, { field: 'cancel' });
      }
      return cancelSwitchover(ctx);
    }
    const atMs = opts.at === undefined ? undefined : parseSwitchoverAt(opts.at, (opts.now ?? Date.now)());
    const loaded = await loadClusterData(ctx);
    const timeoutMs = given ?? resolveSpec(loaded.cd.cluster.spec).switchoverTimeoutMs + 30_000;
    const timeoutText = opts.timeout ?? formatDurationMs(timeoutMs);
    precheck(loaded.cd, opts.to);
    noPendingRequest(loaded.cd);
    const master = loaded.cd.dbs[loaded.cd.cluster.status.master];
    const scheduledAt = atMs === undefined ? undefined : new Date(atMs).toISOString();
    if (opts.yes !== true) {
      const target = `${opts.to ?? 'the most up-to-date standby'}${scheduledAt !== undefined ? ` at ${scheduledAt}` : ''}`;
      if (ctx.confirm === undefined) {
        throw new CommandError('standard input is not a terminal to confirm on; re-run with --yes to switch over', ExitCode.runtime, { field: 'yes' });
      }
      if (!(await ctx.confirm(`Switch the primary from keeper ${master?.spec.keeperUID} to ${target}? Writes pause briefly. (yes/no)`))) {
        throw new CommandError('not confirmed; nothing changed', ExitCode.runtime);
      }
    }
    const requestedAt = nowIso();
    const historyBefore = loaded.cd.failoverHistory?.length ?? 0;
    await updateClusterData(
      ctx,
      ({ cd }, attempt) => {
        if (attempt > 1) {
          precheck(cd, opts.to);
          noPendingRequest(cd);
        }
        const next = structuredClone(cd);
        next.cluster.status.switchoverRequest = {
          requestedAt,
          ...(opts.to !== undefined ? { targetKeeperUID: opts.to } : {}),
          ...(scheduledAt !== undefined ? { scheduledAt } : {}),
        };
        return { write: next, result: undefined };
      },
      { first: loaded },
    );
    if (scheduledAt !== undefined) {
      ctx.out(
        `switchover scheduled at ${scheduledAt} (from keeper ${master?.spec.keeperUID}${opts.to !== undefined ? ` to ${opts.to}` : ''}); ` +
          `the leader sentinel starts it then (dropped if it cannot start within ${formatDurationMs(SCHEDULED_SWITCHOVER_MAX_LATE_MS)}); ` +
          'stolonctl status shows it, stolonctl switchover --cancel removes it',
      );
      return ExitCode.ok;
    }
    ctx.out(`switchover requested (from keeper ${master?.spec.keeperUID}${opts.to !== undefined ? ` to ${opts.to}` : ''})`);
    if (opts.noWait === true) {
      return ExitCode.ok;
    }
    const deadline = Date.now() + timeoutMs;
    const wake = await openWake(ctx);
    try {
      return await awaitOutcome(ctx, { requestedAt, historyBefore, deadline, timeoutText, pollMs: opts.pollMs ?? 200, wake });
    } finally {
      await wake.close();
    }
  });
}

/**
 * Waits until the switchover requested at `requestedAt` ended (the sentinel wrote its result,
 * together with the routing of the proxies), reading clusterdata on every change and at least
 * every `pollMs`.
 */
async function awaitOutcome(
  ctx: CommandContext,
  w: { requestedAt: string; historyBefore: number; deadline: number; timeoutText: string; pollMs: number; wake: Wake },
): Promise<ExitCodeValue> {
  const { requestedAt, historyBefore, deadline, timeoutText } = w;
  for (;;) {
    const { cd } = await loadClusterData(ctx);
    const history = cd.failoverHistory ?? [];
    const done = history.slice(Math.max(0, historyBefore - 1)).find((e) => e.kind === 'switchover' && Date.parse(e.phases.declaredFailed) >= Date.parse(requestedAt) - 1000 && e.result !== undefined);
    if (done !== undefined) {
      ctx.out(describe(done));
      if (becameFailover(done)) {
        await awaitFailover(ctx, done, deadline, timeoutText, w.pollMs);
      }
      return done.result === 'completed' ? ExitCode.ok : ExitCode.runtime;
    }
    if (cd.cluster.status.switchoverRequest === undefined && cd.cluster.status.failover === undefined) {
      throw new CommandError('the sentinel refused the switchover; its log says why (see also stolonctl status)', ExitCode.runtime);
    }
    if (Date.now() > deadline) {
      throw new CommandError(`switchover not finished within ${timeoutText}; see stolonctl events`, ExitCode.runtime);
    }
    await w.wake.sleep(w.pollMs);
  }
}
