/**
 * `GET /metrics` of the sentinel and the proxy on real etcd and PostgreSQL (docs/metrics.md):
 * every metric of their sections is there with plausible values before and after a failover
 * (kill -9 of the primary's keeper and postgres), and `stolonctl events` prints the write-outage
 * bound from the primary's last observed progress, which the phase histogram's `total` matches.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor, waitKeepersConverged } from '@stolon-ts/harness';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-metrics-sp-e2e-',
  keepers: 2,
  sentinels: 1,
  proxies: 1,
  clusterName: 'metrics-sp',
  setup: async (c) => {
    await query(c.proxyClientConfig(0), 'select 1');
    await waitKeepersConverged(c, 2, 60_000);
  },
});

/** The samples of `GET /metrics` on 127.0.0.1:`port`: series (name and labels as printed) → value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(3000) });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue;
    }
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** The value of `series`; fails naming it when absent. */
function value(m: Map<string, number>, series: string): number {
  const v = m.get(series);
  expect(v, `${series} in /metrics`).toBeDefined();
  return v ?? NaN;
}

const SENTINEL_NAMES = [
  'stolon_sentinel_is_leader',
  'stolon_sentinel_leader_changes_total',
  'stolon_sentinel_last_cluster_check_success_seconds',
  'stolon_sentinel_pass_duration_seconds_count',
  'stolon_sentinel_keepers{state="healthy"}',
  'stolon_sentinel_primary_healthy',
  'stolon_sentinel_synchronous_replication',
  'stolon_sentinel_synchronous_standbys_in_sync',
  'stolon_cluster_identifier{cluster_name="metrics-sp",component="sentinel"}',
];

const PROXY_NAMES = [
  'stolon_proxy_connections{listener="main"}',
  'stolon_proxy_connections_total{listener="main"}',
  'stolon_proxy_connections_refused_total{listener="main",reason="no_target"}',
  'stolon_proxy_bytes_total{listener="main",direction="up"}',
  'stolon_proxy_bytes_total{listener="main",direction="down"}',
  'stolon_proxy_target_changes_total',
  'stolon_proxy_generation',
  'stolon_proxy_has_primary',
  'stolon_proxy_last_check_success_seconds',
  'stolon_cluster_identifier{cluster_name="metrics-sp",component="proxy"}',
];

describe('/metrics of the sentinel and the proxy', () => {
  it('has every sentinel and proxy metric; after a kill -9 failover they count it with plausible values', { timeout: 90_000 }, async () => {
    const c = e2e.cluster;
    const st = c.sentinelStatusPorts[0]!;
    const px = c.proxies[0]!.statusPort;

    let s = await waitFor(async () => {
      const m = await scrape(st);
      return m.get('stolon_sentinel_primary_healthy') === 1 ? m : undefined;
    }, { timeoutMs: 20_000, what: 'the sentinel to report a healthy primary' });
    for (const name of SENTINEL_NAMES) {
      value(s, name);
    }
    expect(value(s, 'stolon_sentinel_is_leader')).toBe(1);
    expect(value(s, 'stolon_sentinel_leader_changes_total')).toBe(1);
    expect(value(s, 'stolon_sentinel_keepers{state="healthy"}')).toBe(2);
    expect(Date.now() / 1000 - value(s, 'stolon_sentinel_last_cluster_check_success_seconds')).toBeLessThan(10);
    let p = await scrape(px);
    for (const name of PROXY_NAMES) {
      value(p, name);
    }
    expect(value(p, 'stolon_proxy_has_primary')).toBe(1);
    expect(value(p, 'stolon_proxy_connections_total{listener="main"}')).toBeGreaterThanOrEqual(1);
    // The harness's proxies use the default data path, the native relay.
    expect([...p.keys()].some((k) => k.startsWith('stolon_proxy_relay_thread_connections{thread="0"}'))).toBe(true);
    // The initial primary counts as a new primary too.
    const newPrimariesBefore = s.get('stolon_sentinel_decisions_total{kind="new_primary"}') ?? 0;
    const generationBefore = value(p, 'stolon_proxy_generation');
    const changesBefore = value(p, 'stolon_proxy_target_changes_total');

    const proxy = c.proxyClientConfig(0);
    await query(proxy, 'create table t (id int primary key)');
    const primary = await c.primaryIndex();
    const killedAt = Date.now();
    await c.killKeeperNode(primary);
    await waitFor(
      async () => {
        try {
          await query(proxy, 'insert into t values (1)');
          return true;
        } catch {
          return undefined;
        }
      },
      { timeoutMs: 45_000, what: 'a write through the proxy after the kill', intervalMs: 200 },
    );
    const outageMs = Date.now() - killedAt;

    s = await waitFor(async () => {
      const m = await scrape(st);
      return (m.get('stolon_sentinel_failover_phase_duration_seconds_count{phase="total"}') ?? 0) >= 1 ? m : undefined;
    }, { timeoutMs: 15_000, what: 'the failover finished in the sentinel metrics' });
    expect(value(s, 'stolon_sentinel_failovers_total{reason="keeper_lost"}')).toBe(1);
    expect(value(s, 'stolon_sentinel_decisions_total{kind="failover"}')).toBe(1);
    expect(value(s, 'stolon_sentinel_decisions_total{kind="proxy_fence"}')).toBeGreaterThanOrEqual(1);
    expect(value(s, 'stolon_sentinel_decisions_total{kind="new_primary"}')).toBe(newPrimariesBefore + 1);
    expect(value(s, 'stolon_sentinel_keepers{state="unhealthy"}')).toBe(1);
    expect(value(s, 'stolon_sentinel_primary_healthy')).toBe(1);
    const total = value(s, 'stolon_sentinel_failover_phase_duration_seconds_sum{phase="total"}');
    const detection = value(s, 'stolon_sentinel_failover_phase_duration_seconds_sum{phase="detection"}');
    process.stdout.write(`client write outage ${outageMs} ms; trace: detection ${detection} s, total ${total} s\n`);
    // Detection runs from the primary's last observed progress, so it includes the wait for the
    // killed keeper's lease or failInterval: not the fraction of a second the old figure showed.
    expect(detection).toBeGreaterThan(0.5);
    expect(total).toBeGreaterThanOrEqual(detection);
    expect(total).toBeLessThan(60);
    // The bound: at most the client's outage plus one keeper pass (the kill came after the last
    // observed progress) and the client's retry interval.
    expect(total * 1000).toBeLessThan(outageMs + 10_000);

    const events = await c.stolonctl(['events']);
    expect(events.code, events.stderr).toBe(0);
    const outageLine = /^write outage\s+at most (\d+) ms \(from the primary's last observed progress to routing the proxies to the new primary; clients reconnect after it\)$/m.exec(events.stdout);
    expect(outageLine, events.stdout).not.toBeNull();
    expect(Math.abs(Number(outageLine?.[1]) - total * 1000)).toBeLessThan(2);

    p = await waitFor(async () => {
      const m = await scrape(px);
      return m.get('stolon_proxy_has_primary') === 1 && (m.get('stolon_proxy_generation') ?? 0) > generationBefore ? m : undefined;
    }, { timeoutMs: 10_000, what: 'the proxy routing to the new primary' });
    // Fenced (to none), then routed to the new primary.
    expect(value(p, 'stolon_proxy_target_changes_total')).toBeGreaterThanOrEqual(changesBefore + 2);
    expect(value(p, 'stolon_proxy_bytes_total{listener="main",direction="up"}')).toBeGreaterThan(0);
    expect(value(p, 'stolon_proxy_bytes_total{listener="main",direction="down"}')).toBeGreaterThan(0);
    expect(Date.now() / 1000 - value(p, 'stolon_proxy_last_check_success_seconds')).toBeLessThan(10);
  });
});
