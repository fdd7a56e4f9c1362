import { describe, expect, it } from 'vitest';
import { restoreTargetOf, type RestoreTarget } from '@stolon-ts/cluster';
import { chooseBackupSet, parseBackupInfo, restoreArgs, type BackupSet } from './restore.js';

/** `pgbackrest info --output=json` of pgBackRest 2.45 (two full backups, trimmed). */
function info(stanza: string, backups: { label: string; stop: number; lsn: string }[], status = { code: 0, message: 'ok' }): string {
  return JSON.stringify([
    {
      archive: [{ id: '15-1', max: '000000020000000000000009', min: '000000010000000000000002' }],
      backup: backups.map((b) => ({
        archive: { start: '000000010000000000000002', stop: '000000010000000000000002' },
        label: b.label,
        lsn: { start: '0/2000028', stop: b.lsn },
        timestamp: { start: b.stop - 5, stop: b.stop },
        type: 'full',
        error: false,
      })),
      db: [{ id: 1, 'system-id': 7716318320, version: '15' }],
      name: stanza,
      status,
    },
  ]);
}

const T0 = Date.UTC(2026, 11, 6, 22, 0, 0) / 1000;
const SETS: BackupSet[] = parseBackupInfo(
  info('src', [
    { label: '20261206-220000F', stop: T0, lsn: '0/2000100' },
    { label: '20261206-221000F', stop: T0 + 600, lsn: '0/5000100' },
  ]),
  'src',
  '/repo',
);

function target(settings: Parameters<typeof restoreTargetOf>[0]): RestoreTarget {
  const t = restoreTargetOf(settings);
  if ('problem' in t) {
    throw new Error(t.problem);
  }
  return t;
}

describe('restore from the backup repository', () => {
  it('reads the backups of the stanza from pgbackrest info', () => {
    expect(SETS).toEqual([
      { label: '20261206-220000F', type: 'full', stopMs: T0 * 1000, stopLsn: 0x2000100 },
      { label: '20261206-221000F', type: 'full', stopMs: (T0 + 600) * 1000, stopLsn: 0x5000100 },
    ]);
  });

  it('names pitrConfig.fromBackup when the stanza is missing or has no backup', () => {
    expect(() => parseBackupInfo(info('src', [], { code: 1, message: 'missing stanza path' }), 'src', '/repo')).toThrow(
      /^pitrConfig\.fromBackup: stanza src in the backup repository \/repo does not exist \(pgBackRest: missing stanza path\); check pitrConfig\.fromBackup\.stanza/,
    );
    expect(() => parseBackupInfo(info('src', [], { code: 2, message: 'no valid backups' }), 'src', '/repo')).toThrow(
      /^pitrConfig\.fromBackup: stanza src .* has no backup to restore; take one first/,
    );
    expect(() => parseBackupInfo('WARN: nothing', 'src', '/repo')).toThrow(/printed no JSON/);
  });

  it('chooses the newest backup that ends before a time or LSN target, as pgBackRest does', () => {
    const mid = new Date((T0 + 300) * 1000).toISOString().replace('T', ' ').replace('Z', '+00');
    expect(chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetTime: mid })).label).toBe('20261206-220000F');
    const late = new Date((T0 + 601) * 1000).toISOString().replace('T', ' ').replace('Z', '+00');
    expect(chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetTime: late })).label).toBe('20261206-221000F');
    // Less than a second after the stop (whole seconds, rounded down): not provably after it.
    const close = new Date((T0 + 600) * 1000 + 500).toISOString().replace('T', ' ').replace('Z', '+00');
    expect(chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetTime: close })).label).toBe('20261206-220000F');
    expect(chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetLsn: '0/5000100' })).label).toBe('20261206-221000F');
    expect(chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetLsn: '0/5000000' })).label).toBe('20261206-220000F');
    expect(chooseBackupSet(SETS, 'src', undefined, target(undefined)).label).toBe('20261206-221000F');
    expect(chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetName: 'p1' })).label).toBe('20261206-221000F');
  });

  it('refuses, naming recoveryTargetSettings, a target before every backup, and a set that does not reach it', () => {
    expect(() => chooseBackupSet(SETS, 'src', undefined, target({ recoveryTargetTime: '2026-12-06 21:00:00+00' }))).toThrow(
      /^pitrConfig\.recoveryTargetSettings: no backup of stanza src ends before recoveryTargetTime 2026-12-06 21:00:00\+00 \(the oldest, 20261206-220000F, ended 2026-12-06T22:00:00\.000Z, LSN 0\/2000100\)/,
    );
    expect(() => chooseBackupSet(SETS, 'src', '20261206-221000F', target({ recoveryTargetLsn: '0/3000000' }))).toThrow(
      /^pitrConfig\.recoveryTargetSettings: backup 20261206-221000F \(pitrConfig\.fromBackup\.set\) ends at .* not before recoveryTargetLsn 0\/3000000/,
    );
    expect(() => chooseBackupSet(SETS, 'src', '20991231-000000F', target(undefined))).toThrow(
      /^pitrConfig\.fromBackup\.set: stanza src has no backup 20991231-000000F; it has 20261206-220000F, 20261206-221000F$/,
    );
    expect(chooseBackupSet(SETS, 'src', '20261206-220000F', target({ recoveryTarget: 'immediate' })).label).toBe('20261206-220000F');
  });

  it('restores the files only: pgBackRest writes no recovery settings', () => {
    expect(restoreArgs('20261206-220000F')).toEqual(['--set=20261206-220000F', '--type=none']);
  });
});
