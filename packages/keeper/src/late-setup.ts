/**
 * The keeper's metrics set up late: not while its first passes run (they react to the sentinel's
 * answer to its first publish, and loading prom-client then delayed them), but a while after the
 * first pass has settled, or at once when a scrape asks first. Pass durations settled before are
 * observed when the metrics are set up.
 */

/** What {@link lateMetrics} sets up: at least the pass duration hook. */
export interface PassObserver {
  readonly observePass: (seconds: number) => void;
}

/**
 * @param setup builds the metrics (loads prom-client); called at most once
 * @param delayMs how long after the first settled pass `setup` runs, then `after` in the next
 *   turn of the event loop (the keeper loads node-postgres there); the timer is unref'd, so a
 *   keeper stopping sooner does not wait for it
 * @returns `onPassSettled` for `KeeperStatusOptions` (seconds), and `get`, which sets the metrics
 *   up now if they are not yet (a scrape)
 */
export function lateMetrics<M extends PassObserver>(
  setup: () => M,
  delayMs: number,
  after: () => void,
): { readonly onPassSettled: (seconds: number) => void; readonly get: () => M } {
  let metrics: M | undefined;
  let scheduled = false;
  const unobserved: number[] = [];
  const get = (): M => {
    if (metrics === undefined) {
      metrics = setup();
      for (const s of unobserved.splice(0)) {
        metrics.observePass(s);
      }
    }
    return metrics;
  };
  const onPassSettled = (seconds: number): void => {
    if (metrics !== undefined) {
      metrics.observePass(seconds);
      return;
    }
    unobserved.push(seconds);
    if (!scheduled) {
      scheduled = true;
      setTimeout(() => {
        get();
        setImmediate(after);
      }, delayMs).unref();
    }
  };
  return { onPassSettled, get };
}
