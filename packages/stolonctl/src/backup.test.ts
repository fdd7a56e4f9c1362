/**
 * Unit tier: `stolonctl backup` and `stolonctl backups` in-process against the in-memory store,
 * with the keeper's side (its published `backup` and `backups`) written by the test.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseClusterData, serializeClusterData, type BackupCatalog, type ClusterData, type ClusterSpec, type KeeperBackupRun, type KeeperInfo } from '@stolon-ts/cluster';
import { aCluster, keeperInfo } from '@stolon-ts/cluster/testing';
import { MemoryBackend, MemoryStore } from '@stolon-ts/store';
import { ExitCode, runBackup, runBackups, type CommandContext } from './index.js';

const BACKUP_SPEC: ClusterSpec = { initMode: 'new', backup: { repository: { path: '/backups' } } };
const stores: MemoryStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

async function setup(spec: ClusterSpec = BACKUP_SPEC) {
  const store = new MemoryStore(new MemoryBackend(), { clusterName: 'c1' });
  stores.push(store);
  const cd = aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').build();
  await store.putClusterData(serializeClusterData(cd), null);
  const publish = async (uid: string, extra: Partial<KeeperInfo> = {}) => store.setInfo('keepers', uid, { ...keeperInfo(uid, cd), ...extra }, 60_000);
  await publish('k1');
  await publish('k2');
  const out: string[] = [];
  const errs: string[] = [];
  const ctx: CommandContext = { store, clusterName: 'c1', out: (t) => out.push(t), err: (l) => errs.push(l) };
  const stored = async (): Promise<ClusterData> => parseClusterData((await store.getClusterData())!.text);
  return { store, ctx, out, errs, publish, stored };
}

describe('backup', () => {
  it('records a request naming the primary and says why not the standby (--no-wait)', async () => {
    const h = await setup();
    expect(await runBackup(h.ctx, { type: 'incr', noWait: true })).toBe(ExitCode.ok);
    const req = (await h.stored()).cluster.status.backupRequest;
    expect(req).toMatchObject({ keeperUID: 'k1', type: 'incr', id: expect.stringMatching(/^[0-9a-f]{8}$/) });
    expect(h.out.join('\n')).toMatch(/incr backup requested \(request [0-9a-f]{8}\) from the primary's keeper k1: keeper k2 holds a healthy, caught-up standby, but the primary's keeper k1 runs no pgBackRest TLS server/);
  });

  it('names the standby, and records the primary it reaches, when both keepers publish a pgBackRest TLS server', async () => {
    const h = await setup();
    const server = (k: string) => ({ host: `${k}.example`, port: 8432, pgData: `/data/${k}/postgres`, pgPort: 5432, socketPath: `/data/${k}/run`, user: 'postgres' });
    await h.publish('k1', { backupServer: server('k1') });
    await h.publish('k2', { backupServer: server('k2') });
    expect(await runBackup(h.ctx, { type: 'full', noWait: true })).toBe(ExitCode.ok);
    const req = (await h.stored()).cluster.status.backupRequest;
    expect(req).toMatchObject({ keeperUID: 'k2', type: 'full', primary: { keeperUID: 'k1', ...server('k1') } });
    expect(h.out.join('\n')).toMatch(/full backup requested \(request [0-9a-f]{8}\) from the standby of keeper k2 /);
  });

  it('refuses without a backup section, leaving clusterdata as it was', async () => {
    const h = await setup({ initMode: 'new' });
    const before = (await h.store.getClusterData())!.text;
    expect(await runBackup(h.ctx, { noWait: true })).toBe(ExitCode.runtime);
    expect(h.errs.join('\n')).toMatch(/stolonctl backup: cannot back up now: the cluster spec has no backup section; add one \(stolonctl update --patch/);
    expect((await h.store.getClusterData())!.text).toBe(before);
  });

  it('refuses a second request while the first waits or runs, and takes one once it ended', async () => {
    const h = await setup();
    expect(await runBackup(h.ctx, { noWait: true })).toBe(ExitCode.ok);
    const first = (await h.stored()).cluster.status.backupRequest!;
    expect(await runBackup(h.ctx, { noWait: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(new RegExp(`backup request ${first.id} \\(full, made at .*\\) waits for keeper k1 to start it; wait for it, or ask again after `));
    const run: KeeperBackupRun = { requestId: first.id, type: 'full', state: 'running', startedAt: new Date().toISOString(), percent: 25.4 };
    await h.publish('k1', { backup: run });
    expect(await runBackup(h.ctx, { noWait: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/backup request \w+ \(full\) is already running on keeper k1 since .*, 25% copied; wait for it to end/);
    expect((await h.stored()).cluster.status.backupRequest).toEqual(first);
    await h.publish('k1', { backup: { ...run, state: 'done', label: '20261206-220000F' } });
    expect(await runBackup(h.ctx, { noWait: true, type: 'diff' })).toBe(ExitCode.ok);
    expect((await h.stored()).cluster.status.backupRequest).toMatchObject({ type: 'diff', keeperUID: 'k1' });
  });

  it('waits for the keeper and prints the label (exit 0), or its error (exit 1)', async () => {
    for (const outcome of ['done', 'failed'] as const) {
      const h = await setup();
      // The keeper's side: runs the request it finds, then reports the outcome.
      const keeper = setInterval(() => {
        void (async () => {
          const req = (await h.stored()).cluster.status.backupRequest;
          if (req !== undefined) {
            const startedAt = new Date().toISOString();
            const end = outcome === 'done' ? { label: '20261206-220000F', sizeBytes: 2048 } : { error: 'pgbackrest backup failed (exit 82): archive timeout' };
            await h.publish('k1', { backup: { requestId: req.id, type: req.type, state: outcome, startedAt, finishedAt: startedAt, ...end } });
          }
        })();
      }, 20);
      try {
        const code = await runBackup(h.ctx, { pollMs: 10 });
        if (outcome === 'done') {
          expect(code).toBe(ExitCode.ok);
          expect(h.out.at(-1)).toMatch(/^full backup 20261206-220000F done on keeper k1 in .*, 2\.0 KiB$/);
        } else {
          expect(code).toBe(ExitCode.runtime);
          expect(h.errs.at(-1)).toBe('stolonctl backup: the full backup on keeper k1 failed: pgbackrest backup failed (exit 82): archive timeout');
        }
      } finally {
        clearInterval(keeper);
      }
    }
  });

  it('gives up waiting after --timeout, saying the backup goes on', async () => {
    const h = await setup();
    expect(await runBackup(h.ctx, { timeout: '50ms', pollMs: 10 })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/did not end within 50ms \(--timeout\); it goes on on keeper k1/);
  });

  it.each([
    [{ type: 'weekly' as never }, /--type: "weekly" is not one of full, diff, incr/],
    [{ timeout: 'soon' }, /--timeout: "soon" is not a positive duration/],
  ])('refuses bad flags with exit 2 (%o)', async (opts, msg) => {
    const h = await setup();
    expect(await runBackup(h.ctx, opts)).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(msg);
  });
});

describe('backups', () => {
  const catalog: BackupCatalog = {
    refreshedAt: new Date().toISOString(),
    stanza: 'c1',
    walMin: '000000010000000000000001',
    walMax: '000000010000000000000009',
    backups: [
      { label: '20261206-220000F', type: 'full', startTime: 'a', stopTime: 'b', walStart: '000000010000000000000003', walStop: '000000010000000000000003', sizeBytes: 23 << 20, repoSizeBytes: 3 << 20 },
      {
        label: '20261206-220000F_20261206-220100I',
        type: 'incr',
        startTime: 'c',
        stopTime: 'd',
        walStart: '000000010000000000000006',
        walStop: '000000010000000000000006',
        sizeBytes: 23 << 20,
        repoSizeBytes: 1024,
        reference: '20261206-220000F',
      },
    ],
  };

  it('says why there is no list', async () => {
    const h = await setup();
    expect(await runBackups(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/no keeper publishes the backup list yet: .*--allow-spec-commands backup/);
  });

  it("prints the primary keeper's list as a table and as JSON", async () => {
    const h = await setup();
    await h.publish('k2', { backups: { ...catalog, refreshedAt: '2020-01-01T00:00:00Z', backups: [] } });
    await h.publish('k1', { backups: catalog });
    expect(await runBackups(h.ctx)).toBe(ExitCode.ok);
    const text = h.out.join('\n');
    expect(text).toMatch(/^stanza c1, as keeper k1 read the repository at .* \(\d+ s ago\)\narchived WAL: 000000010000000000000001 to 000000010000000000000009/);
    expect(text).toMatch(/20261206-220000F_20261206-220100I\s+incr\s+c\s+d\s+000000010000000000000006\s+000000010000000000000006\s+23\.0 MiB\s+1\.0 KiB\s+20261206-220000F/);
    h.out.length = 0;
    expect(await runBackups(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    expect(JSON.parse(h.out.join(''))).toEqual({ keeperUID: 'k1', ...catalog });
  });

  it('prints the last list and fails when the last read of the repository failed', async () => {
    const h = await setup();
    await h.publish('k1', { backups: { ...catalog, error: 'stanza c1: missing stanza path (pgBackRest status 1)' } });
    expect(await runBackups(h.ctx)).toBe(ExitCode.runtime);
    expect(h.out.join('\n')).toContain('20261206-220000F');
    expect(h.errs.at(-1)).toMatch(/keeper k1 could not read the repository at .*: stanza c1: missing stanza path/);
  });
});
