/**
 * The one waiting helper of the test suites (docs/design.md#waiting): polls a check until it returns
 * a value, and on timeout fails with evidence (the last value and the last error seen), with the
 * stack pointing at the caller. Timeouts scale with `STOLON_TEST_TIMEOUT_FACTOR` (default 2 on CI,
 * else 1) so slow machines do not produce false failures.
 */
import { inspect } from 'node:util';

/**
 * The multiplier applied to every harness timeout: `STOLON_TEST_TIMEOUT_FACTOR` if set, else 2
 * when `CI` is set, else 1.
 */
export function timeoutFactor(): number {
  const raw = process.env['STOLON_TEST_TIMEOUT_FACTOR'] ?? (process.env['CI'] ? '2' : '1');
  const f = Number(raw);
  return Number.isFinite(f) && f > 0 ? f : 1;
}

/** `ms` multiplied by {@link timeoutFactor}, rounded. */
export function scaleTimeout(ms: number): number {
  return Math.round(ms * timeoutFactor());
}

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** How long to wait, in ms, before scaling by {@link timeoutFactor}. */
  readonly timeoutMs: number;
  /** What is awaited, for the failure message ("k2 to become primary"). */
  readonly what: string;
  /** Pause between checks in ms. @default 100 */
  readonly intervalMs?: number;
}

function describe(v: unknown): string {
  const s = inspect(v, { depth: 4, breakLength: Infinity });
  return s.length > 2000 ? `${s.slice(0, 2000)}…` : s;
}

/**
 * Calls `check` until it returns something other than `undefined` or `false` and resolves with
 * that value. A throwing check counts as "not yet" (its error is kept for the report).
 * @throws Error "timed out after N ms waiting for <what>; last value: …; last error: …" with the
 *   stack of the `waitFor` call.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: WaitForOptions,
): Promise<T> {
  // Captured now so the failure points at the test line, not at this helper's timer.
  const callSite: { stack?: string } = {};
  Error.captureStackTrace(callSite, waitFor);
  const timeoutMs = scaleTimeout(opts.timeoutMs);
  const intervalMs = opts.intervalMs ?? 100;
  const started = performance.now();
  let lastValue: unknown = undefined;
  let lastError: unknown = undefined;
  let checks = 0;
  for (;;) {
    checks++;
    try {
      const v = await check();
      if (v !== undefined && v !== false) {
        return v;
      }
      lastValue = v;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    const elapsed = performance.now() - started;
    if (elapsed >= timeoutMs) {
      const errText =
        lastError === undefined ? 'none' : lastError instanceof Error ? `${lastError.name}: ${lastError.message}` : describe(lastError);
      const err = new Error(
        `timed out after ${timeoutMs} ms waiting for ${opts.what} (${checks} checks); last value: ${describe(lastValue)}; last error: ${errText}`,
        lastError === undefined ? undefined : { cause: lastError },
      );
      const frames = (callSite.stack ?? '').split('\n').slice(1).join('\n');
      err.stack = `${err.name}: ${err.message}\n${frames}`;
      throw err;
    }
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(1, timeoutMs - elapsed))));
  }
}

/**
 * Waits until `read()` returns the same number at two checks `intervalMs` (default 500) apart
 * (e.g. the bytes a writer got accepted: it stalled on backpressure) and resolves with it.
 * @throws Error as {@link waitFor} when it keeps changing for `timeoutMs`.
 */
export function waitUntilSteady(read: () => number, opts: WaitForOptions): Promise<number> {
  let last: number | undefined;
  return waitFor(
    () => {
      const now = read();
      const steady = now === last;
      last = now;
      return steady ? now : undefined;
    },
    { intervalMs: 500, ...opts },
  );
}
