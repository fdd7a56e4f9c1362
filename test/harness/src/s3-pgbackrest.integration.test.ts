/**
 * pgBackRest 2.45 against the local S3 server (s3rver, HTTPS, self-signed certificate) with the
 * repository settings the keeper uses for an `s3` repository (`uriStyle: 'path'`, `verifyTls:
 * false`): `pgbackrestRepoSettings` in a configuration file from `renderPgbackrestConf`, on a plain PostgreSQL 15 whose `archive_command` is `pgbackrest
 * archive-push`: stanza-create, archive-push, check, a full backup, info, a restore into a new
 * directory that starts and has the rows. Then TLS verification with `--repo1-storage-ca-file`.
 * Credentials only in pgBackRest's `PGBACKREST_REPO1_S3_KEY*` variables. The steps build on each
 * other and run in order.
 */
import { mkdir, chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pgbackrestRepoOptions, pgbackrestRepoSettings, renderPgbackrestConf, type BackupSpec } from '@stolon-ts/cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAs, startPlainPostgres, type PlainPostgres } from './plain-postgres.js';
import { startS3Server, type S3ServerHandle } from './s3.js';
import { makeTempDir, removeDir } from './tmp.js';
import { waitFor } from './wait.js';

const STANZA = 'main';

describe('pgBackRest on an S3 repository (s3rver)', () => {
  let s3: S3ServerHandle;
  let dir: string;
  let primary: PlainPostgres;
  let restored: PlainPostgres | undefined;
  let conf: string;
  let creds: Record<string, string>;
  let spec: BackupSpec;

  const pgbackrest = async (args: readonly string[], config = conf) => {
    const r = await runAs(primary.identity, 'pgbackrest', [`--config=${config}`, `--stanza=${STANZA}`, '--log-level-console=warn', ...args], {
      env: creds,
      timeoutMs: 120_000,
    });
    return r;
  };
  const ok = async (args: readonly string[], config = conf): Promise<string> => {
    const r = await pgbackrest(args, config);
    expect(r.code, `pgbackrest ${args.join(' ')}: ${r.stderr}${r.stdout}`).toBe(0);
    return r.stdout;
  };
  const configFile = (settings: Record<string, string>, extra: Record<string, string>): string =>
    renderPgbackrestConf({ ...settings, ...extra }, { [STANZA]: { 'pg1-path': primary.dataDir, 'pg1-port': String(primary.port), 'pg1-socket-path': primary.socketDir } });
  const writeConf = async (path: string, text: string): Promise<void> => {
    await writeFile(path, text, { mode: 0o600 });
    if (primary.identity !== null) {
      await chown(path, primary.identity.uid, primary.identity.gid);
    }
  };

  beforeAll(async () => {
    s3 = await startS3Server();
    creds = { PGBACKREST_REPO1_S3_KEY: s3.accessKey, PGBACKREST_REPO1_S3_KEY_SECRET: s3.secretKey };
    dir = await makeTempDir('stolon-s3-pgbackrest-');
    const work = join(dir, 'pgbackrest');
    await mkdir(work, { mode: 0o700 });
    conf = join(work, 'pgbackrest.conf');
    spec = { repository: { path: '/stolon', s3: { bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, uriStyle: 'path', verifyTls: false } } };
    primary = await startPlainPostgres({
      dataDir: join(dir, 'primary'),
      settings: { archive_mode: 'on', archive_command: `pgbackrest --config=${conf} --stanza=${STANZA} archive-push %p`, wal_level: 'replica' },
      env: creds,
    });
    if (primary.identity !== null) {
      await chown(work, primary.identity.uid, primary.identity.gid);
    }
    await writeConf(conf, configFile(pgbackrestRepoSettings(spec), { 'log-path': work, 'lock-path': work }));
  });

  afterAll(async () => {
    await restored?.stop().catch(() => undefined);
    await primary?.stop().catch(() => undefined);
    await s3?.stop();
    if (dir !== undefined) {
      await removeDir(dir);
    }
  });

  it('renders path-style S3 settings without TLS verification and without credentials', () => {
    expect(pgbackrestRepoOptions(spec, STANZA)).toEqual(
      expect.arrayContaining(['--repo1-type=s3', `--repo1-s3-endpoint=${s3.endpoint}`, '--repo1-s3-uri-style=path', '--no-repo1-storage-verify-tls']),
    );
    const settings = pgbackrestRepoSettings(spec);
    expect(settings).toMatchObject({ 'repo1-type': 's3', 'repo1-s3-uri-style': 'path', 'repo1-storage-verify-tls': 'n' });
    expect(JSON.stringify(settings)).not.toContain(s3.secretKey);
  });

  it('creates the stanza in the bucket', async () => {
    await ok(['stanza-create']);
    const info = JSON.parse(await ok(['info', '--output=json'])) as { name: string; status: { code: number } }[];
    // code 2: "no valid backups" — the stanza exists, nothing is backed up yet.
    expect(info.map((s) => [s.name, s.status.code])).toEqual([[STANZA, 2]]);
  });

  it('archives WAL through archive_command = pgbackrest archive-push', async () => {
    await primary.query('create table t (id int primary key, note text)');
    await primary.query("insert into t select g, 'before backup' from generate_series(1, 1000) g");
    const [seg] = await primary.query<{ wal: string }>('select pg_walfile_name(pg_switch_wal()) as wal');
    await waitFor(
      async () => {
        const [a] = await primary.query<{ last: string | null; failed: string }>('select last_archived_wal as last, failed_count::text as failed from pg_stat_archiver');
        return a?.last !== null && a!.last! >= seg!.wal;
      },
      { timeoutMs: 60_000, what: `segment ${seg!.wal} archived to S3` },
    );
    await ok(['check']);
  });

  it('takes a full backup that info lists', async () => {
    await ok(['backup', '--type=full']);
    const [info] = JSON.parse(await ok(['info', '--output=json'])) as {
      status: { code: number };
      backup: { type: string; info: { size: number } }[];
      archive: { min: string; max: string }[];
    }[];
    expect(info!.status.code).toBe(0);
    expect(info!.backup.map((b) => b.type)).toEqual(['full']);
    expect(info!.backup[0]!.info.size).toBeGreaterThan(1024 * 1024);
    expect(info!.archive[0]!.max >= info!.archive[0]!.min).toBe(true);
  });

  it('restores into a new directory that starts, replays the archived WAL and has the rows', async () => {
    await primary.query("insert into t select g, 'after backup' from generate_series(1001, 1500) g");
    const [seg] = await primary.query<{ wal: string }>('select pg_walfile_name(pg_switch_wal()) as wal');
    await waitFor(
      async () => {
        const [a] = await primary.query<{ last: string | null }>('select last_archived_wal as last from pg_stat_archiver');
        return a?.last !== null && a!.last! >= seg!.wal;
      },
      { timeoutMs: 60_000, what: `segment ${seg!.wal} archived to S3` },
    );
    const target = join(dir, 'restored');
    await mkdir(target, { mode: 0o700 });
    if (primary.identity !== null) {
      await chown(target, primary.identity.uid, primary.identity.gid);
    }
    await ok(['restore', `--pg1-path=${target}`]);
    restored = await startPlainPostgres({ dataDir: target, init: false, settings: { archive_mode: 'off' }, env: creds });
    const r = restored;
    await waitFor(async () => (await r.query<{ rec: boolean }>('select pg_is_in_recovery() as rec'))[0]?.rec === false, {
      timeoutMs: 90_000,
      what: 'the restored instance to finish recovery and promote',
    });
    const rows = await r.query<{ n: string; after: string }>("select count(*)::text as n, count(*) filter (where note = 'after backup')::text as after from t");
    expect(rows[0]).toEqual({ n: '1500', after: '500' });
  });

  it('verifies the server certificate with --repo1-storage-ca-file, and fails without it', async () => {
    const verifyingSpec: BackupSpec = { repository: { ...spec.repository, s3: { ...spec.repository.s3!, endpoint: s3.tlsEndpoint, verifyTls: true } } };
    const verifying = pgbackrestRepoSettings(verifyingSpec);
    expect(verifying).not.toHaveProperty('repo1-storage-verify-tls');
    const work = join(dir, 'pgbackrest');
    const withCa = join(work, 'ca.conf');
    await writeConf(withCa, configFile(verifying, { 'log-path': work, 'lock-path': work, 'repo1-storage-ca-file': s3.caFile }));
    const [info] = JSON.parse(await ok(['info', '--output=json'], withCa)) as { backup: unknown[] }[];
    expect(info!.backup).toHaveLength(1);
    const withoutCa = join(work, 'no-ca.conf');
    await writeConf(withoutCa, configFile(verifying, { 'log-path': work, 'lock-path': work }));
    // pgBackRest retries a failed TLS handshake until --io-timeout (default 60 s): keep it short.
    const r = await pgbackrest(['--io-timeout=3', 'info'], withoutCa);
    expect(`${r.stdout}${r.stderr}`).toMatch(/unable to verify certificate/);
  });
});
