/**
 * Unit tier: the stolonctl subcommands run in-process against the in-memory store. Every refusal
 * is checked to leave the stored clusterdata byte-for-byte as it was.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_SPEC,
  newClusterData,
  parseClusterData,
  serializeClusterData,
  type ClusterData,
  type ClusterSpec,
  type DiscardedWal,
  type FailoverEvent,
} from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { MemoryBackend, MemoryStore, type Store } from '@stolon-ts/store';
import {
  CAS_ATTEMPTS,
  ExitCode,
  PAUSED_BANNER,
  PROMOTE_ATTEMPTS,
  runEvents,
  runFailkeeper,
  runInit,
  runPause,
  runPromote,
  runRemovekeeper,
  runResume,
  runSpec,
  runStatus,
  runUpdate,
  outageHeadline,
  type CommandContext,
} from './index.js';

const CLUSTER = 'c1';

interface Harness {
  readonly ctx: CommandContext;
  readonly store: MemoryStore;
  readonly backend: MemoryBackend;
  readonly out: string[];
  readonly errs: string[];
  /** The stored clusterdata text, or null. */
  stored(): Promise<string | null>;
}

const stores: MemoryStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function newStore(backend: MemoryBackend): MemoryStore {
  const s = new MemoryStore(backend, { clusterName: CLUSTER });
  stores.push(s);
  return s;
}

function harness(opts: { wrap?: (s: Store) => Store; stdin?: string } = {}): Harness {
  const backend = new MemoryBackend();
  const store = newStore(backend);
  const out: string[] = [];
  const errs: string[] = [];
  const ctx: CommandContext = {
    store: opts.wrap ? opts.wrap(store) : store,
    clusterName: CLUSTER,
    out: (t) => out.push(t),
    err: (l) => errs.push(l),
    ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
  };
  return { ctx, store, backend, out, errs, stored: async () => (await store.getClusterData())?.text ?? null };
}

/**
 * `inner`, with `hook` run before every compare-and-set update (not creation) of clusterdata, to
 * simulate a concurrent writer between a command's read and its write.
 */
function beforePut(inner: Store, hook: () => Promise<void>): Store {
  return {
    getClusterData: () => inner.getClusterData(),
    putClusterData: async (text, rev) => {
      if (rev !== null) {
        await hook();
      }
      return inner.putClusterData(text, rev);
    },
    overwriteClusterData: (text) => inner.overwriteClusterData(text),
    setInfo: (kind, uid, info, ttlMs) => inner.setInfo(kind, uid, info, ttlMs),
    infoLeaseRemainingMs: (kind, uid) => inner.infoLeaseRemainingMs(kind, uid),
    deleteInfo: (kind, uid) => inner.deleteInfo(kind, uid),
    listInfos: (kind, onInvalid) => inner.listInfos(kind, onInvalid),
    watch: (topics, listener) => inner.watch(topics, listener),
    campaign: (uid, ttlMs) => inner.campaign(uid, ttlMs),
    getLeader: () => inner.getLeader(),
    close: () => inner.close(),
  };
}

async function storedSpec(h: Harness): Promise<ClusterSpec> {
  const text = await h.stored();
  if (text === null) {
    throw new Error('no clusterdata stored');
  }
  return parseClusterData(text).cluster.spec;
}

describe('init', () => {
  it('creates a cluster from the default spec when none is given', async () => {
    const h = harness();
    expect(await runInit(h.ctx, { uid: 'aaaa0001' })).toBe(ExitCode.ok);
    const cd = parseClusterData((await h.stored())!);
    expect(cd.cluster.uid).toBe('aaaa0001');
    expect(cd.cluster.spec).toEqual({ initMode: 'new' });
    expect(cd.cluster.status.phase).toBe('initializing');
    expect(h.out.join('\n')).toContain('cluster c1 initialized (uid aaaa0001)');
  });

  it('refuses to overwrite an existing cluster without --yes and leaves the stored bytes identical', async () => {
    const h = harness();
    expect(await runInit(h.ctx, { specJson: '{"initMode":"new","sleepInterval":"2s","failInterval":"10s"}' })).toBe(0);
    const before = await h.stored();
    const revBefore = (await h.store.getClusterData())!.revision;

    expect(await runInit(h.ctx, { specJson: '{"initMode":"new"}' })).toBe(ExitCode.runtime);
    expect(h.errs).toHaveLength(1);
    expect(h.errs[0]).toMatch(/cluster c1 already exists; re-run with --yes to overwrite it/);
    expect(await h.stored()).toBe(before);
    expect((await h.store.getClusterData())!.revision).toBe(revBefore);
  });

  it('asks when a confirm function is given, and a "no" leaves the store unchanged', async () => {
    const h = harness();
    expect(await runInit(h.ctx)).toBe(0);
    const before = await h.stored();
    const confirm = vi.fn(async () => false);
    expect(await runInit({ ...h.ctx, confirm })).toBe(ExitCode.runtime);
    expect(confirm).toHaveBeenCalledOnce();
    expect(confirm.mock.calls[0]).toEqual([expect.stringContaining('already exists')]);
    expect(await h.stored()).toBe(before);
  });

  it('--yes replaces the existing cluster with a new cluster uid', async () => {
    const h = harness();
    expect(await runInit(h.ctx, { uid: 'aaaa0001' })).toBe(0);
    expect(await runInit(h.ctx, { uid: 'bbbb0002', yes: true, specJson: '{"initMode":"new","maxStandbys":4}' })).toBe(0);
    const cd = parseClusterData((await h.stored())!);
    expect(cd.cluster.uid).toBe('bbbb0002');
    expect(cd.cluster.spec).toEqual({ initMode: 'new', maxStandbys: 4 });
    expect(h.out.at(-1)).toContain('replacing uid aaaa0001');
  });

  it('uses a random uid by default, so two inits give two uids', async () => {
    const h = harness();
    await runInit(h.ctx);
    const first = parseClusterData((await h.stored())!).cluster.uid;
    await runInit(h.ctx, { yes: true });
    const second = parseClusterData((await h.stored())!).cluster.uid;
    expect(first).toMatch(/^[0-9a-f]{8}$/);
    expect(second).not.toBe(first);
  });

  it('validates the spec before touching the store (nothing is written)', async () => {
    const h = harness();
    expect(await runInit(h.ctx, { specJson: '{"initMode":"new","bogus":1}' })).toBe(ExitCode.usage);
    expect(h.errs.join('\n')).toMatch(/bogus: unknown field/);
    expect(await runInit(h.ctx, { specJson: '{"initMode":' })).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(/^stolonctl init: invalid JSON in the spec-json argument: /);
    expect(await h.stored()).toBeNull();
  });

  it('reads the spec from stdin with --file -', async () => {
    const h = harness({ stdin: '{"initMode":"new","usePgrewind":true}\n' });
    expect(await runInit(h.ctx, { file: '-' })).toBe(0);
    expect(await storedSpec(h)).toEqual({ initMode: 'new', usePgrewind: true });
  });

  it('rejects both an argument and --file, and an unreadable file', async () => {
    const h = harness();
    expect(await runInit(h.ctx, { specJson: '{}', file: 'x.json' })).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(/not both/);
    expect(await runInit(h.ctx, { file: '/nonexistent/spec.json' })).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(/--file: cannot read \/nonexistent\/spec.json/);
    expect(await h.stored()).toBeNull();
  });

  it('of two concurrent inits without --yes exactly one wins', async () => {
    const h = harness();
    const other = { ...h.ctx, store: newStore(h.backend) };
    const codes = await Promise.all([runInit(h.ctx), runInit(other)]);
    expect([...codes].sort()).toEqual([ExitCode.ok, ExitCode.runtime]);
  });
});

describe('update', () => {
  async function initialised(opts: Parameters<typeof harness>[0] = {}): Promise<Harness & { before: string }> {
    const h = harness(opts);
    expect(await runInit(h.ctx, { uid: 'aaaa0001' })).toBe(0);
    return { ...h, before: (await h.stored())! };
  }

  it.each([
    ['invalid JSON', '{"pgParameters":', /^stolonctl update: invalid JSON in the spec-json argument: /],
    ['an unknown field', '{"proxyCheckIntervall":"1s"}', /proxyCheckIntervall: unknown field/],
    [
      'proxyCheckInterval not below proxyTimeout',
      '{"proxyCheckInterval":"20s","proxyTimeout":"5s"}',
      /proxyCheckInterval: 20s must be less than proxyTimeout \(5s\)/,
    ],
    ['a changed initMode', '{"initMode":"existing"}', /initMode/],
    ['a bad duration', '{"sleepInterval":"soon"}', /sleepInterval: must be a duration/],
    ['a non-object patch', '[1,2]', /must be a JSON object/],
  ])('--patch with %s exits 2, names the problem, and leaves the stored bytes identical', async (_, patch, message) => {
    const h = await initialised();
    const code = await runUpdate(h.ctx, { specJson: patch, patch: true });
    expect(code).toBe(ExitCode.usage);
    expect(h.errs.join('\n')).toMatch(message);
    expect(await h.stored()).toBe(h.before);
  });

  it('prints every validation issue on its own line', async () => {
    const h = await initialised();
    expect(await runUpdate(h.ctx, { specJson: '{"maxStandbys":0,"usePgrewind":"yes","nope":1}', patch: true })).toBe(2);
    expect(h.errs).toHaveLength(3);
    expect(h.errs.join('\n')).toMatch(/maxStandbys/);
    expect(h.errs.join('\n')).toMatch(/usePgrewind/);
    expect(h.errs.join('\n')).toMatch(/nope: unknown field/);
    expect(await h.stored()).toBe(h.before);
  });

  it('applies a valid patch, and null removes a key', async () => {
    const h = await initialised();
    expect(await runUpdate(h.ctx, { specJson: '{"pgParameters":{"work_mem":"8MB"}}', patch: true })).toBe(0);
    expect((await storedSpec(h)).pgParameters).toEqual({ work_mem: '8MB' });
    expect(await runUpdate(h.ctx, { specJson: '{"pgParameters":{"work_mem":null}}', patch: true })).toBe(0);
    expect((await storedSpec(h)).pgParameters).toEqual({});
    // The rest of the document is untouched.
    const cd = parseClusterData((await h.stored())!);
    expect(cd.cluster.uid).toBe('aaaa0001');
    expect(cd.cluster.spec.initMode).toBe('new');
  });

  it('without --patch replaces the whole spec', async () => {
    const h = await initialised();
    await runUpdate(h.ctx, { specJson: '{"maxStandbys":3}', patch: true });
    expect(await runUpdate(h.ctx, { specJson: '{"initMode":"new","usePgrewind":true}' })).toBe(0);
    expect(await storedSpec(h)).toEqual({ initMode: 'new', usePgrewind: true });
  });

  it('without --patch a spec lacking initMode is refused', async () => {
    const h = await initialised();
    expect(await runUpdate(h.ctx, { specJson: '{"usePgrewind":true}' })).toBe(2);
    expect(h.errs.join('\n')).toMatch(/initMode: is required/);
    expect(await h.stored()).toBe(h.before);
  });

  it('needs the document, and refuses when the cluster is not initialised', async () => {
    const h = harness();
    expect(await runUpdate(h.ctx, { patch: true })).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(/no spec given/);
    expect(await runUpdate(h.ctx, { specJson: '{}', patch: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl update: cluster c1 is not initialized; run stolonctl init');
  });

  it('does not write when the patch changes nothing', async () => {
    const h = await initialised();
    const rev = (await h.store.getClusterData())!.revision;
    expect(await runUpdate(h.ctx, { specJson: '{"initMode":"new"}', patch: true })).toBe(0);
    expect(h.out.at(-1)).toMatch(/unchanged/);
    expect((await h.store.getClusterData())!.revision).toBe(rev);
  });

  it('re-applies the patch after a concurrent writer moved the revision, keeping both changes', async () => {
    let writer: Store | undefined;
    let intercepted = 0;
    const h = await initialised({
      wrap: (inner) =>
        beforePut(inner, async () => {
          if (intercepted++ === 0) {
            // Another client changes a different field between our read and our write.
            const cur = (await writer!.getClusterData())!;
            const cd = parseClusterData(cur.text);
            cd.cluster.spec = { ...cd.cluster.spec, maxStandbys: 7 };
            await writer!.putClusterData(serializeClusterData(cd), cur.revision);
          }
        }),
    });
    writer = newStore(h.backend);
    expect(await runUpdate(h.ctx, { specJson: '{"pgParameters":{"work_mem":"8MB"}}', patch: true })).toBe(0);
    expect(intercepted).toBe(2);
    const spec = await storedSpec(h);
    expect(spec.maxStandbys).toBe(7);
    expect(spec.pgParameters).toEqual({ work_mem: '8MB' });
  });

  it(`gives up after ${CAS_ATTEMPTS} lost compare-and-set writes, leaving the other writer’s document`, async () => {
    let writer: Store | undefined;
    let n = 0;
    const h = await initialised({
      wrap: (inner) =>
        beforePut(inner, async () => {
          const cur = (await writer!.getClusterData())!;
          const cd = parseClusterData(cur.text);
          cd.cluster.spec = { ...cd.cluster.spec, maxStandbys: 10 + n++ };
          await writer!.putClusterData(serializeClusterData(cd), cur.revision);
        }),
    });
    writer = newStore(h.backend);
    expect(await runUpdate(h.ctx, { specJson: '{"usePgrewind":true}', patch: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(new RegExp(`${CAS_ATTEMPTS} attempts`));
    const spec = await storedSpec(h);
    expect(spec.maxStandbys).toBe(10 + CAS_ATTEMPTS - 1);
    expect(spec.usePgrewind).toBeUndefined();
  });
});

describe('spec', () => {
  it('prints the stored spec, and with --defaults every field', async () => {
    const h = harness();
    await runInit(h.ctx, { specJson: '{"initMode":"new","maxStandbys":4}' });
    expect(await runSpec(h.ctx)).toBe(0);
    expect(h.out.at(-1)).toMatch(/^\{\n {2}"/); // 2-space indent
    expect(JSON.parse(h.out.at(-1)!)).toEqual({ initMode: 'new', maxStandbys: 4 });
    expect(await runSpec(h.ctx, { defaults: true })).toBe(0);
    const full = JSON.parse(h.out.at(-1)!) as Record<string, unknown>;
    expect(full).toMatchObject({
      initMode: 'new',
      maxStandbys: 4,
      proxyTimeout: DEFAULT_SPEC.proxyTimeout,
      sleepInterval: DEFAULT_SPEC.sleepInterval,
      pgHBA: null,
    });
    expect(Object.keys(full).sort()).toEqual([...Object.keys(DEFAULT_SPEC), 'initMode'].sort());
  });

  it('refuses when not initialised, and names invalid clusterdata', async () => {
    const h = harness();
    expect(await runSpec(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/cluster c1 is not initialized; run stolonctl init/);
    await h.store.overwriteClusterData('{"formatVersion":2}');
    expect(await runSpec(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/clusterdata of cluster c1 is unusable: unsupported clusterdata format version 2/);
  });
});

// ---- status ----

const T = '2025-01-01T00:00:00.000Z';

/** keeper1 rejoined after a failover: pg_rewind threw away WAL its old timeline 1 had past the fork. */
const DISCARDED: DiscardedWal = { fromLsn: 0x2fff000, toLsn: 0x3000800, timelineID: 1, method: 'pg_rewind', at: T };

/**
 * keeper0 (master db1, timeline 2 at 0/3001000, two parameters pending a restart) ← keeper1 (db2 at
 * 0/3000060, 4000 bytes behind, discarded WAL on rejoin) ← keeper3 (db4, never reported); keeper2
 * has no DB.
 */
function handBuiltClusterData(): ClusterData {
  return aCluster({ uid: 'c0ffee00' })
    .initialized()
    .withPrimary('keeper0', {
      uid: 'db1',
      listenAddress: '10.0.0.1',
      generation: 4,
      port: '5432',
      xLogPos: 0x3001000,
      timeline: 2,
      pendingRestart: ['shared_buffers', 'max_connections'],
    })
    .withStandby('keeper1', {
      uid: 'db2',
      listenAddress: '10.0.0.1',
      generation: 2,
      currentGeneration: 1,
      port: '5433',
      xLogPos: 0x3000060,
      timeline: 2,
      discardedWal: DISCARDED,
    })
    .withKeeper('keeper2', { healthy: false })
    .withStandby('keeper3', {
      uid: 'db4',
      follows: 'keeper1',
      currentGeneration: 0,
      healthy: false,
      listenAddress: '',
      port: '',
      timeline: 0,
      xLogPos: 0,
    })
    .fenced(3)
    .build();
}

async function statusHarness(): Promise<Harness> {
  const h = harness();
  await h.store.overwriteClusterData(serializeClusterData(handBuiltClusterData()));
  const sentinelA = newStore(h.backend);
  const sentinelB = newStore(h.backend);
  await sentinelA.setInfo('sentinels', 'sentA', { UID: 'sentA' }, 60_000);
  await sentinelB.setInfo('sentinels', 'sentB', { UID: 'sentB' }, 60_000);
  await sentinelA.campaign('sentA', 60_000);
  await vi.waitFor(async () => expect(await h.store.getLeader()).toBe('sentA'));
  await h.store.setInfo('proxies', 'prox1', { infoUID: 'i1', UID: 'prox1', Generation: 3, ProxyTimeout: 4e9 }, 60_000);
  // A keeper that publishes info but is not in clusterdata yet.
  await h.store.setInfo(
    'keepers',
    'keeper9',
    { infoUID: 'i9', uid: 'keeper9', clusterUID: 'c0ffee00', bootUUID: 'b9', postgresBinaryVersion: { Maj: 15, Min: 4 } },
    60_000,
  );
  return h;
}

describe('status', () => {
  it('on clusterdata with a malformed entry exits 1 naming its path and the fix, in table and json format alike', async () => {
    const h = await statusHarness();
    const doc = JSON.parse(serializeClusterData(handBuiltClusterData())) as { dbs: Record<string, unknown> };
    doc.dbs['x'] = null;
    await h.store.overwriteClusterData(JSON.stringify(doc));
    for (const format of ['table', 'json'] as const) {
      expect(await runStatus(h.ctx, { format })).toBe(ExitCode.runtime);
      expect(h.errs.at(-1)).toMatch(
        /^stolonctl status: the stored clusterdata of cluster c1 is unusable: clusterdata is invalid: dbs\.x: expected object, got null; .*correct the named fields in the stored document, or restore a good copy of it/,
      );
    }
  });

  it('prints Stolon-style sections with keeper rows and the replication tree', async () => {
    const h = await statusHarness();
    expect(await runStatus(h.ctx)).toBe(0);
    const text = h.out.join('\n');
    expect(text).not.toContain('\u001b['); // no colours
    expect(text).toContain('=== Active sentinels ===');
    expect(text).toMatch(/^ID\s+LEADER$/m);
    expect(text).toMatch(/^sentA\s+true$/m);
    expect(text).toMatch(/^sentB\s+false$/m);
    expect(text).toMatch(/^ID\s+GENERATION$/m);
    expect(text).toMatch(/^prox1\s+3$/m);
    expect(text).toMatch(
      /^UID\s+HEALTHY\s+PG LISTENADDRESS\s+PG HEALTHY\s+PG WANTEDGENERATION\s+PG CURRENTGENERATION\s+ROLE\s+TIMELINE\s+LSN\s+LAG\s+PENDING RESTART$/m,
    );
    expect(text).toMatch(
      /^keeper0\s+true\s+10\.0\.0\.1:5432\s+true\s+4\s+4\s+master\s+2\s+0\/3001000\s+-\s+shared_buffers,max_connections$/m,
    );
    expect(text).toMatch(/^keeper1\s+true\s+10\.0\.0\.1:5433\s+true\s+2\s+1\s+standby\s+2\s+0\/3000060\s+4000\s+-$/m);
    expect(text).toMatch(/^keeper2\s+false\s+\(no db assigned\)\s+false\s+0\s+0\s+-\s+-\s+-\s+-\s+-$/m);
    expect(text).toMatch(/^keeper3\s+true\s+\(unknown\)\s+false\s+1\s+0\s+standby\s+-\s+-\s+-\s+-$/m);
    expect(text).toMatch(/^keeper9\s+false\s+\(not in clusterdata yet\)/m);
    // The discarded WAL, under the keepers table.
    const discard = 'keeper keeper1 discarded WAL 0/2FFF000–0/3000800 on timeline 1 (pg_rewind at 2025-01-01T00:00:00.000Z)';
    expect(text.split('\n')).toContain(discard);
    expect(text.indexOf(discard)).toBeGreaterThan(text.search(/^keeper9\s/m));
    expect(text.indexOf(discard)).toBeLessThan(text.indexOf('=== Cluster Info ==='));
    expect(text).toContain('=== Cluster Info ===');
    expect(text).toContain('Cluster Role: master');
    expect(text).not.toContain('Following:');
    expect(text).toContain('Phase: normal');
    // No keeper of this fixture publishes a member API address.
    expect(text).toContain('Failsafe mode: on, but keepers without the member API (keeper0, keeper1, keeper2, keeper3) cannot confirm a primary');
    expect(text).toContain('Master Keeper: keeper0');
    expect(text).toContain('===== Keepers/DB tree =====\n\nkeeper0 (master)\n└─keeper1\n  └─keeper3');
    // Keeper rows sorted by uid.
    const order = ['keeper0', 'keeper1', 'keeper2', 'keeper3', 'keeper9'].map((k) => text.search(new RegExp(`^${k}\\s`, 'm')));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it("shows what a keeper is busy with or stuck on (its info's activity, a failed start), under the keepers table", async () => {
    const h = await statusHarness();
    const info = (uid: string, postgresState: Record<string, unknown>) => ({
      infoUID: `i-${uid}`,
      uid,
      clusterUID: 'c1a55e00',
      bootUUID: `b-${uid}`,
      postgresBinaryVersion: { Maj: 15, Min: 4 },
      postgresState: { uid: 'x', generation: 1, listenAddress: '10.0.0.1', port: '5433', healthy: false, systemID: '', timelineID: 0, xLogPos: 0, timelinesHistory: [], pgParameters: {}, synchronousStandbys: [], olderWalFile: '', ...postgresState },
    });
    await h.store.setInfo('keepers', 'keeper1', info('keeper1', { activity: 'resync of db db2 from db db1 failed: pg_basebackup: password authentication failed for user "repl"; retrying in 8 s' }) as never, 60_000);
    await h.store.setInfo('keepers', 'keeper3', info('keeper3', { running: false, startError: 'postgres did not start: FATAL: could not map anonymous shared memory', refusedSpecCommands: ['archive_command'] }) as never, 60_000);
    const archive = {
      stanza: 'main',
      archivedCount: 5,
      lastArchivedWal: '000000010000000000000007',
      lastArchivedTime: '2026-12-06T10:00:00.000Z',
      failedCount: 2,
      lastFailedWal: '000000010000000000000008',
      lastFailedTime: '2026-12-06T10:01:00.000Z',
      failing: true,
      readyCount: 5,
      readyBytes: 83886080,
      backlogWarning: true,
    };
    await h.store.setInfo('keepers', 'keeper2', info('keeper2', { archive }) as never, 60_000);
    expect(await runStatus(h.ctx)).toBe(0);
    const lines = h.out.join('\n').split('\n');
    const busy = 'keeper keeper1: resync of db db2 from db db1 failed: pg_basebackup: password authentication failed for user "repl"; retrying in 8 s';
    const start = 'keeper keeper3: postgres does not start: postgres did not start: FATAL: could not map anonymous shared memory';
    expect(lines).toContain(busy);
    expect(lines).toContain(start);
    expect(lines).toContain('keeper keeper3: not applied from the spec: archive_command (allow with --allow-spec-commands on that keeper)');
    expect(lines).toContain(
      'keeper keeper2: archiving (stanza main): last archived 000000010000000000000007 at 2026-12-06T10:00:00.000Z; ' +
        '2 failed attempts, failing (last failed 000000010000000000000008 at 2026-12-06T10:01:00.000Z); 5 WAL files (83886080 bytes) waiting, above backup.archiveWarnBytes',
    );
    expect(lines.indexOf(busy)).toBeLessThan(lines.indexOf('=== Cluster Info ==='));
    expect(lines.filter((l) => l.startsWith('keeper keeper0:'))).toEqual([]);
    const j = await runStatus(h.ctx, { format: 'json' }).then(() => JSON.parse(h.out.at(-1)!) as { keepers: Array<Record<string, unknown>> });
    expect(j.keepers.find((k) => k['uid'] === 'keeper1')).toMatchObject({ activity: busy.slice('keeper keeper1: '.length), startError: null });
    expect(j.keepers.find((k) => k['uid'] === 'keeper3')).toMatchObject({
      activity: null,
      startError: start.slice('keeper keeper3: postgres does not start: '.length),
      refusedSpecCommands: ['archive_command'],
    });
    expect(j.keepers.find((k) => k['uid'] === 'keeper0')).toMatchObject({ activity: null, startError: null, refusedSpecCommands: [], archive: null });
    expect(j.keepers.find((k) => k['uid'] === 'keeper2')).toMatchObject({ archive });
  });

  it('--format json gives one object with the same data', async () => {
    const h = await statusHarness();
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(0);
    expect(h.out).toHaveLength(1);
    const j = JSON.parse(h.out[0]!) as {
      sentinels: unknown[];
      proxies: unknown[];
      keepers: Array<Record<string, unknown>>;
      cluster: Record<string, unknown>;
      tree: { keeper_uid: string; followers: Array<{ keeper_uid: string; followers: Array<{ keeper_uid: string }> }> };
    };
    expect(j.sentinels).toEqual([
      { uid: 'sentA', leader: true },
      { uid: 'sentB', leader: false },
    ]);
    expect(j.proxies).toEqual([{ uid: 'prox1', generation: 3 }]);
    expect(j.keepers.map((k) => k['uid'])).toEqual(['keeper0', 'keeper1', 'keeper2', 'keeper3', 'keeper9']);
    expect(j.keepers[0]).toEqual({
      uid: 'keeper0',
      registered: true,
      healthy: true,
      listen_address: '10.0.0.1:5432',
      pg_healthy: true,
      pg_wanted_generation: 4,
      pg_current_generation: 4,
      role: 'master',
      db_uid: 'db1',
      timeline: 2,
      xLogPos: 0x3001000,
      lsn: '0/3001000',
      lagBytes: null,
      pendingRestart: ['shared_buffers', 'max_connections'],
      discardedWal: null,
      activity: null,
      startError: null,
      refusedSpecCommands: [],
      archive: null,
    });
    expect(j.keepers[1]).toMatchObject({
      uid: 'keeper1',
      timeline: 2,
      xLogPos: 0x3000060,
      lsn: '0/3000060',
      lagBytes: 4000,
      pendingRestart: [],
      discardedWal: DISCARDED,
    });
    expect(j.keepers[2]).toMatchObject({
      uid: 'keeper2',
      listen_address: '(no db assigned)',
      role: null,
      db_uid: null,
      timeline: null,
      xLogPos: null,
      lsn: null,
      lagBytes: null,
      pendingRestart: [],
      discardedWal: null,
    });
    expect(j.keepers[3]).toMatchObject({ uid: 'keeper3', timeline: null, lsn: null, lagBytes: null });
    expect(j.keepers[4]).toMatchObject({ uid: 'keeper9', registered: false });
    expect(j.cluster).toEqual({
      uid: 'c0ffee00',
      role: 'master',
      following: null,
      phase: 'normal',
      paused: false,
      failover_in_progress: null,
      scheduled_switchover: null,
      available: true,
      master_keeper_uid: 'keeper0',
      master_db_uid: 'db1',
      proxy_generation: 3,
    });
    expect(j.tree.keeper_uid).toBe('keeper0');
    expect(j.tree.followers[0]?.keeper_uid).toBe('keeper1');
    expect(j.tree.followers[0]?.followers[0]?.keeper_uid).toBe('keeper3');
  });

  it('shows a fresh cluster with no master and no live components', async () => {
    const h = harness();
    await runInit(h.ctx, { uid: 'aaaa0001' });
    expect(await runStatus(h.ctx)).toBe(0);
    const text = h.out.at(-1)!;
    expect(text).toContain('No active sentinels');
    expect(text).toContain('No active proxies');
    expect(text).toContain('No keepers available');
    expect(text).toContain('Phase: initializing');
    expect(text).toContain('No cluster available');
    expect(text).not.toContain('Keepers/DB tree');
  });

  it('refuses when not initialised or when the store is unreachable', async () => {
    const h = harness();
    expect(await runStatus(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl status: cluster c1 is not initialized; run stolonctl init');
    h.backend.setUnavailable(true);
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/^stolonctl status: store unavailable: memory store unavailable.*; to see whether the primary keeps serving under failsafe mode, give --member-address <keeper host:port>\[,…\] and --member-token-file/);
    expect(h.errs).toHaveLength(2);
    h.backend.setUnavailable(false);
  });

  it('with the store unreachable and --member-address: asks the keepers and shows "store unreachable, failsafe: primary … confirmed by N/N members", exit 1', async () => {
    const TOKEN = 'b'.repeat(40);
    const answers: Record<string, unknown> = {
      '/k0': {
        keeperUID: 'keeper0',
        clusterUID: 'c0ffee00',
        storeReachable: false,
        failsafeMode: true,
        primary: true,
        primaryKeeperUID: 'keeper0',
        lastRound: { agoMs: 420, confirmed: 1, of: 1, failures: [] },
        fenceRemainingMs: 5400,
        promise: null,
      },
      '/k1': {
        keeperUID: 'keeper1',
        clusterUID: 'c0ffee00',
        storeReachable: false,
        failsafeMode: true,
        primary: false,
        primaryKeeperUID: 'keeper0',
        lastRound: null,
        fenceRemainingMs: null,
        promise: { primaryKeeperUID: 'keeper0', remainingMs: 6100 },
      },
    };
    // Two keepers' member APIs in one server: the address's port picks the keeper.
    const servers: Server[] = [];
    const addr: string[] = [];
    for (const key of ['/k0', '/k1']) {
      const srv = createServer((req, res) => {
        const ok = req.headers.authorization === `Bearer ${TOKEN}` && req.url === '/failsafe/status';
        res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
        res.end(JSON.stringify(ok ? answers[key] : { error: 'missing or wrong bearer token' }));
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      servers.push(srv);
      addr.push(`127.0.0.1:${(srv.address() as AddressInfo).port}`);
    }
    try {
      const h = await seeded(handBuiltClusterData());
      h.backend.setUnavailable(true);
      expect(await runStatus(h.ctx, { memberAddresses: [...addr, '127.0.0.1:1'], memberToken: TOKEN })).toBe(ExitCode.runtime);
      const text = h.out.at(-1)!;
      expect(text.split('\n')[0]).toBe('Store unreachable, failsafe: primary keeper0 confirmed by 1/1 members (last round 420 ms ago)');
      expect(text).toMatch(/^Store error: memory store unavailable/m);
      expect(text).toContain(`keeper0 at ${addr[0]}: primary; cannot reach the store; last round 1/1 confirmed 420 ms ago; may serve 5400 ms more`);
      expect(text).toContain(`keeper1 at ${addr[1]}: not primary (its last clusterdata names keeper0); cannot reach the store; confirmed primary keeper0: will not become primary for 6100 ms`);
      expect(text).toMatch(/127\.0\.0\.1:1: no answer \(/);
      expect(text).not.toContain(TOKEN);
      expect(await runStatus(h.ctx, { format: 'json', memberAddresses: addr, memberToken: TOKEN })).toBe(ExitCode.runtime);
      expect(JSON.parse(h.out.at(-1)!)).toMatchObject({ store: { reachable: false }, headline: expect.stringMatching(/^store unreachable, failsafe: primary keeper0 confirmed by 1\/1/) as unknown });
      // A wrong token: each keeper says so, and the headline finds no primary.
      expect(await runStatus(h.ctx, { memberAddresses: addr, memberToken: 'c'.repeat(40) })).toBe(ExitCode.runtime);
      expect(h.out.at(-1)).toMatch(/^Store unreachable; none of the keepers asked runs the primary\n/);
      expect(h.out.at(-1)).toContain('no answer (HTTP 401: missing or wrong bearer token)');
    } finally {
      await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
    }
  });

  it.each([
    ['a round not confirmed by every member', { confirmed: 1, of: 2, failures: ['keeper2: unreachable'] }, /^store unreachable, failsafe: primary keeper0 confirmed by 1\/2 members \(last round 10 ms ago; keeper2: unreachable\); fences itself in 900 ms unless confirmed again$/],
    ['failsafe mode off', null, /^store unreachable, failsafe mode off: primary keeper0 fences itself when its lease could expire$/],
  ])('outage headline: %s', (_what, lastRound, want) => {
    const answer = {
      keeperUID: 'keeper0',
      clusterUID: 'c0ffee00',
      storeReachable: false,
      failsafeMode: lastRound !== null,
      primary: true,
      primaryKeeperUID: 'keeper0',
      lastRound: lastRound === null ? null : { agoMs: 10, ...lastRound },
      fenceRemainingMs: 900,
      promise: null,
    };
    expect(outageHeadline([{ address: 'a:1', answer }])).toMatch(want);
  });
});

// ---- standby clusters and promote ----

const STANDBY_CLUSTER_SPEC =
  '{"initMode":"pitr","role":"standby","pitrConfig":{"dataRestoreCommand":"true"},' +
  '"standbyConfig":{"standbySettings":{"primaryConninfo":"host=10.0.0.1 port=5432 user=repl password=s3cret"}}}';

/** A standby cluster as the sentinel runs it: keeper0's db1 follows the external primary, keeper1's db2 follows db1. */
async function standbyCluster(opts: Parameters<typeof harness>[0] = {}): Promise<Harness & { before: string }> {
  const h = harness(opts);
  expect(await runInit(h.ctx, { uid: 'c0ffee00', now: T, specJson: STANDBY_CLUSTER_SPEC })).toBe(ExitCode.ok);
  const cd = parseClusterData((await h.stored())!);
  cd.cluster.status = { phase: 'normal', master: 'db1' };
  // The primary DB follows the external primary; its spec carries the full conninfo, password
  // included, for its keeper.
  const built = aCluster({ spec: cd.cluster.spec })
    .initialized()
    .withPrimary('keeper0', { uid: 'db1', generation: 2, listenAddress: '10.0.0.1', port: '5432', xLogPos: 0x5000000 })
    .withStandby('keeper1', { uid: 'db2', listenAddress: '10.0.0.1', port: '5433', xLogPos: 0x4fff000 })
    .build();
  cd.keepers = built.keepers;
  cd.dbs = built.dbs;
  await h.store.overwriteClusterData(serializeClusterData(cd));
  return { ...h, before: (await h.stored())! };
}

describe('standby clusters', () => {
  it('init accepts a standby-cluster spec (pitr, role standby) and stores it as given', async () => {
    const h = harness();
    expect(await runInit(h.ctx, { uid: 'aaaa0001', specJson: STANDBY_CLUSTER_SPEC })).toBe(ExitCode.ok);
    expect(h.errs).toEqual([]);
    expect(await storedSpec(h)).toEqual(JSON.parse(STANDBY_CLUSTER_SPEC));
    // Status of the fresh cluster: the role, what it follows, never the password.
    expect(await runStatus(h.ctx)).toBe(ExitCode.ok);
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    const [table, json] = h.out.slice(-2) as [string, string];
    expect(table).toContain('Cluster Role: standby');
    expect(table).toContain('Following: host=10.0.0.1 port=5432 user=repl\n');
    expect((JSON.parse(json) as { cluster: unknown }).cluster).toMatchObject({
      role: 'standby',
      following: 'host=10.0.0.1 port=5432 user=repl',
      phase: 'initializing',
    });
    expect(h.out.join('\n')).not.toContain('s3cret');
    expect(h.out.join('\n')).not.toContain('password');
  });

  it('status of a running standby cluster shows the external follower and never prints the password', async () => {
    const h = await standbyCluster();
    expect(h.before).toContain('s3cret'); // it is in the store, so status had the chance to leak it
    expect(await runStatus(h.ctx)).toBe(ExitCode.ok);
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    const [table, json] = h.out.slice(-2) as [string, string];
    expect(table).toMatch(/^keeper0\s+true\s+10\.0\.0\.1:5432\s+true\s+2\s+2\s+standby\s+1\s+0\/5000000\s+-\s+-$/m);
    expect(table).toMatch(/^keeper1\s+true\s+10\.0\.0\.1:5433\s+true\s+1\s+1\s+standby\s+1\s+0\/4FFF000\s+4096\s+-$/m);
    expect(table).toContain('Master Keeper: keeper0');
    expect(table).toContain('keeper0 (follows the external primary)\n└─keeper1');
    const j = JSON.parse(json) as { cluster: Record<string, unknown>; tree: Record<string, unknown> };
    expect(j.cluster).toMatchObject({ role: 'standby', following: 'host=10.0.0.1 port=5432 user=repl', master_keeper_uid: 'keeper0' });
    expect(j.tree).toMatchObject({ keeper_uid: 'keeper0', role: 'standby', external: true });
    for (const text of [table, json, ...h.errs]) {
      expect(text).not.toContain('s3cret');
    }
  });
});

describe('promote', () => {
  it('--yes sets spec role master on a standby cluster and changes nothing else', async () => {
    const h = await standbyCluster();
    expect(await runPromote(h.ctx, { yes: true })).toBe(ExitCode.ok);
    expect(h.errs).toEqual([]);
    expect(h.out.at(-1)).toBe('cluster c1 promoted: spec role is now master; the sentinel will promote keeper keeper0 (db db1)');
    const before = parseClusterData(h.before);
    const after = parseClusterData((await h.stored())!);
    expect(after.cluster.spec).toEqual({ ...before.cluster.spec, role: 'master' });
    // The standby settings stay (a later look shows what it followed); DBs are the sentinel's job.
    expect({ ...after, cluster: { ...after.cluster, spec: null } }).toEqual({ ...before, cluster: { ...before.cluster, spec: null } });
    expect(h.out.join('\n')).not.toContain('s3cret');
  });

  it('on a primary cluster prints a notice, exits 0 and writes nothing (even without --yes)', async () => {
    const h = harness();
    expect(await runInit(h.ctx)).toBe(ExitCode.ok);
    const before = await h.store.getClusterData();
    expect(await runPromote(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('cluster c1 is already a primary cluster (role master); nothing to do');
    expect(h.errs).toEqual([]);
    const after = await h.store.getClusterData();
    expect(after?.text).toBe(before?.text);
    expect(after?.revision).toBe(before?.revision);
  });

  it('without --yes and nobody to ask (stdin not a terminal) exits 1 and leaves the stored bytes identical', async () => {
    const h = await standbyCluster();
    expect(await runPromote(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs).toHaveLength(1);
    expect(h.errs[0]).toMatch(/^stolonctl promote: promoting standby cluster c1 makes it stop following host=10\.0\.0\.1 port=5432 user=repl/);
    expect(h.errs[0]).toMatch(/re-run with --yes/);
    expect(h.errs[0]).not.toContain('s3cret');
    expect(await h.stored()).toBe(h.before);
  });

  it('asks when it can: "no" leaves the store unchanged, "yes" promotes', async () => {
    const h = await standbyCluster();
    const no = vi.fn(async (_question: string) => false);
    expect(await runPromote({ ...h.ctx, confirm: no })).toBe(ExitCode.runtime);
    expect(no).toHaveBeenCalledOnce();
    expect(no.mock.calls[0]?.[0]).toMatch(/^Promote standby cluster c1\? .*cannot be made a standby cluster again/);
    expect(no.mock.calls[0]?.[0]).not.toContain('s3cret');
    expect(h.errs.at(-1)).toBe('stolonctl promote: not confirmed; cluster c1 left unchanged');
    expect(await h.stored()).toBe(h.before);

    const yes = vi.fn(async () => true);
    expect(await runPromote({ ...h.ctx, confirm: yes })).toBe(ExitCode.ok);
    expect(yes).toHaveBeenCalledOnce();
    expect((await storedSpec(h)).role).toBe('master');
  });

  it('re-reads after a concurrent writer moved the revision, keeping its change', async () => {
    let writer: Store | undefined;
    let intercepted = 0;
    const h = await standbyCluster({
      wrap: (inner) =>
        beforePut(inner, async () => {
          if (intercepted++ === 0) {
            const cur = (await writer!.getClusterData())!;
            const cd = parseClusterData(cur.text);
            cd.cluster.spec = { ...cd.cluster.spec, maxStandbys: 7 };
            await writer!.putClusterData(serializeClusterData(cd), cur.revision);
          }
        }),
    });
    writer = newStore(h.backend);
    expect(await runPromote(h.ctx, { yes: true })).toBe(ExitCode.ok);
    expect(intercepted).toBe(2);
    expect(await storedSpec(h)).toMatchObject({ role: 'master', maxStandbys: 7 });
  });

  it('stops with a notice when a concurrent writer promoted it first', async () => {
    let writer: Store | undefined;
    const h = await standbyCluster({
      wrap: (inner) =>
        beforePut(inner, async () => {
          const cur = (await writer!.getClusterData())!;
          const cd = parseClusterData(cur.text);
          cd.cluster.spec = { ...cd.cluster.spec, role: 'master' };
          await writer!.putClusterData(serializeClusterData(cd), cur.revision);
        }),
    });
    writer = newStore(h.backend);
    expect(await runPromote(h.ctx, { yes: true })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toMatch(/already a primary cluster/);
    expect((await storedSpec(h)).role).toBe('master');
  });

  it(`gives up after ${PROMOTE_ATTEMPTS} lost compare-and-set writes without writing`, async () => {
    let writer: Store | undefined;
    let n = 0;
    const h = await standbyCluster({
      wrap: (inner) =>
        beforePut(inner, async () => {
          const cur = (await writer!.getClusterData())!;
          const cd = parseClusterData(cur.text);
          cd.cluster.spec = { ...cd.cluster.spec, maxStandbys: 10 + n++ };
          await writer!.putClusterData(serializeClusterData(cd), cur.revision);
        }),
    });
    writer = newStore(h.backend);
    expect(await runPromote(h.ctx, { yes: true })).toBe(ExitCode.runtime);
    expect(n).toBe(PROMOTE_ATTEMPTS);
    expect(h.errs.at(-1)).toMatch(new RegExp(`${CAS_ATTEMPTS} attempts`));
    expect(await storedSpec(h)).toMatchObject({ role: 'standby', maxStandbys: 10 + PROMOTE_ATTEMPTS - 1 });
  });

  it('refuses when the cluster is not initialised', async () => {
    const h = harness();
    expect(await runPromote(h.ctx, { yes: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl promote: cluster c1 is not initialized; run stolonctl init');
  });
});

// ---- keeper commands, pause/resume, events ----

/** `h` with `cd` stored, and the stored text and revision to compare against after a refusal. */
async function seeded(
  cd: ClusterData,
  opts: Parameters<typeof harness>[0] = {},
): Promise<Harness & { before: string; rev: string; unchanged(): Promise<void> }> {
  const h = harness(opts);
  await h.store.overwriteClusterData(serializeClusterData(cd));
  const rec = (await h.store.getClusterData())!;
  return {
    ...h,
    before: rec.text,
    rev: rec.revision,
    unchanged: async () => {
      const now = (await h.store.getClusterData())!;
      expect(now.text).toBe(rec.text);
      expect(now.revision).toBe(rec.revision);
    },
  };
}

async function storedCd(h: Harness): Promise<ClusterData> {
  return parseClusterData((await h.stored())!);
}

/**
 * A store whose compare-and-set updates are each preceded by a concurrent writer applying
 * `mutate` to the stored clusterdata (for the first `times` updates only).
 */
function concurrent(mutate: (cd: ClusterData, n: number) => void, times = Infinity): {
  wrap: (s: Store) => Store;
  bind: (h: Harness) => void;
  count: () => number;
} {
  let writer: Store | undefined;
  let n = 0;
  return {
    wrap: (inner) =>
      beforePut(inner, async () => {
        if (n >= times) {
          n++;
          return;
        }
        const cur = (await writer!.getClusterData())!;
        const cd = parseClusterData(cur.text);
        mutate(cd, n++);
        await writer!.putClusterData(serializeClusterData(cd), cur.revision);
      }),
    bind: (h) => {
      writer = newStore(h.backend);
    },
    count: () => n,
  };
}

describe('failkeeper', () => {
  it('marks a standby keeper with forceFail and changes nothing else', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper1' })).toBe(ExitCode.ok);
    expect(h.errs).toEqual([]);
    expect(h.out.at(-1)).toBe(
      'keeper keeper1 marked failed: the leader sentinel treats it as failed on its next pass and then clears the mark; ' +
        'it holds no primary DB, so no failover follows',
    );
    const expected = parseClusterData(h.before);
    expected.keepers['keeper1']!.status.forceFail = true;
    expect(await storedCd(h)).toEqual(expected);
  });

  it('on the primary keeper says the sentinel fails over', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper0' })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toMatch(/it holds the primary db db1, so the sentinel fails over to the best standby$/);
    expect((await storedCd(h)).keepers['keeper0']?.status.forceFail).toBe(true);
  });

  it('an unknown keeper exits 1 naming the known ones, and leaves the stored bytes identical', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper7' })).toBe(ExitCode.runtime);
    expect(h.errs).toEqual(['stolonctl failkeeper: keeper keeper7 is not in the cluster (known: keeper0, keeper1, keeper2, keeper3)']);
    await h.unchanged();
  });

  it('an unknown keeper in a cluster without keepers says none are known', async () => {
    const h = await seeded(newClusterData({ initMode: 'new' }, 'c0ffee00', T));
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper0' })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl failkeeper: keeper keeper0 is not in the cluster (known: none)');
    await h.unchanged();
  });

  it('an already marked keeper exits 0 and writes nothing', async () => {
    const cd = handBuiltClusterData();
    cd.keepers['keeper1']!.status.forceFail = true;
    const h = await seeded(cd);
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper1' })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toMatch(/^keeper keeper1 is already marked failed .*nothing written$/);
    await h.unchanged();
  });

  it('refuses on a paused cluster, naming resume, and leaves the stored bytes identical', async () => {
    const cd = handBuiltClusterData();
    cd.cluster.spec.paused = true;
    const h = await seeded(cd);
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper0' })).toBe(ExitCode.runtime);
    expect(h.errs).toEqual([
      'stolonctl failkeeper: cluster c1 is paused: the sentinel takes no failover action; run stolonctl resume first, then failkeeper keeper0',
    ]);
    await h.unchanged();
  });

  it('an empty KEEPER exits 2; an uninitialised cluster exits 1', async () => {
    const h = harness();
    expect(await runFailkeeper(h.ctx, { keeper: ' ' })).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(/^stolonctl failkeeper: KEEPER: empty keeper UID/);
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper0' })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl failkeeper: cluster c1 is not initialized; run stolonctl init');
    expect(await h.stored()).toBeNull();
  });

  it('re-reads after a concurrent writer moved the revision, keeping its change', async () => {
    // The sentinel writes keeper health between our read and our write.
    const c = concurrent((cd) => {
      cd.keepers['keeper2']!.status.healthy = true;
    }, 1);
    const h = await seeded(handBuiltClusterData(), { wrap: c.wrap });
    c.bind(h);
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper1' })).toBe(ExitCode.ok);
    expect(c.count()).toBe(2);
    const after = await storedCd(h);
    expect(after.keepers['keeper1']?.status.forceFail).toBe(true);
    expect(after.keepers['keeper2']?.status.healthy).toBe(true);
  });

  it(`gives up after ${CAS_ATTEMPTS} lost compare-and-set writes without marking`, async () => {
    const c = concurrent((cd, n) => {
      cd.proxy.generation = 100 + n;
    });
    const h = await seeded(handBuiltClusterData(), { wrap: c.wrap });
    c.bind(h);
    expect(await runFailkeeper(h.ctx, { keeper: 'keeper1' })).toBe(ExitCode.runtime);
    expect(c.count()).toBe(CAS_ATTEMPTS);
    expect(h.errs.at(-1)).toMatch(new RegExp(`^stolonctl failkeeper: clusterdata changed under every one of ${CAS_ATTEMPTS} attempts`));
    const after = await storedCd(h);
    expect(after.keepers['keeper1']?.status.forceFail).toBeUndefined();
    expect(after.proxy.generation).toBe(100 + CAS_ATTEMPTS - 1);
  });
});

describe('removekeeper', () => {
  it('--yes deletes a standby keeper and its db, and nothing else', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper3', yes: true })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('keeper keeper3 and its db db4 removed from cluster c1');
    const expected = parseClusterData(h.before);
    delete expected.keepers['keeper3'];
    delete expected.dbs['db4'];
    // As in Stolon, db2's followers list is the sentinel's to fix on its next pass.
    expect(await storedCd(h)).toEqual(expected);
  });

  it('removes a keeper without a db; a healthy one gets a note that it comes back if left running', async () => {
    const cd = handBuiltClusterData();
    cd.keepers['keeper2']!.status.healthy = true;
    const h = await seeded(cd);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper2', yes: true })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('keeper keeper2 removed from cluster c1');
    expect(h.errs).toEqual([
      'stolonctl removekeeper: note: keeper keeper2 looked healthy; stop it, or the sentinel adds it back and it re-syncs',
    ]);
    expect(Object.keys((await storedCd(h)).keepers).sort()).toEqual(['keeper0', 'keeper1', 'keeper3']);
  });

  it('refuses the keeper of the primary db, even with --yes and without asking, naming failkeeper', async () => {
    const h = await seeded(handBuiltClusterData());
    const confirm = vi.fn(async () => true);
    expect(await runRemovekeeper({ ...h.ctx, confirm }, { keeper: 'keeper0' })).toBe(ExitCode.runtime);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper0', yes: true })).toBe(ExitCode.runtime);
    expect(confirm).not.toHaveBeenCalled();
    expect(h.errs).toEqual([
      'stolonctl removekeeper: keeper keeper0 holds the primary db db1; fail it over first with `stolonctl failkeeper keeper0`',
      'stolonctl removekeeper: keeper keeper0 holds the primary db db1; fail it over first with `stolonctl failkeeper keeper0`',
    ]);
    await h.unchanged();
  });

  it('an unknown keeper exits 1 naming the known ones', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runRemovekeeper(h.ctx, { keeper: 'nope', yes: true })).toBe(ExitCode.runtime);
    expect(h.errs).toEqual(['stolonctl removekeeper: keeper nope is not in the cluster (known: keeper0, keeper1, keeper2, keeper3)']);
    await h.unchanged();
  });

  it('without --yes and nobody to ask (stdin not a terminal) exits 1 and leaves the stored bytes identical', async () => {
    const cd = handBuiltClusterData();
    const h = await seeded(cd);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper1' })).toBe(ExitCode.runtime);
    expect(h.errs).toEqual([
      'stolonctl removekeeper: removing keeper keeper1 deletes it and its db db2 from cluster c1; keeper keeper1 looks healthy: ' +
        'if it keeps running the sentinel adds it back and it re-syncs, so stop it first; ' +
        'standard input is not a terminal to confirm on, re-run with --yes to remove it',
    ]);
    await h.unchanged();
  });

  it('asks when it can: "no" leaves the store unchanged, "yes" removes', async () => {
    const cd = handBuiltClusterData();
    cd.keepers['keeper3']!.status.healthy = false;
    const h = await seeded(cd);
    const no = vi.fn(async (_question: string) => false);
    expect(await runRemovekeeper({ ...h.ctx, confirm: no }, { keeper: 'keeper3' })).toBe(ExitCode.runtime);
    expect(no).toHaveBeenCalledOnce();
    expect(no.mock.calls[0]?.[0]).toBe('Remove keeper keeper3 and its db db4 from cluster c1? (yes/no)');
    expect(h.errs.at(-1)).toBe('stolonctl removekeeper: not confirmed; keeper keeper3 left in cluster c1');
    await h.unchanged();
    // A healthy keeper: the question says it comes back if left running.
    const healthy = vi.fn(async (_question: string) => false);
    expect(await runRemovekeeper({ ...h.ctx, confirm: healthy }, { keeper: 'keeper1' })).toBe(ExitCode.runtime);
    expect(healthy.mock.calls[0]?.[0]).toBe(
      'Remove keeper keeper1 and its db db2 from cluster c1? Note: keeper keeper1 looks healthy: ' +
        'if it keeps running the sentinel adds it back and it re-syncs, so stop it first. (yes/no)',
    );
    await h.unchanged();

    const yes = vi.fn(async () => true);
    expect(await runRemovekeeper({ ...h.ctx, confirm: yes }, { keeper: 'keeper3' })).toBe(ExitCode.ok);
    expect(yes).toHaveBeenCalledOnce();
    expect((await storedCd(h)).keepers['keeper3']).toBeUndefined();
  });

  it('re-checks on the document it writes: refuses when the keeper became primary meanwhile', async () => {
    // A failover to keeper1 lands between our read and our write.
    const c = concurrent((cd) => {
      cd.cluster.status.master = 'db2';
      cd.dbs['db2']!.spec.role = 'master';
      cd.dbs['db1']!.spec.role = 'standby';
    }, 1);
    const h = await seeded(handBuiltClusterData(), { wrap: c.wrap });
    c.bind(h);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper1', yes: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe(
      'stolonctl removekeeper: keeper keeper1 holds the primary db db2; fail it over first with `stolonctl failkeeper keeper1`',
    );
    const after = await storedCd(h);
    expect(after.cluster.status.master).toBe('db2');
    expect(after.keepers['keeper1']).toBeDefined();
    expect(after.dbs['db2']).toBeDefined();
  });

  it('exits 0 when another writer removed the keeper after the operator confirmed', async () => {
    const c = concurrent((cd) => {
      delete cd.keepers['keeper3'];
      delete cd.dbs['db4'];
    }, 1);
    const h = await seeded(handBuiltClusterData(), { wrap: c.wrap });
    c.bind(h);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper3', yes: true })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('keeper keeper3 was removed from cluster c1 by another writer meanwhile; nothing written');
  });

  it('refuses the keeper a failover in progress is promoting', async () => {
    const cd = handBuiltClusterData();
    cd.cluster.status.failover = {
      ...inProgressEvent(),
      newPrimary: { keeperUID: 'keeper1', dbUid: 'db2', xLogPos: 0x3000060 },
    };
    const h = await seeded(cd);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper1', yes: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe(
      'stolonctl removekeeper: keeper keeper1 is being promoted by failover db1-cur, still in progress; ' +
        'wait for it to end (stolonctl events), then fail it over first if it became the primary',
    );
    await h.unchanged();
  });

  it('an empty KEEPER exits 2; an uninitialised cluster exits 1', async () => {
    const h = harness();
    expect(await runRemovekeeper(h.ctx, { keeper: '', yes: true })).toBe(ExitCode.usage);
    expect(await runRemovekeeper(h.ctx, { keeper: 'keeper0', yes: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl removekeeper: cluster c1 is not initialized; run stolonctl init');
    expect(await h.stored()).toBeNull();
  });
});

describe('pause and resume', () => {
  it('pause sets spec.paused and nothing else; status says so loudly on its first line and in json', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runPause(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('cluster c1 paused: the sentinel takes no failover or standby action until stolonctl resume');
    const expected = parseClusterData(h.before);
    expected.cluster.spec.paused = true;
    expect(await storedCd(h)).toEqual(expected);

    expect(await runStatus(h.ctx)).toBe(ExitCode.ok);
    const table = h.out.at(-1)!;
    expect(table.split('\n')[0]).toBe(
      '!!! CLUSTER PAUSED: the sentinel takes no failover or standby action (stolonctl resume to re-enable) !!!',
    );
    expect(table.split('\n')[0]).toBe(PAUSED_BANNER);
    expect(table).toContain('Paused: true (stolonctl resume to re-enable the sentinel)');
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    expect((JSON.parse(h.out.at(-1)!) as { cluster: { paused: boolean } }).cluster.paused).toBe(true);
  });

  it('pause on a paused cluster exits 0 and writes nothing', async () => {
    const cd = handBuiltClusterData();
    cd.cluster.spec.paused = true;
    const h = await seeded(cd);
    expect(await runPause(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('cluster c1 is already paused; nothing written (stolonctl resume to re-enable the sentinel)');
    await h.unchanged();
  });

  it('resume removes spec.paused, and status loses the banner', async () => {
    const cd = handBuiltClusterData();
    cd.cluster.spec = { ...cd.cluster.spec, paused: true, maxStandbys: 4 };
    const h = await seeded(cd);
    expect(await runResume(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('cluster c1 resumed: the sentinel takes failover and standby actions again');
    expect(await storedSpec(h)).toEqual({ initMode: 'new', maxStandbys: 4 });
    expect(await runStatus(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).not.toContain('PAUSED');
    expect(h.out.at(-1)!.split('\n')[0]).toBe('=== Active sentinels ===');
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    expect((JSON.parse(h.out.at(-1)!) as { cluster: { paused: boolean } }).cluster.paused).toBe(false);
  });

  it.each([
    ['no paused field', {}],
    ['a stored paused: false', { paused: false }],
  ])('resume with %s exits 0 and writes nothing', async (_, extra) => {
    const cd = handBuiltClusterData();
    cd.cluster.spec = { ...cd.cluster.spec, ...extra };
    const h = await seeded(cd);
    expect(await runResume(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('cluster c1 is not paused; nothing written');
    await h.unchanged();
  });

  it('pause re-applies to the fresh spec after a concurrent writer, keeping its change', async () => {
    const c = concurrent((cd) => {
      cd.cluster.spec = { ...cd.cluster.spec, maxStandbys: 7 };
    }, 1);
    const h = await seeded(handBuiltClusterData(), { wrap: c.wrap });
    c.bind(h);
    expect(await runPause(h.ctx)).toBe(ExitCode.ok);
    expect(c.count()).toBe(2);
    expect(await storedSpec(h)).toEqual({ initMode: 'new', maxStandbys: 7, paused: true });
  });

  it(`pause gives up after ${CAS_ATTEMPTS} lost writes, and refuses an uninitialised cluster`, async () => {
    const c = concurrent((cd, n) => {
      cd.cluster.spec = { ...cd.cluster.spec, maxStandbys: 10 + n };
    });
    const h = await seeded(handBuiltClusterData(), { wrap: c.wrap });
    c.bind(h);
    expect(await runPause(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(new RegExp(`^stolonctl pause: clusterdata changed under every one of ${CAS_ATTEMPTS} attempts`));
    expect((await storedSpec(h)).paused).toBeUndefined();

    const empty = harness();
    expect(await runResume(empty.ctx)).toBe(ExitCode.runtime);
    expect(empty.errs.at(-1)).toBe('stolonctl resume: cluster c1 is not initialized; run stolonctl init');
  });

  it('update --patch can set paused too (same validated path); a non-boolean is refused', async () => {
    const h = await seeded(handBuiltClusterData());
    expect(await runUpdate(h.ctx, { specJson: '{"paused":"yes"}', patch: true })).toBe(ExitCode.usage);
    expect(h.errs.at(-1)).toMatch(/paused/);
    await h.unchanged();
    expect(await runUpdate(h.ctx, { specJson: '{"paused":true}', patch: true })).toBe(ExitCode.ok);
    expect(await runPause(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toMatch(/already paused/);
  });
});

/** A finished failover from keeper0 to keeper1 with every phase (the example of the brief). */
function completedEvent(): FailoverEvent {
  return {
    id: 'db0-done',
    kind: 'failover',
    cause: 'keeper keeper0 unhealthy for 6000 ms',
    oldPrimary: { keeperUID: 'keeper0', dbUid: 'db0', xLogPos: 0x3001000 },
    newPrimary: { keeperUID: 'keeper1', dbUid: 'db1', xLogPos: 0x3000f00 },
    choice: 'keeper1: most advanced healthy standby',
    phases: {
      primaryLastSeen: '2025-01-01T00:00:04.790Z',
      declaredFailed: '2025-01-01T00:00:10.000Z',
      proxiesFenced: '2025-01-01T00:00:10.035Z',
      candidateChosen: '2025-01-01T00:00:10.040Z',
      promoted: '2025-01-01T00:00:10.480Z',
      proxiesRouted: '2025-01-01T00:00:10.510Z',
    },
    result: 'completed',
  };
}

/** A failover from keeper0 (db1) still waiting for the proxies to be fenced. */
function inProgressEvent(): FailoverEvent {
  return {
    id: 'db1-cur',
    kind: 'failover',
    cause: 'stolonctl failkeeper keeper0',
    oldPrimary: { keeperUID: 'keeper0', dbUid: 'db1', xLogPos: 0x3001000 },
    phases: { primaryLastSeen: '2025-01-01T01:00:00.000Z', declaredFailed: '2025-01-01T01:00:00.250Z' },
  };
}

describe('events', () => {
  async function withEvents(history: FailoverEvent[] | undefined, current?: FailoverEvent): Promise<Harness> {
    const cd = handBuiltClusterData();
    if (history !== undefined) {
      cd.failoverHistory = history;
    }
    if (current !== undefined) {
      cd.cluster.status.failover = current;
    }
    return seeded(cd);
  }

  it('with no events prints "no failovers recorded" (json: []) and exits 0', async () => {
    const h = await withEvents(undefined);
    expect(await runEvents(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toBe('no failovers recorded');
    expect(await runEvents(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    expect(JSON.parse(h.out.at(-1)!)).toEqual([]);
    const empty = await withEvents([]);
    expect(await runEvents(empty.ctx)).toBe(ExitCode.ok);
    expect(empty.out.at(-1)).toBe('no failovers recorded');
  });

  it('shows a finished failover with LSNs, phase offsets from declared failed, and the write outage', async () => {
    const h = await withEvents([completedEvent()]);
    expect(await runEvents(h.ctx)).toBe(ExitCode.ok);
    expect(h.errs).toEqual([]);
    expect(h.out.at(-1)).toBe(
      [
        '=== failover db0-done ===',
        '',
        'id                  db0-done',
        'kind                failover',
        'cause               keeper keeper0 unhealthy for 6000 ms',
        'old primary         keeper0 (db db0, LSN 0/3001000)',
        'new primary         keeper1 (db db1, LSN 0/3000F00)',
        'choice              keeper1: most advanced healthy standby',
        'result              completed',
        'declared failed at  2025-01-01T00:00:10.000Z',
        'phases              primary last seen -5210 ms, declared failed 0 ms, proxies fenced +35 ms, candidate chosen +40 ms, ' +
          'promoted +480 ms, proxies routed +510 ms',
        "write outage        at most 5720 ms (from the primary's last observed progress to routing the proxies to the new primary; clients reconnect after it)",
      ].join('\n'),
    );
  });

  it('lists history oldest first, then the failover in progress, marked so', async () => {
    const aborted: FailoverEvent = {
      id: 'db0-abrt',
      kind: 'switchover',
      cause: 'operator request',
      oldPrimary: { keeperUID: 'keeper0', dbUid: 'db0', xLogPos: 0 },
      choice: 'no candidate; primary keeper0 (db db0) is serving again',
      phases: { declaredFailed: '2025-01-01T00:00:00.000Z', proxiesFenced: '2025-01-01T00:00:00.020Z', proxiesRouted: '2025-01-01T00:00:01.000Z' },
      result: 'aborted',
    };
    const h = await withEvents([aborted, completedEvent()], inProgressEvent());
    expect(await runEvents(h.ctx)).toBe(ExitCode.ok);
    const text = h.out.at(-1)!;
    const heads = text.split('\n').filter((l) => l.startsWith('==='));
    expect(heads).toEqual(['=== switchover db0-abrt ===', '=== failover db0-done ===', '=== failover db1-cur (IN PROGRESS) ===']);
    const current = text.slice(text.indexOf('=== failover db1-cur'));
    expect(current).toMatch(/^new primary\s+-$/m);
    expect(current).toMatch(/^result\s+in progress$/m);
    expect(current).toMatch(/^phases\s+primary last seen -250 ms, declared failed 0 ms$/m);
    expect(current).toMatch(/^write outage\s+not known yet \(needs primary last seen and proxies routed\)$/m);
    const first = text.slice(0, text.indexOf('=== failover db0-done'));
    expect(first).toMatch(/^old primary\s+keeper0 \(db db0, LSN unknown\)$/m);
    expect(first).toMatch(/^result\s+aborted$/m);
    expect(first).toMatch(/^phases\s+declared failed 0 ms, proxies fenced \+20 ms, proxies routed \+1000 ms$/m);
    expect(first).toMatch(/^write outage\s+- \(primary last seen or proxies routed not recorded\)$/m);
  });

  it('--format json gives the raw events plus offsetsMs, writeOutageMs and inProgress', async () => {
    const h = await withEvents([completedEvent()], inProgressEvent());
    expect(await runEvents(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    const j = JSON.parse(h.out.at(-1)!) as Array<Record<string, unknown>>;
    expect(j).toEqual([
      {
        ...completedEvent(),
        inProgress: false,
        offsetsMs: { primaryLastSeen: -5210, declaredFailed: 0, proxiesFenced: 35, candidateChosen: 40, promoted: 480, proxiesRouted: 510 },
        writeOutageMs: 5720,
      },
      {
        ...inProgressEvent(),
        inProgress: true,
        offsetsMs: { primaryLastSeen: -250, declaredFailed: 0 },
        writeOutageMs: null,
      },
    ]);
  });

  it('--last N keeps the N newest (the one in progress counts) and says how many were left out', async () => {
    const h = await withEvents([completedEvent(), { ...completedEvent(), id: 'db0-two' }], inProgressEvent());
    expect(await runEvents(h.ctx, { last: 2 })).toBe(ExitCode.ok);
    const text = h.out.at(-1)!;
    expect(text.split('\n')[0]).toBe('(the last 2 of 3 events; --last to show more)');
    expect(text.split('\n').filter((l) => l.startsWith('==='))).toEqual([
      '=== failover db0-two ===',
      '=== failover db1-cur (IN PROGRESS) ===',
    ]);
    expect(await runEvents(h.ctx, { last: 1, format: 'json' })).toBe(ExitCode.ok);
    expect((JSON.parse(h.out.at(-1)!) as Array<{ id: string }>).map((e) => e.id)).toEqual(['db1-cur']);
    expect(await runEvents(h.ctx, { last: 10 })).toBe(ExitCode.ok);
    expect(h.out.at(-1)!.split('\n')[0]).toBe('=== failover db0-done ===');
  });

  it.each([
    ['--last 0', { last: 0 }, /^stolonctl events: --last: got 0, not a positive whole number; give how many events to show, e\.g\. --last 5$/],
    ['--last 1.5', { last: 1.5 }, /^stolonctl events: --last: got 1\.5, not a positive whole number/],
    ['--last abc (NaN)', { last: Number.NaN }, /^stolonctl events: --last: got not a number;/],
    ['--format yaml', { format: 'yaml' as never }, /^stolonctl events: --format: "yaml" is not one of table, json$/],
  ])('%s exits 2 before reading the store', async (_, opts, message) => {
    const h = harness();
    expect(await runEvents(h.ctx, opts)).toBe(ExitCode.usage);
    expect(h.errs).toHaveLength(1);
    expect(h.errs[0]).toMatch(message);
  });

  it('shows the failsafe spells of store outages after the failovers; json merges both oldest first', async () => {
    const h = await withEvents([completedEvent()]);
    const cd = parseClusterData((await h.stored())!);
    cd.failsafeHistory = [
      { keeperUID: 'keeper0', since: '2025-01-01T00:00:05.000Z', until: '2025-01-01T00:00:07.500Z', rounds: 3, confirmedRounds: 3, members: 1, fenced: false },
      { keeperUID: 'keeper1', since: '2025-01-01T00:01:00.000Z', until: '2025-01-01T00:01:09.000Z', rounds: 4, confirmedRounds: 2, members: 1, fenced: true, lastFailure: 'keeper0: unreachable' },
    ];
    await h.store.overwriteClusterData(serializeClusterData(cd));
    expect(await runEvents(h.ctx)).toBe(ExitCode.ok);
    const text = h.out.at(-1)!;
    expect(text.indexOf('=== failover db0-done ===')).toBeLessThan(text.indexOf('=== store outage (failsafe mode) keeper0 2025-01-01T00:00:05.000Z ==='));
    expect(text).toContain('store unreachable  2025-01-01T00:00:05.000Z to 2025-01-01T00:00:07.500Z (2500 ms, as this keeper saw it)');
    expect(text).toContain('rounds             3/3 confirmed by all 1 members');
    expect(text).toContain('outcome            kept the primary role throughout');
    expect(text).toContain('outcome            the primary fenced itself (a round was not confirmed and its lease could expire)');
    expect(text).toContain('last failure       keeper0: unreachable');
    expect(await runEvents(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    const list = JSON.parse(h.out.at(-1)!) as { kind: string; keeperUID?: string; id?: string }[];
    expect(list.map((e) => e.kind)).toEqual(['failsafe', 'failover', 'failsafe']);
    expect(list[0]).toMatchObject({ kind: 'failsafe', keeperUID: 'keeper0', rounds: 3 });
    expect(await runEvents(h.ctx, { last: 1 })).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toContain('(the last 1 of 2 failsafe spells; --last to show more)');
  });

  it('a hand-broken event exits 1 naming where it is; an uninitialised cluster exits 1', async () => {
    const h = await withEvents([{ id: 'x' } as unknown as FailoverEvent]);
    expect(await runEvents(h.ctx)).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(
      /^stolonctl events: the stored clusterdata of cluster c1 is unusable: clusterdata is invalid: failoverHistory\.0\.kind: expected one of "failover", "switchover", got nothing/,
    );
    const empty = harness();
    expect(await runEvents(empty.ctx)).toBe(ExitCode.runtime);
    expect(empty.errs.at(-1)).toBe('stolonctl events: cluster c1 is not initialized; run stolonctl init');
  });

  it('status names the failover in progress and points at events', async () => {
    const h = await withEvents(undefined, inProgressEvent());
    expect(await runStatus(h.ctx)).toBe(ExitCode.ok);
    expect(h.out.at(-1)).toContain('In progress: failover db1-cur from keeper keeper0 (stolonctl events shows its phases)');
    expect(await runStatus(h.ctx, { format: 'json' })).toBe(ExitCode.ok);
    expect((JSON.parse(h.out.at(-1)!) as { cluster: unknown }).cluster).toMatchObject({
      failover_in_progress: { id: 'db1-cur', kind: 'failover', old_primary_keeper_uid: 'keeper0' },
    });
  });
});
