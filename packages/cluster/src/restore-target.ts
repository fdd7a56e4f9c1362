/**
 * Where a restore from the backup repository (`pitrConfig.fromBackup`, docs/backup.md "Restoring
 * (point-in-time recovery)") stops, as the keeper needs it to choose the backup to start from:
 * `pitrConfig.recoveryTargetSettings` mapped to pgBackRest's recovery types, the target time as an
 * instant and the target LSN as a byte position. Pure: no I/O.
 */
import type { RecoveryTargetSettings } from './types.js';

/**
 * A recovery target in pgBackRest's terms (`pgbackrest restore --type`): `default` is the end of
 * the archive (no target), the others stop at `target` (`immediate`: at the end of the backup).
 * @see https://pgbackrest.org/command.html#command-restore (option `type`)
 */
export type RestoreTarget =
  | { readonly type: 'default' }
  | { readonly type: 'immediate' }
  | { readonly type: 'time'; readonly target: string; readonly atMs: number }
  | { readonly type: 'lsn'; readonly target: string; readonly lsn: number }
  | { readonly type: 'name' | 'xid'; readonly target: string };

/**
 * `YYYY-MM-DD HH:MM[:SS[.fraction]]` (or `T` between date and time) followed by a UTC offset:
 * `Z`, `UTC`, `GMT`, `+HH`, `+HHMM` or `+HH:MM` (PostgreSQL's `timestamptz` input in ISO style).
 */
const TARGET_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)? ?(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$/i;

/**
 * Parses a `recoveryTargetTime` into ms since the epoch. The offset is required: the keeper
 * compares the target with the backups' stop times, which are instants, and PostgreSQL would
 * read an offset-less time in the server's `timezone`, which the spec does not pin.
 * @example parseRecoveryTargetTime('2026-12-06 22:30:00.250+00') === Date.UTC(2026, 11, 6, 22, 30, 0, 250)
 * @returns undefined when `text` is not of that form or not a real date
 * @see https://www.postgresql.org/docs/current/datatype-datetime.html#DATATYPE-DATETIME-INPUT
 */
export function parseRecoveryTargetTime(text: string): number | undefined {
  const m = TARGET_TIME.exec(text.trim());
  if (m === null) {
    return undefined;
  }
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const fields = [Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(s ?? '0')] as const;
  const local = Date.UTC(fields[0], fields[1] - 1, fields[2], fields[3], fields[4], fields[5]);
  const back = new Date(local);
  if (back.getUTCMonth() !== fields[1] - 1 || back.getUTCDate() !== fields[2] || fields[3] > 23 || fields[4] > 59 || fields[5] > 59) {
    return undefined;
  }
  const ms = frac === undefined ? 0 : Math.floor(Number(`0${frac}`) * 1000);
  return local + ms - offsetMinutes(zone ?? 'Z') * 60_000;
}

/** Minutes east of UTC of an offset {@link TARGET_TIME} accepted. */
function offsetMinutes(zone: string): number {
  if (/^(Z|UTC|GMT)$/i.test(zone)) {
    return 0;
  }
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  return sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0'));
}

/** `X/Y` with X and Y up to 8 hex digits, as PostgreSQL prints an LSN. */
const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/**
 * Parses a `recoveryTargetLsn` (`X/Y`) into a byte position `X × 2^32 + Y`.
 * @returns undefined when `text` is not an LSN
 * @see https://www.postgresql.org/docs/current/datatype-pg-lsn.html
 */
function parseTargetLsn(text: string): number | undefined {
  const m = LSN.exec(text.trim());
  return m === null ? undefined : parseInt(m[1] ?? '0', 16) * 2 ** 32 + parseInt(m[2] ?? '0', 16);
}

/**
 * `pitrConfig.recoveryTargetSettings` as a {@link RestoreTarget}: `recoveryTarget: immediate` →
 * `immediate`, `recoveryTargetTime` → `time`, `recoveryTargetLsn` → `lsn`, `recoveryTargetName`
 * → `name`, `recoveryTargetXid` → `xid`, none of them → `default` (the end of the archive).
 * `recoveryTargetTimeline` does not change the type.
 * @returns the target, or a problem (`<field>: <what is wrong>`) when more than one stop is set,
 *   `recoveryTarget` is not `immediate`, or the time or LSN cannot be read
 */
export function restoreTargetOf(settings: RecoveryTargetSettings | undefined): RestoreTarget | { readonly problem: string } {
  const s = settings ?? {};
  const given = (['recoveryTarget', 'recoveryTargetTime', 'recoveryTargetLsn', 'recoveryTargetName', 'recoveryTargetXid'] as const).filter(
    (k) => s[k] !== undefined && s[k] !== '',
  );
  const field = 'pitrConfig.recoveryTargetSettings';
  if (given.length > 1) {
    return { problem: `${field}: sets ${given.join(' and ')}; a recovery stops at one target, keep one` };
  }
  const first = given[0];
  if (first === undefined) {
    return { type: 'default' };
  }
  switch (first) {
    case 'recoveryTarget':
      return s.recoveryTarget === 'immediate'
        ? { type: 'immediate' }
        : { problem: `${field}.recoveryTarget: must be "immediate" (the end of the backup), got ${JSON.stringify(s.recoveryTarget)}` };
    case 'recoveryTargetTime': {
      const atMs = parseRecoveryTargetTime(s.recoveryTargetTime ?? '');
      return atMs === undefined
        ? {
            problem:
              `${field}.recoveryTargetTime: must be "YYYY-MM-DD HH:MM:SS[.ffffff]" with a UTC offset (e.g. "2026-12-06 22:30:00+00"), ` +
              `got ${JSON.stringify(s.recoveryTargetTime)}; the backup to start from is chosen by comparing it with the backups' stop times`,
          }
        : { type: 'time', target: s.recoveryTargetTime ?? '', atMs };
    }
    case 'recoveryTargetLsn': {
      const lsn = parseTargetLsn(s.recoveryTargetLsn ?? '');
      return lsn === undefined
        ? { problem: `${field}.recoveryTargetLsn: must be an LSN such as "0/3000060", got ${JSON.stringify(s.recoveryTargetLsn)}` }
        : { type: 'lsn', target: s.recoveryTargetLsn ?? '', lsn };
    }
    case 'recoveryTargetName':
      return { type: 'name', target: s.recoveryTargetName ?? '' };
    case 'recoveryTargetXid':
      return { type: 'xid', target: s.recoveryTargetXid ?? '' };
  }
}
