/**
 * The proxy in depth on a real store and PostgreSQL: one 2-keeper cluster behind one proxy
 * with a read-only listener. The read-only port reaches only standbys; garbage, resets and
 * half-open clients do not disturb a working client; 1,000 idle PostgreSQL sessions held through
 * the proxy are all closed when the sentinel fences the proxy for a failover (before the standby
 * is promoted), the read-only connection to the promoted standby is dropped, and new connections
 * reach the new primary; with the store down every connection is closed within proxyTimeout and
 * nothing listens, and routing resumes when the store is back; the same when the store is frozen
 * (etcd SIGSTOPped, a stand-in that never answers), where no store call fails and only the
 * watchdog can act. On etcd by default; on another backend with STOLON_TEST_STORE_BACKEND
 * (`npm run test:backends`).
 *
 * The 1,000 sessions are real PostgreSQL backends (max_connections raised through the spec's
 * pgParameters), so the proxy's figures here include PostgreSQL's connection handling too; the
 * unit test in packages/proxy does the same with a TCP sink.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

const IDLE = 1000;
/** The default spec's proxyTimeout. */
const PROXY_TIMEOUT_MS = 4000;

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-proxy-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  proxyReadOnly: true,
  clusterName: 'proxy',
  logLevel: 'debug',
  // Room for 1,000 idle sessions plus the test's own; PostgreSQL requires the standby's
  // max_connections to be at least the primary's, and the spec applies to both.
  spec: { initMode: 'new', pgParameters: { max_connections: '1100' } },
  setup: async (c) => {
    await query(c.proxyClientConfig(0), 'create table t (id serial primary key, note text)');
    await waitKeepersConverged(c, 2, 90_000);
  },
});

/** Every keeper healthy, its PostgreSQL healthy and converged, as the sentinel sees it. */

/** Where a new connection lands: in recovery or not, and the PostgreSQL port it reached. */
async function where(config: pg.ClientConfig): Promise<{ recovery: boolean; port: number }> {
  const rows = await query<{ r: boolean; p: number }>(config, 'select pg_is_in_recovery() as r, inet_server_port() as p');
  return { recovery: rows[0]?.r === true, port: Number(rows[0]?.p) };
}

/** A connected client whose end (by error or close) is recorded. */
interface Held {
  readonly client: pg.Client;
  endedAt: number | undefined;
}

async function hold(config: pg.ClientConfig): Promise<Held> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 20_000 });
  const h: Held = { client, endedAt: undefined };
  client.on('error', () => undefined);
  client.on('end', () => {
    h.endedAt ??= performance.now();
  });
  await client.connect();
  return h;
}

/** Resolves with "refused" when nothing listens on the port, "accepted" otherwise. */
function tcpProbe(port: number): Promise<'refused' | 'accepted'> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('accepted');
    });
    s.once('error', () => resolve('refused'));
  });
}

async function proxyRssMiB(): Promise<number> {
  const status = await readFile(`/proc/${e2e.cluster.proxies[0]!.process.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

function proxyLines(pattern: RegExp): string[] {
  return e2e.cluster
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('[proxy 0]') && pattern.test(l));
}

describe('stolon-proxy on a real cluster', () => {
  it('the read-only port reaches only standbys; the main port only the primary', async () => {
    const p = await e2e.cluster.primaryIndex();
    const standbyPort = e2e.cluster.keepers[1 - p]!.pgPort;
    await waitFor(async () => ((await where(e2e.cluster.proxyReadOnlyClientConfig(0))).recovery ? true : undefined), {
      timeoutMs: 30_000,
      what: 'the read-only port to reach the standby',
    });
    for (let i = 0; i < 6; i++) {
      expect(await where(e2e.cluster.proxyReadOnlyClientConfig(0))).toEqual({ recovery: true, port: standbyPort });
      expect(await where(e2e.cluster.proxyClientConfig(0))).toEqual({ recovery: false, port: e2e.cluster.keepers[p]!.pgPort });
    }
    await expect(query(e2e.cluster.proxyReadOnlyClientConfig(0), "insert into t (note) values ('ro')")).rejects.toThrow(
      /read-only transaction/,
    );
    expect(proxyLines(/read-only: 1 standby \([0-9a-f]+ lag \d+ B\)/).length).toBeGreaterThan(0);
  });

  it('garbage, resets and half-open clients do not disturb a working client', async () => {
    const worker = await hold(e2e.cluster.proxyClientConfig(0));
    const noise = Array.from({ length: 30 }, (_, i) =>
      new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: i % 2 === 0 ? e2e.cluster.proxies[0]!.port : e2e.cluster.proxies[0]!.roPort! });
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.once('connect', () => {
          s.write(Buffer.from(Array.from({ length: 4096 }, (_v, j) => (i * 31 + j * 7) % 256)));
          if (i % 3 === 0) {
            s.resetAndDestroy();
          } else if (i % 3 === 1) {
            s.end();
          } else {
            setTimeout(() => s.destroy(), 200);
          }
        });
      }),
    );
    for (let i = 0; i < 50; i++) {
      await worker.client.query("insert into t (note) values ('during noise')");
    }
    await Promise.all(noise);
    const n = await worker.client.query<{ n: string }>("select count(*) as n from t where note = 'during noise'");
    expect(Number(n.rows[0]?.n)).toBe(50);
    expect(worker.endedAt).toBeUndefined();
    await worker.client.end();
    expect(e2e.cluster.proxies[0]!.process.running()).toBe(true);
  });

  it(`${IDLE} idle sessions are all closed when the proxy is fenced for a failover; the read-only session on the promoted standby is dropped; routing follows`, async () => {
    const p = await e2e.cluster.primaryIndex();
    const s = 1 - p;
    const held: Held[] = [];
    const tOpen = performance.now();
    for (let i = 0; i < IDLE; i += 50) {
      held.push(...(await Promise.all(Array.from({ length: Math.min(50, IDLE - i) }, () => hold(e2e.cluster.proxyClientConfig(0))))));
    }
    const openMs = performance.now() - tOpen;
    const ro = await hold(e2e.cluster.proxyReadOnlyClientConfig(0));
    expect((await ro.client.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0]?.r).toBe(true);
    const rss = await proxyRssMiB();
    process.stdout.write(`${IDLE} idle sessions through the proxy opened in ${Math.round(openMs)} ms; proxy RSS ${rss.toFixed(1)} MiB\n`);
    const fencesBefore = proxyLines(/target changed from .* to none/).length;

    const t0 = performance.now();
    const r = await e2e.cluster.stolonctl(['failkeeper', e2e.cluster.keepers[p]!.uid]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(() => (held.every((h) => h.endedAt !== undefined) ? true : undefined), {
      timeoutMs: 30_000,
      what: `all ${IDLE} idle sessions closed`,
      intervalMs: 20,
    });
    const lastClosed = Math.max(...held.map((h) => h.endedAt ?? 0)) - t0;
    process.stdout.write(`all ${IDLE} idle sessions closed ${Math.round(lastClosed)} ms after failkeeper\n`);
    // Closed by the fence (the proxy's own "to none" change, before any promotion), all at once.
    const fence = await waitFor(
      () => proxyLines(/target changed from .* to none/).slice(fencesBefore)[0],
      { timeoutMs: 10_000, what: 'the fence line in the proxy log' },
    );
    expect(fence).toMatch(new RegExp(`closed ${IDLE} connections`));
    await waitFor(() => (ro.endedAt !== undefined ? true : undefined), { timeoutMs: 30_000, what: 'the read-only session on the promoted standby dropped' });
    // The line is logged when the check that closed it ends (after publishing): wait for it.
    await waitFor(
      () => proxyLines(/read-only targets changed from .* to none \(proxy generation \d+\); closed 1 read-only connection/)[0],
      { timeoutMs: 10_000, what: 'the read-only change in the proxy log' },
    );

    // New connections reach the new primary, writable.
    await waitFor(
      async () => {
        try {
          await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, "insert into t (note) values ('after failover')");
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'a write through the proxy after the failover', intervalMs: 200 },
    );
    expect(await where(e2e.cluster.proxyClientConfig(0))).toEqual({ recovery: false, port: e2e.cluster.keepers[s]!.pgPort });
    const routed = proxyLines(/target changed from none to .* \(proxy generation \d+\)/);
    expect(routed.at(-1)).toContain(`127.0.0.1:${e2e.cluster.keepers[s]!.pgPort}`);

    // The old primary rejoins as a standby; then the read-only port reaches it, and only it.
    await waitKeepersConverged(e2e.cluster, 2, 90_000);
    await waitFor(
      async () => {
        try {
          const w = await where(e2e.cluster.proxyReadOnlyClientConfig(0));
          return w.recovery && w.port === e2e.cluster.keepers[p]!.pgPort ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'the read-only port to reach the rejoined old primary' },
    );
  });

  it('store down: every connection closed within proxyTimeout and nothing listens; store back: routing resumes', async () => {
    const main = await hold(e2e.cluster.proxyClientConfig(0));
    const ro = await hold(e2e.cluster.proxyReadOnlyClientConfig(0));
    const t0 = performance.now();
    await e2e.cluster.storeFault('down');
    await waitFor(() => (main.endedAt !== undefined && ro.endedAt !== undefined ? true : undefined), {
      timeoutMs: PROXY_TIMEOUT_MS + 4000,
      what: 'both sessions closed by the watchdog',
      intervalMs: 20,
    });
    const closedMs = Math.max(main.endedAt!, ro.endedAt!) - t0;
    process.stdout.write(`store (${e2e.cluster.store}) down: sessions closed after ${Math.round(closedMs)} ms (proxyTimeout ${PROXY_TIMEOUT_MS} ms)\n`);
    // proxyTimeout counts from the start of the last successful check (at most a check interval
    // before the kill), plus timer slack on a loaded machine.
    expect(closedMs).toBeLessThan(PROXY_TIMEOUT_MS + 1500);
    expect(await tcpProbe(e2e.cluster.proxies[0]!.port)).toBe('refused');
    expect(await tcpProbe(e2e.cluster.proxies[0]!.roPort!)).toBe('refused');
    // The watchdog fires at proxyTimeout after the last successful check or, with keepalives
    // failing, before the proxy's info lease could expire, whichever comes first. Its log line
    // reaches the harness through the proxy's stdout pipe, which may be read after the client saw
    // the sessions end: waited for (2 s at most), not read at once.
    await waitFor(
      () => (proxyLines(/no successful check (within proxyTimeout \(4000 ms\)|before this proxy's info lease could expire \(proxyTimeout 4000 ms\))/).length > 0 ? true : undefined),
      { timeoutMs: 2000, what: "the proxy's watchdog line", intervalMs: 20 },
    );

    const t1 = performance.now();
    await e2e.cluster.storeFault(null);
    await waitFor(
      async () => {
        try {
          await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, "insert into t (note) values ('store back')");
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'a write through the proxy once the store is back', intervalMs: 200 },
    );
    process.stdout.write(`store (${e2e.cluster.store}) back: writes through the proxy again after ${Math.round(performance.now() - t1)} ms\n`);
    await waitFor(
      async () => {
        try {
          return (await where(e2e.cluster.proxyReadOnlyClientConfig(0))).recovery ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 30_000, what: 'the read-only port to reach a standby again' },
    );
  });

  it('store frozen (etcd SIGSTOPped, or a stand-in that never answers): the watchdog closes everything within proxyTimeout although no call fails; store back: routing resumes', async () => {
    const main = await hold(e2e.cluster.proxyClientConfig(0));
    const t0 = performance.now();
    await e2e.cluster.storeFault('frozen');
    try {
      await waitFor(() => (main.endedAt !== undefined ? true : undefined), {
        timeoutMs: PROXY_TIMEOUT_MS + 4000,
        what: 'the session closed by the watchdog while the store is frozen',
        intervalMs: 20,
      });
      const closedMs = main.endedAt! - t0;
      process.stdout.write(`store (${e2e.cluster.store}) frozen: session closed after ${Math.round(closedMs)} ms (proxyTimeout ${PROXY_TIMEOUT_MS} ms)\n`);
      expect(closedMs).toBeLessThan(PROXY_TIMEOUT_MS + 1500);
      // The primary's own fencer (its keeper cannot renew its lease either) may end the session
      // first; the proxy's watchdog must still stop listening within proxyTimeout.
      await waitFor(async () => ((await tcpProbe(e2e.cluster.proxies[0]!.port)) === 'refused' ? true : undefined), {
        timeoutMs: PROXY_TIMEOUT_MS + 4000,
        what: 'the proxy to stop listening while the store is frozen',
        intervalMs: 20,
      });
      expect(performance.now() - t0).toBeLessThan(PROXY_TIMEOUT_MS + 1500);
    } finally {
      // Resumed before the keepers' leases (failInterval, 6 s) can run out.
      await e2e.cluster.storeFault(null);
    }
    const t1 = performance.now();
    await waitFor(
      async () => {
        try {
          await query({ ...e2e.cluster.proxyClientConfig(0), connectionTimeoutMillis: 1000 }, "insert into t (note) values ('store resumed')");
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 60_000, what: 'a write through the proxy once the store resumed', intervalMs: 200 },
    );
    process.stdout.write(`store (${e2e.cluster.store}) resumed: writes through the proxy again after ${Math.round(performance.now() - t1)} ms\n`);
    expect(e2e.cluster.logs()).not.toContain('please report this as a bug');
  });
});
