/**
 * `stolonctl resume`: clears `spec.paused` (see `pause`), so the sentinel acts again on what it
 * observes, failovers included. Same write path as `pause` and `update --patch`.
 * Our addition: Stolon has no pause.
 */
import type { CommandContext, ExitCodeValue } from './context.js';
import { setPaused } from './pause.js';

/**
 * Resumes the sentinel's actions on the cluster.
 * @returns 0 (also when not paused); 1 when not initialised, the store fails or every
 *   compare-and-set write lost to other writers; 2 when the resulting spec is invalid.
 */
export function runResume(ctx: CommandContext): Promise<ExitCodeValue> {
  return setPaused(ctx, 'resume', false);
}
