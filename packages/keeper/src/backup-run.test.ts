import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import type { BackupRequest, ClusterData } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import type { ToolResult } from '@stolon-ts/postgres';
import { pgbackrestLocal } from './archiving.js';
import { backupLabel, backupPercent, maintainBackups, nextBackupStep, pgbackrestError, type BackupState } from './backup-run.js';
import type { KeeperRuntime } from './runtime.js';

const AT = Date.parse('2026-12-06T22:00:00Z');
const REQ: BackupRequest = { id: 'r1', keeperUID: 'k1', type: 'full', requestedAt: new Date(AT).toISOString() };
const OK: { busy: boolean; archiving: boolean; primary: boolean; standbyOf?: string; tls?: boolean } = { busy: false, archiving: true, primary: true };
const PRIMARY = { keeperUID: 'k0', host: 'localhost', port: 8432, pgData: '/data/k0/postgres', pgPort: 5432, socketPath: '/data/k0/run', user: 'postgres' };
const STANDBY_REQ: BackupRequest = { ...REQ, primary: PRIMARY };
const STANDBY_HERE = { primary: false, standbyOf: 'k0', tls: true };

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
    { name: 'standby request on a standby of the named primary', req: STANDBY_REQ, here: STANDBY_HERE, want: 'run' },
    { name: 'standby request, this keeper now follows another primary', req: STANDBY_REQ, here: { ...STANDBY_HERE, standbyOf: 'k9' }, want: 'refuse', reason: /no longer runs a standby of the primary of keeper k0/ },
    { name: 'standby request, this keeper is the primary now', req: STANDBY_REQ, here: { primary: true, tls: true }, want: 'refuse', reason: /no longer runs a standby/ },
    { name: 'standby request without a TLS server here', req: STANDBY_REQ, here: { ...STANDBY_HERE, tls: false }, want: 'refuse', reason: /no pgBackRest TLS server configured \(--backup-server-port\)/ },
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

describe('maintainBackups: each request runs once, across keeper restarts', () => {
  const backupSpec = { repository: { path: '/repo' } };
  /** A runtime with what maintainBackups uses; `runTool` records its calls and answers `answer`. */
  function runtime(dataDir: string, calls: string[][], answer: (args: readonly string[]) => ToolResult) {
    const rt = {
      backups: undefined,
      isPrimary: true,
      config: {
        uid: 'k1',
        dataDir,
        pgPort: 5432,
        suUsername: 'postgres',
        allowSpecCommands: new Set(['backup']),
        pgbackrest: pgbackrestLocal('c1', dataDir, join(dataDir, 'postgres'), join(dataDir, 'run')),
      },
      log: createLogger({ level: 'error', component: 'keeper', dest: { write: () => undefined } }),
      trigger: () => undefined,
      pg: {
        runTool: (_file: string, args: readonly string[]) => {
          calls.push([...args]);
          return Promise.resolve(answer(args));
        },
      },
    };
    return rt as unknown as KeeperRuntime;
  }
  const cdWith = (request: BackupRequest | undefined): ClusterData => {
    const cd = aCluster({ spec: { initMode: 'new', backup: backupSpec } }).initialized().withPrimary('k1').build();
    if (request !== undefined) {
      cd.cluster.status.backupRequest = request;
    }
    return cd;
  };
  const obs = { running: true, role: 'master' };
  const now = () => new Date().toISOString();
  const ok = (args: readonly string[]): ToolResult =>
    args.at(-1) === 'backup' ? { code: 0, stdout: '', stderr: 'INFO: new backup label = 20261206-220000F\n' } : { code: 0, stdout: '[]', stderr: '' };

  async function loaded(rt: KeeperRuntime, cd: ClusterData): Promise<BackupState> {
    maintainBackups(rt, cd, obs);
    await vi.waitFor(() => expect(typeof rt.backups).toBe('object'));
    return rt.backups as BackupState;
  }

  it('reports a run the previous process did not see end as failed, and does not run its request again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backup-run-'));
    try {
      const r1: BackupRequest = { id: 'r1', keeperUID: 'k1', type: 'full', requestedAt: now() };
      await writeFile(join(dir, 'backup-requests'), JSON.stringify({ ran: ['r1'], last: { requestId: 'r1', type: 'full', state: 'running', startedAt: r1.requestedAt } }));
      const calls: string[][] = [];
      const rt = runtime(dir, calls, ok);
      const st = await loaded(rt, cdWith(r1));
      expect(st.ledger.last).toMatchObject({ requestId: 'r1', state: 'failed', error: expect.stringMatching(/keeper process stopped while the backup ran/) });
      maintainBackups(rt, cdWith(r1), obs);
      expect(calls.filter((a) => a.at(-1) === 'backup')).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('records a new request before pgBackRest starts, runs it once with --type and --start-fast, and reports the label', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backup-run-'));
    try {
      const r2: BackupRequest = { id: 'r2', keeperUID: 'k1', type: 'incr', requestedAt: now() };
      const calls: string[][] = [];
      let recordedBeforeRun: unknown;
      const rt = runtime(dir, calls, (args) => {
        if (args.at(-1) === 'backup') {
          recordedBeforeRun = JSON.parse(readFileSync(join(dir, 'backup-requests'), 'utf8'));
        }
        return ok(args);
      });
      const st = await loaded(rt, cdWith(undefined));
      maintainBackups(rt, cdWith(r2), obs);
      maintainBackups(rt, cdWith(r2), obs);
      await vi.waitFor(() => expect(st.ledger.last?.state).toBe('done'));
      maintainBackups(rt, cdWith(r2), obs);
      const backups = calls.filter((a) => a.at(-1) === 'backup');
      expect(backups).toHaveLength(1);
      expect(backups[0]).toEqual(expect.arrayContaining(['--type=incr', '--start-fast', '--stanza=c1', `--pg1-path=${join(dir, 'postgres')}`]));
      expect(recordedBeforeRun).toMatchObject({ ran: ['r2'], last: { requestId: 'r2', state: 'running' } });
      expect(st.ledger.last).toMatchObject({ requestId: 'r2', state: 'done', label: '20261206-220000F' });
      expect(JSON.parse(readFileSync(join(dir, 'backup-requests'), 'utf8'))).toMatchObject({ ran: ['r2'], last: { state: 'done' } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
