/**
 * Keeper in depth on real etcd and PostgreSQL: configuration from the spec (reload,
 * a rejected value, pending restart and automaticPgRestart), extra replication slots, an old
 * primary with diverged writes rejoining through pg_rewind (the discarded WAL range reported),
 * PITR from a backup the test makes, a standby cluster promoted with `stolonctl promote`, and a
 * keeper refusing a data directory that belongs to another cluster.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { childPids, e2eCluster, type LocalCluster, query, waitFor } from '@stolon-ts/harness';
import { resolvePgBinDir } from '@stolon-ts/postgres';

interface KeeperStatus {
  uid: string;
  healthy: boolean;
  role?: string;
  pendingRestart?: string[];
  discardedWal?: { fromLsn: number; toLsn: number; method: string };
}
interface StatusJson {
  cluster: { phase: string };
  keepers: KeeperStatus[];
}

const PG_BIN = resolvePgBinDir();
/** The main cluster; the tests start others (pitr, standby) on its etcd with `e2e.startCluster`. */
const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-keeper-e2e-',
  subdir: 'main',
  clusterName: 'main',
  keepers: 3,
  spec: { initMode: 'new', usePgrewind: true, pgParameters: { work_mem: '5MB' } },
  logLevel: 'debug',
  logTailLines: 150,
  stopTimeoutMs: 180_000,
});

function direct(c: LocalCluster, i: number): pg.ClientConfig {
  return c.directClientConfig(i);
}

async function primaryIndex(c: LocalCluster): Promise<number> {
  return waitFor(
    async () => {
      for (let i = 0; i < c.keepers.length; i++) {
        try {
          const r = await query<{ r: boolean }>(direct(c, i), 'select pg_is_in_recovery() as r');
          if (r[0]?.r === false) {
            return i;
          }
        } catch {
          /* down */
        }
      }
      return undefined;
    },
    { timeoutMs: 30_000, what: 'a primary keeper' },
  );
}

async function status(c: LocalCluster): Promise<StatusJson> {
  const r = await c.stolonctl(['status', '--format', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

async function patch(c: LocalCluster, json: unknown): Promise<void> {
  const r = await c.stolonctl(['update', '--patch', JSON.stringify(json)]);
  expect(r.code, r.stderr).toBe(0);
}

async function show(c: LocalCluster, name: string): Promise<string> {
  const r = await query<Record<string, string>>(c.proxyClientConfig(0), `show ${name}`);
  return r[0]?.[name] ?? '';
}

/** Runs a command as the postgres OS user when root (PostgreSQL tools refuse root), else as is. */
function asPg(cmd: string, args: string[], env: Record<string, string> = {}): string {
  const root = process.getuid?.() === 0;
  return execFileSync(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
}

/** A restored copy keeps the source cluster's roles, so the new cluster must use the same passwords. */
function samePasswords(from: LocalCluster, toDir: string): void {
  mkdirSync(toDir, { recursive: true, mode: 0o755 });
  copyFileSync(from.suPasswordFile, join(toDir, 'su-password'));
  copyFileSync(from.replPasswordFile, join(toDir, 'repl-password'));
}

/** GET on a keeper's status endpoint: the HTTP code and the parsed one-line JSON body. */
async function probe(c: LocalCluster, i: number, path: '/healthz' | '/readyz'): Promise<{ code: number; reason: string }> {
  const res = await fetch(`http://127.0.0.1:${c.keepers[i]!.statusPort}${path}`);
  return { code: res.status, reason: ((await res.json()) as { reason: string }).reason };
}

describe('keeper in depth', () => {
  it('serves /healthz and /readyz: every keeper ready once converged, the primary and the standbys named', async () => {
    const c = e2e.cluster;
    const p = await primaryIndex(c);
    await waitFor(
      async () => {
        const all = await Promise.all(c.keepers.map((_, i) => probe(c, i, '/readyz')));
        return all.every((r) => r.code === 200) ? all : undefined;
      },
      { timeoutMs: 60_000, what: 'every keeper ready on /readyz' },
    );
    for (let i = 0; i < c.keepers.length; i++) {
      expect(await probe(c, i, '/healthz')).toMatchObject({ code: 200, reason: expect.stringMatching(/^keeper loop alive/) as unknown });
      expect((await probe(c, i, '/readyz')).reason).toMatch(i === p ? /^primary db \w+ running at generation \d+$/ : /^standby db \w+ running at generation \d+$/);
    }
  });

  it('applies pgParameters by reload, keeps the last good config on a bad value, reports and applies restart-only changes', async () => {
    const c = e2e.cluster;
    expect(await show(c, 'work_mem')).toBe('5MB');
    await patch(c, { pgParameters: { work_mem: '7MB' } });
    await waitFor(async () => ((await show(c, 'work_mem')) === '7MB' ? true : undefined), { timeoutMs: 20_000, what: 'work_mem 7MB after reload' });

    // A value PostgreSQL rejects: the previous configuration stays and the instance stays up.
    await patch(c, { pgParameters: { work_mem: 'lots' } });
    await waitFor(() => (/configuration rejected, previous one kept: .*work_mem/.test(c.logs()) ? true : undefined), {
      timeoutMs: 20_000,
      what: 'the keeper to reject work_mem=lots',
    });
    expect(await show(c, 'work_mem')).toBe('7MB');
    await patch(c, { pgParameters: { work_mem: '7MB' } });

    // A parameter that needs a restart: reported as pending, applied once automaticPgRestart is on.
    await patch(c, { pgParameters: { work_mem: '7MB', max_connections: '120' } });
    await waitFor(
      async () => ((await status(c)).keepers.some((k) => k.pendingRestart?.includes('max_connections')) ? true : undefined),
      { timeoutMs: 30_000, what: 'max_connections pending restart in stolonctl status' },
    );
    expect(await show(c, 'max_connections')).toBe('100');
    await patch(c, { automaticPgRestart: true });
    await waitFor(
      async () => {
        try {
          return (await show(c, 'max_connections')) === '120' ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'max_connections 120 after the automatic restart' },
    );
    await waitFor(async () => ((await status(c)).keepers.every((k) => (k.pendingRestart ?? []).length === 0) ? true : undefined), {
      timeoutMs: 60_000,
      what: 'no pending restart left',
    });
  });

  it('creates additionalMasterReplicationSlots as stolon_<name> and drops them when removed', async () => {
    const c = e2e.cluster;
    const p = await primaryIndex(c);
    await patch(c, { additionalMasterReplicationSlots: ['backup'] });
    const slots = async () => (await query<{ slot_name: string }>(direct(c, p), 'select slot_name from pg_replication_slots')).map((r) => r.slot_name);
    await waitFor(async () => ((await slots()).includes('stolon_backup') ? true : undefined), { timeoutMs: 20_000, what: 'slot stolon_backup' });
    expect((await slots()).some((s) => s.startsWith('stolon_') && s !== 'stolon_backup')).toBe(true); // the standby's slot
    await patch(c, { additionalMasterReplicationSlots: null });
    await waitFor(async () => (!(await slots()).includes('stolon_backup') ? true : undefined), { timeoutMs: 20_000, what: 'slot stolon_backup dropped' });
    // Each standby keeps its sibling's slot, so it exists if that standby is promoted.
    const primarySlots = (await slots()).filter((x) => x.startsWith('stolon_')).sort();
    expect(primarySlots).toHaveLength(2);
    for (let i = 0; i < c.keepers.length; i++) {
      if (i === p) {
        continue;
      }
      await waitFor(
        async () => {
          const mine = (await query<{ slot_name: string; restart_lsn: string | null }>(direct(c, i), 'select slot_name, restart_lsn from pg_replication_slots')).filter((r) => r.slot_name.startsWith('stolon_'));
          // One slot: the sibling's (its own name is on the primary); none reserves WAL yet.
          return mine.length === 1 && primarySlots.includes(mine[0]!.slot_name) && mine[0]!.restart_lsn === null ? true : undefined;
        },
        { timeoutMs: 20_000, what: `standby ${c.keepers[i]!.uid} to hold its sibling's slot` },
      );
    }
  });

  it('rejoins a diverged old primary with pg_rewind: its own writes are gone and the discarded WAL range is reported', async () => {
    const c = e2e.cluster;
    const p = await primaryIndex(c);
    const others = c.keepers.map((_, i) => i).filter((i) => i !== p);
    await query(c.proxyClientConfig(0), 'create table if not exists r (id int primary key, who text)');
    await query(c.proxyClientConfig(0), "insert into r values (1, 'before')");
    for (const o of others) {
      await waitFor(async () => ((await query<{ n: string }>(direct(c, o), 'select count(*) as n from r')).at(0)?.n === '1' ? true : undefined), {
        timeoutMs: 20_000,
        what: 'the standbys to have row 1',
      });
    }
    // An asynchronous loss: the primary's walsenders are held with SIGSTOP (holding the
    // standbys' walreceivers would not do: the kernel still buffers what was sent), the primary
    // commits row 2, and its node dies before sending it. The promoted standby then takes row 3
    // on a new timeline, and the old primary's row 2 diverges. (A zombie primary taking direct
    // writes after the promotion can no longer happen: it self-fences.)
    const pm = await c.keepers[p]!.postmasterPid();
    const held = await childPids(pm!, /walsender/);
    expect(held.length).toBe(others.length);
    for (const pid of held) {
      process.kill(pid, 'SIGSTOP');
    }
    try {
      await query(direct(c, p), "insert into r values (2, 'diverged on the old primary')");
      await c.killKeeperNode(p);
    } finally {
      // Dead with their node; a stopped orphan would keep the old primary's shared memory busy.
      for (const pid of held) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    const s = await waitFor(async () => {
      for (const o of others) {
        try {
          if ((await query<{ r: boolean }>(direct(c, o), 'select pg_is_in_recovery() as r')).at(0)?.r === false) {
            return o;
          }
        } catch {
          /* restarting */
        }
      }
      return undefined;
    }, { timeoutMs: 60_000, what: 'a standby to be promoted' });
    await query(direct(c, s), "insert into r values (3, 'on the new primary')");
    await c.startKeeper(p);
    await waitFor(
      async () => {
        try {
          const rows = await query<{ id: number; rec: boolean }>(direct(c, p), 'select id, pg_is_in_recovery() as rec from r order by id');
          return rows.length > 0 && rows[0]?.rec === true && rows.map((x) => x.id).join(',') === '1,3' ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 90_000, what: 'the old primary to follow the new one with rows 1,3 (row 2 discarded)', intervalMs: 500 },
    );
    expect(c.logs()).toMatch(/discards WAL [0-9A-F]+\/[0-9A-F]+–[0-9A-F]+\/[0-9A-F]+ .*\(pg_rewind\)/);
    const st = await status(c);
    const rejoined = st.keepers.find((k) => k.uid === c.keepers[p]!.uid);
    expect(rejoined?.discardedWal?.method).toBe('pg_rewind');
    expect(rejoined!.discardedWal!.toLsn).toBeGreaterThan(rejoined!.discardedWal!.fromLsn);
    expect(c.logs()).not.toContain('please report this as a bug');
  });

  it('restores a new cluster with initMode pitr from a pg_basebackup made by the test', async () => {
    const c = e2e.cluster;
    const p = await primaryIndex(c);
    await query(c.proxyClientConfig(0), 'create table pitr_check (v text)');
    await query(c.proxyClientConfig(0), "insert into pitr_check values ('in the backup')");
    const backup = join(e2e.dir, 'backup');
    mkdirSync(backup, { mode: 0o700 });
    if (process.getuid?.() === 0) {
      execFileSync('chown', ['postgres', backup]);
    }
    const passfile = join(e2e.dir, 'pgpass-backup');
    execFileSync('sh', ['-c', `printf '*:*:*:repluser:%s\\n' "$(cat ${c.replPasswordFile})" > ${passfile} && chmod 600 ${passfile}`]);
    if (process.getuid?.() === 0) {
      execFileSync('chown', ['postgres', passfile]);
    }
    asPg(`${PG_BIN}/pg_basebackup`, ['-D', backup, '-X', 'stream', '-c', 'fast', '-h', '127.0.0.1', '-p', String(c.keepers[p]!.pgPort), '-U', 'repluser'], { PGPASSFILE: passfile });
    samePasswords(c, join(e2e.dir, 'pitr'));
    const restored = await e2e.startCluster({
      dir: join(e2e.dir, 'pitr'),
      etcd: c.etcd,
      clusterName: 'pitr',
      keepers: 1,
      spec: { initMode: 'pitr', pitrConfig: { dataRestoreCommand: `cp -a ${backup}/. %d` } },
      keeperArgs: ['--allow-spec-commands', 'data_restore_command'],
    });
    const rows = await query<{ v: string }>(restored.proxyClientConfig(0), 'select v from pitr_check');
    expect(rows.map((r) => r.v)).toEqual(['in the backup']);
  });

  it('runs a standby cluster that follows the primary cluster and promotes it with stolonctl promote', async () => {
    const c = e2e.cluster;
    const repl = readFileSync(c.replPasswordFile, 'utf8').trim();
    const passfile = join(e2e.dir, 'pgpass-standby');
    execFileSync('sh', ['-c', `printf '*:*:*:repluser:%s\\n' "${repl}" > ${passfile} && chmod 600 ${passfile}`]);
    if (process.getuid?.() === 0) {
      execFileSync('chown', ['postgres', passfile]);
    }
    const proxyPort = c.proxies[0]!.port;
    samePasswords(c, join(e2e.dir, 'standby'));
    const standby = await e2e.startCluster({
      dir: join(e2e.dir, 'standby'),
      etcd: c.etcd,
      clusterName: 'standby',
      keepers: 1,
      expect: 'readonly',
      keeperArgs: ['--allow-spec-commands', 'data_restore_command'],
      spec: {
        initMode: 'pitr',
        role: 'standby',
        // A hot standby needs max_connections at least the primary's (raised to 120 above).
        pgParameters: { max_connections: '120' },
        pitrConfig: {
          dataRestoreCommand: `PGPASSFILE=${passfile} ${PG_BIN}/pg_basebackup -D %d -X stream -c fast -h 127.0.0.1 -p ${proxyPort} -U repluser`,
        },
        standbyConfig: { standbySettings: { primaryConninfo: `host=127.0.0.1 port=${proxyPort} user=repluser passfile=${passfile}` } },
      },
    });
    const sb = standby.proxyClientConfig(0);
    await query(c.proxyClientConfig(0), 'create table if not exists from_primary (v int)');
    await query(c.proxyClientConfig(0), 'insert into from_primary values (42)');
    await waitFor(async () => {
      try {
        return (await query<{ v: number }>(sb, 'select v from from_primary')).some((r) => r.v === 42) ? true : undefined;
      } catch {
        return undefined;
      }
    }, { timeoutMs: 60_000, what: 'the standby cluster to replay the primary cluster write' });
    await expect(query(sb, 'insert into from_primary values (1)')).rejects.toThrow(/read-only/);
    const promote = await standby.stolonctl(['promote', '--yes']);
    expect(promote.code, promote.stderr).toBe(0);
    await waitFor(async () => {
      try {
        await query(sb, 'insert into from_primary values (43)');
        return true;
      } catch {
        return undefined;
      }
    }, { timeoutMs: 60_000, what: 'the promoted standby cluster to accept writes' });
  });

  it('refuses to touch a data directory that belongs to another cluster (after a re-init)', async () => {
    const c = e2e.cluster;
    const k = c.keepers[0]!;
    const before = asPg(`${PG_BIN}/pg_controldata`, [join(k.dataDir, 'postgres')]).match(/Database system identifier:\s+(\d+)/)?.[1];
    expect(before).toBeDefined();
    const init = await c.stolonctl(['init', '--yes', '{"initMode":"new"}']);
    expect(init.code, init.stderr).toBe(0);
    await waitFor(() => (/refusing to touch the data directory: it holds db \w+ of cluster \w+, but the store's cluster is \w+/.test(c.logs()) ? true : undefined), {
      timeoutMs: 30_000,
      what: 'the keeper to refuse the other cluster data',
    });
    const after = asPg(`${PG_BIN}/pg_controldata`, [join(k.dataDir, 'postgres')]).match(/Database system identifier:\s+(\d+)/)?.[1];
    expect(after).toBe(before);
  });
});
