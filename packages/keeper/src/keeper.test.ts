/**
 * The keeper in-process: the real daemon (pass loop, planner, actions, task runner) on the memory
 * store, with PostgreSQL faked (test/fake-pg.ts). Each test drives one kind of action and checks
 * what the keeper did to PostgreSQL, what it persisted and what it published; the fake fails the
 * test when it is driven out of order.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  StolonError,
  parseClusterData,
  serializeClusterData,
  type ClusterData,
  type ClusterSpec,
  type KeeperInfo,
  type RecoveryTargetSettings,
} from '@stolon-ts/cluster';
import type { DataRestoreProgram, PgConfig, RecoveryConfig, ToolResult, WriteConfigResult } from '@stolon-ts/postgres';
import { createLogger } from '@stolon-ts/common';
import { MemoryBackend, MemoryStore, type Store } from '@stolon-ts/store';
import type { FenceControl } from './fencer.js';
import { aCluster, CLUSTER_UID, type ClusterBuilder } from '@stolon-ts/cluster/testing';
import { FakePostgres } from '../test/fake-pg.js';
import type { PgbackrestLocal } from './archiving.js';
import { writeDbState } from './dbstate.js';
import { KeeperStatus, keeperChecks, keeperLiveness } from './health.js';
import { start } from './keeper.js';
import { SPEC_COMMANDS, type SpecCommand } from './spec-commands.js';
import type { KeeperHandle, PersistedState } from './types.js';

/** Fast passes: the keeper re-plans every 100 ms even without a watch event. */
const FAST: ClusterSpec = { initMode: 'new', sleepInterval: '100ms', requestTimeout: '500ms', failInterval: '2s' };

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface Rig {
  readonly uid: string;
  readonly pg: FakePostgres;
  /** The test's own client of the store (the keeper closes its own on stop). */
  readonly store: MemoryStore;
  readonly keeper: KeeperHandle;
  readonly status: KeeperStatus;
  readonly lines: LogLine[];
  readonly dataDir: string;
  /** Replaces clusterdata (compare-and-set on the current revision). */
  put(cd: ClusterData): Promise<void>;
  /** The keeper's published info. */
  info(): Promise<KeeperInfo | undefined>;
  /** `<dataDir>/dbstate` as persisted. */
  dbstate(): Promise<PersistedState>;
}

const rigs: Rig[] = [];

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.keeper.stop('test over');
    await r.store.close();
    await rm(r.dataDir, { recursive: true, force: true });
    // Checked after stop: every call the keeper made, shutdown included, was in order.
    expect(r.pg.violations).toEqual([]);
  }
});

/**
 * A `wrapStore` that counts the keeper's calls of the named store methods in `counts` (each
 * starting at 0), passing every call through.
 */
function countingStore<M extends keyof Store>(counts: Record<M, number>): (s: Store) => Store {
  return (st) =>
    new Proxy(st, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') {
          return v;
        }
        const f = v as (...a: unknown[]) => unknown;
        return Object.hasOwn(counts, prop)
          ? (...args: unknown[]) => {
              counts[prop as M]++;
              return f.apply(target, args);
            }
          : f.bind(target);
      },
    });
}

interface StartOptions {
  uid?: string;
  local?: PersistedState;
  pg?: FakePostgres;
  taskRetry?: { baseMs: number; maxMs: number };
  fencer?: FenceControl;
  /** Wraps the keeper's own store client (e.g. to slow a call down). */
  wrapStore?: (s: Store) => Store;
  /** `--allow-spec-commands`, parsed. Unset: the flag's default (none). */
  allowSpecCommands?: ReadonlySet<SpecCommand>;
  /** The password files as the keeper reads them at every pass; unset: no re-reading. */
  passwords?: () => { su: string; repl: string };
  /** The keeper's pgBackRest files (`KeeperConfig.pgbackrest`); unset: none. */
  pgbackrest?: PgbackrestLocal;
}

async function startKeeper(cd: ClusterData | null, opts: StartOptions = {}): Promise<Rig> {
  const uid = opts.uid ?? 'k1';
  const backend = new MemoryBackend();
  const store = new MemoryStore(backend, { clusterName: 'c' });
  if (cd !== null) {
    await store.putClusterData(serializeClusterData(cd), null);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'keeper-test-'));
  if (opts.local !== undefined) {
    await writeDbState(dataDir, opts.local);
  }
  const pg = opts.pg ?? new FakePostgres();
  const lines: LogLine[] = [];
  const logger = createLogger({ level: 'debug', component: 'keeper', uid, dest: { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) } });
  const status = new KeeperStatus();
  const keeper = await start(
    {
      uid,
      dataDir,
      pgAdvertiseAddress: '127.0.0.1',
      pgPort: 5440,
      suUsername: 'postgres',
      suPassword: 'su-secret',
      replUsername: 'repl',
      replPassword: 'repl-secret',
      canBeMaster: true,
      canBeSynchronousReplica: true,
      priority: 0,
      ...(opts.taskRetry !== undefined ? { taskRetry: opts.taskRetry } : {}),
      ...(opts.allowSpecCommands !== undefined ? { allowSpecCommands: opts.allowSpecCommands } : {}),
      ...(opts.pgbackrest !== undefined ? { pgbackrest: opts.pgbackrest } : {}),
    },
    {
      store: (opts.wrapStore ?? ((x) => x))(new MemoryStore(backend, { clusterName: 'c' })),
      logger,
      pg,
      bootUuid: `boot-${uid}`,
      status,
      ...(opts.fencer !== undefined ? { fencer: opts.fencer } : {}),
      ...(opts.passwords !== undefined ? { passwords: opts.passwords } : {}),
    },
  );
  const rig: Rig = {
    uid,
    pg,
    store,
    keeper,
    status,
    lines,
    dataDir,
    put: async (next) => {
      const rec = await store.getClusterData();
      await store.putClusterData(serializeClusterData(next), rec?.revision ?? null);
    },
    info: async () => (await store.listInfos('keepers'))[uid],
    dbstate: async () => JSON.parse(await readFile(join(dataDir, 'dbstate'), 'utf8')) as PersistedState,
  };
  rigs.push(rig);
  return rig;
}

/** Polls `check` every 10 ms until it returns a value other than undefined/false. */
async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) {
      return v;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

const fast = (): ClusterBuilder => aCluster({ spec: FAST }).initialized();
const local = (uid: string, generation = 1): PersistedState => ({ uid, generation, clusterUID: CLUSTER_UID });

/** `cd` with DB `uid` as the sentinel writes a DB it has not seen running yet (no system identifier). */
function newDb(cd: ClusterData, uid: string): ClusterData {
  cd.dbs[uid]!.status.systemdID = '';
  return cd;
}

/** A fake instance that already holds a running DB in `role`. */
function runningPg(role: 'master' | 'standby'): FakePostgres {
  const pg = new FakePostgres();
  Object.assign(pg.inst, { initialized: true, running: true, role, systemId: '7000000000000000001', xLogPos: 0x3000000 });
  pg.inst.config = { cfg: { listenAddress: '', port: 0, parameters: {}, maxStandbys: 0, additionalWalSenders: 0, synchronousStandbyNames: '', hba: [] }, recovery: null };
  return pg;
}

describe('keeper in-process: one test per action kind', () => {
  it('wait: does nothing to PostgreSQL until the sentinel has recorded this keeper process', async () => {
    const cd = fast().withPrimary('k1', { initMode: 'new' }).build();
    cd.keepers['k1']!.status.bootUUID = 'boot-of-an-older-process';
    const r = await startKeeper(cd);
    const info = await until('the keeper info', () => r.info());
    expect(info.bootUUID).toBe('boot-k1');
    await new Promise((res) => setTimeout(res, 300));
    expect(r.pg.calls.filter((c) => c !== 'observe')).toEqual([]);
    expect(r.lines.some((l) => l.msg === 'waiting for the sentinel to register this keeper process')).toBe(true);
  });

  it('init-new: initdb in a background task, then the next pass writes the configuration and starts the primary', async () => {
    const r = await startKeeper(newDb(fast().withPrimary('k1', { initMode: 'new' }).build(), 'db-k1'));
    await until('the primary running at generation 1', async () => (await r.info())?.postgresState?.generation === 1 && r.pg.inst.running);
    expect(r.pg.calls.filter((c) => !['observe', 'syncSlots', 'writeConfig'].includes(c)).slice(0, 4)).toEqual(['stop', 'removeData', 'init', 'start']);
    expect(r.pg.inst.config?.recovery).toBeNull();
    expect(r.pg.inst.config?.cfg.port).toBe(5440);
    expect(await r.dbstate()).toEqual(local('db-k1'));
    const info = await r.info();
    expect(info?.postgresState).toMatchObject({ uid: 'db-k1', healthy: true, role: 'master', running: true });
    expect(info?.postgresState).not.toHaveProperty('activity');
    expect(r.lines.some((l) => l.msg === 'initdb for db db-k1: done')).toBe(true);
  });

  it('init-existing: adopts the data directory as it is, then starts it with its configuration', async () => {
    const pg = runningPg('master');
    pg.inst.running = false;
    const r = await startKeeper(fast().withPrimary('k1', { initMode: 'existing' }).build(), { pg, local: { uid: 'x', generation: 3, clusterUID: 'other' } });
    await until('the adopted primary running', () => pg.inst.running && pg.count('start') === 1);
    expect(pg.count('init')).toBe(0);
    expect(pg.count('removeData')).toBe(0);
    expect((await r.dbstate()).uid).toBe('db-k1');
  });

  it('init-pitr: restores with the dataRestoreCommand, recovers from the archive, then runs as the primary', async () => {
    const spec: ClusterSpec = {
      ...FAST,
      initMode: 'pitr',
      pitrConfig: { dataRestoreCommand: 'cp -a /backup/. %d', archiveRecoverySettings: { restoreCommand: 'cp /archive/%f %p' } },
    };
    const pg = new FakePostgres();
    const r = await startKeeper(newDb(aCluster({ spec }).initialized().withPrimary('k1', { initMode: 'pitr' }).build(), 'db-k1'), {
      pg,
      allowSpecCommands: new Set(['data_restore_command', 'restore_command']),
    });
    await until('the restored primary at generation 1', async () => (await r.info())?.postgresState?.generation === 1 && pg.inst.running);
    expect(pg.calls.filter((c) => ['restoreData', 'writeConfig', 'start', 'waitRecoveryDone'].includes(c)).slice(0, 4)).toEqual([
      'restoreData',
      'writeConfig',
      'start',
      'waitRecoveryDone',
    ]);
    expect(pg.inst.role).toBe('master');
    // After recovery the keeper's own configuration is written: no recovery settings on a primary.
    expect(pg.inst.config?.recovery).toBeNull();
  });

  it('resync: pg_basebackup in the background while passes keep publishing its progress, then the standby follows', async () => {
    const cd = fast().withPrimary('k0').withStandby('k1', { initMode: 'resync' }).build();
    const pg = new FakePostgres();
    let open!: () => void;
    pg.baseBackupGate = new Promise<void>((res) => (open = res));
    const r = await startKeeper(cd, { pg });
    const during = await until('the clone progress published', async () => {
      const i = await r.info();
      return i?.postgresState?.activity === 'pg_basebackup from db db-k0: 4/16 MiB (25%)' ? i : undefined;
    });
    expect(during.postgresState?.healthy).toBe(false);
    const passesDuring = r.status.snapshot('running').passes;
    await until('more passes while the clone runs', () => r.status.snapshot('running').passes > passesDuring + 2);
    expect(pg.inst.running).toBe(false);
    open();
    await until('the standby running and following db-k0', () => pg.inst.running && pg.inst.config?.recovery?.mode === 'standby');
    const rec = pg.inst.config?.recovery;
    expect(rec?.mode === 'standby' && rec.standby).toMatchObject({ applicationName: 'stolon_db-k1', slotName: 'stolon_db-k1', primary: { host: '127.0.0.1', port: 5432, user: 'repl' } });
    expect(pg.inst.role).toBe('standby');
    expect((await r.dbstate()).uid).toBe('db-k1');
    // The password went to PostgreSQL but never to the log.
    expect(JSON.stringify(r.lines)).not.toContain('repl-secret');
  });

  it('converge: a running standby that must be primary is promoted before its configuration drops the recovery settings', async () => {
    const pg = runningPg('standby');
    const r = await startKeeper(fast().withPrimary('k1').withStandby('k2').build(), { pg, local: local('db-k1') });
    await until('the promotion', () => pg.inst.role === 'master' && pg.count('writeConfig') > 0);
    const promoteAt = pg.calls.indexOf('promote');
    expect(promoteAt).toBeGreaterThanOrEqual(0);
    expect(pg.calls.indexOf('writeConfig')).toBeGreaterThan(promoteAt);
    expect(pg.inst.config?.recovery).toBeNull();
    await until('the follower slot', () => pg.inst.slots.includes('stolon_db-k2'));
    expect(await r.dbstate()).toEqual(local('db-k1'));
  });

  it('converge: a primary keeps the slot a new standby created for itself while the pass that would drop it ran on older clusterdata', async () => {
    // The new standby's keeper creates its slot once the clusterdata lists its DB as a follower,
    // which can be while the primary's pass still works from the clusterdata before that.
    const pg = runningPg('master');
    const older = fast().withPrimary('k1').build();
    const newer = fast().withPrimary('k1', { generation: 2 }).withStandby('k2').build();
    let rig: Rig | undefined;
    let raced = false;
    pg.beforeSyncSlots = async () => {
      if (!raced && rig !== undefined) {
        raced = true;
        await rig.put(newer);
        pg.inst.slots.push('stolon_db-k2');
      }
    };
    // A leftover slot makes the first passes sync the slots (one to drop, rightly).
    pg.inst.slots = ['stolon_gone'];
    rig = await startKeeper(older, { pg, local: local('db-k1') });
    await until('the race', () => raced);
    await until('the follower slot kept', () => pg.inst.slots.includes('stolon_db-k2') && pg.count('syncSlots') >= 2);
    expect(pg.droppedSlots).not.toContain('stolon_db-k2');
    expect(pg.droppedSlots).toContain('stolon_gone');
  });

  it('converge: a promoted primary reports its generation applied before it writes its configuration and slots (asynchronous replication)', async () => {
    const pg = runningPg('standby');
    const held = pg.hang('writeConfig');
    const r = await startKeeper(fast().withPrimary('k1', { generation: 2 }).withStandby('k2').build(), { pg, local: local('db-k1', 1) });
    await held.entered;
    // Promoted, the configuration not written yet: the sentinel can already route to it.
    expect(pg.inst.role).toBe('master');
    const info = await until('generation 2 published', async () => ((await r.info())?.postgresState?.generation === 2 ? true : undefined), 2000);
    expect(info).toBe(true);
    expect(pg.count('syncSlots')).toBe(0);
    held.release();
    await until('the configuration and the follower slot', () => pg.inst.config?.recovery === null && pg.inst.slots.includes('stolon_db-k2'));
  });

  it('converge: with synchronous replication a promoted primary reports its generation only once configured, with its standbys\' slots', async () => {
    const pg = runningPg('standby');
    const held = pg.hang('writeConfig');
    const cd = aCluster({ spec: { ...FAST, synchronousReplication: true } })
      .initialized()
      .withPrimary('k1', { generation: 2 })
      .withStandby('k2')
      .build();
    const r = await startKeeper(cd, { pg, local: local('db-k1', 1) });
    await held.entered;
    await new Promise((res) => setTimeout(res, 300));
    expect((await r.info())?.postgresState?.generation).toBe(1);
    held.release();
    await until('generation 2 published', async () => (await r.info())?.postgresState?.generation === 2);
    expect(pg.calls.lastIndexOf('syncSlots')).toBeGreaterThan(pg.calls.indexOf('writeConfig'));
  });

  it('converge: with synchronous replication a standby gets its synchronous_standby_names and reloads before its promotion, its recovery settings kept, and reports at once', async () => {
    const pg = runningPg('standby');
    const sync = { spec: { ...FAST, synchronousReplication: true } };
    const r = await startKeeper(aCluster(sync).initialized().withPrimary('k0').withStandby('k1').withStandby('k2').build(), { pg, local: local('db-k1') });
    await until('the standby configuration', () => pg.inst.config?.recovery?.mode === 'standby');
    const asStandby = pg.inst.config?.recovery;
    expect(pg.inst.config?.cfg.synchronousStandbyNames).toBe('');
    const held = pg.hang('promote');
    // The sentinel's promotion: k0 gone, k1 primary with k2 as its synchronous standby.
    const promoted = aCluster(sync).initialized().withPrimary('k1', { generation: 2, synchronousStandbys: ['db-k2'] }).withStandby('k2').build();
    await r.put(promoted);
    await held.entered;
    // Promoting now: PostgreSQL already has the names, and still its standby settings.
    expect(pg.inst.config?.cfg.synchronousStandbyNames).toBe('"stolon_db-k2"');
    expect(pg.inst.config?.recovery).toEqual(asStandby);
    const promoteAt = pg.calls.lastIndexOf('promote');
    expect(pg.calls.lastIndexOf('reload', promoteAt)).toBeGreaterThan(pg.calls.lastIndexOf('writeConfig', promoteAt));
    // As a standby it kept its sibling's slot: the promoted primary reports before it drops the
    // recovery settings, as with asynchronous replication.
    expect(pg.inst.slots).toContain('stolon_db-k2');
    const after = pg.hang('writeConfig');
    held.release();
    await after.entered;
    await until('generation 2 published', async () => (await r.info())?.postgresState?.generation === 2);
    after.release();
    await until('the recovery settings dropped', () => pg.inst.config?.recovery === null);
    expect(pg.inst.config?.cfg.synchronousStandbyNames).toBe('"stolon_db-k2"');
  });

  it('stop-postgres: a running instance whose keeper has no DB any more is stopped (a former primary takes no writes)', async () => {
    const pg = runningPg('master');
    await startKeeper(fast().withPrimary('k0').withKeeper('k1').build(), { pg, local: local('db-old') });
    await until('postgres stopped', () => !pg.inst.running);
    expect(pg.count('start')).toBe(0);
  });

  it('a primary whose switchover starts (proxies being fenced) checkpoints once in the background, before its shutdown is ordered', async () => {
    const cd = fast().withPrimary('k1').withStandby('k2').build();
    cd.cluster.status.failover = {
      id: 'sw1',
      kind: 'switchover',
      cause: 'requested with stolonctl switchover',
      oldPrimary: { keeperUID: 'k1', dbUid: 'db-k1', xLogPos: 0 },
      newPrimary: { keeperUID: 'k2', dbUid: 'db-k2', xLogPos: 0 },
      phases: { declaredFailed: new Date().toISOString() },
    };
    const pg = runningPg('master');
    const r = await startKeeper(cd, { pg, local: local('db-k1') });
    await until('the checkpoint', () => pg.count('checkpoint') > 0);
    await new Promise((res) => setTimeout(res, 300)); // several passes (sleepInterval 100 ms)
    expect(pg.count('checkpoint')).toBe(1);
    expect(pg.inst.running).toBe(true);
    expect(r.lines.some((l) => l.msg === 'switchover starting: checkpoint done before the shutdown')).toBe(true);
  });

  it('switchover-stop: the primary asked to shut down for a switchover stops cleanly and records the generation', async () => {
    const cd = fast().withPrimary('k1', { generation: 4 }).withStandby('k2').build();
    cd.dbs['db-k1']!.spec.shutdownForSwitchover = true;
    const pg = runningPg('master');
    const r = await startKeeper(cd, { pg, local: local('db-k1', 3) });
    await until('postgres stopped and generation 4 recorded', async () => !pg.inst.running && (await r.dbstate()).generation === 4);
    await new Promise((res) => setTimeout(res, 300));
    expect(pg.count('start')).toBe(0);
  });

  it('refuse: never touches a data directory of another cluster, and says why in its info', async () => {
    const pg = runningPg('master');
    pg.inst.running = false;
    const r = await startKeeper(fast().withPrimary('k0').withStandby('k1', { initMode: 'resync' }).build(), {
      pg,
      local: { uid: 'old', generation: 4, clusterUID: 'another-cluster' },
    });
    const info = await until('the refusal published', async () => {
      const i = await r.info();
      return i?.postgresState?.activity?.startsWith('refusing to touch the data directory') === true ? i : undefined;
    });
    expect(info.postgresState?.activity).toContain('cluster another-cluster');
    expect(pg.calls.filter((c) => c !== 'observe')).toEqual([]);
  });
});

describe('keeper in-process: failures', () => {
  it('a background task that fails is retried with a capped exponential backoff, published meanwhile', async () => {
    const cd = fast().withPrimary('k0').withStandby('k1', { initMode: 'resync' }).build();
    const pg = new FakePostgres();
    pg.fail('baseBackup', new StolonError('PG_COMMAND_FAILED', 'pg_basebackup: password authentication failed for user "repl"'), 3);
    const attempts: number[] = [];
    const orig = pg.baseBackup.bind(pg);
    pg.baseBackup = (s, o) => {
      attempts.push(performance.now());
      return orig(s, o);
    };
    const r = await startKeeper(cd, { pg, taskRetry: { baseMs: 300, maxMs: 600 } });
    const failed = await until('the failure published with its retry', async () => {
      const a = (await r.info())?.postgresState?.activity;
      return a?.includes('failed: pg_basebackup: password authentication failed') === true ? a : undefined;
    });
    expect(failed).toMatch(/^resync of db db-k1 from db db-k0 failed: .*; retrying/);
    await until('the fourth attempt succeeds', () => pg.inst.running, 10_000);
    expect(attempts).toHaveLength(4);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    // 300 ms, 600 ms, then capped at 600 ms (each gap also holds up to one pass period).
    expect(gaps[0]).toBeGreaterThanOrEqual(290);
    expect(gaps[1]).toBeGreaterThanOrEqual(590);
    expect(gaps[2]).toBeGreaterThanOrEqual(590);
    expect(gaps[2]).toBeLessThan(1500);
    expect(r.lines.some((l) => /attempt 2 in 1 s/.test(l.msg) && l.msg.includes('(last attempt: resync of db db-k1 from db db-k0 failed'))).toBe(true);
    expect((await r.info())?.postgresState).not.toHaveProperty('activity');
  });

  it('an action that hangs holds the loop (no second pass, no concurrent call) until it returns, and liveness sees the stuck pass', async () => {
    const pg = runningPg('master');
    pg.inst.running = false;
    const hang = pg.hang('start');
    const r = await startKeeper(fast().withPrimary('k1').build(), { pg, local: local('db-k1') });
    await hang.entered;
    const passes = r.status.snapshot('running').passes;
    await new Promise((res) => setTimeout(res, 500));
    expect(r.status.snapshot('running').passes).toBe(passes);
    const snap = r.status.snapshot('running');
    expect(snap.passInProgressSinceMs).toBeDefined();
    // Far past the limit (two dbWaitReadyTimeouts plus slack), liveness fails.
    const live = keeperLiveness(snap, (snap.passInProgressSinceMs ?? 0) + 10 * 60_000);
    expect(live.ok).toBe(false);
    expect(live.reason).toMatch(/keeper loop stalled: pass \d+ running for/);
    hang.release();
    await until('postgres running', () => pg.inst.running);
    await until('passes again', () => r.status.snapshot('running').passes > passes);
  });

  it('a rejected configuration keeps the previous one and says so; the fixed one is applied and the message goes', async () => {
    const pg = runningPg('master');
    pg.rejectParameters.add('work_mem_typo');
    const cd = fast().withPrimary('k1').build();
    cd.dbs['db-k1']!.spec.pgParameters = { work_mem_typo: '4MB' };
    const r = await startKeeper(cd, { pg, local: local('db-k1') });
    const activity = await until('the rejection published', async () => (await r.info())?.postgresState?.activity);
    expect(activity).toMatch(/^configuration rejected, previous one kept: pgParameters\.work_mem_typo: /);
    expect(pg.inst.running).toBe(true);
    const writes = pg.count('writeConfig');
    await new Promise((res) => setTimeout(res, 300));
    expect(pg.count('writeConfig')).toBe(writes); // the same bad configuration is not retried every pass
    const fixed = parseClusterData(serializeClusterData(cd));
    fixed.dbs['db-k1']!.spec.pgParameters = { work_mem: '4MB' };
    fixed.dbs['db-k1']!.generation = 2;
    await r.put(fixed);
    await until('the fixed configuration applied', () => pg.inst.config?.cfg.parameters['work_mem'] === '4MB');
    expect(pg.count('reload')).toBeGreaterThan(0);
    await until('the message gone', async () => (await r.info())?.postgresState?.activity === undefined);
  });

  it('a start that fails is published at once as startError, and retried by the next passes', async () => {
    const pg = runningPg('master');
    pg.inst.running = false;
    pg.fail('start', new StolonError('PG_COMMAND_FAILED', 'postgres did not start: FATAL: could not map anonymous shared memory'), 2);
    const r = await startKeeper(fast().withPrimary('k1').build(), { pg, local: local('db-k1') });
    const info = await until('startError published', async () => {
      const i = await r.info();
      return i?.postgresState?.startError !== undefined ? i : undefined;
    });
    expect(info.postgresState?.startError).toContain('could not map anonymous shared memory');
    await until('running after the retries', () => pg.inst.running);
    await until('startError gone', async () => (await r.info())?.postgresState?.startError === undefined);
    expect(r.lines.some((l) => l.level === 50 && l.msg.startsWith('pass failed (PG_COMMAND_FAILED), retrying at the next pass'))).toBe(true);
  });
});

describe('keeper in-process: self-fencing', () => {
  it('a restarted primary keeper arms its fencer only once its info is under its own lease (never with no lease, which fences at once)', async () => {
    const updates: Parameters<FenceControl['update']>[0][] = [];
    let retired = 0;
    const fencer: FenceControl = {
      update: (st) => void updates.push(st),
      onFenced: () => undefined,
      retirePrevious: () => void (retired += 1),
      stop: () => Promise.resolve(),
    };
    // The first publish of the new process takes a while (a lease grant on a loaded store):
    // several 250 ms fence updates run meanwhile.
    let first = true;
    const slowFirstPublish = (inner: Store): Store =>
      new Proxy(inner, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (prop === 'setInfo' && typeof v === 'function') {
            return async (...args: unknown[]) => {
              if (first) {
                first = false;
                await new Promise((r) => setTimeout(r, 700));
              }
              return (v as (...a: unknown[]) => Promise<void>).apply(target, args);
            };
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    const pg = runningPg('master');
    await startKeeper(fast().withPrimary('k1').build(), { pg, local: local('db-k1'), fencer, wrapStore: slowFirstPublish });
    await until('the fencer armed', () => updates.some((u) => u.armed));
    expect(updates.filter((u) => u.armed && !(u.leaseRemainingMs > 0))).toEqual([]);
    expect(retired).toBeGreaterThan(0);
  });
  it('a primary keeper whose pass hangs while its lease lives runs out of fence time failInterval after its last publish', async () => {
    const updates: { at: number; st: Parameters<FenceControl['update']>[0] }[] = [];
    const fencer: FenceControl = {
      update: (st) => void updates.push({ at: performance.now(), st }),
      onFenced: () => undefined,
      retirePrevious: () => undefined,
      stop: () => Promise.resolve(),
    };
    const pg = runningPg('master');
    const r = await startKeeper(fast().withPrimary('k1').build(), { pg, local: local('db-k1'), fencer });
    await until('the fencer armed', () => updates.some((u) => u.st.armed));
    // The next pass blocks in its observation (a hung disk): no publish any more, but the store
    // keeps the info lease alive.
    const hang = pg.hang('observe');
    await hang.entered;
    const hungAt = performance.now();
    const out = await until('the fence time run out', () => updates.find((u) => u.at > hungAt && u.st.armed && !(u.st.leaseRemainingMs > 0)));
    // failInterval is 2 s: the last publish was at most one pass (100 ms) before the hang.
    expect(out.at - hungAt).toBeLessThan(2_000 + 500);
    expect(await r.info()).toBeDefined();
    hang.release();
  });
  it('a fenced primary is not restarted until its lease is renewed: a start the fencer would stop at once is never tried, so no startError is published', async () => {
    const updates: Parameters<FenceControl['update']>[0][] = [];
    const fencer: FenceControl = {
      update: (st) => void updates.push(st),
      onFenced: () => undefined,
      retirePrevious: () => undefined,
      stop: () => Promise.resolve(),
    };
    // Just healed after a cut from the store: the store answers again, but the lease keepalive
    // has not been renewed yet, so the lease may expire within the fence margin (TTL 2 s: 1 s).
    let renewed = false;
    const staleLease = (inner: Store): Store =>
      new Proxy(inner, {
        get(target, prop, receiver) {
          const v = Reflect.get(target, prop, receiver) as unknown;
          if (prop === 'infoLeaseRemainingMs' && typeof v === 'function') {
            return (...args: unknown[]) => (renewed ? (v as (...a: unknown[]) => number | undefined).apply(target, args) : 300);
          }
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    const pg = runningPg('master');
    pg.inst.running = false;
    const r = await startKeeper(fast().withPrimary('k1').build(), { pg, local: local('db-k1'), fencer, wrapStore: staleLease });
    await until('the keeper says it waits for the lease', () => r.lines.some((l) => l.msg.includes('waiting for the store lease to be renewed')));
    // Several passes (100 ms each) ran meanwhile.
    await new Promise((res) => setTimeout(res, 500));
    expect(pg.count('start')).toBe(0);
    expect((await r.info())?.postgresState?.startError).toBeUndefined();
    renewed = true;
    await until('the primary restarted once the lease is renewed', () => pg.inst.running);
    expect(pg.count('start')).toBe(1);
  });
  it('a fenced primary is restarted only once a sentinel recorded its new boot id: never on the clusterdata it read before, which still names it primary', async () => {
    let fenced: ((info: { pid: number; at: string }) => void) | undefined;
    const updates: Parameters<FenceControl['update']>[0][] = [];
    const fencer: FenceControl = {
      update: (st) => void updates.push(st),
      onFenced: (l) => void (fenced = l),
      retirePrevious: () => undefined,
      stop: () => Promise.resolve(),
    };
    const pg = runningPg('master');
    const r = await startKeeper(fast().withPrimary('k1').build(), { pg, local: local('db-k1'), fencer });
    await until('the fencer armed', () => updates.some((u) => u.armed));
    // The fencer shut the postmaster down (the store was out of reach for a lease). The store
    // answers again; its clusterdata was written before the fence and still names k1 primary,
    // although a sentinel may already have judged k1 lost on infos read before k1 published again.
    pg.inst.running = false;
    fenced?.({ pid: 4242, at: new Date().toISOString() });
    const info = await until('an info with a new boot id', async () => {
      const i = await r.info();
      return i !== undefined && i.bootUUID !== 'boot-k1' ? i : undefined;
    });
    await until('the keeper waits for the sentinel', () => r.lines.some((l) => l.msg === 'waiting for the sentinel to register this keeper process'));
    // The fencer reports again while that postmaster shuts down: the same fence, the same boot id.
    fenced?.({ pid: 4242, at: new Date().toISOString() });
    // Several passes (100 ms each) ran meanwhile.
    await new Promise((res) => setTimeout(res, 500));
    expect(pg.count('start')).toBe(0);
    expect((await r.info())?.bootUUID).toBe(info.bootUUID);
    // A sentinel pass that read the new info records its boot id, still naming k1 primary.
    const cd = parseClusterData((await r.store.getClusterData())!.text);
    cd.keepers['k1']!.status.bootUUID = info.bootUUID;
    await r.put(cd);
    await until('the primary restarted on that decision', () => pg.inst.running);
    expect(pg.count('start')).toBe(1);
  });
});

describe('keeper in-process: passes the clusterdata watch asks for', () => {
  // A long sleepInterval, so that the timer's passes do not hide the watch's.
  const SLOW: ClusterSpec = { initMode: 'new', sleepInterval: '3s', requestTimeout: '500ms', failInterval: '10s' };

  it('a clusterdata change in reported WAL positions only runs no pass (no observation, no publish); any other change does', async () => {
    const pg = runningPg('master');
    const r = await startKeeper(aCluster({ spec: SLOW }).initialized().withPrimary('k1').build(), { pg, local: local('db-k1') });
    await until('the first pass published', async () => (await r.info()) !== undefined);
    await new Promise((res) => setTimeout(res, 300));
    const observed = pg.count('observe');
    const infoUID = (await r.info())?.infoUID;
    // What the sentinel writes when a keeper reports new WAL: positions and changeTime only.
    for (let i = 1; i <= 5; i++) {
      const cd = parseClusterData((await r.store.getClusterData())!.text);
      cd.dbs['db-k1']!.status.xLogPos += 1000 * i;
      cd.changeTime = new Date().toISOString();
      await r.put(cd);
      await new Promise((res) => setTimeout(res, 60));
    }
    await new Promise((res) => setTimeout(res, 300));
    expect(pg.count('observe')).toBe(observed);
    expect((await r.info())?.infoUID).toBe(infoUID);
    // A change that matters (here a keeper flag in its status) runs a pass at once.
    const cd = parseClusterData((await r.store.getClusterData())!.text);
    cd.keepers['k1']!.status.priority = 5;
    await r.put(cd);
    await until('a pass for the relevant change', () => pg.count('observe') > observed, 1500);
  });

  it('the switchover target publishes the WAL it received as soon as streaming from the old primary ends, without waiting for a pass', async () => {
    const cd = aCluster({ spec: SLOW }).initialized().withPrimary('k0').withStandby('k1').build();
    cd.cluster.status.failover = {
      id: 'sw1',
      kind: 'switchover',
      cause: 'requested with stolonctl switchover',
      oldPrimary: { keeperUID: 'k0', dbUid: 'db-k0', xLogPos: 0 },
      newPrimary: { keeperUID: 'k1', dbUid: 'db-k1', xLogPos: 0 },
      phases: { declaredFailed: new Date().toISOString() },
    };
    cd.dbs['db-k0']!.spec.shutdownForSwitchover = true;
    const pg = runningPg('standby');
    pg.streaming = true;
    const r = await startKeeper(cd, { pg, local: local('db-k1') });
    await until('the watch for the end of streaming', () => pg.count('waitStreamingEnd') > 0);
    await new Promise((res) => setTimeout(res, 300));
    const before = (await r.info())?.infoUID;
    // The old primary's shutdown checkpoint arrives, then its walsender exits.
    pg.inst.xLogPos += 0x100;
    pg.streaming = false;
    const started = Date.now();
    await until('the received WAL published', async () => (await r.info())?.postgresState?.xLogPos === pg.inst.xLogPos, 2000);
    expect(Date.now() - started).toBeLessThan(1500); // sleepInterval is 3 s
    expect((await r.info())?.infoUID).not.toBe(before);
    // Once per switchover: no watch again while the sentinel has not promoted yet.
    await new Promise((res) => setTimeout(res, 300));
    expect(pg.count('waitStreamingEnd')).toBe(1);
  });

  it('a steady-state pass publishes once and observes once: nothing changed, so no second publish and no slot sync', async () => {
    const pg = runningPg('master');
    const calls = { setInfo: 0 };
    await startKeeper(fast().withPrimary('k1').withStandby('k2').build(), { pg, local: local('db-k1'), wrapStore: countingStore(calls) });
    // The first converge creates the standby's slot (a change, reported at once).
    await until('the slot for the standby', () => pg.inst.slots.includes('stolon_db-k2'));
    await new Promise((res) => setTimeout(res, 300));
    const [observed, published, synced] = [pg.count('observe'), calls.setInfo, pg.count('syncSlots')];
    await new Promise((res) => setTimeout(res, 1000));
    const passes = pg.count('observe') - observed;
    expect(passes).toBeGreaterThanOrEqual(5);
    // One observation and one store write per pass (the 100 ms timer), no slot sync.
    expect(calls.setInfo - published).toBe(passes);
    expect(pg.count('syncSlots')).toBe(synced);
    // A slot that went missing is seen in the observation and recreated.
    pg.inst.slots = [];
    await until('the slot recreated', () => pg.inst.slots.includes('stolon_db-k2'));
  });

  it('a pass something else asked for (postgres stopped) runs in full even when the watch asked too', async () => {
    const pg = runningPg('master');
    const r = await startKeeper(aCluster({ spec: SLOW }).initialized().withPrimary('k1').build(), { pg, local: local('db-k1') });
    await until('the first pass published', async () => (await r.info()) !== undefined);
    await new Promise((res) => setTimeout(res, 300));
    // postgres dies; the crash watch asks for a pass, and an LSN-only clusterdata write arrives too.
    pg.inst.running = false;
    const cd = parseClusterData((await r.store.getClusterData())!.text);
    cd.dbs['db-k1']!.status.xLogPos += 1000;
    await r.put(cd);
    await until('restarted by a pass well before the 3 s timer', () => pg.inst.running, 1500);
  });

  it('at rest reads clusterdata once per 5 s, not every pass, and still acts on a change at once', async () => {
    const pg = runningPg('master');
    const calls = { getClusterData: 0, setInfo: 0 };
    const cd = fast().withPrimary('k1').build();
    const r = await startKeeper(cd, { pg, local: local('db-k1'), wrapStore: countingStore(calls) });
    await until('the primary configured', () => pg.count('writeConfig') > 0);
    await new Promise((res) => setTimeout(res, 500));
    const before = { ...calls };
    await new Promise((res) => setTimeout(res, 1500));
    // A pass every 100 ms, each publishing; clusterdata comes from the copy the watch keeps valid.
    expect(calls.setInfo - before.setInfo).toBeGreaterThanOrEqual(8);
    expect(calls.getClusterData - before.getClusterData).toBeLessThanOrEqual(1);
    // A clusterdata write is a watch event: the next pass reads it.
    const next = parseClusterData(serializeClusterData(cd));
    next.dbs['db-k1']!.spec.pgParameters = { work_mem: '4MB' };
    next.dbs['db-k1']!.generation = 2;
    await r.put(next);
    await until('the new configuration applied', () => pg.inst.config?.cfg.parameters['work_mem'] === '4MB', 1000);
  });
});

describe('keeper in-process: password rotation', () => {
  it('a primary applies a password file that changed while it runs, once per change, and never logs it', async () => {
    const pg = runningPg('master');
    const files = { su: 'su-secret', repl: 'repl-secret' };
    const r = await startKeeper(fast().withPrimary('k1').withStandby('k2').build(), { pg, local: local('db-k1'), passwords: () => ({ ...files }) });
    await until('the primary configured', () => pg.count('writeConfig') > 0);
    await new Promise((res) => setTimeout(res, 300));
    expect(pg.count('setRolePassword')).toBe(0);
    files.su = 'su-new';
    files.repl = 'repl-new';
    await until('both roles set', () => pg.inst.rolePasswords['postgres'] === 'su-new' && pg.inst.rolePasswords['repl'] === 'repl-new');
    expect(pg.passwords).toEqual({ su: 'su-new', repl: 'repl-new' });
    await new Promise((res) => setTimeout(res, 300));
    expect(pg.count('setRolePassword')).toBe(2);
    expect(r.lines.some((l) => l.msg === 'password of role postgres rotated: set from its changed password file')).toBe(true);
    const log = JSON.stringify(r.lines);
    expect(log).not.toContain('su-new');
    expect(log).not.toContain('repl-new');
  });

  it('a standby rewrites its replication password at once, applies nothing, and applies the change only if it is promoted', async () => {
    const pg = runningPg('standby');
    const files = { su: 'su-secret', repl: 'repl-secret' };
    const cd = fast().withPrimary('k0').withStandby('k1').build();
    const r = await startKeeper(cd, { pg, local: local('db-k1'), passwords: () => ({ ...files }) });
    const standbyPassword = (): string | undefined => {
      const rec = pg.inst.config?.recovery;
      return rec?.mode === 'standby' ? rec.standby.primary.password : undefined;
    };
    await until('the standby configured', () => standbyPassword() === 'repl-secret');
    files.repl = 'repl-new';
    await until('replication.pgpass rewritten with the new password', () => standbyPassword() === 'repl-new');
    expect(pg.count('setRolePassword')).toBe(0);
    await r.put(fast().withPrimary('k1').withStandby('k0').build());
    await until('promoted, then the changed replication password applied', () => pg.inst.role === 'master' && pg.inst.rolePasswords['repl'] === 'repl-new');
    // The superuser file never changed while this keeper ran: its password is left alone.
    expect(pg.inst.rolePasswords['postgres']).toBeUndefined();
  });

  it('a keeper whose file is stale applies nothing when it becomes primary, and keeps its passwords when a file cannot be read', async () => {
    const pg = runningPg('standby');
    let broken = false;
    const r = await startKeeper(fast().withPrimary('k1').withStandby('k2').build(), {
      pg,
      local: local('db-k1'),
      passwords: () => {
        if (broken) {
          throw new StolonError('CONFIG_INVALID', '--pg-su-password-file: /x is empty; put the password in it');
        }
        return { su: 'su-secret', repl: 'repl-secret' };
      },
    });
    await until('the promotion', () => pg.inst.role === 'master' && pg.count('writeConfig') > 0);
    broken = true;
    await until('the read error logged', () => r.lines.some((l) => l.msg.startsWith('cannot read the password files')));
    await new Promise((res) => setTimeout(res, 300));
    expect(r.lines.filter((l) => l.msg.startsWith('cannot read the password files'))).toHaveLength(1);
    expect(pg.count('setRolePassword')).toBe(0);
    expect(pg.passwords).toBeUndefined();
  });
});

describe('keeper in-process: the role endpoints follow the passes', () => {
  it('/primary answers 200 on the converged primary the proxies route to, and 503 once the sentinel fences the proxies', async () => {
    const r = await startKeeper(fast().withPrimary('k1').routedTo('k1', ['p1']).build(), { pg: runningPg('master'), local: local('db-k1') });
    const checks = keeperChecks(r.status, r.keeper.state, 'k1');
    const primary = (): { ok: boolean; reason: string } => checks.more!['/primary']!(new URLSearchParams());
    await until('/primary answering 200', () => primary().ok);
    expect(primary().reason).toBe('primary db db-k1');
    expect(checks.more!['/replica']!(new URLSearchParams()).ok).toBe(false);
    expect(checks.more!['/health']!(new URLSearchParams()).ok).toBe(true);
    await r.put(fast().withPrimary('k1').fenced(3).build());
    await until('/primary answering 503 once the proxies are fenced', () => !primary().ok);
    expect(primary().reason).toMatch(/proxies are fenced/);
  });
});

describe('the fake PostgreSQL', () => {
  it('fails a call made out of order and records it, so the keeper tests above would fail', async () => {
    const pg = new FakePostgres();
    await expect(pg.promote()).rejects.toThrow('fake postgres driven out of order: promote: not running');
    await expect(pg.start()).rejects.toThrow('start: not initialised');
    await pg.init();
    await expect(pg.init()).rejects.toThrow('init: PGDATA is not empty');
    expect(pg.violations).toEqual(['promote: not running', 'start: not initialised', 'init: PGDATA is not empty']);
    pg.violations.length = 0;
  });

  it('records two mutating calls at once', async () => {
    const pg = runningPg('master');
    const hang = pg.hang('reload');
    const first = pg.reload();
    await hang.entered;
    await expect(pg.syncSlots([])).rejects.toThrow('syncSlots called while reload is still running');
    hang.release();
    await first;
    expect(pg.violations).toEqual(['syncSlots called while reload is still running']);
    pg.violations.length = 0;
  });
});

describe('keeper --allow-spec-commands: command-bearing settings from the spec', () => {
  const COMMANDS = {
    archive_command: 'cp %p /archive/%f',
    ARCHIVE_CLEANUP_COMMAND: 'pg_archivecleanup /archive %r',
    recovery_end_command: 'touch /tmp/x',
    ssl_passphrase_command: 'echo secret',
  };

  it('by default a primary does not apply archive_command and the other command parameters: logged once, published, the rest applied', async () => {
    const pg = runningPg('master');
    const cd = fast().withPrimary('k1').build();
    cd.dbs['db-k1']!.spec.pgParameters = { ...COMMANDS, archive_mode: 'on', work_mem: '8MB' };
    const r = await startKeeper(cd, { pg, local: local('db-k1') });
    await until('the configuration applied', () => pg.inst.config?.cfg.parameters['work_mem'] === '8MB');
    const params = pg.inst.config?.cfg.parameters ?? {};
    expect(params).toEqual({ archive_mode: 'on', work_mem: '8MB' });
    const info = await until('the refusal published', async () => (await r.info())?.postgresState?.refusedSpecCommands);
    expect(info).toEqual(['archive_command', 'archive_cleanup_command', 'recovery_end_command', 'ssl_passphrase_command']);
    await new Promise((res) => setTimeout(res, 300));
    const said = r.lines.filter((l) => l.msg.includes('--allow-spec-commands'));
    expect(said).toHaveLength(1);
    expect(said[0]!.level).toBe(50);
    expect(said[0]!.msg).toBe(
      'keeper k1 refuses archive_command, archive_cleanup_command, recovery_end_command, ssl_passphrase_command from the cluster spec ' +
        '(commands run as the postgres user; not applied): allow them with --allow-spec-commands ' +
        'archive_command,archive_cleanup_command,recovery_end_command,ssl_passphrase_command on the keeper if the spec is trusted',
    );
  });

  it('applies exactly the ones the operator allowed', async () => {
    const pg = runningPg('master');
    const cd = fast().withPrimary('k1').build();
    cd.dbs['db-k1']!.spec.pgParameters = { ...COMMANDS, work_mem: '8MB' };
    const r = await startKeeper(cd, { pg, local: local('db-k1'), allowSpecCommands: new Set(['archive_command']) });
    await until('the configuration applied', () => pg.inst.config?.cfg.parameters['work_mem'] === '8MB');
    expect(pg.inst.config?.cfg.parameters).toEqual({ archive_command: 'cp %p /archive/%f', work_mem: '8MB' });
    expect(await until('published', async () => (await r.info())?.postgresState?.refusedSpecCommands)).toEqual([
      'archive_cleanup_command',
      'recovery_end_command',
      'ssl_passphrase_command',
    ]);
  });

  it('with all allowed, applies them all and publishes no refusal', async () => {
    const pg = runningPg('master');
    const cd = fast().withPrimary('k1').build();
    cd.dbs['db-k1']!.spec.pgParameters = { archive_command: 'cp %p /archive/%f' };
    const r = await startKeeper(cd, { pg, local: local('db-k1'), allowSpecCommands: new Set(SPEC_COMMANDS) });
    await until('archive_command applied', () => pg.inst.config?.cfg.parameters['archive_command'] === 'cp %p /archive/%f');
    const info = await until('the keeper info', () => r.info());
    expect(info.postgresState?.refusedSpecCommands).toBeUndefined();
  });

  it("a standby-cluster primary's restoreCommand is not written by default", async () => {
    const pg = runningPg('standby');
    const cd = fast().withPrimary('k1').build();
    cd.dbs['db-k1']!.spec.role = 'standby';
    cd.dbs['db-k1']!.spec.followConfig = {
      type: 'external',
      standbySettings: { primaryConninfo: 'host=10.0.0.9 port=5432' },
      archiveRecoverySettings: { restoreCommand: 'cp /archive/%f %p' },
    };
    const r = await startKeeper(cd, { pg, local: local('db-k1') });
    await until('the external standby configuration', () => pg.inst.config?.recovery?.mode === 'standby-external');
    expect(pg.inst.config?.recovery).not.toHaveProperty('restoreCommand');
    expect(await until('published', async () => (await r.info())?.postgresState?.refusedSpecCommands)).toEqual(['restore_command']);
  });

  it('init-pitr with a dataRestoreCommand the operator did not allow: nothing is run or wiped, and the keeper says why', async () => {
    const spec: ClusterSpec = { ...FAST, initMode: 'pitr', pitrConfig: { dataRestoreCommand: 'cp -a /backup/. %d' } };
    const pg = new FakePostgres();
    const r = await startKeeper(newDb(aCluster({ spec }).initialized().withPrimary('k1', { initMode: 'pitr' }).build(), 'db-k1'), { pg });
    const activity = await until('the refusal published', async () => (await r.info())?.postgresState?.activity);
    expect(activity).toMatch(/pitrConfig\.dataRestoreCommand.*--allow-spec-commands data_restore_command/);
    expect(pg.count('restoreData')).toBe(0);
    expect(pg.count('stop')).toBe(0);
  });
});

/** A fake whose `pgbackrest info` lists two backups of stanza `src`, and that records the restore it runs. */
class BackupRepoPg extends FakePostgres {
  readonly tools: string[][] = [];
  restored: string | DataRestoreProgram | undefined;
  infoCode = 0;

  override runTool(file = '', args: readonly string[] = []): Promise<ToolResult> {
    this.tools.push([file, ...args]);
    if (!args.includes('info')) {
      return super.runTool();
    }
    const backups = [
      { label: '20261206-220000F', type: 'full', timestamp: { start: 1796594395, stop: 1796594400 }, lsn: { start: '0/2000028', stop: '0/2000100' } },
      { label: '20261206-221000F', type: 'full', timestamp: { start: 1796594995, stop: 1796595000 }, lsn: { start: '0/5000028', stop: '0/5000100' } },
    ];
    return Promise.resolve(
      this.infoCode === 0
        ? { code: 0, stdout: JSON.stringify([{ name: 'src', backup: backups, status: { code: 0, message: 'ok' } }]), stderr: '' }
        : { code: this.infoCode, stdout: '', stderr: 'ERROR: [041]: unable to open file: Permission denied' },
    );
  }

  override restoreData(source?: string | DataRestoreProgram): Promise<void> {
    this.restored = source;
    return super.restoreData();
  }

  /** The recovery settings of every writeConfig, in order. */
  readonly recoveries: (RecoveryConfig | null)[] = [];

  override writeConfig(cfg: PgConfig, recovery: RecoveryConfig | null): Promise<WriteConfigResult> {
    this.recoveries.push(recovery);
    return super.writeConfig(cfg, recovery);
  }
}

const PGBACKREST_LOCAL = { clusterName: 'c', configFile: '/data/pgbackrest.conf', dir: '/data/pgbackrest', pgData: '/data/postgres', socketDir: '/data/run' };

/** A cluster restoring from stanza `src` of the repository `/repo` to `target`. */
function fromBackupCluster(recoveryTargetSettings?: RecoveryTargetSettings): ClusterData {
  const spec: ClusterSpec = {
    ...FAST,
    initMode: 'pitr',
    backup: { repository: { path: '/repo' } },
    pitrConfig: { fromBackup: { stanza: 'src' }, ...(recoveryTargetSettings !== undefined ? { recoveryTargetSettings } : {}) },
  };
  return newDb(aCluster({ spec }).initialized().withPrimary('k1', { initMode: 'pitr' }).build(), 'db-k1');
}

describe('keeper in-process: restore from the backup repository (pitrConfig.fromBackup)', () => {
  it('chooses the backup before the target, restores the files with pgbackrest, recovers with archive-get of the source stanza', async () => {
    const pg = new BackupRepoPg();
    const r = await startKeeper(fromBackupCluster({ recoveryTargetTime: '2026-12-06 22:05:00+00' }), {
      pg,
      allowSpecCommands: new Set(['backup']),
      pgbackrest: PGBACKREST_LOCAL,
    });
    await until('the restored primary at generation 1', async () => (await r.info())?.postgresState?.generation === 1 && pg.inst.running);
    const info = pg.tools.find((t) => t.includes('info'));
    expect(info).toEqual(expect.arrayContaining(['pgbackrest', '--stanza=src', '--repo1-path=/repo', '--output=json']));
    const restored = pg.restored as DataRestoreProgram;
    expect(restored.program).toBe('pgbackrest');
    expect(restored.args).toEqual(expect.arrayContaining(['--stanza=src', '--pg1-path=/data/postgres', 'restore', '--set=20261206-220000F', '--type=none']));
    // The recovery settings are the keeper's: archive-get from the source stanza, the target, promote.
    const recoveryWrite = pg.calls.indexOf('restoreData');
    expect(pg.calls.slice(recoveryWrite, recoveryWrite + 4)).toEqual(['restoreData', 'writeConfig', 'start', 'waitRecoveryDone']);
    expect(r.lines.some((l) => /restoring backup 20261206-220000F, the newest that ended before recoveryTargetTime 2026-12-06 22:05:00\+00/.test(l.msg))).toBe(true);
    const recovery = pg.recoveries[0];
    expect(recovery).toMatchObject({ mode: 'recovery', target: { recoveryTargetTime: '2026-12-06 22:05:00+00' } });
    expect(recovery?.mode === 'recovery' ? recovery.restoreCommand : '').toMatch(/^pgbackrest --config=\/data\/pgbackrest\.conf --stanza=src .*archive-get %f "%p"$/);
    expect(pg.inst.config?.recovery).toBeNull();
  });

  it('without --allow-spec-commands backup: nothing is run or wiped, and the keeper names pitrConfig.fromBackup', async () => {
    const pg = new BackupRepoPg();
    const r = await startKeeper(fromBackupCluster(), { pg, pgbackrest: PGBACKREST_LOCAL });
    const activity = await until('the refusal published', async () => (await r.info())?.postgresState?.activity);
    expect(activity).toMatch(/pitrConfig\.fromBackup: keeper k1 refuses backup .*--allow-spec-commands backup/);
    expect(pg.count('restoreData')).toBe(0);
    expect(pg.count('stop')).toBe(0);
  });

  it('a target before every backup, or an unreadable repository: refused before the data directory is touched', async () => {
    const pg = new BackupRepoPg();
    const r = await startKeeper(fromBackupCluster({ recoveryTargetTime: '2026-12-06 21:00:00+00' }), {
      pg,
      allowSpecCommands: new Set(['backup']),
      pgbackrest: PGBACKREST_LOCAL,
    });
    const activity = await until('the refusal published', async () => (await r.info())?.postgresState?.activity);
    expect(activity).toMatch(/pitrConfig\.recoveryTargetSettings: no backup of stanza src ends before recoveryTargetTime 2026-12-06 21:00:00\+00/);
    expect(pg.count('restoreData')).toBe(0);
    expect(pg.count('stop')).toBe(0);

    const pg2 = new BackupRepoPg();
    pg2.infoCode = 41;
    const r2 = await startKeeper(fromBackupCluster(), { uid: 'k1', pg: pg2, allowSpecCommands: new Set(['backup']), pgbackrest: PGBACKREST_LOCAL });
    const activity2 = await until('the refusal published', async () => (await r2.info())?.postgresState?.activity);
    expect(activity2).toMatch(/pitrConfig\.fromBackup: cannot read stanza src in the backup repository \/repo \(pgbackrest info exited with 41\): ERROR: \[041\]/);
    expect(pg2.count('restoreData')).toBe(0);
  });

  it('a recovery that fails removes the data directory and names pitrConfig.recoveryTargetSettings', async () => {
    const pg = new BackupRepoPg();
    pg.fail('waitRecoveryDone', new StolonError('PG_COMMAND_FAILED', 'postgres exited during archive recovery: FATAL: recovery ended before configured recovery target was reached'));
    const r = await startKeeper(fromBackupCluster({ recoveryTargetXid: '999999' }), {
      pg,
      allowSpecCommands: new Set(['backup']),
      pgbackrest: PGBACKREST_LOCAL,
      taskRetry: { baseMs: 60_000, maxMs: 60_000 },
    });
    const activity = await until('the failure published', async () => {
      const a = (await r.info())?.postgresState?.activity;
      return a?.includes('recovery ended') === true ? a : undefined;
    });
    expect(activity).toMatch(/pitrConfig\.recoveryTargetSettings: recovery to recoveryTargetXid 999999 after the pgbackrest restore of backup 20261206-221000F from stanza src failed; the data directory was removed/);
    const failedAt = pg.calls.lastIndexOf('waitRecoveryDone');
    expect(pg.calls.slice(failedAt)).toEqual(expect.arrayContaining(['stop', 'removeData']));
    expect((await r.dbstate()).uid).toBe('');
  });
});
