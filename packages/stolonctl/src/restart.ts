/**
 * `stolonctl restart [--keeper X] [--pending-only] [--in-place] [-y] [--timeout 2m]`: a rolling
 * restart of PostgreSQL (Patroni's `restart` and CloudNativePG's `restart` are the models; Stolon
 * has none). Standbys first, one at a time, each running, healthy and streaming again before the
 * next; then the primary through a planned switchover (`stolonctl switchover`: its clean shutdown
 * restarts the old primary as a standby of the new one, so it needs no restart of its own), or in
 * place with `--in-place` (writes stop while it restarts). Never two instances down at once: a
 * restart is asked only while every other instance is up. The first step that does not finish
 * within `--timeout` stops the command (exit 1) and later instances are left alone.
 *
 * One instance is restarted by recording `DBSpec.restartRequest` with a new DB generation
 * (compare-and-set on clusterdata); its keeper restarts PostgreSQL once (`restartRequested`) and
 * then reports that generation as applied, with a new postmaster start time, in its info, which
 * this command polls (`restartPending`).
 */
import { nowIso } from '@stolon-ts/common';
import {
  formatDurationMs,
  instancesDown,
  parseDurationMs,
  planRestart,
  restartPending,
  restartWorthy,
  type ClusterData,
  type KeeperInfo,
  type RestartPlan,
} from '@stolon-ts/cluster';
import { CommandError, ExitCode, loadClusterData, runCommand, updateClusterData, type CommandContext, type ExitCodeValue } from './context.js';
import { runSwitchover } from './switchover.js';

/** Options of {@link runRestart}. */
export interface RestartOptions {
  /** `--keeper`: restart only this keeper's PostgreSQL. */
  readonly keeper?: string;
  /** `--pending-only`: only instances with a parameter pending restart (`pg_settings.pending_restart`). */
  readonly pendingOnly?: boolean;
  /** `--in-place`: restart the primary in place instead of switching over first. @default false */
  readonly inPlace?: boolean;
  /** `--yes`: do not ask. @default false */
  readonly yes?: boolean;
  /** `--timeout`: how long each step (one instance, or the switchover) may take. @default "2m" */
  readonly timeout?: string;
  /** Poll period of keeper infos and clusterdata, ms. @default 200 */
  readonly pollMs?: number;
}

const DEFAULT_STEP_TIMEOUT = '2m';

interface Step {
  readonly ctx: CommandContext;
  readonly timeoutMs: number;
  readonly timeoutText: string;
  readonly pollMs: number;
}

async function readState(ctx: CommandContext): Promise<{ cd: ClusterData; infos: Readonly<Record<string, KeeperInfo>> }> {
  const [{ cd }, infos] = await Promise.all([loadClusterData(ctx), ctx.store.listInfos('keepers')]);
  return { cd, infos };
}

/** Polls until `check` returns undefined; throws what it last returned once the step's timeout passed. */
async function waitUntil(
  s: Step,
  check: (st: { cd: ClusterData; infos: Readonly<Record<string, KeeperInfo>> }) => string | undefined,
  what: string,
): Promise<void> {
  const deadline = Date.now() + s.timeoutMs;
  for (;;) {
    const missing = check(await readState(s.ctx));
    if (missing === undefined) {
      return;
    }
    if (Date.now() > deadline) {
      throw new CommandError(
        `${what} did not happen within --timeout ${s.timeoutText} (${missing}); restart stopped, later instances were not restarted; see stolonctl status`,
        ExitCode.runtime,
      );
    }
    await new Promise((r) => setTimeout(r, s.pollMs));
  }
}

/** Waits until every instance but `keeper`'s is up and no failover or switchover runs. */
function othersUp(s: Step, keeper: string): Promise<void> {
  return waitUntil(
    s,
    ({ cd, infos }) => {
      if (cd.cluster.status.failover !== undefined) {
        return `a ${cd.cluster.status.failover.kind} is in progress`;
      }
      const down = instancesDown(cd, infos, keeper);
      return down.length > 0 ? `not up: ${down.join(', ')}` : undefined;
    },
    `every other instance up before restarting keeper ${keeper}`,
  );
}

/** Restarts one instance in place through its keeper and waits until it is back. */
async function restartOne(s: Step, keeper: string): Promise<void> {
  await othersUp(s, keeper);
  const { infos } = await readState(s.ctx);
  const startedBefore = infos[keeper]?.postgresState?.startedAt;
  const requestedAt = nowIso();
  const t0 = Date.now();
  const asked = await updateClusterData(s.ctx, ({ cd: now }) => {
    const next = structuredClone(now);
    const db = Object.values(next.dbs).find((d) => d.spec.keeperUID === keeper);
    if (db === undefined) {
      throw new CommandError(`keeper ${keeper} no longer holds a DB; restart stopped`, ExitCode.runtime);
    }
    db.generation += 1;
    db.changeTime = requestedAt;
    db.spec.restartRequest = { requestedAt, generation: db.generation };
    return { write: next, result: { uid: db.uid, generation: db.generation, standby: db.uid !== next.cluster.status.master } };
  });
  s.ctx.out(`restarting PostgreSQL of keeper ${keeper} (db ${asked.uid}, ${asked.standby ? 'standby' : 'primary, in place'})`);
  await waitUntil(
    s,
    ({ infos: now }) => restartPending(now[keeper], { uid: asked.uid }, asked.generation, startedBefore, asked.standby),
    `the restart of keeper ${keeper}`,
  );
  const after = (await readState(s.ctx)).infos[keeper]?.postgresState?.startedAt;
  s.ctx.out(`keeper ${keeper} back after ${formatDurationMs(Date.now() - t0)} (postmaster started ${after ?? '?'})`);
}

/** Switches over from the primary `keeper`, then waits for it to be back as a streaming standby. */
async function switchOverFrom(s: Step, keeper: string, pendingOnly: boolean): Promise<void> {
  await othersUp(s, keeper);
  const before = (await readState(s.ctx)).infos[keeper]?.postgresState?.startedAt;
  s.ctx.out(`switching over from the primary (keeper ${keeper}); its clean shutdown restarts it as a standby`);
  const code = await runSwitchover(s.ctx, { yes: true, timeout: s.timeoutText, pollMs: s.pollMs });
  if (code !== ExitCode.ok) {
    throw new CommandError(`the switchover from keeper ${keeper} did not complete; restart stopped (its own message says why)`, ExitCode.runtime);
  }
  await waitUntil(
    s,
    ({ cd, infos }) => {
      const db = Object.values(cd.dbs).find((d) => d.spec.keeperUID === keeper);
      return db === undefined ? `keeper ${keeper} holds no DB` : restartPending(infos[keeper], db, 0, before, true);
    },
    `the former primary (keeper ${keeper}) to run again as a streaming standby`,
  );
  s.ctx.out(`keeper ${keeper} runs again as a standby (postmaster started ${(await readState(s.ctx)).infos[keeper]?.postgresState?.startedAt ?? '?'})`);
  if (pendingOnly) {
    const left = restartWorthy((await readState(s.ctx)).infos[keeper]?.postgresState?.pendingRestart ?? [], false);
    if (left.length > 0) {
      s.ctx.out(`keeper ${keeper} still has ${left.join(', ')} pending restart`);
      await restartOne(s, keeper);
    }
  }
}

function describePlan(plan: RestartPlan): string {
  const order = [...plan.standbys.map((k) => `${k} (standby)`)];
  if (plan.primary !== undefined) {
    order.push(`${plan.primary.keeperUID} (primary, ${plan.primary.how === 'switchover' ? 'after a switchover' : 'in place'})`);
  }
  return order.join(', then ');
}

/** Refuses what would fail half-way: an uninitialised, paused or failing-over cluster. */
function precheck(cd: ClusterData, plan: RestartPlan): void {
  if (cd.cluster.status.phase !== 'normal') {
    throw new CommandError('the cluster is still initializing; restart once it is up', ExitCode.runtime);
  }
  if (cd.cluster.status.failover !== undefined) {
    throw new CommandError(`a ${cd.cluster.status.failover.kind} is in progress; see stolonctl events`, ExitCode.runtime);
  }
  if (plan.primary?.how === 'switchover' && cd.cluster.spec.paused === true) {
    throw new CommandError('the cluster is paused, so the primary cannot be switched over; run stolonctl resume first, or give --in-place', ExitCode.runtime);
  }
}

/**
 * Runs the rolling restart.
 * @returns 0 when every planned instance was restarted (or none needed it); 1 when refused or a
 *   step failed or timed out (the message names it; later instances are left alone); 2 for a bad
 *   `--timeout`.
 */
export function runRestart(ctx: CommandContext, opts: RestartOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'restart', async () => {
    const timeoutText = opts.timeout ?? DEFAULT_STEP_TIMEOUT;
    const timeoutMs = parseDurationMs(timeoutText);
    if (timeoutMs === undefined || timeoutMs <= 0) {
      throw new CommandError(`--timeout: "${timeoutText}" is not a positive duration such as 2m`, ExitCode.usage, { field: 'timeout' });
    }
    const { cd, infos } = await readState(ctx);
    let plan: RestartPlan;
    try {
      plan = planRestart(cd, infos, { ...(opts.keeper !== undefined ? { keeper: opts.keeper } : {}), pendingOnly: opts.pendingOnly === true, inPlace: opts.inPlace === true });
    } catch (err) {
      throw new CommandError((err as Error).message, ExitCode.runtime, { ...(opts.keeper !== undefined ? { field: 'keeper' } : {}) });
    }
    for (const sk of plan.skipped) {
      ctx.out(`keeper ${sk.keeperUID}: skipped (${sk.why})`);
    }
    if (plan.standbys.length === 0 && plan.primary === undefined) {
      ctx.out('nothing to restart');
      return ExitCode.ok;
    }
    precheck(cd, plan);
    if (opts.yes !== true) {
      if (ctx.confirm === undefined) {
        throw new CommandError('standard input is not a terminal to confirm on; re-run with --yes to restart', ExitCode.runtime, { field: 'yes' });
      }
      if (!(await ctx.confirm(`Restart PostgreSQL of ${describePlan(plan)}? (yes/no)`))) {
        throw new CommandError('not confirmed; nothing changed', ExitCode.runtime);
      }
    }
    ctx.out(`restart order: ${describePlan(plan)}`);
    const step: Step = { ctx, timeoutMs, timeoutText, pollMs: opts.pollMs ?? 200 };
    for (const keeper of plan.standbys) {
      await restartOne(step, keeper);
    }
    if (plan.primary?.how === 'switchover') {
      await switchOverFrom(step, plan.primary.keeperUID, opts.pendingOnly === true);
    } else if (plan.primary?.how === 'in-place') {
      await restartOne(step, plan.primary.keeperUID);
    }
    ctx.out('restart complete');
    return ExitCode.ok;
  });
}
