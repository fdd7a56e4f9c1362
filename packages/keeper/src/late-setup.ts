/**
 * The keeper's metrics set up late: not while its first passes run (they react to the sentinel's
 * answer to its first publish, and loading prom-client then delayed them), but a while after the
 * first pass has settled, or at once when a scrape asks first. Pass durations settled before are
 * observed when the metrics are set up. While a background task runs (a clone above all, whose
 * copy needs every core of a small machine) they wait until it has been over for a while.
 */

/** Pass durations kept for the metrics until they are set up; older ones are dropped. */
const MAX_UNOBSERVED = 1000;

/** What {@link lateMetrics} sets up: at least the pass duration hook. */
export interface PassObserver {
  readonly observePass: (seconds: number) => void;
}

/**
 * @param setup builds the metrics (loads prom-client); called at most once
 * @param delayMs how long after the first settled pass `setup` runs, then `after` in the next
 *   turn of the event loop (the keeper loads node-postgres there); the timers are unref'd, so a
 *   keeper stopping sooner does not wait for them
 * @param busy whether a background task runs: then `after` still runs at the delay, and `setup`
 *   once `busy` has been false at two checks `delayMs` apart
 * @returns `onPassSettled` for `KeeperStatusOptions` (seconds), and `get`, which sets the metrics
 *   up now if they are not yet (a scrape)
 */
export function lateMetrics<M extends PassObserver>(
  setup: () => M,
  delayMs: number,
  after: () => void,
  busy: () => boolean = () => false,
): { readonly onPassSettled: (seconds: number) => void; readonly get: () => M } {
  let metrics: M | undefined;
  let scheduled = false;
  let wasBusy = false;
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
    if (unobserved.length > MAX_UNOBSERVED) {
      unobserved.shift();
    }
    if (!scheduled) {
      scheduled = true;
      setTimeout(() => check(true), delayMs).unref();
    }
  };
  const check = (first: boolean): void => {
    if (metrics === undefined) {
      if (busy()) {
        wasBusy = true;
      } else if (wasBusy) {
        wasBusy = false;
      } else {
        get();
      }
      if (metrics === undefined) {
        setTimeout(() => check(false), delayMs).unref();
      }
    }
    if (first) {
      setImmediate(after);
    }
  };
  return { onPassSettled, get };
}
