/**
 * A real Prometheus (Debian's package) scraping a local cluster (etcd, 2 keepers, 1 sentinel,
 * 1 proxy) every second on each program's status endpoint (`--metrics-listen-address`), with the
 * alert rules of deploy/components/monitoring loaded:
 *
 * - every target is up, and `stolon_cluster_identifier` names each program and the cluster;
 * - `promtool check metrics` accepts every program's `/metrics`;
 * - the keepers' roles as PostgreSQL has them; after the primary's node is killed, the primary
 *   role moves to the other keeper, `stolon_sentinel_failovers_total` goes up and the
 *   StolonFailover alert fires;
 * - every metric the alerts and the dashboard read (deploy/components/monitoring/metric-names.json)
 *   is exported by a program of the kind its name says, after that failover (prom-client prints
 *   the `# TYPE` line of every registered metric, samples or not: a labelled counter with no event
 *   yet still counts).
 *
 * Bounded: about a minute here.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  e2eCluster,
  runPromtool,
  scrapeMetrics,
  startPrometheus,
  waitFor,
  type LocalCluster,
  type PrometheusHandle,
  type PrometheusJob,
} from '@stolon-ts/harness';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const MONITORING = join(REPO, 'deploy/components/monitoring');
const METRIC_NAMES = JSON.parse(readFileSync(join(MONITORING, 'metric-names.json'), 'utf8')) as { exported: string[]; fromPrometheus: string[] };
const RULES = stringify((parse(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as { spec: unknown }).spec);

/**
 * Lint findings of `promtool check metrics` that are prom-client's, not ours: its default
 * collectors export these gauges with a `_total` suffix. Nothing named stolon_* may be here, and
 * an entry promtool no longer reports fails the test (so the list cannot outlive its reason).
 */
const PROM_CLIENT_LINT = [
  'nodejs_active_handles_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_requests_total non-counter metrics should not have "_total" suffix',
  'nodejs_active_resources_total non-counter metrics should not have "_total" suffix',
];

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, { tmpPrefix: 'stolon-prometheus-e2e-', clusterName: 'prom', keepers: 2, sentinels: 1, proxies: 1 });

type Component = 'keeper' | 'sentinel' | 'proxy';
/** Every program's status endpoint, `127.0.0.1:<port>`, by kind. */
function endpoints(c: LocalCluster): Record<Component, string[]> {
  return {
    keeper: c.keepers.map((k) => `127.0.0.1:${k.statusPort}`),
    sentinel: c.sentinelStatusPorts.map((p) => `127.0.0.1:${p}`),
    proxy: c.proxies.map((p) => `127.0.0.1:${p.statusPort}`),
  };
}

/** Metric family → type, from the `# TYPE` lines of an exposition. */
function types(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

/**
 * Whether `name` (as an expression spells it) is exported by an exposition with these `# TYPE`s:
 * a family of that name, or the `_bucket` series of a histogram, or the `_sum`/`_count` series of a
 * histogram or summary.
 */
function isExported(typed: Map<string, string>, name: string): boolean {
  if (typed.has(name)) {
    return true;
  }
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const t = m === null ? undefined : typed.get(m[1]!);
  return m !== null && (t === 'histogram' || (t === 'summary' && m[2] !== 'bucket'));
}

/** The kind of program a metric must come from: by its prefix; Node's and the identifier from every one. */
function componentOf(name: string): Component | 'every' {
  const m = /^stolon_(keeper|sentinel|proxy)_/.exec(name);
  return m === null ? 'every' : (m[1] as Component);
}

describe('Prometheus scraping a local cluster', () => {
  let prom: PrometheusHandle | undefined;
  const scrapeOf = (): PrometheusHandle => {
    if (prom === undefined) {
      throw new Error('Prometheus did not start');
    }
    return prom;
  };

  beforeAll(async () => {
    const eps = endpoints(e2e.cluster);
    const labels = { stolon_cluster: e2e.cluster.clusterName };
    const jobs: PrometheusJob[] = (Object.keys(eps) as Component[]).map((name) => ({ name, targets: eps[name], labels }));
    prom = await startPrometheus({ jobs, rules: RULES });
  }, 60_000);

  afterAll(async () => {
    await prom?.stop();
  }, 30_000);

  it('every program is up, and stolon_cluster_identifier names each program and the cluster', async () => {
    const up = await waitFor(
      async () => {
        const r = await scrapeOf().query('up');
        return r.length === 4 && r.every((s) => s.value === 1) ? r : undefined;
      },
      { timeoutMs: 30_000, what: 'up == 1 for the 2 keepers, the sentinel and the proxy' },
    );
    expect(up.map((s) => s.labels['job']).sort()).toEqual(['keeper', 'keeper', 'proxy', 'sentinel']);
    const ids = await scrapeOf().query('stolon_cluster_identifier');
    expect(ids.map((s) => `${s.labels['job']} ${s.labels['component']} ${s.labels['cluster_name']} ${s.value}`).sort()).toEqual([
      'keeper keeper prom 1',
      'keeper keeper prom 1',
      'proxy proxy prom 1',
      'sentinel sentinel prom 1',
    ]);
  });

  it("promtool check metrics accepts every program's /metrics (prom-client's own nodejs_active_*_total gauges aside)", async () => {
    const eps = endpoints(e2e.cluster);
    const seen = new Set<string>();
    for (const ep of Object.values(eps).flat()) {
      const r = await runPromtool(['check', 'metrics'], await scrapeMetrics(ep));
      const findings = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      // 0: clean; 3: lint findings only (a parse error is 1).
      expect([0, 3], `${ep}: ${findings.join('; ')}`).toContain(r.code);
      expect(findings.filter((f) => !PROM_CLIENT_LINT.includes(f)), ep).toEqual([]);
      findings.forEach((f) => seen.add(f));
    }
    expect(PROM_CLIENT_LINT.filter((f) => !seen.has(f)), 'allowed findings promtool no longer reports: remove them').toEqual([]);
  });

  it('the keepers report their roles as PostgreSQL has them: the primary, and a standby', async () => {
    const c = e2e.cluster;
    const primary = await c.primaryIndex();
    expect(primary).toBeGreaterThanOrEqual(0);
    const eps = endpoints(c).keeper;
    const roles = await waitFor(
      async () => {
        const r = await scrapeOf().query('stolon_keeper_local_role == 1');
        return r.length === 2 ? r : undefined;
      },
      { timeoutMs: 30_000, what: 'a local role for each keeper' },
    );
    expect(roles.map((s) => `${s.labels['instance']} ${s.labels['role']}`).sort()).toEqual(
      [`${eps[primary]} primary`, `${eps[1 - primary]} standby`].sort(),
    );
  });

  it('after the primary node is killed, the primary role moves to the other keeper, the failover counter goes up and StolonFailover fires', async () => {
    const c = e2e.cluster;
    const prometheus = scrapeOf();
    const firingBefore = await prometheus.query('ALERTS{alertstate="firing"}');
    expect(firingBefore.map((s) => s.labels['alertname'])).toEqual([]);
    const failovers = async () => (await prometheus.query('sum(stolon_sentinel_failovers_total)'))[0]?.value ?? 0;
    const before = await failovers();
    const old = await c.primaryIndex();
    const eps = endpoints(c).keeper;
    await c.killKeeperNode(old);
    const moved = await waitFor(
      async () => {
        const r = await prometheus.query('stolon_keeper_local_role{role="primary"} == 1');
        return r.length === 1 && r[0]!.labels['instance'] === eps[1 - old] ? r : undefined;
      },
      { timeoutMs: 60_000, what: `the primary role on ${eps[1 - old]} alone`, intervalMs: 500 },
    );
    expect(moved[0]!.labels['job']).toBe('keeper');
    expect(await c.primaryIndex()).toBe(1 - old);
    await waitFor(async () => (await failovers()) > before, { timeoutMs: 30_000, what: `stolon_sentinel_failovers_total above ${before}` });
    const alert = await waitFor(
      async () => {
        const r = await prometheus.query('ALERTS{alertname="StolonFailover", alertstate="firing"}');
        return r.length === 1 ? r : undefined;
      },
      { timeoutMs: 30_000, what: 'the StolonFailover alert firing' },
    );
    expect(alert[0]!.labels).toMatchObject({ stolon_cluster: 'prom', severity: 'warning' });
    const down = await waitFor(
      async () => {
        const r = await prometheus.query(`up{instance="${eps[old]}"} == 0`);
        return r.length === 1 ? r : undefined;
      },
      { timeoutMs: 15_000, what: `up == 0 for the killed keeper ${eps[old]}` },
    );
    expect(down[0]!.labels['job']).toBe('keeper');
  });

  it('every metric the alerts and the dashboard read is exported by a program of its kind (metric-names.json), and Prometheus makes the others', async () => {
    const c = e2e.cluster;
    const eps = endpoints(c);
    const live = { ...eps, keeper: eps.keeper.filter((_, i) => c.keepers[i]!.process.running()) };
    expect(live.keeper).toHaveLength(1);
    const typed: Record<Component, Map<string, string>[]> = { keeper: [], sentinel: [], proxy: [] };
    for (const kind of Object.keys(live) as Component[]) {
      for (const ep of live[kind]) {
        typed[kind].push(types(await scrapeMetrics(ep)));
      }
    }
    const missing = METRIC_NAMES.exported.filter((name) => {
      const kind = componentOf(name);
      const kinds: Component[] = kind === 'every' ? ['keeper', 'sentinel', 'proxy'] : [kind];
      // A metric of a kind must come from every program of that kind; Node's and the identifier from all.
      return !kinds.every((k) => typed[k].length > 0 && typed[k].every((t) => isExported(t, name)));
    });
    expect(missing, 'metrics the rules or the dashboard read that no program exports').toEqual([]);
    for (const name of METRIC_NAMES.fromPrometheus) {
      expect((await scrapeOf().query(name)).length, name).toBeGreaterThan(0);
    }
  });

  it('the export check itself: a histogram counts by its _bucket series, a gauge does not; a family by its name', () => {
    const t = types('# TYPE a_seconds histogram\n# TYPE b gauge\n# TYPE c_total counter\n# TYPE d summary\n');
    expect(['a_seconds_bucket', 'a_seconds_sum', 'b', 'c_total', 'd_sum', 'd_count'].every((n) => isExported(t, n))).toBe(true);
    expect(['b_bucket', 'd_bucket', 'c', 'e'].some((n) => isExported(t, n))).toBe(false);
  });
});
