/**
 * Small helpers shared by the proxy's modules: a bounded wait ({@link bounded}), the error a
 * check fails with ({@link CheckFailure}, which a bounded wait's timeout also is), and
 * {@link plural} for log sentences.
 */
import { withTimeout } from '@stolon-ts/common';

/** Bound on waiting for destroyed sockets or a closed listener to report closed (they do at once; this is a guard). */
export const CLOSE_WAIT_MS = 2_000;

/** Why a check failed; decides the state and the log line. */
export type FailureKind = 'store' | 'invalid' | 'slow' | 'bug';

/** A failed check (checker.ts), or a {@link bounded} wait that timed out (kind `store`). */
export class CheckFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly err?: unknown,
  ) {
    super(message);
  }
}

/**
 * Races `p` against a timer of `ms` milliseconds; on timeout, a late result or rejection of `p` is
 * ignored.
 * @throws CheckFailure of kind `store`, `<what>: no answer within <ms> ms`, on timeout; else
 *   whatever `p` rejects with.
 */
export function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return withTimeout(p, ms, undefined, () => new CheckFailure('store', `${what}: no answer within ${ms} ms`));
}

/** `1 connection`, `2 connections`. */
export function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
