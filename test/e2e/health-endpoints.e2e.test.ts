/**
 * The proxy's and the sentinel's status endpoints (`--metrics-listen-address`) on real etcd and
 * PostgreSQL: with a primary the proxy's `/readyz` and `/readyz/read-only` are 200 and the
 * sentinel's `/readyz` too; once etcd is killed the proxy's `/readyz` turns 503 when its watchdog
 * fires (no successful check within proxyTimeout) while its `/healthz` stays 200, and the
 * sentinel's `/readyz` turns 503 (store not read) while its `/healthz` stays 200; with etcd back,
 * both are ready again.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

/** The default spec's proxyTimeout. */
const PROXY_TIMEOUT_MS = 4000;

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-health-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  proxyReadOnly: true,
  clusterName: 'health',
  setup: async (c) => {
    await query(c.proxyClientConfig(0), 'select 1');
    await waitKeepersConverged(c, 2, 90_000);
  },
});

interface Probe {
  readonly code: number;
  readonly reason: string;
}

/** GET `path` on 127.0.0.1:`port`; the body is one JSON line with the reason. */
async function probe(port: number, path: string): Promise<Probe> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(3000) });
  const body = (await res.json()) as { status: string; reason: string };
  expect(body.status).toBe(res.status === 200 ? 'ok' : 'fail');
  return { code: res.status, reason: body.reason };
}

/** Polls until `path` answers `code`; returns that answer. */
function until(port: number, path: string, code: number, timeoutMs: number): Promise<Probe> {
  return waitFor(
    async () => {
      const r = await probe(port, path).catch(() => undefined);
      return r?.code === code ? r : undefined;
    },
    { timeoutMs, what: `${path} on port ${port} to answer ${code}`, intervalMs: 100 },
  );
}

describe('status endpoints of the proxy and the sentinel', () => {
  it('ready with a primary; store killed: proxy /readyz 503 after the watchdog, sentinel /readyz 503, both alive; store back: ready again', async () => {
    const c = e2e.cluster;
    const px = c.proxies[0]!.statusPort;
    const st = c.sentinelStatusPorts[0]!;

    expect((await until(px, '/readyz', 200, 30_000)).reason).toMatch(/^routing to the primary at 127\.0\.0\.1:\d+ \(db \w+\); last successful check \d+ ms ago/);
    expect((await until(px, '/readyz/read-only', 200, 30_000)).reason).toMatch(/^read-only listener routes to 1 target/);
    expect((await probe(px, '/healthz')).reason).toMatch(/^proxy check loop alive/);
    expect((await until(st, '/readyz', 200, 30_000)).reason).toMatch(/^leader; store read \d+ ms ago$/);
    expect((await probe(st, '/healthz')).reason).toMatch(/^sentinel loop alive/);
    expect((await probe(st, '/nope')).code).toBe(404);

    const t0 = performance.now();
    await c.etcd.kill();
    const down = await until(px, '/readyz', 503, PROXY_TIMEOUT_MS + 10_000);
    const downMs = performance.now() - t0;
    process.stdout.write(`etcd killed: proxy /readyz 503 after ${Math.round(downMs)} ms (${down.reason})\n`);
    // The watchdog fires at most proxyTimeout after the last successful check (which started
    // before the kill); a probe in between may still see the fresh check.
    expect(downMs).toBeLessThan(PROXY_TIMEOUT_MS + 3000);
    expect(down.reason).toMatch(/no successful check|not routing to a primary/);
    expect((await probe(px, '/readyz/read-only')).code).toBe(503);
    expect((await probe(px, '/healthz')).code).toBe(200);
    const sDown = await until(st, '/readyz', 503, 30_000);
    expect(sDown.reason).toMatch(/^store not read for \d+ ms \(limit \d+ ms; (leader|not the leader)\)$/);
    expect((await probe(st, '/healthz')).code).toBe(200);

    await c.etcd.restart();
    expect((await until(px, '/readyz', 200, 60_000)).reason).toMatch(/^routing to the primary at /);
    await until(px, '/readyz/read-only', 200, 60_000);
    expect((await until(st, '/readyz', 200, 60_000)).reason).toMatch(/store read \d+ ms ago$/);
    expect((await probe(px, '/healthz')).code).toBe(200);
  });
});
