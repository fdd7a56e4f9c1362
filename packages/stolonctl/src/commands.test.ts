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
  type DiscardedWal,
  type Keeper,
  type Role,
} from '@stolon-ts/cluster';
import { MemoryBackend, MemoryStore, type Store } from '@stolon-ts/store';
import {
  ExitCode,
  PROMOTE_ATTEMPTS,
  runInit,
  runPromote,
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

interface DbFixture {
  gen: number;
  cur: number;
  port: string;
  healthy: boolean;
  /** Reported LSN; default 0 (never reported). */
  xLogPos?: number;
  /** Reported timeline; default 1, 0 when the DB never reported (port ''). */
  timeline?: number;
  pendingRestart?: string[];
  discardedWal?: DiscardedWal;
}

function db(uid: string, keeperUID: string, role: Role, followers: string[], o: DbFixture): DB {
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
      timelineID: o.timeline ?? (o.port === '' ? 0 : 1),
      xLogPos: o.xLogPos ?? 0,
      timelinesHistory: [],
      pgParameters: {},
      synchronousStandbys: [],
      olderWalFile: '',
      ...(o.pendingRestart !== undefined ? { pendingRestart: o.pendingRestart } : {}),
      ...(o.discardedWal !== undefined ? { discardedWal: o.discardedWal } : {}),
    },
  };
}

/** keeper1 rejoined after a failover: pg_rewind threw away WAL its old timeline 1 had past the fork. */
const DISCARDED: DiscardedWal = { fromLsn: 0x2fff000, toLsn: 0x3000800, timelineID: 1, method: 'pg_rewind', at: T };

/**
 * keeper0 (master db1, timeline 2 at 0/3001000, two parameters pending a restart) ← keeper1 (db2 at
 * 0/3000060, 4000 bytes behind, discarded WAL on rejoin) ← keeper3 (db4, never reported); keeper2
 * has no DB.
 */
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
    db1: db('db1', 'keeper0', 'master', ['db2'], {
      gen: 4,
      cur: 4,
      port: '5432',
      healthy: true,
      xLogPos: 0x3001000,
      timeline: 2,
      pendingRestart: ['shared_buffers', 'max_connections'],
    }),
    db2: db('db2', 'keeper1', 'standby', ['db4'], {
      gen: 2,
      cur: 1,
      port: '5433',
      healthy: true,
      xLogPos: 0x3000060,
      timeline: 2,
      discardedWal: DISCARDED,
    }),
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
      timeline: 2,
      xLogPos: 0x3001000,
      lsn: '0/3001000',
      lagBytes: null,
      pendingRestart: ['shared_buffers', 'max_connections'],
      discardedWal: null,
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
  cd.keepers = { keeper0: keeper('keeper0', true), keeper1: keeper('keeper1', true) };
  const primary = db('db1', 'keeper0', 'standby', ['db2'], { gen: 2, cur: 2, port: '5432', healthy: true, xLogPos: 0x5000000 });
  // The DB spec carries the full conninfo, password included, for its keeper.
  primary.spec.followConfig = { type: 'external', standbySettings: cd.cluster.spec.standbyConfig!.standbySettings! };
  cd.dbs = {
    db1: primary,
    db2: db('db2', 'keeper1', 'standby', [], { gen: 1, cur: 1, port: '5433', healthy: true, xLogPos: 0x4fff000 }),
  };
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
    expect(h.errs.at(-1)).toMatch(/3 attempts/);
    expect(await storedSpec(h)).toMatchObject({ role: 'standby', maxStandbys: 12 });
  });

  it('refuses when the cluster is not initialised', async () => {
    const h = harness();
    expect(await runPromote(h.ctx, { yes: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toBe('stolonctl promote: cluster c1 is not initialized; run stolonctl init');
  });
});
