/**
 * WAL archiving with pgBackRest from the spec's `backup` section, on real etcd, PostgreSQL and
 * pgBackRest, with a POSIX repository in a temp directory: a 2-keeper cluster whose keepers allow
 * `backup` (`--allow-spec-commands backup`). The primary's keeper creates the stanza; every keeper
 * runs `archive_mode = always` with pgBackRest's archive-push; a switched WAL segment reaches the
 * repository (`pgbackrest info` shows the archive range, the file is there); the standby, which
 * archives the segments it receives too, pushes the same segments without a failure; its
 * `restore_command` is pgBackRest's archive-get; no S3 credential or secret reaches argv.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';
import { archiveRanges, archivedWalFiles, makeTestRepo } from './backup-common.js';

const repo = makeTestRepo('stolon-backup-archive-repo-');
const STANZA = 'arch';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-backup-archive-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  clusterName: STANZA,
  spec: { initMode: 'new', backup: repo.backup },
  keeperArgs: ['--allow-spec-commands', 'backup'],
  teardown: () => Promise.resolve(repo.remove()),
});

describe('WAL archiving with pgBackRest (POSIX repository)', () => {
  it('creates the stanza, archives a switched segment from the primary and the standby, and gives standbys archive-get', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const primary = await waitFor(async () => ((await c.primaryIndex()) >= 0 ? c.primaryIndex() : undefined), { timeoutMs: 60_000, what: 'a primary' });
    const standby = 1 - primary;
    // The stanza exists once the primary's keeper ran stanza-create.
    await waitFor(() => Promise.resolve(archiveRanges(repo, STANZA).length > 0 || existsStanza() ? true : undefined), {
      timeoutMs: 60_000,
      what: 'the stanza to be created by the primary keeper',
      intervalMs: 500,
    });
    for (const i of [primary, standby]) {
      const rows = await query<{ archive_mode: string }>(c.directClientConfig(i), 'show archive_mode');
      expect(rows[0]?.archive_mode).toBe('always');
    }
    const cmd = await query<{ archive_command: string }>(c.directClientConfig(primary), 'show archive_command');
    expect(cmd[0]?.archive_command).toMatch(/^pgbackrest --config=\S+\/pgbackrest\.conf --stanza=arch --repo1-path=\S+ .* archive-push %p$/);
    const restore = await query<{ restore_command: string }>(c.directClientConfig(standby), 'show restore_command');
    expect(restore[0]?.restore_command).toMatch(/^pgbackrest .*--stanza=arch .* archive-get %f "%p"$/);

    // A switched segment reaches the repository.
    await query(c.proxyClientConfig(0), 'create table t as select g from generate_series(1, 1000) g');
    const seg = (await query<{ f: string }>(c.directClientConfig(primary), 'select pg_walfile_name(pg_current_wal_lsn()) as f'))[0]?.f ?? '';
    await query(c.directClientConfig(primary), 'select pg_switch_wal()');
    await waitFor(() => Promise.resolve(archivedWalFiles(repo, STANZA).includes(seg) ? true : undefined), {
      timeoutMs: 30_000,
      what: `segment ${seg} in the repository`,
      intervalMs: 250,
    });
    const ranges = archiveRanges(repo, STANZA);
    expect(ranges).toHaveLength(1);
    expect(ranges[0]?.id).toBe('15-1');
    expect((ranges[0]?.max ?? '') >= seg).toBe(true);

    // The standby archives what it receives too (archive_mode = always): the same segments,
    // accepted by pgBackRest as identical duplicates. A push racing the primary's push of the same
    // segment can fail once (both write pgBackRest's one temp name; the loser's rename finds
    // nothing) and succeeds on PostgreSQL's retry; a push before stanza-create finds no stanza and
    // is retried too: no other archiving error may appear.
    await waitFor(
      async () => {
        const st = await query<{ last: string | null }>(c.directClientConfig(standby), 'select last_archived_wal as last from pg_stat_archiver');
        const last = st[0]?.last;
        return last !== null && last !== undefined && last >= seg ? last : undefined;
      },
      { timeoutMs: 60_000, what: `the standby to archive ${seg}`, intervalMs: 500 },
    );
    for (const k of c.keepers) {
      const log = readFileSync(join(k.dataDir, 'postgres.log'), 'utf8');
      const errors = log.split('\n').filter((l) => /^ERROR: \[\d+\]/.test(l)).length;
      const collisions = (log.match(/\[FileMoveError\] unable to move '[^']+\.pgbackrest\.tmp'/g) ?? []).length;
      const noStanza = (log.match(/HINT: has a stanza-create been performed\?/g) ?? []).length;
      expect(errors, `${k.uid}: archive-push errors other than a collision with another keeper's push or a push before stanza-create`).toBe(collisions + noStanza);
    }

    // The keeper's pgBackRest files: outside PGDATA, the configuration file 0600 and the postgres user's.
    const conf = join(c.keepers[primary]?.dataDir ?? '', 'pgbackrest.conf');
    const pgUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    expect(statSync(conf).mode & 0o777).toBe(0o600);
    expect(statSync(conf).uid).toBe(pgUid);
    const dir = statSync(join(c.keepers[primary]?.dataDir ?? '', 'pgbackrest'));
    expect([dir.uid, dir.mode & 0o777]).toEqual([pgUid, 0o700]);
    expect(readFileSync(conf, 'utf8')).toBe('[global]\n');
    const keeperStatus = JSON.parse((await c.stolonctl(['status', '--format', 'json'])).stdout) as { keepers: { refused_spec_commands?: string[] }[] };
    expect(keeperStatus.keepers.flatMap((k) => k.refused_spec_commands ?? [])).toEqual([]);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps).not.toContain(c.suPassword);
  });
});

function existsStanza(): boolean {
  try {
    return statSync(join(repo.path, 'archive', STANZA, 'archive.info')).isFile();
  } catch {
    return false;
  }
}
