/**
 * WAL archiving with pgBackRest from the spec's `backup` section, on real etcd, PostgreSQL and
 * pgBackRest, with a POSIX repository in a temp directory: a 2-keeper cluster whose keepers allow
 * `backup` (`--allow-spec-commands backup`). The primary's keeper creates the stanza; every keeper
 * runs `archive_mode = on` with pgBackRest's archive-push; a switched WAL segment reaches the
 * repository (`pgbackrest info` shows the archive range, the file is there); the standby's
 * `restore_command` is pgBackRest's archive-get; the credentials file is the OS user's, 0600.
 *
 * Then, on the same cluster: archiving that fails (the repository made unwritable) shows in
 * `stolonctl status` and the metrics, the keeper warns past a small `archiveWarnBytes`, and
 * archiving recovers when the repository returns; and after a failover (kill -9 of the primary's
 * keeper and postgres) `pgbackrest check` passes on the new primary, the new timeline's history
 * file is archived, and the archive holds every segment from the start of a backup taken before
 * the failover across the timeline switch to the current segment.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, runPromtool, scrapeMetrics, waitFor, waitKeepersConverged, type LocalCluster } from '@stolon-ts/harness';
import { archiveRanges, archivedWalFiles, makeTestRepo, pgbackrestCli } from './backup-common.js';

const repo = makeTestRepo('stolon-backup-archive-repo-');
const STANZA = 'arch';
/** Small, so that two switched 16 MiB segments waiting pass it. */
const WARN_BYTES = 20 * 1024 * 1024;
const SEG = 16 * 1024 * 1024;

// Registered before the fixture's hooks, so it runs after the cluster stopped (vitest runs after-hooks
// in reverse order): a keeper still pushing WAL would race the removal.
afterAll(() => repo.remove());

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-backup-archive-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  clusterName: STANZA,
  spec: { initMode: 'new', backup: { ...repo.backup, archiveWarnBytes: WARN_BYTES } },
  keeperArgs: ['--allow-spec-commands', 'backup'],
});

describe('WAL archiving with pgBackRest (POSIX repository)', () => {
  it('creates the stanza, archives a switched segment, and gives standbys archive-get', async () => {
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
      expect(rows[0]?.archive_mode).toBe('on');
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

    // A push before stanza-create finds no stanza and is retried: no other archiving error may appear.
    for (const k of c.keepers) {
      const log = readFileSync(join(k.dataDir, 'postgres.log'), 'utf8');
      const errors = log.split('\n').filter((l) => /^ERROR: \[\d+\]/.test(l)).length;
      const noStanza = (log.match(/HINT: has a stanza-create been performed\?/g) ?? []).length;
      expect(errors, `${k.uid}: archive-push errors other than a push before stanza-create`).toBe(noStanza);
    }

    // The keeper's pgBackRest files: outside PGDATA, the configuration file 0600 and the postgres user's.
    const conf = join(c.keepers[primary]?.dataDir ?? '', 'pgbackrest.conf');
    const pgUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    expect(statSync(conf).mode & 0o777).toBe(0o600);
    expect(statSync(conf).uid).toBe(pgUid);
    const dir = statSync(join(c.keepers[primary]?.dataDir ?? '', 'pgbackrest'));
    expect([dir.uid, dir.mode & 0o777]).toEqual([pgUid, 0o700]);
    expect(readFileSync(conf, 'utf8')).toBe('[global]\n');
    const keeperStatus = JSON.parse((await c.stolonctl(['status', '--format', 'json'])).stdout) as StatusJson;
    expect(keeperStatus.keepers.flatMap((k) => k.refusedSpecCommands)).toEqual([]);
    expect(keeperStatus.keepers.map((k) => k.archive?.stanza)).toEqual([STANZA, STANZA]);
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    expect(ps).not.toContain(c.suPassword);
  });

  it('archiving that fails shows in stolonctl status and the metrics, warns past archiveWarnBytes, and recovers', async () => {
    const c = e2e.cluster;
    const primary = await c.primaryIndex();
    const k = c.keepers[primary]!;
    chmodSync(repo.path, 0o000);
    try {
      for (let i = 0; i < 3; i++) {
        await switchSegment(c, primary);
      }
      const st = await waitFor(
        async () => {
          const a = (await statusJson(c)).keepers.find((x) => x.uid === k.uid)?.archive;
          return a?.failing === true && a.backlogWarning === true ? a : undefined;
        },
        { timeoutMs: 60_000, what: 'stolonctl status to show the primary failing to archive, past archiveWarnBytes', intervalMs: 500 },
      );
      expect(st.readyBytes).toBeGreaterThan(WARN_BYTES);
      expect(st.lastFailedWal).toMatch(/^[0-9A-F]{24}$/);
      const table = await c.stolonctl(['status']);
      expect(table.stdout).toMatch(new RegExp(`keeper ${k.uid}: archiving \\(stanza ${STANZA}\\): .*failing .*WAL files \\(\\d+ bytes\\) waiting, above backup\\.archiveWarnBytes`));
      const metrics = await scrapeMetrics(`127.0.0.1:${k.statusPort}`);
      expect(metricValue(metrics, 'stolon_keeper_archive_failing')).toBe(1);
      expect(metricValue(metrics, 'stolon_keeper_archive_backlog_warning')).toBe(1);
      expect(metricValue(metrics, 'stolon_keeper_archive_ready_bytes')).toBeGreaterThan(WARN_BYTES);
      expect(metricValue(metrics, 'stolon_keeper_archive_failed_total')).toBeGreaterThan(0);
      // 0: clean; 3: lint findings only, none of them ours (prom-client's nodejs_active_*_total gauges: prometheus.e2e.test.ts).
      const lint = await runPromtool(['check', 'metrics'], metrics);
      expect([0, 3]).toContain(lint.code);
      expect(`${lint.stdout}${lint.stderr}`).not.toMatch(/stolon_/);
      expect(c.logs()).toContain('wait to be archived, above backup.archiveWarnBytes');
    } finally {
      chmodSync(repo.path, 0o750);
    }
    // PostgreSQL's archiver retries at once when told of a new segment.
    await switchSegment(c, primary);
    const back = await waitFor(
      async () => {
        const a = (await statusJson(c)).keepers.find((x) => x.uid === k.uid)?.archive;
        return a?.failing === false && a.readyCount === 0 && a.backlogWarning === false ? a : undefined;
      },
      { timeoutMs: 90_000, what: 'archiving to recover once the repository is writable again', intervalMs: 500 },
    );
    expect(back.lastArchivedWal).toMatch(/^[0-9A-F]{24}$/);
    expect(metricValue(await scrapeMetrics(`127.0.0.1:${k.statusPort}`), 'stolon_keeper_archive_failing')).toBe(0);
  });

  it('after a failover, pgbackrest check passes on the new primary and the archive has no hole from a backup across the timeline switch, segments the dead primary never archived included', async () => {
    const c = e2e.cluster;
    await waitKeepersConverged(c, 2);
    const primary = await c.primaryIndex();
    const standby = 1 - primary;
    const pg1 = (i: number): string[] => {
      const k = c.keepers[i]!;
      return [`--pg1-path=${join(k.dataDir, 'postgres')}`, `--pg1-port=${k.pgPort}`, `--pg1-socket-path=${join(k.dataDir, 'run')}`, '--pg1-user=postgres'];
    };
    const backup = pgbackrestCli(repo, STANZA, 'backup', [...pg1(primary), '--type=full']);
    expect(backup.code, backup.stderr).toBe(0);
    const info = JSON.parse(pgbackrestCli(repo, STANZA, 'info', ['--output=json']).stdout) as { name: string; backup: { archive: { start: string } }[] }[];
    const start = info.find((x) => x.name === STANZA)?.backup[0]?.archive.start ?? '';
    expect(start).toMatch(/^00000001[0-9A-F]{16}$/);
    // The primary's last segments never reach the archive from it (the repository refuses it until
    // after its death); the standby receives them: the new primary's keeper must push them.
    chmodSync(repo.path, 0o000);
    try {
      await switchSegment(c, primary);
      await switchSegment(c, primary);
      const lsn = (await query<{ l: string }>(c.directClientConfig(primary), 'select pg_current_wal_lsn()::text as l'))[0]?.l ?? '';
      await waitFor(
        async () => {
          const r = await query<{ ok: boolean }>(c.directClientConfig(standby), 'select pg_last_wal_receive_lsn() >= $1::pg_lsn as ok', [lsn]);
          return r[0]?.ok === true ? true : undefined;
        },
        { timeoutMs: 30_000, what: `the standby to receive the primary's WAL up to ${lsn}`, intervalMs: 200 },
      );
      await c.killKeeperNode(primary);
    } finally {
      chmodSync(repo.path, 0o750);
    }
    await waitFor(async () => ((await c.primaryIndex()) === standby ? true : undefined), { timeoutMs: 90_000, what: 'the standby to be promoted', intervalMs: 500 });

    // pgbackrest check on the new primary (it switches a segment and waits for it in the archive).
    const checkStarted = Date.now();
    const check = await waitFor(
      () => {
        const r = pgbackrestCli(repo, STANZA, 'check', [...pg1(standby), '--archive-timeout=10']);
        return Promise.resolve(r.code === 0 ? r : undefined);
      },
      { timeoutMs: 30_000, what: 'pgbackrest check to pass on the new primary', intervalMs: 1000 },
    );
    expect(check.code).toBe(0);
    process.stdout.write(`pgbackrest check passed on the new primary ${Date.now() - checkStarted} ms after the promotion was seen\n`);

    const history = (await query<{ h: string }>(c.directClientConfig(standby), "select pg_read_file('pg_wal/00000002.history') as h"))[0]?.h ?? '';
    const switchLsn = /^1\t([0-9A-F]+)\/([0-9A-F]+)/m.exec(history);
    expect(switchLsn).not.toBeNull();
    const switchSeg = Math.floor((Number.parseInt(switchLsn![1]!, 16) * 2 ** 32 + Number.parseInt(switchLsn![2]!, 16)) / SEG);
    // One complete segment of the new timeline at least (check's switch may find nothing new to switch).
    await switchSegment(c, standby);
    const current = (await query<{ f: string }>(c.directClientConfig(standby), 'select pg_walfile_name(pg_current_wal_lsn()) as f'))[0]?.f ?? '';
    const wanted = [
      ...range(segNo(start), switchSeg).map((n) => walName(1, n)),
      ...range(switchSeg, segNo(current)).map((n) => walName(2, n)),
      '00000002.history',
    ];
    const missing = await waitFor(
      () => {
        const have = new Set(archivedWalFiles(repo, STANZA));
        const m = wanted.filter((w) => !have.has(w));
        return Promise.resolve(m.length === 0 ? m : undefined);
      },
      { timeoutMs: 30_000, what: `every segment from ${start} across the switch to timeline 2 at segment ${switchSeg} up to ${current} in the archive`, intervalMs: 500 },
    );
    expect(missing).toEqual([]);
    // The walk spans both timelines: at least one complete segment of each, and the history file.
    expect(wanted.filter((w) => w.startsWith('00000001')).length).toBeGreaterThan(0);
    expect(wanted.filter((w) => /^00000002[0-9A-F]{16}$/.test(w)).length).toBeGreaterThan(0);
    const st = (await statusJson(c)).keepers.find((x) => x.uid === c.keepers[standby]!.uid)?.archive;
    expect(st?.stanzaError).toBeUndefined();
  });
});

interface StatusJson {
  keepers: {
    uid: string;
    refusedSpecCommands: string[];
    archive: { stanza: string; failing?: boolean; backlogWarning?: boolean; readyCount?: number; readyBytes?: number; lastFailedWal?: string; lastArchivedWal?: string; stanzaError?: string } | null;
  }[];
}

async function statusJson(c: LocalCluster): Promise<StatusJson> {
  const r = await c.stolonctl(['status', '--format', 'json']);
  return JSON.parse(r.stdout) as StatusJson;
}

/** Writes a little and switches to a new WAL segment on keeper `i`'s PostgreSQL (a switch with nothing written does nothing). */
async function switchSegment(c: LocalCluster, i: number): Promise<void> {
  await query(c.directClientConfig(i), 'create table if not exists sw (at timestamptz)');
  await query(c.directClientConfig(i), 'insert into sw values (now())');
  await query(c.directClientConfig(i), 'select pg_switch_wal()');
}

function metricValue(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/** The segment number of WAL file `name` (16 MiB segments: 256 per 4 GiB "log" file). */
function segNo(name: string): number {
  return Number.parseInt(name.slice(8, 16), 16) * 256 + Number.parseInt(name.slice(16, 24), 16);
}

function walName(tli: number, seg: number): string {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(tli)}${hex(Math.floor(seg / 256))}${hex(seg % 256)}`;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);
}

function existsStanza(): boolean {
  try {
    return statSync(join(repo.path, 'archive', STANZA, 'archive.info')).isFile();
  } catch {
    return false;
  }
}
