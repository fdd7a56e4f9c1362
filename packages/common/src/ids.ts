/** Random identifiers in Stolon's shapes. */
import { randomBytes, randomUUID } from 'node:crypto';

/**
 * A Stolon-style UID: 8 lowercase hex characters (4 random bytes).
 * @see Stolon's `common.UID()` in internal/common/common.go (the first 4 bytes of a UUIDv4, in hex)
 */
export function newUid(): string {
  return randomBytes(4).toString('hex');
}

/** A full UUIDv4, used as a process boot id. */
export function newBootUuid(): string {
  return randomUUID();
}

/** Current wall-clock time as RFC 3339 (ISO 8601) text. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Monotonic milliseconds, for timers inside decisions (never the wall clock). */
export function monoMs(): number {
  return performance.now();
}
