/**
 * WAL archiving to an S3 repository: a 2-keeper cluster (`--allow-spec-commands backup`) whose
 * spec's `backup.repository.s3` points at the harness's local S3 server (s3rver, HTTPS, path-style
 * bucket URIs, TLS verified), with the credentials and the CA given to the keepers as files
 * (`--backup-s3-key-file`, `--backup-s3-key-secret-file`, `--backup-s3-ca-file`). The primary's
 * keeper creates the stanza in the bucket; a switched WAL segment is archived by `archive-push`
 * and `pgbackrest info` (run here with the same settings) shows it; the credentials reach neither
 * argv nor PostgreSQL's settings.
 */
import { execFileSync } from 'node:child_process';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgbackrestRepoSettings, renderPgbackrestConf, type BackupSpec } from '@stolon-ts/cluster';
import {
  makeTempDir,
  query,
  removeDir,
  runAs,
  startLocalCluster,
  startS3Server,
  waitFor,
  waitKeepersConverged,
  type LocalCluster,
  type S3ServerHandle,
} from '@stolon-ts/harness';

const STANZA = 's3arch';

describe('WAL archiving with pgBackRest to an S3 repository (s3rver)', () => {
  let s3: S3ServerHandle | undefined;
  let dir: string | undefined;
  let cluster: LocalCluster | undefined;
  let backup: BackupSpec;

  beforeAll(async () => {
    s3 = await startS3Server();
    dir = await makeTempDir('stolon-backup-s3-e2e-');
    const secrets = join(dir, 'secrets');
    await mkdir(secrets, { mode: 0o700 });
    await writeFile(join(secrets, 'key'), `${s3.accessKey}\n`, { mode: 0o600 });
    await writeFile(join(secrets, 'secret'), `${s3.secretKey}\n`, { mode: 0o600 });
    backup = { repository: { path: '/stolon', s3: { bucket: s3.bucket, endpoint: s3.tlsEndpoint, region: s3.region, uriStyle: 'path' } } };
    cluster = await startLocalCluster({
      dir: join(dir, 'cluster'),
      clusterName: STANZA,
      keepers: 2,
      sentinels: 1,
      proxies: 1,
      spec: { initMode: 'new', backup },
      keeperArgs: [
        '--allow-spec-commands', 'backup',
        '--backup-s3-key-file', join(secrets, 'key'),
        '--backup-s3-key-secret-file', join(secrets, 'secret'),
        '--backup-s3-ca-file', s3.caFile,
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await cluster?.stop();
    await s3?.stop();
    if (dir !== undefined) {
      await removeDir(dir);
    }
  }, 120_000);

  it('creates the stanza in the bucket and archives a switched segment there', async () => {
    const c = cluster!;
    await waitKeepersConverged(c, 2);
    const primary = await waitFor(async () => ((await c.primaryIndex()) >= 0 ? c.primaryIndex() : undefined), { timeoutMs: 60_000, what: 'a primary' });
    const cmd = await query<{ archive_command: string }>(c.directClientConfig(primary), 'show archive_command');
    expect(cmd[0]?.archive_command).toMatch(/^pgbackrest --config=\S+\/pgbackrest\.conf --stanza=s3arch .*archive-push %p$/);
    expect(cmd[0]?.archive_command).not.toContain(s3!.secretKey);

    await query(c.proxyClientConfig(0), 'create table t as select g from generate_series(1, 1000) g');
    const seg = (await query<{ f: string }>(c.directClientConfig(primary), 'select pg_walfile_name(pg_current_wal_lsn()) as f'))[0]?.f ?? '';
    await query(c.directClientConfig(primary), 'select pg_switch_wal()');
    await waitFor(
      async () => {
        const st = await query<{ last: string | null }>(c.directClientConfig(primary), 'select last_archived_wal as last from pg_stat_archiver');
        const last = st[0]?.last;
        return last !== null && last !== undefined && last >= seg ? last : undefined;
      },
      { timeoutMs: 90_000, what: `the primary to archive ${seg} to S3`, intervalMs: 500 },
    );

    // The repository as a client with the same settings sees it (credentials in pgBackRest's variables).
    const cli = join(dir!, 'cli');
    await mkdir(cli, { mode: 0o700 });
    const pgUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const pgGid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    await chown(cli, pgUid, pgGid);
    const conf = join(cli, 'pgbackrest.conf');
    await writeFile(conf, renderPgbackrestConf({ ...pgbackrestRepoSettings(backup), 'repo1-storage-ca-file': s3!.caFile, 'log-path': cli, 'lock-path': cli }), { mode: 0o600 });
    await chown(conf, pgUid, pgGid);
    const info = await runAs({ uid: pgUid, gid: pgGid }, 'pgbackrest', [`--config=${conf}`, `--stanza=${STANZA}`, '--output=json', 'info'], {
      env: { PGBACKREST_REPO1_S3_KEY: s3!.accessKey, PGBACKREST_REPO1_S3_KEY_SECRET: s3!.secretKey },
      timeoutMs: 60_000,
    });
    expect(info.code, info.stderr).toBe(0);
    const [stanza] = JSON.parse(info.stdout) as { name: string; archive: { id: string; max: string | null }[] }[];
    expect(stanza?.name).toBe(STANZA);
    expect(stanza?.archive[0]?.id).toBe('15-1');
    expect((stanza?.archive[0]?.max ?? '') >= seg).toBe(true);

    // The keeper's copy of the configuration holds the credentials.
    const keeperConf = await readFile(join(c.keepers[primary]!.dataDir, 'pgbackrest.conf'), 'utf8');
    expect(keeperConf).toContain(`repo1-s3-key=${s3!.accessKey}`);
    // The keeper verifies TLS with its own copy of the CA file.
    expect(keeperConf).toMatch(/^repo1-storage-ca-file=\S+$/m);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps).not.toContain(s3!.secretKey);
  });
});
