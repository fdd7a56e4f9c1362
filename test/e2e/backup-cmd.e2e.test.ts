/**
 * `stolonctl backup` and `stolonctl backups` on real etcd, PostgreSQL and pgBackRest, with a POSIX
 * repository in a temp directory: a 2-keeper cluster whose keepers allow `backup`. A full backup
 * is taken on the primary's keeper (backups from a standby need the keepers' pgBackRest TLS servers,
 * not configured here: the command says so while the standby is healthy; backup-standby.e2e.test.ts
 * covers them);
 * `stolonctl backups --format json` lists it with its WAL range, as pgBackRest's own `info` does;
 * of two requests made at once one is refused; an incremental backup after more writes references
 * the full one; the keeper recorded each request id (it never runs one twice).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';
import { makeTestRepo, pgbackrestCli } from './backup-common.js';

const repo = makeTestRepo('stolon-backup-cmd-repo-');
const STANZA = 'bkcmd';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-backup-cmd-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  clusterName: STANZA,
  spec: { initMode: 'new', backup: repo.backup },
  keeperArgs: ['--allow-spec-commands', 'backup'],
  teardown: () => Promise.resolve(repo.remove()),
});

interface ListedBackup {
  label: string;
  type: string;
  walStart: string;
  walStop: string;
  sizeBytes: number;
  reference?: string;
}

interface Listing {
  keeperUID: string;
  stanza: string;
  refreshedAt: string;
  backups: ListedBackup[];
  error?: string;
}

const WAL_NAME = /^[0-9A-F]{24}$/;

describe('stolonctl backup and backups (pgBackRest, POSIX repository)', () => {
  it('takes a full backup on the primary, lists it with its WAL range, refuses a second request while one is outstanding, and an incr backup references the full', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const primary = await waitFor(async () => ((await c.primaryIndex()) >= 0 ? c.primaryIndex() : undefined), { timeoutMs: 60_000, what: 'a primary' });
    const primaryUid = c.keepers[primary]!.uid;
    const standbyUid = c.keepers[1 - primary]!.uid;

    // The primary's keeper publishes the catalog once it can read the stanza (created by it).
    const empty = await waitFor(
      async () => {
        const r = await c.stolonctl(['backups', '--format', 'json']);
        return r.code === 0 ? (JSON.parse(r.stdout) as Listing) : undefined;
      },
      { timeoutMs: 90_000, what: 'stolonctl backups to list the (empty) stanza', intervalMs: 1000 },
    );
    expect(empty).toMatchObject({ keeperUID: primaryUid, stanza: STANZA, backups: [] });

    await query(c.proxyClientConfig(0), 'create table t as select g from generate_series(1, 20000) g');
    const fullStart = performance.now();
    const full = await c.stolonctl(['backup', '--type', 'full', '--timeout', '3m']);
    const fullMs = performance.now() - fullStart;
    expect(full.stderr).toBe('');
    expect(full.code).toBe(0);
    // Which keeper and why: the primary's, although the standby is healthy (no TLS servers).
    expect(full.stdout).toContain(`from the primary's keeper ${primaryUid}: keeper ${standbyUid} holds a healthy, caught-up standby, but the primary's keeper ${primaryUid} runs no pgBackRest TLS server`);
    const fullLabel = /full backup (\d{8}-\d{6}F) done on keeper (\S+) in /.exec(full.stdout);
    expect(fullLabel?.[2]).toBe(primaryUid);
    const label = fullLabel?.[1] ?? '';

    const listed = JSON.parse((await c.stolonctl(['backups', '--format', 'json'])).stdout) as Listing;
    expect(listed.backups.map((b) => b.label)).toEqual([label]);
    const b0 = listed.backups[0]!;
    expect(b0.type).toBe('full');
    expect(b0.walStart).toMatch(WAL_NAME);
    expect(b0.walStop).toMatch(WAL_NAME);
    expect(b0.walStart <= b0.walStop).toBe(true);
    expect(b0.sizeBytes).toBeGreaterThan(1 << 20);
    // The same as pgBackRest itself reads the repository.
    const own = JSON.parse(pgbackrestCli(repo, STANZA, 'info', ['--output=json']).stdout) as { name: string; backup: { label: string; archive: { start: string; stop: string } }[] }[];
    const ownBackup = own.find((s) => s.name === STANZA)?.backup.find((b) => b.label === label);
    expect(ownBackup?.archive).toEqual({ start: b0.walStart, stop: b0.walStop });
    expect((await c.stolonctl(['backups'])).stdout).toMatch(new RegExp(`${label}\\s+full\\s+`));

    // More writes, then two incremental backups asked for at once: one request is recorded, the
    // other refused (the compare-and-set loser sees the winner's request outstanding).
    await query(c.proxyClientConfig(0), 'insert into t select g from generate_series(1, 20000) g');
    const incrStart = performance.now();
    const both = await Promise.all([0, 1].map(() => c.stolonctl(['backup', '--type', 'incr', '--no-wait'])));
    expect(both.map((r) => r.code).sort()).toEqual([0, 1]);
    const refused = both.find((r) => r.code === 1)!;
    expect(refused.stderr).toMatch(/^stolonctl backup: backup request [0-9a-f]{8} \(incr.*\) (waits for keeper \S+ to start it|is already running on keeper \S+)/);
    const withIncr = await waitFor(
      async () => {
        const l = JSON.parse((await c.stolonctl(['backups', '--format', 'json'])).stdout) as Listing;
        return l.backups.length === 2 ? l : undefined;
      },
      { timeoutMs: 180_000, what: 'the incr backup in stolonctl backups', intervalMs: 1000 },
    );
    const incrMs = performance.now() - incrStart;
    const b1 = withIncr.backups[1]!;
    // Figures for docs/benchmarks-style notes: whole command times, as an operator sees them.
    console.log(`backup e2e: full ${label} ${(b0.sizeBytes / 2 ** 20).toFixed(1)} MiB in ${(fullMs / 1000).toFixed(1)} s (stolonctl backup); incr ${b1.label} listed ${(incrMs / 1000).toFixed(1)} s after the request`);
    expect(b1).toMatchObject({ type: 'incr', reference: label });
    expect(b1.label.startsWith(`${label}_`)).toBe(true);
    expect(b1.walStart > b0.walStop).toBe(true);

    // The keeper recorded both request ids (it never runs one twice, across restarts too).
    const ledger = JSON.parse(readFileSync(join(c.keepers[primary]!.dataDir, 'backup-requests'), 'utf8')) as { ran: string[]; last: { state: string; label: string } };
    expect(ledger.ran).toHaveLength(2);
    expect(ledger.last).toMatchObject({ state: 'done', label: b1.label });
  });
});
