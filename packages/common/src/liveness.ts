/**
 * Liveness of a daemon's serial loop, shared by the keeper, the sentinel and the proxy for their
 * `GET /healthz` (status-server.ts): the loop is alive while no pass is stuck past the longest a
 * pass may legitimately take and a new pass started within the longest pause between passes.
 * {@link PassTracker} records pass starts and ends on a monotonic clock; {@link loopLiveness} is
 * the pure rule. A hung event loop is not seen here: it cannot answer the probe at all, which
 * the orchestrator counts as a failure (its probe timeout).
 */
import type { CheckResult } from './status-server.js';

/** What {@link loopLiveness} decides from: pass starts and ends, monotonic ms. */
export interface LoopSnapshot {
  /** When the tracker was created (stands for "last settle" before the first pass). */
  readonly createdAtMs: number;
  /** Start of the pass in progress; undefined between passes. */
  readonly passInProgressSinceMs: number | undefined;
  /** When the last pass settled; undefined before the first. */
  readonly lastSettledAtMs: number | undefined;
  /** Passes started so far. */
  readonly passes: number;
}

/** The bounds of {@link loopLiveness}, in ms. */
export interface LoopLimits {
  /** Longest a pass may run before the loop counts as stalled. */
  readonly maxPassMs: number;
  /** Longest pause between two passes before the loop counts as stalled. */
  readonly maxIdleMs: number;
}

/**
 * Whether a serial loop still turns: a pass in progress for more than `maxPassMs`, or no pass
 * for more than `maxIdleMs` since the last one settled (or since the tracker was created), is a
 * stall.
 * @param what the loop's name in the reason (`keeper`, `sentinel`, `proxy check`)
 * @param nowMs monotonic ms, same clock as the snapshot
 * @returns ok with "`what` loop alive: …", or not ok with "`what` loop stalled: … (limit N ms)"
 */
export function loopLiveness(what: string, s: LoopSnapshot, limits: LoopLimits, nowMs: number): CheckResult {
  const { maxPassMs, maxIdleMs } = limits;
  if (s.passInProgressSinceMs !== undefined) {
    const running = Math.round(nowMs - s.passInProgressSinceMs);
    return running > maxPassMs
      ? { ok: false, reason: `${what} loop stalled: pass ${s.passes} running for ${running} ms (limit ${maxPassMs} ms)` }
      : { ok: true, reason: `${what} loop alive: pass ${s.passes} running for ${running} ms` };
  }
  const idle = Math.round(nowMs - (s.lastSettledAtMs ?? s.createdAtMs));
  return idle > maxIdleMs
    ? { ok: false, reason: `${what} loop stalled: no pass for ${idle} ms (limit ${maxIdleMs} ms)` }
    : { ok: true, reason: `${what} loop alive: ${s.passes} passes, last one settled ${idle} ms ago` };
}

/** Records when a serial loop's passes start and settle, for {@link loopLiveness}. */
export class PassTracker {
  readonly #now: () => number;
  readonly #createdAtMs: number;
  #passes = 0;
  #inProgressSince: number | undefined;
  #lastSettled: number | undefined;

  /** @param nowMs monotonic clock in ms (default `performance.now`) */
  constructor(nowMs: () => number = () => performance.now()) {
    this.#now = nowMs;
    this.#createdAtMs = nowMs();
  }

  /** A pass started. */
  started(): void {
    this.#passes += 1;
    this.#inProgressSince = this.#now();
  }

  /** The pass in progress settled (succeeded or failed). */
  settled(): void {
    this.#inProgressSince = undefined;
    this.#lastSettled = this.#now();
  }

  /**
   * Wraps a pass so the tracker hears when it starts and settles; results and errors pass through.
   * @returns the wrapped pass
   */
  wrap<A extends unknown[], T>(run: (...args: A) => Promise<T>): (...args: A) => Promise<T> {
    return async (...args) => {
      this.started();
      try {
        return await run(...args);
      } finally {
        this.settled();
      }
    };
  }

  /** The current time of the tracker's clock, monotonic ms. */
  nowMs(): number {
    return this.#now();
  }

  /** The passes so far, for {@link loopLiveness}. */
  snapshot(): LoopSnapshot {
    return { createdAtMs: this.#createdAtMs, passInProgressSinceMs: this.#inProgressSince, lastSettledAtMs: this.#lastSettled, passes: this.#passes };
  }
}
