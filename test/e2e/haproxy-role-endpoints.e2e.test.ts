/**
 * The keepers' Patroni-style role endpoints behind a real HAProxy (Debian's `haproxy`), with no
 * stolon-proxy in the path: HAProxy in TCP mode in front of the keepers' PostgreSQL ports, each
 * server checked with `option httpchk GET /primary` on its keeper's status port. Writes through
 * HAProxy work; kill -9 of the primary's keeper and postgres; writes through the same HAProxy port
 * reach the new primary once the failover is done. Also: `/replica` and `/metrics` on the keepers.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { e2eCluster, freePort, query, startProcess, waitFor, type LocalCluster, type ProcessHandle } from '@stolon-ts/harness';

const HAPROXY = '/usr/sbin/haproxy';

let haproxy: ProcessHandle | undefined;
let haproxyPort = 0;

/** HAProxy's configuration: TCP to the keepers' PostgreSQL, each server up only while its keeper answers 200 on /primary. */
function haproxyConfig(cluster: LocalCluster, port: number): string {
  return [
    'global',
    '  maxconn 200',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    'listen postgres',
    `  bind 127.0.0.1:${port}`,
    '  option httpchk GET /primary',
    '  http-check expect status 200',
    // Sessions to a server marked down are cut, as stolon-proxy closes its connections on a fence.
    '  default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions',
    ...cluster.keepers.map((k) => `  server ${k.uid} ${k.pgHost}:${k.pgPort} check port ${k.statusPort}`),
    '',
  ].join('\n');
}

async function startHaproxy(cluster: LocalCluster, dir: string): Promise<void> {
  if (!existsSync(HAPROXY)) {
    throw new Error(`${HAPROXY} is missing: apt-get install haproxy`);
  }
  haproxyPort = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  await writeFile(cfg, haproxyConfig(cluster, haproxyPort));
  const check = startProcess({ name: 'haproxy -c', cmd: HAPROXY, args: ['-c', '-f', cfg] });
  expect(await check.exited, check.logs()).toBe(0);
  // -db: foreground, no daemon; the harness kills its process group at the end, even on failure.
  haproxy = startProcess({ name: 'haproxy', cmd: HAPROXY, args: ['-db', '-f', cfg] });
}

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-haproxy-e2e-',
  clusterName: 'haproxy',
  keepers: 2,
  sentinels: 1,
  proxies: 0,
  expect: 'none',
  setup: async (cluster) => startHaproxy(cluster, e2e.dir),
  teardown: async () => {
    await haproxy?.stop('SIGTERM', 3000);
  },
});

function viaHaproxy(): pg.ClientConfig {
  return { ...e2e.cluster.directClientConfig(0), host: '127.0.0.1', port: haproxyPort };
}

/** The status code and JSON body of `GET path` on keeper `i`'s status endpoint. */
async function statusOf(i: number, path: string): Promise<{ code: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${e2e.cluster.keepers[i]!.statusPort}${path}`, { signal: AbortSignal.timeout(2000) });
  return { code: res.status, body: await res.text() };
}

/** A write through HAProxy; undefined (to retry) when it fails. */
async function writeThroughHaproxy(id: number): Promise<true | undefined> {
  try {
    await query(viaHaproxy(), 'insert into t values ($1) on conflict do nothing', [id]);
    return true;
  } catch {
    return undefined;
  }
}

describe('HAProxy with option httpchk GET /primary on the keepers, no stolon-proxy', () => {
  it('routes writes to the primary, and to the new primary after kill -9 of the primary node', async () => {
    await waitFor(
      async () => {
        try {
          await query(viaHaproxy(), 'create table if not exists t (id int primary key)');
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 30_000, what: 'a write through HAProxy', intervalMs: 300 },
    );
    await query(viaHaproxy(), 'insert into t values (1)');
    const primary = await e2e.cluster.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    const standby = 1 - primary;
    const written = await query<{ r: boolean }>(viaHaproxy(), 'select pg_is_in_recovery() as r');
    expect(written[0]?.r).toBe(false);

    // The endpoints HAProxy and a read balancer use, and the metrics, on both keepers.
    expect((await statusOf(primary, '/primary')).code).toBe(200);
    expect((await statusOf(standby, '/primary')).code).toBe(503);
    const replica = await waitFor(
      async () => {
        const r = await statusOf(standby, '/replica?lag=16MB');
        return r.code === 200 ? r : undefined;
      },
      { timeoutMs: 15_000, what: 'the standby streaming (/replica?lag=16MB answers 200)', intervalMs: 300 },
    );
    expect(replica.body).toMatch(/"status":"ok".*streaming/);
    expect((await statusOf(primary, '/read-only')).code).toBe(200);
    expect((await statusOf(standby, '/health')).code).toBe(200);
    const metrics = await statusOf(primary, '/metrics');
    expect(metrics.code).toBe(200);
    expect(metrics.body).toMatch(/^stolon_keeper_local_role\{role="primary"\} 1$/m);
    expect(metrics.body).toMatch(/^stolon_keeper_target_role\{role="primary"\} 1$/m);
    expect(metrics.body).toMatch(/^stolon_keeper_wal_current_lsn_bytes [1-9]\d*$/m);
    const standbyMetrics = (await statusOf(standby, '/metrics')).body;
    expect(standbyMetrics).toMatch(/^stolon_keeper_local_role\{role="standby"\} 1$/m);
    expect(standbyMetrics).toMatch(/^stolon_keeper_wal_replay_lsn_bytes [1-9]\d*$/m);

    // Row 1 on the standby before the kill: replication is asynchronous here.
    await waitFor(
      async () => ((await query(e2e.cluster.directClientConfig(standby), 'select 1 from t where id = 1')).length === 1 ? true : undefined),
      { timeoutMs: 15_000, what: 'the standby to replay row 1', intervalMs: 200 },
    );
    const killedAt = Date.now();
    await e2e.cluster.killKeeperNode(primary);
    await waitFor(() => writeThroughHaproxy(2), { timeoutMs: 60_000, what: 'a write through HAProxy after the primary node was killed', intervalMs: 200 });
    process.stdout.write(`write outage through HAProxy after kill -9 of the primary node: ${Date.now() - killedAt} ms\n`);

    // The write landed on the former standby, now the primary, with the row written before.
    const rows = await query<{ id: number }>(e2e.cluster.directClientConfig(standby), 'select id from t order by id');
    expect(rows.map((r) => r.id)).toEqual([1, 2]);
    const onNew = await query<{ r: boolean }>(e2e.cluster.directClientConfig(standby), 'select pg_is_in_recovery() as r');
    expect(onNew[0]?.r).toBe(false);
    expect((await statusOf(standby, '/primary')).code).toBe(200);
  }, 90_000);
});
