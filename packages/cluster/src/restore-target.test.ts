import { describe, expect, it } from 'vitest';
import { parseRecoveryTargetTime, restoreTargetOf } from './restore-target.js';
import { validateSpec } from './spec.js';

describe('restore target (pitrConfig.fromBackup)', () => {
  it.each([
    ['2026-12-06 22:30:00+00', Date.UTC(2026, 11, 6, 22, 30, 0)],
    ['2026-12-06T22:30:00.250Z', Date.UTC(2026, 11, 6, 22, 30, 0, 250)],
    ['2026-12-06 22:30:00.123456+00', Date.UTC(2026, 11, 6, 22, 30, 0, 123)],
    ['2026-12-06 23:30+01:00', Date.UTC(2026, 11, 6, 22, 30, 0)],
    ['2026-12-06 17:00:00-0530', Date.UTC(2026, 11, 6, 22, 30, 0)],
    ['2026-12-06 22:30:00 UTC', Date.UTC(2026, 11, 6, 22, 30, 0)],
  ])('reads %s as an instant', (text, ms) => {
    expect(parseRecoveryTargetTime(text)).toBe(ms);
  });

  it.each(['2026-12-06 22:30:00', 'yesterday', '2026-02-30 10:00:00+00', '2026-12-06 24:00:00+00', '2026-12-06 22:30:00 CET'])('refuses %s', (text) => {
    expect(parseRecoveryTargetTime(text)).toBeUndefined();
  });

  it('maps recoveryTargetSettings to pgBackRest recovery types', () => {
    expect(restoreTargetOf(undefined)).toEqual({ type: 'default' });
    expect(restoreTargetOf({ recoveryTargetTimeline: 'latest' })).toEqual({ type: 'default' });
    expect(restoreTargetOf({ recoveryTarget: 'immediate' })).toEqual({ type: 'immediate' });
    expect(restoreTargetOf({ recoveryTargetLsn: '1/A0' })).toEqual({ type: 'lsn', target: '1/A0', lsn: 2 ** 32 + 0xa0 });
    expect(restoreTargetOf({ recoveryTargetName: 'before-upgrade' })).toEqual({ type: 'name', target: 'before-upgrade' });
    expect(restoreTargetOf({ recoveryTargetXid: '1234' })).toEqual({ type: 'xid', target: '1234' });
    expect(restoreTargetOf({ recoveryTargetTime: '2026-12-06 22:30:00+00' })).toMatchObject({ type: 'time', atMs: Date.UTC(2026, 11, 6, 22, 30) });
    expect(restoreTargetOf({ recoveryTargetLsn: '0/1', recoveryTargetXid: '5' })).toEqual({
      problem: expect.stringMatching(/^pitrConfig\.recoveryTargetSettings: sets recoveryTargetLsn and recoveryTargetXid/) as string,
    });
    expect(restoreTargetOf({ recoveryTarget: 'latest' })).toEqual({ problem: expect.stringContaining('recoveryTarget: must be "immediate"') as string });
    expect(restoreTargetOf({ recoveryTargetLsn: 'zz' })).toEqual({ problem: expect.stringContaining('recoveryTargetLsn: must be an LSN') as string });
  });

  it('validateSpec refuses a fromBackup restore with a target it cannot place, or with archiveRecoverySettings', () => {
    const base = { initMode: 'pitr', backup: { repository: { path: '/repo' } } };
    expect(() => validateSpec({ ...base, pitrConfig: { fromBackup: {}, recoveryTargetSettings: { recoveryTargetTime: '2026-12-06 22:30:00' } } })).toThrow(
      /pitrConfig\.recoveryTargetSettings\.recoveryTargetTime: must be .* with a UTC offset/,
    );
    expect(() => validateSpec({ ...base, pitrConfig: { fromBackup: {}, archiveRecoverySettings: { restoreCommand: 'cp /a/%f %p' } } })).toThrow(
      /pitrConfig\.archiveRecoverySettings: not used with pitrConfig\.fromBackup/,
    );
    expect(validateSpec({ ...base, pitrConfig: { fromBackup: { stanza: 'src' }, recoveryTargetSettings: { recoveryTargetTime: '2026-12-06 22:30:00+00' } } })).toBeDefined();
    // Without fromBackup the time is PostgreSQL's business, as before.
    expect(validateSpec({ initMode: 'pitr', pitrConfig: { dataRestoreCommand: 'true', recoveryTargetSettings: { recoveryTargetTime: 'yesterday' } } })).toBeDefined();
  });
});
