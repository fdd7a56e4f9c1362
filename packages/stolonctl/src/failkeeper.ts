/**
 * `stolonctl failkeeper KEEPER`: marks a keeper as failed (`keepers[uid].status.forceFail = true`)
 * by compare-and-set. The leader sentinel treats it as failed on its next pass (failing over if
 * it holds the primary DB) and then clears the mark: it is one-shot, not a state. Refused on a
 * paused cluster, where the sentinel would take no failover action.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/failkeeper.go (Stolon's command)
 */
import type { ClusterData, DB } from '@stolon-ts/cluster';
import {
  checkKeeperArg,
  CommandError,
  ExitCode,
  requireKeeper,
  runCommand,
  updateClusterData,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** Options of {@link runFailkeeper}. */
export interface FailkeeperOptions {
  /** The keeper's UID (the positional argument). */
  readonly keeper: string;
}

/** The primary DB when it belongs to keeper `uid`, else undefined. */
function primaryOf(cd: ClusterData, uid: string): DB | undefined {
  const master = cd.dbs[cd.cluster.status.master];
  return master?.spec.keeperUID === uid ? master : undefined;
}

/**
 * Marks the keeper failed. Nothing is written when it is unknown, already marked, or the cluster
 * is paused.
 * @returns 0 when marked (or already marked); 1 when the keeper is not in the cluster, the
 *   cluster is paused or not initialised, the store fails, or every compare-and-set write lost to
 *   other writers; 2 for an empty KEEPER.
 */
export function runFailkeeper(ctx: CommandContext, opts: FailkeeperOptions): Promise<ExitCodeValue> {
  return runCommand(ctx, 'failkeeper', async () => {
    const uid = opts.keeper;
    checkKeeperArg(uid);
    const name = ctx.clusterName ?? '(unnamed)';
    const outcome = await updateClusterData<{ marked: boolean; cd: ClusterData }>(ctx, ({ cd }) => {
      const keeper = requireKeeper(cd, uid);
      if (cd.cluster.spec.paused === true) {
        // The paused sentinel decides nothing, so the mark would be dropped or acted on much
        // later, at resume, when the operator no longer expects it.
        throw new CommandError(
          `cluster ${name} is paused: the sentinel takes no failover action; run stolonctl resume first, then failkeeper ${uid}`,
          ExitCode.runtime,
        );
      }
      if (keeper.status.forceFail === true) {
        return { result: { marked: false, cd } };
      }
      const next: ClusterData = {
        ...cd,
        keepers: { ...cd.keepers, [uid]: { ...keeper, status: { ...keeper.status, forceFail: true } } },
      };
      return { write: next, result: { marked: true, cd } };
    });
    const primary = primaryOf(outcome.cd, uid);
    const effect =
      primary === undefined
        ? 'it holds no primary DB, so no failover follows'
        : `it holds the primary db ${primary.uid}, so the sentinel fails over to the best standby`;
    ctx.out(
      outcome.marked
        ? `keeper ${uid} marked failed: the leader sentinel treats it as failed on its next pass and then clears the mark; ${effect}`
        : `keeper ${uid} is already marked failed and the sentinel has not acted on it yet (is a sentinel running? see stolonctl status); nothing written`,
    );
  });
}
