/**
 * The whole path on real etcd and real PostgreSQL: a 2-keeper cluster behind one proxy;
 * writes through the proxy; kill -9 of the primary's keeper and postgres; a write through the
 * same proxy port succeeds on the other keeper with every row the standby had received; the
 * killed keeper comes back as a standby of the new primary and catches up.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import { syncfsUsable } from '@stolon-ts/postgres';

interface StatusJson {
  cluster: { phase: string; masterKeeper?: string };
  keepers: { uid: string; healthy: boolean; pgHealthy: boolean; role?: string }[];
}

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  clusterName: 'e2e',
  logLevel: 'debug',
});

describe('local HA cluster on real etcd and PostgreSQL', () => {
  it('fails over to the standby after kill -9 of the primary keeper and postgres, then rejoins the old primary', async () => {
    const proxy = e2e.cluster.proxyClientConfig(0);
    await query(proxy, 'create table t (id int primary key, note text)');
    for (let i = 1; i <= 50; i++) {
      await query(proxy, 'insert into t values ($1, $2)', [i, `row ${i}`]);
    }
    const primary = await e2e.cluster.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    const standby = 1 - primary;

    // Everything the standby has received before the kill must survive the failover.
    const received = await waitFor(
      async () => {
        const rows = await query<{ n: string }>(e2e.cluster.directClientConfig(standby), 'select count(*) as n from t');
        return Number(rows[0]?.n) === 50 ? 50 : undefined;
      },
      { timeoutMs: 30_000, what: 'the standby to replay all 50 rows' },
    );

    // The standby, a pg_basebackup clone, runs with the keeper's recovery_init_sync_method: syncfs
    // where it is usable (Linux ≥ 5.8), so its first start did not fsync every file one by one.
    const sync = await query<{ m: string }>(e2e.cluster.directClientConfig(standby), "select current_setting('recovery_init_sync_method') as m");
    expect(sync[0]?.m).toBe(syncfsUsable(process.platform, release()) ? 'syncfs' : 'fsync');

    const status = await e2e.cluster.stolonctl(['status', '--format', 'json']);
    expect(status.code, status.stderr).toBe(0);
    const st = JSON.parse(status.stdout) as StatusJson;
    expect(st.cluster.phase).toBe('normal');

    const killedAt = Date.now();
    await e2e.cluster.killKeeperNode(primary);

    // A write through the same proxy port succeeds, on the other keeper.
    await waitFor(
      async () => {
        try {
          await query(proxy, 'insert into t values (1000, $1)', ['after failover']);
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'a write through the proxy after the primary was killed', intervalMs: 200 },
    );
    const outageMs = Date.now() - killedAt;
    process.stdout.write(`write outage after kill -9 of the primary node: ${outageMs} ms\n`);
    const onStandby = await query<{ r: boolean }>(e2e.cluster.directClientConfig(standby), 'select pg_is_in_recovery() as r');
    expect(onStandby[0]?.r).toBe(false);
    const count = await query<{ n: string }>(proxy, 'select count(*) as n from t where id <= 50');
    expect(Number(count[0]?.n)).toBe(received);

    // The killed keeper comes back as a standby of the new primary and catches up.
    await e2e.cluster.startKeeper(primary);
    await query(proxy, 'insert into t values (1001, $1)', ['after rejoin']);
    await waitFor(
      async () => {
        try {
          const rows = await query<{ r: boolean; n: string }>(
            e2e.cluster.directClientConfig(primary),
            'select pg_is_in_recovery() as r, (select count(*) from t) as n',
          );
          return rows[0]?.r === true && Number(rows[0]?.n) === 52 ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 90_000, what: 'the old primary to rejoin as a standby with all 52 rows', intervalMs: 500 },
    );
    const st2 = JSON.parse((await e2e.cluster.stolonctl(['status', '--format', 'json'])).stdout) as StatusJson;
    expect(st2.keepers.filter((k) => k.healthy)).toHaveLength(2);

    // Hygiene checked on the real processes: no password in any argv, none in any log line,
    // and (as root) postgres runs as the unprivileged user.
    const ps = execFileSync('ps', ['-eo', 'user,args'], { encoding: 'utf8' });
    const repl = readFileSync(e2e.cluster.replPasswordFile, 'utf8').trim();
    expect(ps).not.toContain(e2e.cluster.suPassword);
    expect(ps).not.toContain(repl);
    const logs = e2e.cluster.logs();
    expect(logs).not.toContain(e2e.cluster.suPassword);
    expect(logs).not.toContain(repl);
    expect(logs).not.toContain('please report this as a bug');
    if (process.getuid?.() === 0) {
      const postgresLines = ps.split('\n').filter((l) => /postgres: |bin\/postgres /.test(l) && l.includes(e2e.dir));
      expect(postgresLines.length).toBeGreaterThan(0);
      for (const l of postgresLines) {
        expect(l.startsWith('root')).toBe(false);
      }
    }
  });
});
