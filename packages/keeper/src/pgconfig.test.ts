/** Table tests of the keeper's pure configuration derivations. */
import { describe, expect, it } from 'vitest';
import { StolonError, type ClusterSpec } from '@stolon-ts/cluster';
import { aCluster, STANDBY_SPEC, EXTERNAL_CONNINFO } from '@stolon-ts/cluster/testing';
import {
  configKey,
  discardedRange,
  pgConfigFor,
  pitrRecovery,
  postgresStateFor,
  recoveryFor,
  slotsFor,
  slotsWantedIn,
  syncStandbyUids,
  type KeeperIdentity,
} from './pgconfig.js';
import { SPEC_COMMANDS } from './spec-commands.js';

/** A keeper whose operator allowed every command-bearing setting (`--allow-spec-commands all`). */
const ID: KeeperIdentity = {
  pgAdvertiseAddress: '10.0.0.5',
  pgPort: 5433,
  suUsername: 'postgres',
  replUsername: 'repl',
  replPassword: 'repl-secret',
  uid: 'k5',
  allowSpecCommands: new Set(SPEC_COMMANDS),
};
/** The same keeper with the flag's default (none allowed). */
const STRICT: KeeperIdentity = { ...ID, allowSpecCommands: new Set() };
const FOLLOW = { dbUid: 'db-k0', host: '10.0.0.1', port: 5432, systemId: '1' };

describe('slotsFor', () => {
  const cd = aCluster().initialized().withPrimary('k0').withStandby('k1').withStandby('k2').withStandby('k3', { follows: 'k1' }).build();
  cd.dbs['db-k0']!.spec.additionalReplicationSlots = ['backup'];
  const cases: { title: string; db: string; role: 'master' | 'standby'; follow?: typeof FOLLOW; want: string[] | undefined }[] = [
    { title: 'primary: one per follower plus the additional ones', db: 'db-k0', role: 'master', want: ['stolon_db-k1', 'stolon_db-k2', 'stolon_backup'] },
    { title: 'standby: one per sibling standby of the same primary, not itself nor a cascaded one', db: 'db-k1', role: 'standby', follow: FOLLOW, want: ['stolon_db-k2'] },
    { title: 'standby with nothing to follow: slots untouched', db: 'db-k1', role: 'standby', want: undefined },
  ];
  for (const c of cases) {
    it(c.title, () => {
      expect(slotsFor(cd, cd.dbs[c.db]!, c.role, c.follow, undefined)).toEqual(c.want);
    });
  }
  it("a standby cluster's primary keeps its followers' slots", () => {
    const sc = aCluster({ spec: STANDBY_SPEC }).initialized().withPrimary('k0').withStandby('k1').build();
    expect(slotsFor(sc, sc.dbs['db-k0']!, 'standby', undefined, { standbySettings: {}, archiveRecoverySettings: undefined })).toEqual(['stolon_db-k1']);
  });
});

describe('slotsWantedIn: the slots a DB keeps by its own spec in a clusterdata (a fresh read)', () => {
  const cd = aCluster().initialized().withPrimary('k0').withStandby('k1').withStandby('k2').withStandby('k3', { follows: 'k1' }).build();
  cd.dbs['db-k0']!.spec.additionalReplicationSlots = ['backup'];
  it('the same as slotsFor for the role and the followed DB the clusterdata gives', () => {
    expect([...slotsWantedIn(cd, 'db-k0')].sort()).toEqual(slotsFor(cd, cd.dbs['db-k0']!, 'master', undefined, undefined)?.sort());
    expect([...slotsWantedIn(cd, 'db-k1')]).toEqual(slotsFor(cd, cd.dbs['db-k1']!, 'standby', FOLLOW, undefined));
    const sc = aCluster({ spec: STANDBY_SPEC }).initialized().withPrimary('k0').withStandby('k1').build();
    expect([...slotsWantedIn(sc, 'db-k0')]).toEqual(['stolon_db-k1']);
  });
  it('none for a DB the clusterdata does not have', () => {
    expect(slotsWantedIn(cd, 'db-gone').size).toBe(0);
  });
});

describe('recovery settings', () => {
  it('an internal standby follows its primary through its own slot, as application stolon_<uid>', () => {
    expect(recoveryFor(ID, 'db-k1', FOLLOW, undefined)).toEqual({
      mode: 'standby',
      standby: { primary: { host: '10.0.0.1', port: 5432, user: 'repl', password: 'repl-secret' }, applicationName: 'stolon_db-k1', slotName: 'stolon_db-k1' },
    });
  });
  it("a standby cluster's primary follows the external primary, with the archive's restore_command", () => {
    const external = { standbySettings: { primaryConninfo: EXTERNAL_CONNINFO, primarySlotName: 'sc' }, archiveRecoverySettings: { restoreCommand: 'cp /a/%f %p' } };
    expect(recoveryFor(ID, 'db-k0', undefined, external)).toEqual({ mode: 'standby-external', primaryConninfo: EXTERNAL_CONNINFO, primarySlotName: 'sc', restoreCommand: 'cp /a/%f %p' });
  });
  it('a primary has none', () => {
    expect(recoveryFor(ID, 'db-k0', undefined, undefined)).toBeNull();
  });

  const pitr = (spec: NonNullable<ClusterSpec['pitrConfig']>) => {
    const cd = aCluster({ spec: { initMode: 'pitr', pitrConfig: spec } }).initialized().withPrimary('k0', { initMode: 'pitr' }).build();
    return cd.dbs['db-k0']!;
  };
  it('pitr with an archive: archive recovery to the target', () => {
    const target = { recoveryTargetTime: '2026-01-01 12:00:00+00' };
    expect(pitrRecovery(ID, pitr({ dataRestoreCommand: 'x', archiveRecoverySettings: { restoreCommand: 'cp %f %p' }, recoveryTargetSettings: target }), undefined)).toEqual({
      mode: 'recovery',
      restoreCommand: 'cp %f %p',
      target,
    });
  });
  it('pitr without an archive: a plain start (crash recovery replays the copied WAL)', () => {
    expect(pitrRecovery(ID, pitr({ dataRestoreCommand: 'x' }), undefined)).toBeNull();
  });
  it('pitr with a target but no archive: CONFIG_INVALID naming the field, before anything is touched', () => {
    const err = (() => {
      try {
        pitrRecovery(ID, pitr({ dataRestoreCommand: 'x', recoveryTargetSettings: { recoveryTargetName: 'before-upgrade' } }), undefined);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(StolonError);
    expect((err as StolonError).field).toBe('pitrConfig.recoveryTargetSettings');
  });
});

describe('command-bearing settings without --allow-spec-commands (the default: none)', () => {
  it('pgConfigFor leaves the command parameters out, whatever their case, and keeps the rest', () => {
    const cd = aCluster().initialized().withPrimary('k0').build();
    const db = cd.dbs['db-k0']!;
    db.spec.pgParameters = { Archive_Command: 'cp %p /a/%f', archive_cleanup_command: 'x', recovery_end_command: 'y', ssl_passphrase_command: 'z', archive_mode: 'on', work_mem: '8MB' };
    expect(pgConfigFor(STRICT, cd, db, true).parameters).toEqual({ archive_mode: 'on', work_mem: '8MB' });
    expect(pgConfigFor({ ...STRICT, allowSpecCommands: new Set(['archive_command']) }, cd, db, true).parameters).toEqual({ Archive_Command: 'cp %p /a/%f', archive_mode: 'on', work_mem: '8MB' });
    expect(pgConfigFor(ID, cd, db, true).parameters).toEqual(db.spec.pgParameters);
  });
  it("a standby cluster's primary follows without the restore_command", () => {
    const external = { standbySettings: { primaryConninfo: EXTERNAL_CONNINFO }, archiveRecoverySettings: { restoreCommand: 'cp /a/%f %p' } };
    expect(recoveryFor(STRICT, 'db-k0', undefined, external)).toEqual({ mode: 'standby-external', primaryConninfo: EXTERNAL_CONNINFO });
  });
  it('a point-in-time restore is refused as a whole, naming the flag, before anything is touched', () => {
    const cd = aCluster({ spec: { initMode: 'pitr', pitrConfig: { dataRestoreCommand: 'cp -a /b/. %d', archiveRecoverySettings: { restoreCommand: 'cp %f %p' } } } })
      .initialized()
      .withPrimary('k0', { initMode: 'pitr' })
      .build();
    const db = cd.dbs['db-k0']!;
    expect(() => pitrRecovery(STRICT, db, undefined)).toThrow(
      'pitrConfig.dataRestoreCommand: keeper k5 refuses restore_command, data_restore_command from the cluster spec (commands run as the postgres user; not applied): ' +
        'allow them with --allow-spec-commands restore_command,data_restore_command on the keeper if the spec is trusted',
    );
    expect(() => pitrRecovery({ ...STRICT, allowSpecCommands: new Set(['data_restore_command']) }, db, undefined)).toThrow(/^pitrConfig\.archiveRecoverySettings\.restoreCommand: .*--allow-spec-commands restore_command /);
  });
});

describe('pgConfigFor and configKey', () => {
  const cd = aCluster().initialized().withPrimary('k0').withStandby('k1').withStandby('k2').withStandby('k3').build();
  cd.dbs['db-k1']!.status.listenAddress = '10.0.0.7';
  cd.dbs['db-k2']!.status.listenAddress = '10.0.0.6';
  cd.dbs['db-k3']!.status.listenAddress = '10.0.0.7';
  it('strict access: lets the other DBs in from their addresses, once each, sorted (not its own)', () => {
    const db = cd.dbs['db-k0']!;
    db.spec.suReplAccessMode = 'strict';
    db.status.listenAddress = '10.0.0.5';
    const cfg = pgConfigFor(ID, cd, db, true);
    expect(cfg).toMatchObject({ listenAddress: '10.0.0.5', port: 5433 });
    expect(cfg.hba.filter((l) => l.startsWith('host replication'))).toEqual([
      'host replication repl 10.0.0.6/32 scram-sha-256',
      'host replication repl 10.0.0.7/32 scram-sha-256',
      'host replication postgres all reject',
      'host replication repl all reject',
    ]);
  });
  it('keepers access (the default): every keeper, itself included, on a standby too; the su CIDRs; the rest rejected', () => {
    const db = cd.dbs['db-k1']!;
    db.spec.suReplAccessMode = 'keepers';
    db.spec.suAllowedCIDRs = ['10.9.0.0/16'];
    const hba = pgConfigFor(ID, cd, db, false).hba;
    expect(hba.filter((l) => l.startsWith('host replication'))).toEqual([
      'host replication repl 10.0.0.5/32 scram-sha-256',
      'host replication repl 10.0.0.6/32 scram-sha-256',
      'host replication repl 10.0.0.7/32 scram-sha-256',
      'host replication postgres all reject',
      'host replication repl all reject',
    ]);
    expect(hba).toContain('host all postgres 10.9.0.0/16 scram-sha-256');
    expect(hba.indexOf('host all postgres all reject')).toBeLessThan(hba.indexOf('host all all 0.0.0.0/0 scram-sha-256'));
  });
  it('a DB spec without an access mode gets the default (keepers), not Stolon\'s open one', () => {
    const db = cd.dbs['db-k2']!;
    delete db.spec.suReplAccessMode;
    expect(pgConfigFor(ID, cd, db, false).hba).not.toContain('host all postgres 0.0.0.0/0 scram-sha-256');
  });
  it('the key changes with the configuration but never holds the replication password', () => {
    const cfg = pgConfigFor(ID, cd, cd.dbs['db-k1']!, false);
    const a = configKey(cfg, recoveryFor(ID, 'db-k1', FOLLOW, undefined));
    const b = configKey(cfg, recoveryFor(ID, 'db-k1', { ...FOLLOW, port: 6000 }, undefined));
    expect(a).not.toBe(b);
    expect(a).not.toContain('repl-secret');
    expect(configKey(cfg, recoveryFor({ ...ID, replPassword: 'other' }, 'db-k1', FOLLOW, undefined))).toBe(a);
  });
});

describe('discardedRange', () => {
  const cd = aCluster().initialized().withPrimary('k0').withStandby('k1').build();
  cd.dbs['db-k0']!.status.timelinesHistory = [{ timelineID: 1, switchPoint: 1000, reason: '' }];
  const db = cd.dbs['db-k1']!;
  const cases: { title: string; before: { timelineId: number; xLogPos: number }; divergedAt?: number; localEnd?: number; want: [number, number] | undefined }[] = [
    { title: 'past the fork on the old timeline: lost', before: { timelineId: 1, xLogPos: 1500 }, want: [1000, 1500] },
    { title: 'at the fork: nothing lost', before: { timelineId: 1, xLogPos: 1000 }, want: undefined },
    { title: "a timeline the primary's history does not name: unknown, nothing reported", before: { timelineId: 7, xLogPos: 9000 }, want: undefined },
    { title: "pg_rewind's own figures win", before: { timelineId: 1, xLogPos: 1500 }, divergedAt: 1200, localEnd: 1800, want: [1200, 1800] },
  ];
  for (const c of cases) {
    it(c.title, () => {
      const r = discardedRange(cd, db, c.before, 'pg_rewind', 'T', c.divergedAt, c.localEnd);
      expect(r === undefined ? undefined : [r.fromLsn, r.toLsn]).toEqual(c.want);
    });
  }
});

describe('what the keeper reports', () => {
  it('counts only stolon standbys reported sync', () => {
    expect(
      syncStandbyUids({
        replication: [
          { applicationName: 'stolon_db-k1', syncState: 'sync' },
          { applicationName: 'stolon_db-k2', syncState: 'async' },
          { applicationName: 'pg_receivewal', syncState: 'sync' },
        ],
      }),
    ).toEqual(['db-k1']);
  });
  it('reports startError only while postgres is down', () => {
    const obs = { initialized: true, running: true, role: 'master' as const, systemId: '1', timelineId: 2, xLogPos: 5, replication: [], slots: [], olderWalFile: '', pendingRestart: [], timelinesHistory: [] };
    const inp = { id: ID, local: { uid: 'db-k0', generation: 3 }, healthy: true, activity: undefined, startError: 'boom' };
    expect(postgresStateFor(inp, obs)).not.toHaveProperty('startError');
    expect(postgresStateFor(inp, { ...obs, running: false })).toMatchObject({ startError: 'boom', running: false, generation: 3, port: '5433' });
  });
  it('reports whether a stopped postgres was shut down cleanly (pg_controldata), so a switchover never takes a crash for its clean shutdown', () => {
    const obs = { initialized: true, running: true, role: 'master' as const, systemId: '1', timelineId: 2, xLogPos: 5, replication: [], slots: [], olderWalFile: '', pendingRestart: [], timelinesHistory: [] };
    const inp = { id: ID, local: { uid: 'db-k0', generation: 3 }, healthy: true, activity: undefined, startError: undefined };
    expect(postgresStateFor(inp, obs)).not.toHaveProperty('cleanShutdown');
    expect(postgresStateFor(inp, { ...obs, running: false, clusterState: 'shut down' })).toMatchObject({ cleanShutdown: true });
    expect(postgresStateFor(inp, { ...obs, running: false, clusterState: 'in production' })).toMatchObject({ cleanShutdown: false });
  });
});
