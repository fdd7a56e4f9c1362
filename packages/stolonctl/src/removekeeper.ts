/**
 * `stolonctl removekeeper KEEPER [-y]`: deletes a keeper and its DB(s) from clusterdata by
 * compare-and-set. Refused while the keeper's DB is the primary (fail it over first) or while a
 * failover in progress is promoting it. Asks for confirmation when a human is at the terminal;
 * without one, only `--yes` proceeds. As in Stolon, other DBs' `followers` lists are left to the
 * sentinel, which recomputes them on its next pass.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/removekeeper.go (Stolon's command)
 */
import type { ClusterData, DB } from '@stolon-ts/cluster';
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

/** Options of {@link runRemovekeeper}. */
export interface RemovekeeperOptions {
  /** The keeper's UID (the positional argument). */
  readonly keeper: string;
  /** `--yes`: remove without asking. @default false */
  readonly yes?: boolean;
}

/**
 * The keeper's DBs, after checking it may be removed.
 * @throws CommandError (exit 1) when it is unknown, holds the primary DB, or is the new primary
 *   of the failover in progress.
 */
function removableDbs(cd: ClusterData, uid: string): DB[] {
  requireKeeper(cd, uid);
  const dbs = Object.values(cd.dbs)
    .filter((db) => db.spec.keeperUID === uid)
    .sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
  const primary = dbs.find((db) => db.uid === cd.cluster.status.master);
  if (primary !== undefined) {
    throw new CommandError(
      `keeper ${uid} holds the primary db ${primary.uid}; fail it over first with \`stolonctl failkeeper ${uid}\``,
      ExitCode.runtime,
      { field: 'keeper' },
    );
  }
  const failover = cd.cluster.status.failover;
  if (failover?.newPrimary?.keeperUID === uid) {
    throw new CommandError(
      `keeper ${uid} is being promoted by ${failover.kind} ${failover.id}, still in progress; ` +
        'wait for it to end (stolonctl events), then fail it over first if it became the primary',
      ExitCode.runtime,
      { field: 'keeper' },
    );
  }
  return dbs;
}

/** `" and its db d1"`, `" and its dbs d1, d2"`, or `""` for a keeper without a DB. */
function andDbs(dbs: readonly DB[]): string {
  return dbs.length === 0 ? '' : ` and its ${dbs.length === 1 ? 'db' : 'dbs'} ${dbs.map((d) => d.uid).join(', ')}`;
}

/**
 * Removes the keeper. The checks are made on the document read first (before asking) and again
 * on the document actually written. Nothing is written after any refusal or failure.
 * @returns 0 when removed (or when another writer removed it after the operator confirmed); 1
 *   when it is unknown or holds the primary, not confirmed, not initialised, the store fails or
 *   every compare-and-set write lost to other writers; 2 for an empty KEEPER.
 */
export function runRemovekeeper(ctx: CommandContext, opts: RemovekeeperOptions): Promise<ExitCodeValue> {
  return runCommand(ctx, 'removekeeper', async () => {
    const uid = opts.keeper;
    checkKeeperArg(uid);
    const name = ctx.clusterName ?? '(unnamed)';
    const loaded = await loadClusterData(ctx);
    const dbs = removableDbs(loaded.cd, uid);
    // A keeper that is still running publishes its info again, and the sentinel adds it back.
    const stillUp = loaded.cd.keepers[uid]?.status.healthy === true;
    const comeback = `keeper ${uid} looks healthy: if it keeps running the sentinel adds it back and it re-syncs, so stop it first`;

    if (opts.yes !== true) {
      if (ctx.confirm === undefined) {
        throw new CommandError(
          `removing keeper ${uid} deletes it${andDbs(dbs)} from cluster ${name}${stillUp ? `; ${comeback}` : ''}; ` +
            'standard input is not a terminal to confirm on, re-run with --yes to remove it',
          ExitCode.runtime,
          { field: 'yes' },
        );
      }
      const ok = await ctx.confirm(
        `Remove keeper ${uid}${andDbs(dbs)} from cluster ${name}?${stillUp ? ` Note: ${comeback}.` : ''} (yes/no)`,
      );
      if (!ok) {
        throw new CommandError(`not confirmed; keeper ${uid} left in cluster ${name}`, ExitCode.runtime);
      }
    }

    const removed = await updateClusterData<DB[] | null>(
      ctx,
      ({ cd }, attempt) => {
        if (attempt > 1 && cd.keepers[uid] === undefined) {
          // Another writer removed it after the operator confirmed: what was asked is done.
          return { result: null };
        }
        const doomed = removableDbs(cd, uid);
        const keepers = { ...cd.keepers };
        delete keepers[uid];
        const remaining = { ...cd.dbs };
        for (const db of doomed) {
          delete remaining[db.uid];
        }
        return { write: { ...cd, keepers, dbs: remaining }, result: doomed };
      },
      { first: loaded },
    );
    if (removed === null) {
      ctx.out(`keeper ${uid} was removed from cluster ${name} by another writer meanwhile; nothing written`);
      return;
    }
    ctx.out(`keeper ${uid}${andDbs(removed)} removed from cluster ${name}`);
    if (stillUp) {
      ctx.err(`stolonctl removekeeper: note: keeper ${uid} looked healthy; stop it, or the sentinel adds it back and it re-syncs`);
    }
  });
}
