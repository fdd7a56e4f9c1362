import { describe, expect, it } from 'vitest';
import type { BackupRequest } from '@stolon-ts/cluster';
import { backupLabel, backupPercent, nextBackupStep, pgbackrestError } from './backup-run.js';

const AT = Date.parse('2026-12-06T22:00:00Z');
const REQ: BackupRequest = { id: 'r1', keeperUID: 'k1', type: 'full', requestedAt: new Date(AT).toISOString() };
const OK = { busy: false, archiving: true, primary: true };

describe('nextBackupStep', () => {
  const cases: { name: string; req?: BackupRequest; ran?: string[]; afterMs?: number; here?: Partial<typeof OK>; want: string; reason?: RegExp }[] = [
    { name: 'no request', want: 'none' },
    { name: 'runs a request naming this keeper', req: REQ, want: 'run' },
    { name: 'another keeper', req: { ...REQ, keeperUID: 'k2' }, want: 'none' },
    { name: 'already run (ledger)', req: REQ, ran: ['r0', 'r1'], want: 'none' },
    { name: 'already run, even past the window and no longer primary', req: REQ, ran: ['r1'], afterMs: 3_600_000, here: { primary: false }, want: 'none' },
    { name: 'a backup runs in this process', req: REQ, here: { busy: true }, want: 'none' },
    { name: 'past the start window', req: REQ, afterMs: 121_000, want: 'refuse', reason: /first saw the request 2m1s after it was made, past the 2m0s start window/ },
    { name: 'unparsable request time', req: { ...REQ, requestedAt: 'yesterday' }, want: 'refuse', reason: /start window/ },
    { name: 'backup section not applied here', req: REQ, here: { archiving: false }, want: 'refuse', reason: /start it with --allow-spec-commands backup/ },
    { name: 'no longer the primary', req: REQ, here: { primary: false }, want: 'refuse', reason: /no longer runs the primary; run stolonctl backup again/ },
  ];
  it.each(cases)('$name', ({ req, ran, afterMs, here, want, reason }) => {
    const step = nextBackupStep(req, 'k1', ran ?? [], AT + (afterMs ?? 1000), { ...OK, ...here });
    expect(step.kind).toBe(want);
    if (reason !== undefined) {
      expect(step.kind === 'refuse' ? step.reason : '').toMatch(reason);
    }
  });
});

describe("pgBackRest's output", () => {
  it('gives the percent copied, the label and the error', () => {
    const chunk = [
      'DETAIL: backup file /pg/base/5/16396 (38.4MB, 57.31%) checksum 97cc05',
      'DETAIL: backup file /pg/base/5/1255 (768KB, 68.05%) checksum adb7a4',
      'INFO: new backup label = 20261206-222410F',
    ].join('\n');
    expect(backupPercent(chunk)).toBe(68.05);
    expect(backupPercent('INFO: backup start archive = 000000010000000000000004')).toBeUndefined();
    expect(backupLabel(chunk)).toBe('20261206-222410F');
    expect(backupLabel('nothing')).toBeUndefined();
    expect(
      pgbackrestError(
        'INFO: backup command begin\nERROR: [082]: WAL segment 000000010000000000000001 was not archived before the 60000ms timeout\n       HINT: check the archive_command\nINFO: backup command end: aborted with exception [082]\n',
      ),
    ).toBe('ERROR: [082]: WAL segment 000000010000000000000001 was not archived before the 60000ms timeout / HINT: check the archive_command / INFO: backup command end: aborted with exception [082]');
    expect(pgbackrestError('a\nb\nc\nd')).toBe('b / c / d');
    expect(pgbackrestError('')).toBe('no output');
  });
});
