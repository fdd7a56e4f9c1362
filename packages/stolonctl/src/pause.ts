/**
 * `stolonctl pause`: sets `spec.paused`, so the sentinel keeps observing and updating statuses but
 * takes no failover, standby-assignment or routing action (maintenance mode, Patroni's "pause").
 * Written through `update --patch`'s path (`writeSpec`: merge patch on the freshly read spec,
 * `validateSpecUpdate`, compare-and-set with retries). {@link setPaused} is shared with `resume`.
 * Our addition: Stolon has no pause.
 */
import { mergePatch } from '@stolon-ts/cluster';
import { runCommand, type CommandContext, type ExitCodeValue } from './context.js';
import { writeSpec } from './update.js';

/**
 * Sets (`paused` true) or clears (deletes the key) `spec.paused` and prints what happened.
 * Writes nothing when the cluster already is as asked.
 * @internal shared by {@link runPause} and `runResume`.
 */
export function setPaused(ctx: CommandContext, command: 'pause' | 'resume', paused: boolean): Promise<ExitCodeValue> {
  return runCommand(ctx, command, async () => {
    const name = ctx.clusterName ?? '(unnamed)';
    // Resume deletes the field (merge-patch null) rather than storing false: the spec keeps only
    // what the operator set. A spec already as asked (including a stored `paused: false` on
    // resume) is left alone.
    const written = await writeSpec(ctx, (prev) =>
      (prev.paused === true) === paused ? prev : mergePatch(prev, { paused: paused ? true : null }),
    );
    if (!written.changed) {
      ctx.out(
        paused
          ? `cluster ${name} is already paused; nothing written (stolonctl resume to re-enable the sentinel)`
          : `cluster ${name} is not paused; nothing written`,
      );
      return;
    }
    ctx.out(
      paused
        ? `cluster ${name} paused: the sentinel takes no failover or standby action until stolonctl resume`
        : `cluster ${name} resumed: the sentinel takes failover and standby actions again`,
    );
  });
}

/**
 * Pauses the sentinel's actions on the cluster.
 * @returns 0 (also when already paused); 1 when not initialised, the store fails or every
 *   compare-and-set write lost to other writers; 2 when the stored spec with `paused` is invalid.
 */
export function runPause(ctx: CommandContext): Promise<ExitCodeValue> {
  return setPaused(ctx, 'pause', true);
}
