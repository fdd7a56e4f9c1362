/**
 * What the keeper is busy with or stuck on, as a typed value: published in its info
 * (`postgresState.activity`, shown by `stolonctl status`) as one sentence.
 */

/** The keeper's current activity; `undefined` in the runtime when there is nothing to say. */
export type Activity =
  /** A background task runs (initdb, clone, rewind, restore); `progress` replaces the default sentence. */
  | { readonly kind: 'task'; readonly task: string; readonly progress?: string }
  /** The last background task failed; it is retried (same task) once `retryAtMs` (monotonic ms) has passed. */
  | { readonly kind: 'task-failed'; readonly task: string; readonly error: string; readonly retryAtMs: number }
  /** pgParameters / pgHBA were rejected by PostgreSQL's checks: the previous files stay. */
  | { readonly kind: 'config-rejected'; readonly message: string }
  /** PostgreSQL would not start with the new configuration: it runs with the last good one. */
  | { readonly kind: 'config-fallback'; readonly message: string }
  /** The fencer shut PostgreSQL down because the store lease could not be renewed. */
  | { readonly kind: 'fenced'; readonly postmasterPid: number; readonly at: string }
  /** The planner refuses to touch the data directory (another cluster's data, a replaced directory…). */
  | { readonly kind: 'refused'; readonly reason: string };

/** The sentence for a failed task, also appended to later pass sentences as the last attempt. */
export function taskFailure(task: string, error: string): string {
  return `${task} failed: ${error}`;
}

/**
 * The one sentence published for `a`.
 * @param nowMs monotonic ms (`performance.now()`), for the retry countdown of a failed task
 */
export function describeActivity(a: Activity, nowMs: number): string {
  switch (a.kind) {
    case 'task':
      return a.progress ?? `${a.task} in progress`;
    case 'task-failed': {
      const waitS = Math.ceil(Math.max(0, a.retryAtMs - nowMs) / 1000);
      return `${taskFailure(a.task, a.error)}${waitS > 0 ? `; retrying in ${waitS} s` : '; retrying'}`;
    }
    case 'config-rejected':
      return `configuration rejected, previous one kept: ${a.message}`;
    case 'config-fallback':
      return `postgres refused the configuration, started with the last good one: ${a.message}`;
    case 'fenced':
      return (
        `self-fenced at ${a.at}: postgres (postmaster ${a.postmasterPid}) shut down because the store lease could not be renewed; ` +
        'it restarts only once a sentinel that read this keeper\'s info again still names it the primary'
      );
    case 'refused':
      return a.reason;
  }
}
