/**
 * `stolonctl promote [-y]`: turns a standby cluster (spec `role: "standby"`, replicating from a
 * primary outside the cluster) into a primary cluster by setting the spec's `role` to `master`.
 * The sentinel then promotes the DB that follows the external primary. There is no way back
 * (role cannot change from master to standby), so the operator must confirm, or pass `--yes`.
 * Written by compare-and-set (`updateClusterData`), re-read and re-checked on a conflict, like `update`.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/promote.go (Stolon's command)
 */
import { validateSpecUpdate, type ClusterData } from '@stolon-ts/cluster';
import { redactConninfo } from '@stolon-ts/common';
import {
  CAS_ATTEMPTS,
  CommandError,
  ExitCode,
  loadClusterData,
  runCommand,
  updateClusterData,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** How many compare-and-set writes `promote` tries before giving up (Stolon: 3). */
export const PROMOTE_ATTEMPTS = CAS_ATTEMPTS;

/** Options of {@link runPromote}. */
export interface PromoteOptions {
  /** `--yes`: promote without asking. @default false */
  readonly yes?: boolean;
}

function isPrimaryCluster(cd: ClusterData): boolean {
  return (cd.cluster.spec.role ?? 'master') === 'master';
}

/**
 * Promotes the standby cluster. Without `yes` it asks through `ctx.confirm`, and refuses when
 * nobody can be asked (stdin is not a terminal). Nothing is written after any refusal or failure.
 * @returns 0 when promoted, or when the cluster already is a primary cluster (a notice is printed,
 *   nothing written); 1 when not confirmed, not initialised, the store fails, or
 *   {@link PROMOTE_ATTEMPTS} writes all lost to concurrent writers; 2 when the spec with role master
 *   would be invalid.
 */
export function runPromote(ctx: CommandContext, opts: PromoteOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'promote', async () => {
    const name = ctx.clusterName ?? '(unnamed)';
    const alreadyPrimary = (): ExitCodeValue => {
      ctx.out(`cluster ${name} is already a primary cluster (role master); nothing to do`);
      return ExitCode.ok;
    };

    const loaded = await loadClusterData(ctx);
    if (isPrimaryCluster(loaded.cd)) {
      return alreadyPrimary();
    }
    if (opts.yes !== true) {
      const conninfo = loaded.cd.cluster.spec.standbyConfig?.standbySettings?.primaryConninfo;
      const from = conninfo === undefined ? 'the external primary' : redactConninfo(conninfo);
      if (ctx.confirm === undefined) {
        throw new CommandError(
          `promoting standby cluster ${name} makes it stop following ${from} and accept writes, and cannot be undone; ` +
            'standard input is not a terminal to confirm on, re-run with --yes to promote it',
          ExitCode.runtime,
          { field: 'yes' },
        );
      }
      const ok = await ctx.confirm(
        `Promote standby cluster ${name}? It stops following ${from} and accepts writes; ` +
          'it cannot be made a standby cluster again. (yes/no)',
      );
      if (!ok) {
        throw new CommandError(`not confirmed; cluster ${name} left unchanged`, ExitCode.runtime);
      }
    }

    const promoted = await updateClusterData<ClusterData | null>(
      ctx,
      ({ cd }) => {
        if (isPrimaryCluster(cd)) {
          // Someone else promoted it between our read and our write.
          return { result: null };
        }
        const spec = validateSpecUpdate(cd.cluster.spec, { ...cd.cluster.spec, role: 'master' });
        return { write: { ...cd, cluster: { ...cd.cluster, spec } }, result: cd };
      },
      { first: loaded, attempts: PROMOTE_ATTEMPTS },
    );
    if (promoted === null) {
      return alreadyPrimary();
    }
    const master = promoted.dbs[promoted.cluster.status.master];
    ctx.out(
      `cluster ${name} promoted: spec role is now master; the sentinel will promote ` +
        (master === undefined ? 'its primary DB once one is chosen' : `keeper ${master.spec.keeperUID} (db ${master.uid})`),
    );
    return ExitCode.ok;
  });
}
