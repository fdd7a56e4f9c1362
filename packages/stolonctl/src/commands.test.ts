/**
 * Unit tier: the stolonctl subcommands run in-process against the in-memory store. Every refusal
 * is checked to leave the stored clusterdata byte-for-byte as it was.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_SPEC,
  newClusterData,
  parseClusterData,
  serializeClusterData,
  type ClusterData,
  type ClusterSpec,
  type DB,
  type Keeper,
  type Role,
} from '@stolon-ts/cluster';
import { MemoryBackend, MemoryStore, type Store } from '@stolon-ts/store';
import {
  ExitCode,
  runInit,
  runSpec,
  runStatus,
  runUpdate,
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

  it('gives up after 3 lost compare-and-set writes, leaving the other writer’s document', async () => {
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
    expect(h.errs.at(-1)).toMatch(/3 attempts/);
    const spec = await storedSpec(h);
    expect(spec.maxStandbys).toBe(12);
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

function keeper(uid: string, healthy: boolean): Keeper {
  return {
    uid,
    generation: 1,
    changeTime: T,
    spec: {},
    status: { healthy, lastHealthyTime: T, bootUUID: `boot-${uid}` },
  };
}

function db(uid: string, keeperUID: string, role: Role, followers: string[], o: { gen: number; cur: number; port: string; healthy: boolean }): DB {
  return {
    uid,
    generation: o.gen,
    changeTime: T,
    spec: {
      keeperUID,
      requestTimeout: '2s',
      maxStandbys: 20,
      synchronousReplication: false,
      usePgrewind: false,
      additionalWalSenders: 5,
      additionalReplicationSlots: null,
      initMode: role === 'master' ? 'new' : 'resync',
      pgParameters: {},
      pgHBA: null,
      role,
      ...(role === 'standby' ? { followConfig: { type: 'internal' as const, dbuid: 'db1' } } : {}),
      followers,
      includePreviousConfig: false,
      synchronousStandbys: [],
      externalSynchronousStandbys: [],
    },
    status: {
      healthy: o.healthy,
      currentGeneration: o.cur,
      listenAddress: o.port === '' ? '' : '10.0.0.1',
      port: o.port,
      systemdID: '1',
      timelineID: 1,
      xLogPos: 0,
      timelinesHistory: [],
      pgParameters: {},
      synchronousStandbys: [],
      olderWalFile: '',
    },
  };
}

/** keeper0 (master db1) ← keeper1 (db2) ← keeper3 (db4); keeper2 has no DB. */
function handBuiltClusterData(): ClusterData {
  const cd = newClusterData({ initMode: 'new' }, 'c0ffee00', T);
  cd.cluster.status = { phase: 'normal', master: 'db1' };
  cd.keepers = {
    keeper0: keeper('keeper0', true),
    keeper1: keeper('keeper1', true),
    keeper2: keeper('keeper2', false),
    keeper3: keeper('keeper3', true),
  };
  cd.dbs = {
    db1: db('db1', 'keeper0', 'master', ['db2'], { gen: 4, cur: 4, port: '5432', healthy: true }),
    db2: db('db2', 'keeper1', 'standby', ['db4'], { gen: 2, cur: 1, port: '5433', healthy: true }),
    db4: db('db4', 'keeper3', 'standby', [], { gen: 1, cur: 0, port: '', healthy: false }),
  };
  cd.proxy.generation = 3;
  return cd;
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
      /^UID\s+HEALTHY\s+PG LISTENADDRESS\s+PG HEALTHY\s+PG WANTEDGENERATION\s+PG CURRENTGENERATION\s+ROLE$/m,
    );
    expect(text).toMatch(/^keeper0\s+true\s+10\.0\.0\.1:5432\s+true\s+4\s+4\s+master$/m);
    expect(text).toMatch(/^keeper1\s+true\s+10\.0\.0\.1:5433\s+true\s+2\s+1\s+standby$/m);
    expect(text).toMatch(/^keeper2\s+false\s+\(no db assigned\)\s+false\s+0\s+0$/m);
    expect(text).toMatch(/^keeper3\s+true\s+\(unknown\)\s+false\s+1\s+0\s+standby$/m);
    expect(text).toMatch(/^keeper9\s+false\s+\(not in clusterdata yet\)/m);
    expect(text).toContain('=== Cluster Info ===');
    expect(text).toContain('Phase: normal');
    expect(text).toContain('Master Keeper: keeper0');
    expect(text).toContain('===== Keepers/DB tree =====\n\nkeeper0 (master)\n└─keeper1\n  └─keeper3');
    // Keeper rows sorted by uid.
    const order = ['keeper0', 'keeper1', 'keeper2', 'keeper3', 'keeper9'].map((k) => text.search(new RegExp(`^${k}\\s`, 'm')));
    expect(order).toEqual([...order].sort((a, b) => a - b));
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
    });
    expect(j.keepers[2]).toMatchObject({ uid: 'keeper2', listen_address: '(no db assigned)', role: null, db_uid: null });
    expect(j.keepers[4]).toMatchObject({ uid: 'keeper9', registered: false });
    expect(j.cluster).toEqual({
      uid: 'c0ffee00',
      phase: 'normal',
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
    expect(h.errs.at(-1)).toMatch(/^stolonctl status: store unavailable: memory store unavailable/);
    h.backend.setUnavailable(false);
  });
});
