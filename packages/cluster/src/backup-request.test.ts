import { describe, expect, it } from 'vitest';
import { BACKUP_CATALOG_LIMIT, backupCatalogFromInfo, chooseBackupKeeper, keeperBackupCatalog, outstandingBackup } from './backup-request.js';
import { decide } from './decide.js';
import { resolveSpec } from './spec.js';
import { aCluster, byUid, decideInput, keeperInfo } from './testing.js';
import type { BackupRequest, ClusterData, ClusterSpec, KeeperInfo } from './types.js';

const LSN = 50_000_000;
const BACKUP: ClusterSpec = { initMode: 'new', backup: { repository: { path: '/backups' } } };

function pair(opts: { spec?: ClusterSpec; k1Healthy?: boolean; k2Lsn?: number; k2Healthy?: boolean; noStandby?: boolean; sync?: boolean; k3?: boolean } = {}): ClusterData {
  let b = aCluster({ spec: opts.spec ?? BACKUP })
    .initialized()
    .withPrimary('k1', { xLogPos: LSN, healthy: opts.k1Healthy ?? true, ...(opts.sync === true ? { synchronousStandbys: ['db-k2'] } : {}) });
  if (opts.noStandby !== true) {
    b = b.withStandby('k2', { follows: 'k1', xLogPos: opts.k2Lsn ?? LSN, healthy: opts.k2Healthy ?? true });
  }
  if (opts.k3 === true) {
    b = b.withStandby('k3', { follows: 'k1', xLogPos: LSN - 10 });
  }
  return b.build();
}

const server = (k: string) => ({ host: `${k}.example`, port: 8432, pgData: `/data/${k}/postgres`, pgPort: 5432, socketPath: `/data/${k}/run`, user: 'postgres' });

function infos(cd: ClusterData, without: readonly string[] = [], servers: readonly string[] = []): Record<string, KeeperInfo> {
  return byUid(
    ...Object.keys(cd.keepers)
      .filter((k) => !without.includes(k))
      .map((k) => ({ ...keeperInfo(k, cd), ...(servers.includes(k) ? { backupServer: server(k) } : {}) })),
  );
}

describe('chooseBackupKeeper', () => {
  const cases: { name: string; cd: () => ClusterData; without?: string[]; servers?: string[]; keeper?: string; match: RegExp }[] = [
    { name: 'no backup section', cd: () => pair({ spec: { initMode: 'new' } }), match: /no backup section.*stolonctl update --patch/ },
    { name: 'initializing', cd: () => aCluster({ spec: BACKUP }).withPrimary('k1').build(), match: /still initializing/ },
    {
      name: 'failover in progress',
      cd: () => {
        const cd = pair();
        cd.cluster.status.failover = { id: 'f', kind: 'failover', cause: 'x', oldPrimary: { keeperUID: 'k1', dbUid: 'db-k1', xLogPos: 0 }, phases: { declaredFailed: 'now' } };
        return cd;
      },
      match: /failover is in progress/,
    },
    {
      name: 'no primary',
      cd: () => {
        const cd = pair();
        cd.cluster.status.master = '';
        return cd;
      },
      match: /no primary now/,
    },
    { name: 'unhealthy primary', cd: () => pair({ k1Healthy: false }), match: /keeper k1 is not healthy/ },
    { name: "primary's info gone", cd: () => pair(), without: ['k1'], match: /k1 publishes no info/ },
    { name: 'healthy standby: still the primary, says why', cd: () => pair(), keeper: 'k1', match: /^from the primary's keeper k1: keeper k2 holds a healthy, caught-up standby, but the primary's keeper k1 runs no pgBackRest TLS server/ },
    { name: 'standby and primary serve pgBackRest: the standby', cd: () => pair(), servers: ['k1', 'k2'], keeper: 'k2', match: /^from the standby of keeper k2 /u },
    { name: 'only the standby serves: the primary', cd: () => pair(), servers: ['k2'], keeper: 'k1', match: /but the primary's keeper k1 runs no/ },
    { name: 'only the primary serves: the primary', cd: () => pair(), servers: ['k1'], keeper: 'k1', match: /but no such standby's keeper runs a/ },
    { name: 'a serving standby too far behind: the primary', cd: () => pair({ k2Lsn: LSN - 10 * 1024 * 1024 }), servers: ['k1', 'k2'], keeper: 'k1', match: /no healthy, caught-up standby$/ },
    { name: 'the serving standby among several', cd: () => pair({ k3: true }), servers: ['k1', 'k3'], keeper: 'k3', match: /standby of keeper k3/ },
    { name: 'standby too far behind', cd: () => pair({ k2Lsn: LSN - 10 * 1024 * 1024 }), keeper: 'k1', match: /no healthy, caught-up standby$/ },
    { name: 'standby unhealthy', cd: () => pair({ k2Healthy: false }), keeper: 'k1', match: /no healthy, caught-up standby$/ },
    { name: "standby's info gone", cd: () => pair(), without: ['k2'], keeper: 'k1', match: /no healthy, caught-up standby$/ },
    { name: 'no standby at all', cd: () => pair({ noStandby: true }), keeper: 'k1', match: /no healthy, caught-up standby$/ },
    { name: 'an asynchronous standby is named before a synchronous one', cd: () => pair({ sync: true, k3: true }), keeper: 'k1', match: /keeper k3 holds/ },
  ];
  it.each(cases)('$name', ({ cd: make, without, servers, keeper, match }) => {
    const cd = make();
    const got = chooseBackupKeeper(cd, infos(cd, without, servers), resolveSpec(cd.cluster.spec));
    if (keeper === undefined) {
      expect(got.ok).toBe(false);
      expect(got.ok ? '' : got.reason).toMatch(match);
    } else {
      expect(got).toMatchObject({ ok: true, keeperUID: keeper });
      expect(got.ok ? got.choice : '').toMatch(match);
      expect(got.ok ? got.primary : undefined).toEqual(keeper === 'k1' ? undefined : { keeperUID: 'k1', ...server('k1') });
    }
  });
});

describe('outstandingBackup', () => {
  const at = Date.parse('2026-12-06T22:00:00Z');
  const request: BackupRequest = { id: 'r1', keeperUID: 'k1', type: 'full', requestedAt: new Date(at).toISOString() };
  const run = (state: 'running' | 'done' | 'failed', requestId = 'r1') => ({ requestId, type: 'full', state, startedAt: request.requestedAt });
  const cases: { name: string; req?: BackupRequest; backup?: unknown; gone?: boolean; afterMs: number; want: 'pending' | 'running' | undefined }[] = [
    { name: 'no request', afterMs: 0, want: undefined },
    { name: 'not started, within the start window', req: request, afterMs: 60_000, want: 'pending' },
    { name: 'not started, past the start window', req: request, afterMs: 121_000, want: undefined },
    { name: 'not started, keeper gone', req: request, gone: true, afterMs: 1000, want: undefined },
    { name: 'an older run reported', req: request, backup: run('done', 'r0'), afterMs: 1000, want: 'pending' },
    { name: 'running', req: request, backup: run('running'), afterMs: 3_600_000, want: 'running' },
    { name: 'done', req: request, backup: run('done'), afterMs: 1000, want: undefined },
    { name: 'failed', req: request, backup: run('failed'), afterMs: 1000, want: undefined },
    { name: 'malformed run counts as not reported', req: request, backup: { requestId: 'r1', state: 'dancing' }, afterMs: 1000, want: 'pending' },
  ];
  it.each(cases)('$name', ({ req, backup, gone, afterMs, want }) => {
    const cd = pair();
    if (req !== undefined) {
      cd.cluster.status.backupRequest = req;
    }
    const all = infos(cd, gone === true ? ['k1'] : []);
    if (backup !== undefined) {
      (all['k1'] as unknown as Record<string, unknown>)['backup'] = backup;
    }
    expect(outstandingBackup(cd, all, at + afterMs)?.state).toBe(want);
  });
});

describe('the backup request in clusterdata', () => {
  it('is kept as it is by the sentinel, pass after pass', () => {
    let cd = pair();
    const req: BackupRequest = { id: 'r1', keeperUID: 'k1', type: 'incr', requestedAt: '2026-12-06T22:00:00.000Z', choice: 'from the primary' };
    cd.cluster.status.backupRequest = req;
    for (let i = 0; i < 3; i++) {
      cd = decide(decideInput(cd, { keepers: Object.values(infos(cd)), now: 10_000 + i * 1000 })).next;
    }
    expect(cd.cluster.status.backupRequest).toEqual(req);
  });
});

/** `pgbackrest info --output=json` of pgBackRest 2.45 after a full and an incremental backup (trimmed). */
const INFO = JSON.stringify([
  {
    archive: [{ database: { id: 1, 'repo-key': 1 }, id: '15-1', max: '000000010000000000000007', min: '000000010000000000000001' }],
    backup: [
      {
        archive: { start: '000000010000000000000003', stop: '000000010000000000000003' },
        database: { id: 1, 'repo-key': 1 },
        error: false,
        info: { delta: 22_900_000, repository: { delta: 3_000_000, size: 3_000_000 }, size: 22_900_000 },
        label: '20261206-220000F',
        lsn: { start: '0/3000028', stop: '0/3000138' },
        prior: null,
        reference: null,
        timestamp: { start: 1_796_594_400, stop: 1_796_594_405 },
        type: 'full',
      },
      {
        archive: { start: '000000010000000000000006', stop: '000000010000000000000006' },
        database: { id: 1, 'repo-key': 1 },
        error: false,
        info: { delta: 90_000, repository: { delta: 20_000, size: 3_000_000 }, size: 22_950_000 },
        label: '20261206-220000F_20261206-220100I',
        lsn: { start: '0/6000028', stop: '0/6000100' },
        prior: '20261206-220000F',
        reference: ['20261206-220000F'],
        timestamp: { start: 1_796_594_460, stop: 1_796_594_462 },
        type: 'incr',
      },
    ],
    cipher: 'none',
    db: [{ id: 1, 'repo-key': 1, 'system-id': 7000000000000000000, version: '15' }],
    name: 'main',
    repo: [{ cipher: 'none', key: 1, status: { code: 0, message: 'ok' } }],
    status: { code: 0, lock: { backup: { held: false } }, message: 'ok' },
  },
]);

describe('backupCatalogFromInfo', () => {
  it('lists the backups with their WAL range, size and reference', () => {
    const c = backupCatalogFromInfo(INFO, 'main', 'now');
    expect(c.error).toBeUndefined();
    expect(c.walMin).toBe('000000010000000000000001');
    expect(c.walMax).toBe('000000010000000000000007');
    expect(c.backups).toEqual([
      {
        label: '20261206-220000F',
        type: 'full',
        startTime: '2026-12-06T22:00:00.000Z',
        stopTime: '2026-12-06T22:00:05.000Z',
        walStart: '000000010000000000000003',
        walStop: '000000010000000000000003',
        lsnStart: '0/3000028',
        lsnStop: '0/3000138',
        sizeBytes: 22_900_000,
        repoSizeBytes: 3_000_000,
      },
      expect.objectContaining({ label: '20261206-220000F_20261206-220100I', type: 'incr', reference: '20261206-220000F', sizeBytes: 22_950_000 }),
    ]);
    expect(keeperBackupCatalog({ ...keeperInfo('k1', pair()), backups: c })).toEqual(c);
  });

  it('keeps the newest backups only and counts the others', () => {
    const one = (JSON.parse(INFO) as [{ backup: { label: string }[] }])[0];
    const full = one.backup[0]!;
    one.backup = Array.from({ length: BACKUP_CATALOG_LIMIT + 3 }, (_, i) => ({ ...full, label: `L${i}` }));
    const c = backupCatalogFromInfo(JSON.stringify([one]), 'main', 'now');
    expect(c.backups).toHaveLength(BACKUP_CATALOG_LIMIT);
    expect(c.backups[0]?.label).toBe('L3');
    expect(c.omitted).toBe(3);
  });

  it.each([
    ['no valid backups is an empty list', { code: 2, message: 'no valid backups' }, undefined],
    ['a missing stanza is an error', { code: 1, message: 'missing stanza path' }, 'stanza main: missing stanza path (pgBackRest status 1)'],
  ])('%s', (_name, status, error) => {
    const c = backupCatalogFromInfo(JSON.stringify([{ name: 'main', status, backup: [], archive: [], db: [] }]), 'main', 'now');
    expect(c.backups).toEqual([]);
    expect(c.error).toBe(error);
  });

  it('says when the stanza is not listed, and throws on output that is not pgBackRest JSON', () => {
    expect(backupCatalogFromInfo('[]', 'main', 'now').error).toMatch(/does not list stanza main/);
    expect(() => backupCatalogFromInfo('ERROR: [055]', 'main', 'now')).toThrow(/printed no JSON/);
    expect(() => backupCatalogFromInfo('[{"name":"main"}]', 'main', 'now')).toThrow(/unexpected JSON at 0.status/);
  });
});
