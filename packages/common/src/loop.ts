/**
 * The pass loop every daemon runs (keeper, sentinel, proxy): serial passes on a timer and on
 * demand, a store watch that triggers passes (with the timer as the fallback while the watch
 * cannot be had), one log sentence per pass with repeats suppressed, one rule for failed passes,
 * and a stop that happens once. See docs/design.md#serial-loops.
 */
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { Store, StoreWatch, WatchTopic } from '@stolon-ts/store';
import { BUG_SENTENCE, type Logger } from './logger.js';

/** The low-level serial loop under {@link startPassLoop}. */
interface SerialLoop {
  /** Asks for a pass as soon as possible (coalesced). */
  trigger(): void;
  /** Stops the loop; resolves after the pass in progress (if any) settled. */
  stop(): Promise<void>;
}

/**
 * Runs `run` serially: on a timer and on demand, never two at once. The next timer is armed only
 * after a pass settles (no setInterval), with the interval re-read each time (specs change);
 * triggers that arrive during a pass coalesce into one more pass. The first pass runs on the next
 * tick. `run` must not reject.
 */
function startSerialLoop(run: () => Promise<void>, intervalMs: () => number): SerialLoop {
  let stopped = false;
  let running: Promise<void> | undefined;
  let pending = false;
  let timer: NodeJS.Timeout | undefined;

  const arm = () => {
    if (stopped) {
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      kick();
    }, Math.max(10, intervalMs()));
  };

  const kick = (): void => {
    if (stopped) {
      return;
    }
    if (running !== undefined) {
      pending = true;
      return;
    }
    clearTimeout(timer);
    timer = undefined;
    running = run().finally(() => {
      running = undefined;
      if (pending && !stopped) {
        pending = false;
        setImmediate(kick);
      } else {
        arm();
      }
    });
  };

  setImmediate(kick);
  return {
    trigger: kick,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

/** What one pass says about itself: the one sentence the loop logs for it. */
export interface PassResult {
  /** One human sentence: what the pass found or did. */
  readonly sentence: string;
  /** @default 'info'. `error` is logged every pass; the others only when the pass differs from the last. */
  readonly level?: 'info' | 'warn' | 'error';
  /** Log at `level` even when the pass repeats the last one (e.g. it wrote to the store). */
  readonly force?: boolean;
  /** What makes two passes "the same" for repeat suppression. @default level and sentence */
  readonly key?: string;
  /** Structured fields for the log line. */
  readonly fields?: Readonly<Record<string, unknown>>;
  /** An error to attach (`err`) when the line is logged above debug. */
  readonly err?: unknown;
}

/** What a pass is told. */
export interface PassContext {
  /** 1 for the first pass. */
  readonly pass: number;
  /** Why this pass runs: `start`, `interval`, `watch established`, or what {@link PassLoop.trigger} was given last. */
  readonly trigger: string;
  /**
   * When only store watch events asked for this pass (no timer, no {@link PassLoop.trigger}, no
   * start) since the previous pass began: the topics of those events. Undefined otherwise. A pass
   * may use it to do less when nothing it acts on changed, as long as it still does its full work
   * every interval (the timer's own pass may never come while events keep arriving).
   */
  readonly watchTopics?: ReadonlySet<WatchTopic>;
}

/** Options of {@link startPassLoop}. */
export interface PassLoopOptions {
  readonly log: Logger;
  /**
   * One pass. Its result is logged ({@link PassResult}); `undefined` logs nothing. A rejection
   * is logged by the loop's rule (see {@link describePassFailure}) and the loop goes on.
   */
  readonly run: (ctx: PassContext) => Promise<PassResult | undefined>;
  /** The period of the timer pass in ms, re-read before each arming. */
  readonly intervalMs: () => number;
  /**
   * A store watch that triggers a pass on every event of `topics` (trigger `<topics> changed`).
   * Asked for at start and, while it cannot be had, again after every pass, each attempt bounded
   * by `timeoutMs` (a late watch is closed); the timer passes go on meanwhile. A watch that starts
   * after the loop triggers one more pass, so a change made in between is not missed.
   */
  readonly watch?: {
    readonly store: Pick<Store, 'watch'>;
    readonly topics: readonly WatchTopic[];
    /** @default 10000 */
    readonly timeoutMs?: () => number;
  };
  /** Log field that carries the pass number. @default 'pass' */
  readonly passField?: string;
}

/** A running pass loop. */
export interface PassLoop {
  /** Asks for a pass as soon as possible; requests coalesce, the last reason wins. */
  trigger(reason: string): void;
  /** Stops the loop once: waits for the pass in progress, then closes the watch (bounded). Idempotent. */
  stop(): Promise<void>;
  /** True while the store watch runs. */
  watching(): boolean;
}

/** How long stopping waits for the store watch to close, in ms. */
const WATCH_CLOSE_TIMEOUT_MS = 2000;

/**
 * The one rule for a pass that threw: a transient {@link StolonError} (store unreachable, a
 * compare-and-set lost) is retried at the next pass and logged as a warning; any other
 * StolonError is a failure with a cause the message names (an invalid configuration, a failed
 * PostgreSQL command), logged as an error and retried too; anything else is a bug.
 * @returns the level and the sentence to log.
 */
export function describePassFailure(err: unknown): { level: 'warn' | 'error'; sentence: string } {
  if (err instanceof StolonError) {
    return err.transient
      ? { level: 'warn', sentence: `pass failed, retrying at the next pass: ${err.message}` }
      : { level: 'error', sentence: `pass failed (${err.code}), retrying at the next pass: ${err.message}` };
  }
  return { level: 'error', sentence: `${BUG_SENTENCE}: ${errorMessage(err)}` };
}

/**
 * Starts a daemon's pass loop; the first pass runs on the next tick.
 * @returns the loop handle; never throws (store trouble shows in the passes' sentences).
 */
export function startPassLoop(opts: PassLoopOptions): PassLoop {
  const { log } = opts;
  const passField = opts.passField ?? 'pass';
  let pass = 0;
  let nextTrigger = 'start';
  let lastKey: string | undefined;
  let stopped = false;
  let watch: StoreWatch | undefined;
  let watchAttempt: Promise<void> | undefined;
  let watchFailing = false;
  /** Topics of the watch events since the last pass began, and whether anything else asked for a pass. */
  let eventTopics = new Set<WatchTopic>();
  let otherTrigger = true;

  const emit = (r: PassResult, n: number): void => {
    const level = r.level ?? 'info';
    const key = r.key ?? `${level}|${r.sentence}`;
    const repeated = key === lastKey;
    lastKey = key;
    const fields = { [passField]: n, ...r.fields };
    if (level === 'error' || !repeated || r.force === true) {
      log[level](r.err === undefined ? fields : { ...fields, err: r.err }, r.sentence);
    } else {
      log.debug(fields, r.sentence);
    }
  };

  const ensureWatch = (): void => {
    const w = opts.watch;
    if (w === undefined || stopped || watch !== undefined || watchAttempt !== undefined) {
      return;
    }
    const what = `${w.topics.join(', ')} changed`;
    const onEvent = (topic: WatchTopic): void => {
      if (stopped) {
        return;
      }
      eventTopics.add(topic);
      nextTrigger = what;
      loop.trigger();
    };
    watchAttempt = withTimeout(w.store.watch(w.topics, onEvent), w.timeoutMs?.() ?? 10_000, (late) => void late.close().catch(() => undefined))
      .then(
        async (started) => {
          if (stopped) {
            await started.close().catch(() => undefined);
            return;
          }
          watch = started;
          watchFailing = false;
          trigger('watch established');
        },
        (err: unknown) => {
          // Not a pass failure: the timer passes go on; only reaction time suffers.
          log[watchFailing ? 'debug' : 'warn'](
            { err },
            `cannot watch the store (${errorMessage(err)}); relying on a pass every ${opts.intervalMs()} ms until it can`,
          );
          watchFailing = true;
        },
      )
      .finally(() => {
        watchAttempt = undefined;
      });
  };

  const runOnce = async (): Promise<void> => {
    pass += 1;
    const n = pass;
    const trigger = nextTrigger;
    nextTrigger = 'interval';
    const watchTopics = !otherTrigger && eventTopics.size > 0 ? eventTopics : undefined;
    eventTopics = new Set();
    otherTrigger = false;
    try {
      const r = await opts.run({ pass: n, trigger, ...(watchTopics !== undefined ? { watchTopics } : {}) });
      if (r !== undefined) {
        emit(r, n);
      }
    } catch (err) {
      const f = describePassFailure(err);
      emit({ sentence: f.sentence, level: f.level, err }, n);
    }
    ensureWatch();
  };

  const loop = startSerialLoop(runOnce, opts.intervalMs);
  const trigger = (reason: string): void => {
    if (stopped) {
      return;
    }
    otherTrigger = true;
    nextTrigger = reason;
    loop.trigger();
  };
  ensureWatch();

  let stopping: Promise<void> | undefined;
  return {
    trigger,
    watching: () => watch !== undefined,
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        await loop.stop();
        await watchAttempt;
        const w = watch;
        watch = undefined;
        if (w !== undefined) {
          await withTimeout(w.close(), WATCH_CLOSE_TIMEOUT_MS).catch((err: unknown) =>
            log.debug({ err }, `closing the store watch failed: ${errorMessage(err)}`),
          );
        }
      })()),
  };
}

/**
 * Settles like `p`, or rejects with `onTimeout()` after `ms`; a value that arrives late goes to
 * `dispose` (a late rejection is ignored).
 * @param ms the bound, in ms
 * @throws what `onTimeout` returns (default: Error `no answer within <ms> ms`) on timeout; else
 *   whatever `p` rejects with
 */
export function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  dispose?: (late: T) => void,
  onTimeout: () => Error = () => new Error(`no answer within ${ms} ms`),
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(onTimeout());
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) {
          dispose?.(v);
        } else {
          resolve(v);
        }
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!timedOut) {
          reject(err);
        }
      },
    );
  });
}

/**
 * Wraps an async stop sequence so it runs once: every call returns the first call's promise.
 * @returns the idempotent stop function
 */
export function stopOnce(fn: (reason: string) => Promise<void>): (reason: string) => Promise<void> {
  let stopping: Promise<void> | undefined;
  return (reason) => (stopping ??= fn(reason));
}
