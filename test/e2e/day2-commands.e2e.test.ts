/**
 * The day-2 stolonctl commands on real etcd and PostgreSQL, one 2-keeper cluster: `version` lists
 * every component; `reload` applies a reloadable pgParameters change at once and lists a
 * restart-only one as pending; `reinit` refuses the primary (exit 1) and re-clones the standby
 * (a marker file in its PGDATA is gone, it streams again, rows written meanwhile are there);
 * `history` shows the failover that follows a kill -9 of the primary, from and to which keeper.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import { waitConvergedInStatus } from './switchover-common.js';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, { tmpPrefix: 'stolon-day2-e2e-', keepers: 2, sentinels: 1, proxies: 1, clusterName: 'day2', logLevel: 'debug' });

function direct(i: number): pg.ClientConfig {
  return e2e.cluster.directClientConfig(i);
}

async function show(i: number, name: string): Promise<string> {
  return (await query<{ v: string }>(direct(i), `select current_setting('${name}') as v`))[0]!.v;
}

async function confLoadTime(i: number): Promise<number> {
  return Date.parse((await query<{ t: Date }>(direct(i), 'select pg_conf_load_time() as t'))[0]!.t.toISOString());
}

async function count(cfg: pg.ClientConfig): Promise<number> {
  return Number((await query<{ n: string }>(cfg, 'select count(*) as n from d'))[0]?.n);
}

async function streamingStandbys(primary: number): Promise<number> {
  const rows = await query<{ n: string }>(direct(primary), "select count(*) as n from pg_stat_replication where state = 'streaming' and application_name like 'stolon\\_%'");
  return Number(rows[0]?.n);
}

interface HistoryJson {
  primary: { keeperUID: string; timeline: number } | null;
  rows: { kind: string; result: string; timeline: number | null; switchPoint: number | null; fromKeeper: string | null; toKeeper: string | null; discarded: { status: string } }[];
}

describe('day-2 commands', () => {
  it('version, reload, reinit and history on a running cluster', async () => {
    const c = e2e.cluster;
    const primary = await c.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    const standby = 1 - primary;
    const primaryUid = c.keepers[primary]!.uid;
    const standbyUid = c.keepers[standby]!.uid;
    await waitFor(async () => ((await streamingStandbys(primary)) === 1 ? true : undefined), { timeoutMs: 60_000, what: 'the standby to stream' });
    await waitConvergedInStatus(c, 2, 60_000);

    // version: stolonctl, both keepers, the sentinel and the proxy, one release, no warning.
    const v = await c.stolonctl(['version', '--format', 'json']);
    expect(v.code, v.stderr).toBe(0);
    const versions = JSON.parse(v.stdout) as { components: { component: string; uid: string; version: string | null; postgres?: string }[]; warnings: string[] };
    expect(versions.components.map((x) => x.component).sort()).toEqual(['keeper', 'keeper', 'proxy', 'sentinel', 'stolonctl']);
    expect(new Set(versions.components.map((x) => x.version)).size).toBe(1);
    expect(versions.components.find((x) => x.uid === primaryUid)?.postgres).toMatch(/^15\./);
    expect(versions.warnings).toEqual([]);
    const vt = await c.stolonctl(['version']);
    expect(vt.code).toBe(0);
    expect(vt.stdout).toMatch(/^COMPONENT\s+UID\s+VERSION\s+POSTGRESQL/);
    expect(vt.stdout).not.toContain('WARNING');

    // reload: work_mem (reloadable) is in effect on both nodes when it returns; max_connections
    // (restart only) is listed as pending a restart.
    const up = await c.stolonctl(['update', '--patch', '{"pgParameters":{"work_mem":"7MB","max_connections":"123"}}']);
    expect(up.code, up.stderr).toBe(0);
    const rl = await c.stolonctl(['reload', '--timeout', '60s']);
    expect(rl.code, rl.stderr + rl.stdout).toBe(0);
    expect(rl.stdout).toMatch(new RegExp(`keeper ${primaryUid} \\(primary\\): reloaded; pending restart: .*max_connections`));
    expect(rl.stdout).toMatch(new RegExp(`keeper ${standbyUid} \\(standby\\): reloaded; pending restart: .*max_connections`));
    expect(await show(primary, 'work_mem')).toBe('7MB');
    expect(await show(standby, 'work_mem')).toBe('7MB');
    expect(await show(primary, 'max_connections')).not.toBe('123');
    // A reload with nothing changed still reloads (PostgreSQL's configuration load time moves), on the named keeper only.
    const loadedBefore = [await confLoadTime(0), await confLoadTime(1)];
    const one = await c.stolonctl(['reload', '--keeper', standbyUid]);
    expect(one.code, one.stderr + one.stdout).toBe(0);
    expect(await confLoadTime(standby)).toBeGreaterThan(loadedBefore[standby]!);
    expect(await confLoadTime(primary)).toBe(loadedBefore[primary]);

    // reinit of the primary is refused (exit 1), nothing changes.
    const refused = await c.stolonctl(['reinit', primaryUid, '--yes']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds the primary db .*stolonctl switchover/);

    // reinit of the standby: a new clone (the marker in its PGDATA is gone) that streams again and
    // has the rows written while it was re-cloned.
    await query(c.proxyClientConfig(0), 'create table d (id serial primary key, at timestamptz default now())');
    await query(c.proxyClientConfig(0), 'insert into d select from generate_series(1, 100)');
    const marker = join(c.keepers[standby]!.dataDir, 'postgres', 'reinit-marker');
    writeFileSync(marker, 'from before the reinit\n');
    const startedAt = Date.now();
    const reinit = c.stolonctl(['reinit', standbyUid, '--yes', '--timeout', '3m']);
    let done = false;
    void reinit.finally(() => (done = true));
    let written = 0;
    while (!done) {
      await query(c.proxyClientConfig(0), 'insert into d default values');
      written++;
      await new Promise((r) => setTimeout(r, 50));
    }
    const ri = await reinit;
    process.stdout.write(`reinit of the standby took ${Date.now() - startedAt} ms (${written} rows written meanwhile)\n`);
    expect(ri.code, ri.stderr + ri.stdout).toBe(0);
    expect(ri.stdout).toMatch(new RegExp(`keeper ${standbyUid} streams from the primary again`));
    expect(existsSync(marker)).toBe(false);
    expect(written).toBeGreaterThan(0);
    expect(await streamingStandbys(primary)).toBe(1);
    const total = await count(c.proxyClientConfig(0));
    expect(total).toBe(100 + written);
    await waitFor(async () => ((await count(direct(standby))) === total ? true : undefined), { timeoutMs: 30_000, what: 'the re-cloned standby to have every row' });

    // history after a failover: from the killed primary's keeper to the standby's, on a new timeline.
    const before = await c.stolonctl(['history', '--format', 'json']);
    expect(before.code, before.stderr).toBe(0);
    expect((JSON.parse(before.stdout) as HistoryJson).rows.filter((r) => r.kind === 'failover')).toEqual([]);
    await waitConvergedInStatus(c, 2, 60_000);
    await c.killKeeperNode(primary);
    await waitFor(
      async () => {
        try {
          await query(c.proxyClientConfig(0), 'insert into d default values');
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 90_000, what: 'a write through the proxy after the failover', intervalMs: 250 },
    );
    const h = await waitFor(
      async () => {
        const r = await c.stolonctl(['history', '--format', 'json']);
        const j = JSON.parse(r.stdout) as HistoryJson;
        const row = j.rows.find((x) => x.kind === 'failover' && x.result === 'completed' && x.timeline !== null);
        return row === undefined ? undefined : { j, row };
      },
      { timeoutMs: 30_000, what: 'the completed failover with its timeline in stolonctl history' },
    );
    expect(h.row).toMatchObject({ fromKeeper: primaryUid, toKeeper: standbyUid, timeline: 2 });
    expect(h.row.switchPoint).toBeGreaterThan(0);
    expect(['reported', 'atLeast', 'unknown']).toContain(h.row.discarded.status);
    expect(h.j.primary).toEqual({ keeperUID: standbyUid, timeline: 2 });
    const table = await c.stolonctl(['history']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^2\\s+\\S+/\\S+\\s+\\S+\\s+failover\\s+completed\\s+${primaryUid}\\s+${standbyUid}\\s`, 'm'));
  });
});
