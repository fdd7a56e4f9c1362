/**
 * Importing data (docs/backup.md, "Importing data"): a dump of an outside PostgreSQL 15, taken
 * with `pg_dump -Fd`, restored with `pg_restore -j 4` through the proxy into the cluster; then a
 * restore interrupted by a failover (kill -9 of the primary's keeper and postgres, as
 * failover.e2e.test.ts does) fails (non-zero exit, its connections lost), and restoring again into
 * a re-created database once the new primary takes writes gives the full data.
 *
 * The outside PostgreSQL is a plain instance this file starts itself (initdb as the postgres OS
 * user, trust authentication on 127.0.0.1, a free port). Its data is small: customers (3000 rows,
 * a unique index), orders (5000 rows, a foreign key, an index), a sequence set to 4242, and a table
 * `slow` whose CHECK constraint sleeps 4 ms per row (1500 rows: about 6 s of COPY), so that the
 * failover surely lands while pg_restore copies data.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, freePort, query, waitFor } from '@stolon-ts/harness';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const ROWS = { customers: 3000, orders: 5000, slow: 1500 } as const;

/** Runs a PostgreSQL program as the postgres OS user when root (initdb and postgres refuse root). */
function asPg(cmd: string, args: string[]): string {
  const root = process.getuid?.() === 0;
  return execFileSync(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, { encoding: 'utf8' });
}

/** The result of a program run to its end. */
interface Run {
  readonly code: number | null;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `cmd` with `env` added (the password goes in PGPASSWORD, never in argv), to its exit. */
function run(cmd: string, args: string[], env: Record<string, string>): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stderr, ms: Date.now() - started }));
  });
}

let srcDir = '';
let srcPort = 0;
let dumpDir = '';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-import-e2e-',
  clusterName: 'import',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  setup: async () => {
    // Under the fixture's temp directory, owned by postgres: the source instance and its dump.
    srcDir = join(e2e.dir, 'source');
    mkdirSync(srcDir, { recursive: true, mode: 0o700 });
    dumpDir = join(e2e.dir, 'dump');
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
      chownSync(srcDir, uid, gid);
    }
    srcPort = await freePort();
    asPg(join(PG_BIN, 'initdb'), ['-D', join(srcDir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync']);
    asPg(join(PG_BIN, 'pg_ctl'), ['-D', join(srcDir, 'data'), '-l', join(srcDir, 'log'), '-w', '-o', `-p ${srcPort} -c listen_addresses=127.0.0.1 -k ${srcDir}`, 'start']);
    const src = { host: '127.0.0.1', port: srcPort, user: 'postgres', database: 'postgres' };
    await query(src, 'create database app');
    const app = { ...src, database: 'app' };
    for (const sql of [
      'create table customers (id serial primary key, name text not null, email text not null unique)',
      'create table orders (id bigserial primary key, customer_id int not null references customers, amount numeric(10,2) not null)',
      'create index orders_customer_idx on orders (customer_id)',
      'create sequence invoice_no',
      "select setval('invoice_no', 4242)",
      // The check does not sleep while the source is filled; it does from the dump on (below).
      'create function slow_ok(n int) returns boolean language plpgsql as $$ begin return n > 0; end $$',
      'create table slow (n int primary key check (slow_ok(n)))',
      `insert into customers (name, email) select 'c' || i, 'c' || i || '@example.com' from generate_series(1, ${ROWS.customers}) i`,
      `insert into orders (customer_id, amount) select 1 + i % ${ROWS.customers}, i / 100.0 from generate_series(1, ${ROWS.orders}) i`,
      `insert into slow select generate_series(1, ${ROWS.slow})`,
      // The dump has this body, so every restore's COPY of slow sleeps. The check stays valid (a NOT
      // VALID one would not do: pg_dump adds it after the data).
      `create or replace function slow_ok(n int) returns boolean language plpgsql as $$ begin perform pg_sleep(0.004); return n > 0; end $$`,
    ]) {
      await query(app, sql);
    }
    execFileSync(join(PG_BIN, 'pg_dump'), ['-Fd', '-j', '2', '-f', dumpDir, '-h', '127.0.0.1', '-p', String(srcPort), '-U', 'postgres', 'app']);
  },
  teardown: async () => {
    if (srcPort !== 0) {
      try {
        asPg(join(PG_BIN, 'pg_ctl'), ['-D', join(srcDir, 'data'), '-m', 'immediate', 'stop']);
      } catch {
        // Not running (setup failed before the start).
      }
    }
  },
});

/** `pg_restore -j 4 --exit-on-error` of the dump into database `db` through the proxy, as the superuser. */
function restore(db: string): Promise<Run> {
  const proxy = e2e.cluster.proxyClientConfig(0);
  return run(join(PG_BIN, 'pg_restore'), ['-j', '4', '--exit-on-error', '--no-owner', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'postgres', '-d', db, dumpDir], {
    PGPASSWORD: e2e.cluster.suPassword,
  });
}

/** Row counts, the sequence and the serial's next values, and the indexes, of `db` through the proxy. */
async function contents(db: string): Promise<Record<string, unknown>> {
  const c = { ...e2e.cluster.proxyClientConfig(0), database: db };
  const rows = await query<Record<string, string>>(
    c,
    `select (select count(*) from customers) as customers, (select count(*) from orders) as orders, (select count(*) from slow) as slow,
            (select last_value from invoice_no) as invoice_no, (select last_value from customers_id_seq) as customers_seq,
            (select string_agg(indexname, ',' order by indexname) from pg_indexes where schemaname = 'public') as indexes`,
  );
  return Object.fromEntries(Object.entries(rows[0] ?? {}).map(([k, v]) => [k, k === 'indexes' ? v : Number(v)]));
}

const FULL = {
  customers: ROWS.customers,
  orders: ROWS.orders,
  slow: ROWS.slow,
  invoice_no: 4242,
  customers_seq: ROWS.customers,
  indexes: 'customers_email_key,customers_pkey,orders_customer_idx,orders_pkey,slow_pkey',
};

describe('importing a pg_dump of an outside PostgreSQL through the proxy', () => {
  it('pg_restore -j 4 through the proxy restores every row, the sequences and the indexes', async () => {
    const proxy = e2e.cluster.proxyClientConfig(0);
    await query(proxy, 'create database app');
    const r = await restore('app');
    process.stdout.write(`pg_restore -j 4 through the proxy: ${r.ms} ms\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(await contents('app')).toEqual(FULL);
    // The serial continues after the imported rows.
    const next = await query<{ n: string }>({ ...proxy, database: 'app' }, "select nextval('customers_id_seq') as n");
    expect(Number(next[0]?.n)).toBe(ROWS.customers + 1);
    // The standby has it too (a physical replica of the primary).
    const standby = 1 - (await e2e.cluster.primaryIndex());
    await waitFor(
      async () => {
        const n = await query<{ n: string }>({ ...e2e.cluster.directClientConfig(standby), database: 'app' }, 'select count(*) as n from orders').catch(() => []);
        return Number(n[0]?.n) === ROWS.orders ? true : undefined;
      },
      { timeoutMs: 30_000, what: 'the standby to replay the import' },
    );
  });

  it('a failover during pg_restore makes it fail; restoring again into a re-created database after the failover gives the full data', async () => {
    const c = e2e.cluster;
    const proxy = c.proxyClientConfig(0);
    await query(proxy, 'create database app2');
    const primary = await c.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    const restoring = restore('app2');
    // Kill the primary's node while pg_restore copies the slow table (its COPY is running there).
    await waitFor(
      async () => {
        const a = await query<{ n: string }>(c.directClientConfig(primary), "select count(*) as n from pg_stat_activity where datname = 'app2' and query like 'COPY public.slow%'");
        return Number(a[0]?.n) > 0 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: "pg_restore's COPY of the slow table to start on the primary" },
    );
    const killedAt = Date.now();
    await c.killKeeperNode(primary);
    const failed = await restoring;
    process.stdout.write(`interrupted pg_restore: exit ${String(failed.code)} ${Date.now() - killedAt} ms after the kill; stderr: ${failed.stderr.trim().split('\n').slice(-3).join(' | ')}\n`);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/server closed the connection|connection to server .* failed|terminat|could not (send|receive)|lost/i);

    // The standby is promoted and the proxy routes to it.
    await waitFor(
      async () => ((await query<{ r: boolean }>(proxy, 'select pg_is_in_recovery() as r').catch(() => []))[0]?.r === false ? true : undefined),
      { timeoutMs: 60_000, intervalMs: 200, what: 'a writable primary through the proxy after the kill' },
    );
    process.stdout.write(`primary writable through the proxy ${Date.now() - killedAt} ms after the kill\n`);
    expect(await c.primaryIndex()).toBe(1 - primary);
    // What reached the new primary is a partial import: the tables exist, the slow one is not full.
    const partial = await query<{ n: string }>({ ...proxy, database: 'app2' }, 'select count(*) as n from slow').catch(() => [{ n: '-1' }]);
    expect(Number(partial[0]?.n)).toBeLessThan(ROWS.slow);

    // Into a clean database: drop it and create it again, then restore again.
    await query(proxy, 'drop database app2 with (force)');
    await query(proxy, 'create database app2');
    const again = await restore('app2');
    expect(again.code, again.stderr).toBe(0);
    expect(await contents('app2')).toEqual(FULL);
  });
});
