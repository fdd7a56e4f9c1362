/**
 * `stolonctl reinit KEEPER [--force] [-y] [--no-wait] [--timeout 10m]`: wipes a standby and clones
 * it again from the primary (Patroni's `patronictl reinit`; Stolon has none). It records a
 * `cluster.status.reinitRequest` by compare-and-set; the leader sentinel replaces the keeper's DB
 * by a new one (new DB uid, initMode `resync`, `reinitRequestedAt`), and the keeper runs its
 * resync path: stops PostgreSQL, clones with pg_basebackup into a new directory and replaces the
 * old data directory only once the clone succeeded (never pg_rewind, which would keep the data).
 * By default the command waits until the keeper streams from the primary again.
 *
 * Refused (exit 1, nothing written): the keeper holds the primary (a primary cannot be cloned from
 * itself: switch over first), the cluster is paused or initialising, a failover or switchover is
 * in progress, another reinit is pending, the keeper holds no DB; and, unless `--force`, a
 * synchronous standby whose loss leaves fewer than `minSynchronousStandbys` synchronous standbys
 * (commits on the primary then wait until it streams again).
 */
import { formatDurationMs, parseDurationMs, resolveSpec, type ClusterData, type DB, type KeeperInfo } from '@stolon-ts/cluster';
import { nowIso } from '@stolon-ts/common';
import {
  checkKeeperArg,
  CommandError,
  ExitCode,
  loadClusterData,
  requireKeeper,
  runCommand,
  updateClusterData,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** Options of {@link runReinit}. */
export interface ReinitOptions {
  /** The keeper's UID (the positional argument). */
  readonly keeper: string;
  /** `--force`: also re-clone a synchronous standby whose loss blocks commits. @default false */
  readonly force?: boolean;
  /** `--yes`: do not ask. @default false */
  readonly yes?: boolean;
  /** `--no-wait`: return once the request is recorded. @default false */
  readonly noWait?: boolean;
  /** `--timeout` as a duration string. @default "10m" */
  readonly timeout?: string;
  /** Poll period while waiting, ms. @default 500 */
  readonly pollMs?: number;
}

/** Default `--timeout`: how long to wait for the clone to stream. */
const DEFAULT_TIMEOUT = '10m';

/**
 * Why keeper `uid` may not be re-cloned now, or undefined when it may: the refusal rules of
 * `stolonctl reinit` (module comment). Pure.
 * @returns the keeper's standby DB and, when refused, the sentence saying why and what to do
 * @throws CommandError (exit 1) when the keeper is not in the cluster
 */
export function reinitRefusal(cd: ClusterData, uid: string, force: boolean): { db?: DB; refusal?: string } {
  requireKeeper(cd, uid);
  const status = cd.cluster.status;
  if (cd.cluster.spec.paused === true) {
    return { refusal: 'the cluster is paused: the sentinel takes no standby action; run stolonctl resume first' };
  }
  if (status.phase !== 'normal') {
    return { refusal: 'the cluster is still initializing; re-clone once it is up' };
  }
  if (status.failover !== undefined) {
    return { refusal: `a ${status.failover.kind} is in progress; wait for it to end (stolonctl events) and run reinit again` };
  }
  if (status.reinitRequest !== undefined) {
    return { refusal: `a reinit of keeper ${status.reinitRequest.keeperUID} is pending; wait for it (stolonctl status) and run reinit again` };
  }
  const db = Object.values(cd.dbs).find((d) => d.spec.keeperUID === uid);
  if (db === undefined) {
    return { refusal: `keeper ${uid} holds no DB now (the sentinel assigns it one when there is room for a standby); nothing to re-clone` };
  }
  const master = cd.dbs[status.master];
  if (db.uid === status.master || db.spec.role === 'master' || db.spec.followConfig?.type === 'external') {
    return {
      db,
      refusal:
        `keeper ${uid} holds the primary db ${db.uid}, which cannot be cloned from itself; ` +
        `make another keeper primary first (stolonctl switchover), then run stolonctl reinit ${uid}`,
    };
  }
  if (db.spec.reinitRequestedAt !== undefined) {
    return { db, refusal: `keeper ${uid} is already being re-cloned (requested at ${db.spec.reinitRequestedAt}); see stolonctl status` };
  }
  const spec = resolveSpec(cd.cluster.spec);
  const sync = master?.spec.synchronousStandbys ?? [];
  if (!force && spec.synchronousReplication && sync.includes(db.uid)) {
    const others = sync.filter((u) => u !== db.uid && cd.dbs[u]?.status.healthy === true);
    if (others.length < spec.minSynchronousStandbys) {
      return {
        db,
        refusal:
          `keeper ${uid} (db ${db.uid}) is a synchronous standby and only ${others.length} other healthy synchronous ` +
          `standby would remain, fewer than minSynchronousStandbys (${spec.minSynchronousStandbys}): commits on the primary ` +
          'would wait until the clone streams again; add a standby first, or re-run with --force to accept that',
      };
    }
  }
  return { db };
}

/** Whether the keeper's info shows the new DB running as a standby that streams from the primary. */
function streaming(info: KeeperInfo | undefined, dbUid: string): boolean {
  const ps = info?.postgresState;
  return ps !== undefined && ps.uid === dbUid && ps.healthy && ps.running === true && ps.streaming === true;
}

/** Polls until the sentinel replaced the DB and the keeper streams again, printing each step once. */
async function awaitReinit(ctx: CommandContext, uid: string, oldDb: string, requestedAt: string, deadline: number, timeout: string, pollMs: number): Promise<void> {
  let replacedBy: string | undefined;
  for (;;) {
    const { cd } = await loadClusterData(ctx);
    const mine = Object.values(cd.dbs).find((d) => d.spec.keeperUID === uid);
    if (mine !== undefined && mine.uid !== oldDb && mine.uid !== replacedBy) {
      // A clone that failed past syncTimeout gets yet another new DB from the sentinel: follow it.
      ctx.out(`the sentinel replaced db ${replacedBy ?? oldDb} by db ${mine.uid}; keeper ${uid} clones it from the primary with pg_basebackup`);
      replacedBy = mine.uid;
    }
    if (replacedBy === undefined && cd.cluster.status.reinitRequest?.requestedAt !== requestedAt && mine?.uid === oldDb) {
      throw new CommandError('the sentinel dropped the request (its log says why; see also stolonctl status)', ExitCode.runtime);
    }
    if (replacedBy !== undefined) {
      const infos = await ctx.store.listInfos('keepers');
      if (streaming(infos[uid], replacedBy)) {
        ctx.out(`keeper ${uid} streams from the primary again (db ${replacedBy}, LSN ${infos[uid]?.postgresState?.xLogPos ?? '?'})`);
        return;
      }
    }
    if (Date.now() > deadline) {
      const infos = await ctx.store.listInfos('keepers');
      const activity = infos[uid]?.postgresState?.activity;
      throw new CommandError(
        `keeper ${uid} does not stream again within ${timeout}${activity !== undefined ? ` (its keeper says: ${activity})` : ''}; ` +
          'the clone may still be running: see stolonctl status, or wait longer with --timeout',
        ExitCode.runtime,
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/**
 * Requests the re-clone and (unless `noWait`) waits until the keeper streams again.
 * @returns 0 when it streams again (or the request is recorded, with `noWait`); 1 when refused
 *   (see {@link reinitRefusal}), not confirmed, dropped by the sentinel, not streaming within the
 *   timeout, or the store fails; 2 for an empty KEEPER or a bad `--timeout`.
 */
export function runReinit(ctx: CommandContext, opts: ReinitOptions): Promise<ExitCodeValue> {
  return runCommand(ctx, 'reinit', async () => {
    const uid = opts.keeper;
    checkKeeperArg(uid);
    const timeout = opts.timeout ?? DEFAULT_TIMEOUT;
    const timeoutMs = parseDurationMs(timeout);
    if (timeoutMs === undefined || timeoutMs <= 0) {
      throw new CommandError(`--timeout: "${timeout}" is not a positive duration such as 10m`, ExitCode.usage, { field: 'timeout' });
    }
    const loaded = await loadClusterData(ctx);
    const check = (cd: ClusterData): DB => {
      const { db, refusal } = reinitRefusal(cd, uid, opts.force === true);
      if (refusal !== undefined || db === undefined) {
        throw new CommandError(refusal ?? `keeper ${uid} holds no DB`, ExitCode.runtime, { field: 'keeper' });
      }
      return db;
    };
    const first = check(loaded.cd);
    if (opts.yes !== true) {
      if (ctx.confirm === undefined) {
        throw new CommandError('standard input is not a terminal to confirm on; re-run with --yes to re-clone', ExitCode.runtime, { field: 'yes' });
      }
      if (!(await ctx.confirm(`Wipe the data of keeper ${uid} (standby db ${first.uid}) and clone it again from the primary? (yes/no)`))) {
        throw new CommandError('not confirmed; nothing changed', ExitCode.runtime);
      }
    }
    const requestedAt = nowIso();
    const db = await updateClusterData(
      ctx,
      ({ cd }, attempt) => {
        const target = attempt === 1 ? first : check(cd);
        const next = structuredClone(cd);
        next.cluster.status.reinitRequest = { keeperUID: uid, dbUid: target.uid, requestedAt };
        return { write: next, result: target };
      },
      { first: loaded },
    );
    ctx.out(`reinit of keeper ${uid} requested (standby db ${db.uid})`);
    if (opts.noWait === true) {
      return;
    }
    await awaitReinit(ctx, uid, db.uid, requestedAt, Date.now() + timeoutMs, formatDurationMs(timeoutMs), opts.pollMs ?? 500);
  });
}
