/**
 * `stolonctl spec [--defaults]`: prints the stored cluster spec as pretty JSON (2-space indent),
 * only the fields that are set, or with `--defaults` every field with its default filled in.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/spec.go (Stolon's command)
 */
import { withDefaults } from '@stolon-ts/cluster';
import { loadClusterData, runCommand, type CommandContext, type ExitCodeValue } from './context.js';

/** Options of {@link runSpec}. */
export interface SpecOptions {
  /** `--defaults`: print every field, defaults filled in. @default false */
  readonly defaults?: boolean;
}

/**
 * Prints the stored spec.
 * @returns 0; 1 when the cluster is not initialised, its clusterdata is invalid or the store fails.
 */
export function runSpec(ctx: CommandContext, opts: SpecOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'spec', async () => {
    const { cd } = await loadClusterData(ctx);
    const spec = opts.defaults === true ? withDefaults(cd.cluster.spec) : cd.cluster.spec;
    ctx.out(JSON.stringify(spec, null, 2));
  });
}
