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
 * failover waits for it and prints its outcome too.
 */
import { nowIso } from '@stolon-ts/common';
import {
  compareFailoverCandidates,
  formatDurationMs,
  ineligibility,
  parseDurationMs,
  resolveSpec,
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
    const loaded = await loadClusterData(ctx);
    const timeoutMs = given ?? resolveSpec(loaded.cd.cluster.spec).switchoverTimeoutMs + 30_000;
    const timeoutText = opts.timeout ?? formatDurationMs(timeoutMs);
    precheck(loaded.cd, opts.to);
    const master = loaded.cd.dbs[loaded.cd.cluster.status.master];
    if (opts.yes !== true) {
      const target = opts.to ?? 'the most up-to-date standby';
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
        }
        const next = structuredClone(cd);
        next.cluster.status.switchoverRequest = { requestedAt, ...(opts.to !== undefined ? { targetKeeperUID: opts.to } : {}) };
        return { write: next, result: undefined };
      },
      { first: loaded },
    );
    ctx.out(`switchover requested (from keeper ${master?.spec.keeperUID}${opts.to !== undefined ? ` to ${opts.to}` : ''})`);
    if (opts.noWait === true) {
      return ExitCode.ok;
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { cd } = await loadClusterData(ctx);
      const history = cd.failoverHistory ?? [];
      const done = history.slice(Math.max(0, historyBefore - 1)).find((e) => e.kind === 'switchover' && Date.parse(e.phases.declaredFailed) >= Date.parse(requestedAt) - 1000 && e.result !== undefined);
      if (done !== undefined) {
        ctx.out(describe(done));
        if (becameFailover(done)) {
          await awaitFailover(ctx, done, deadline, timeoutText, opts.pollMs ?? 200);
        }
        return done.result === 'completed' ? ExitCode.ok : ExitCode.runtime;
      }
      if (cd.cluster.status.switchoverRequest === undefined && cd.cluster.status.failover === undefined) {
        throw new CommandError('the sentinel refused the switchover; its log says why (see also stolonctl status)', ExitCode.runtime);
      }
      if (Date.now() > deadline) {
        throw new CommandError(`switchover not finished within ${timeoutText}; see stolonctl events`, ExitCode.runtime);
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
    }
  });
}
