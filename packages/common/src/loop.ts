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
  /** Asks for a pass as soon as possible (coalesced); the timer is armed again after it. */
  trigger(): void;
  /** Asks for a pass as soon as possible (coalesced) that leaves an armed timer as it is. */
  triggerKeepingTimer(): void;
  /** Stops the loop; resolves after the pass in progress (if any) settled. */
  stop(): Promise<void>;
}

/**
 * The timer pass comes up to this fraction of the interval early, at random, each time it is
 * armed. Daemons started together, or released together by a store that answers again after an
 * outage, otherwise keep running their passes in the same few milliseconds every interval: their
 * store requests reach the store at once, and on a shared host their bursts of work add up and
 * delay the database's own clients (docs/benchmarks.md, bench:store-outage). Early, never late:
 * an interval that bounds something (a keeper's info TTL, a proxy's proxyTimeout) stays a bound.
 */
export const TIMER_JITTER = 0.1;

/**
 * The delay, in ms, before a timer pass: `intervalMs` less up to {@link TIMER_JITTER} of it, at
 * least 10 ms.
 * @param intervalMs the loop's interval, ms
 * @param random a number in [0, 1) (`Math.random()`)
 */
export function timerDelayMs(intervalMs: number, random: number): number {
  return Math.max(10, Math.round(intervalMs * (1 - TIMER_JITTER * random)));
}

/**
 * Runs `run` serially: on a timer and on demand, never two at once. The next timer is armed only
 * after a pass settles (no setInterval), with the interval re-read each time (specs change) and
 * {@link timerDelayMs}'s jitter; a pass asked for with `triggerKeepingTimer` (a store watch event)
 * leaves a timer that is already armed as it is, so events do not keep postponing the timer pass
 * nor line up the timers of every daemon that saw the same event. Triggers that arrive during a
 * pass coalesce into one more pass. The first pass runs on the next tick. `run` must not reject;
 * `onTimer` is called when the timer fires, before the pass it asks for.
 */
function startSerialLoop(run: () => Promise<void>, intervalMs: () => number, random: () => number, onTimer: () => void): SerialLoop {
  let stopped = false;
  let running: Promise<void> | undefined;
  let pending = false;
  /** Whether the pending pass re-arms the timer (anything but watch events asked for it). */
  let pendingRearms = false;
  let timer: NodeJS.Timeout | undefined;

  const arm = () => {
    if (stopped) {
      return;
    }
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      onTimer();
      kick(true);
    }, timerDelayMs(intervalMs(), random()));
  };

  const kick = (rearm: boolean): void => {
    if (stopped) {
      return;
    }
    if (running !== undefined) {
      pending = true;
      pendingRearms ||= rearm;
      return;
    }
    if (rearm) {
      clearTimeout(timer);
      timer = undefined;
    }
    running = run().finally(() => {
      running = undefined;
      if (pending && !stopped) {
        const next = pendingRearms;
        pending = false;
        pendingRearms = false;
        setImmediate(() => kick(next));
      } else if (timer === undefined) {
        arm();
      }
    });
  };

  setImmediate(() => kick(true));
  return {
    trigger: () => kick(true),
    triggerKeepingTimer: () => kick(false),
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
   * every interval (the timer's pass still comes every interval while events keep arriving).
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
  /**
   * The period of the timer pass in ms, re-read before each arming; the timer comes up to
   * {@link TIMER_JITTER} of it early. A pass that only watch events asked for does not re-arm it.
   */
  readonly intervalMs: () => number;
  /** Source of the timer's jitter, numbers in [0, 1). @default Math.random */
  readonly random?: () => number;
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
      loop.triggerKeepingTimer();
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

  const loop = startSerialLoop(runOnce, opts.intervalMs, opts.random ?? Math.random, () => {
    // The timer asked: the pass is a full one even if watch events asked for it too.
    otherTrigger = true;
    nextTrigger = 'interval';
  });
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
