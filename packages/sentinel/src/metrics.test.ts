/**
 * The sentinel's metrics: the pure derivations from clusterdata, and a leader on the memory store
 * whose failover moves decisions_total, failovers_total and the phase histogram.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { parseClusterData, serializeClusterData, type ClusterData, type FailoverEvent } from '@stolon-ts/cluster';
import { aCluster, keeperInfo, proxyInfo } from '@stolon-ts/cluster/testing';
import { createLogger } from '@stolon-ts/common';
import { waitFor } from '@stolon-ts/harness';
import { MemoryBackend, MemoryStore } from '@stolon-ts/store';
import { clusterGauges, decisionKinds, eventReason, finishedFailoverPhases, startedEvents } from './metrics.js';
import { start, type SentinelHandle } from './sentinel.js';

const routed = (): ClusterData => aCluster({ spec: { initMode: 'new' } }).initialized().withPrimary('k1').withStandby('k2').routedTo('k1', ['p1'], 2).build();

function event(over: Partial<FailoverEvent> = {}): FailoverEvent {
  return {
    id: 'e1',
    kind: 'failover',
    cause: 'keeper k1 lost (info lease expired or no progress for failInterval) or failed by stolonctl failkeeper',
    oldPrimary: { keeperUID: 'k1', dbUid: 'db-k1', xLogPos: 0 },
    phases: { declaredFailed: '2025-01-01T00:00:10.000Z' },
    ...over,
  };
}

/** The value of one sample line of `text`, e.g. `stolon_sentinel_failovers_total{reason="keeper_lost"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('sentinel metrics, derived from clusterdata', () => {
  it('decisionKinds: a fence, a failover started, a promotion with a new standby, a sync set change; status_update otherwise', () => {
    const prev = routed();
    expect(decisionKinds(undefined, prev)).toEqual(['cluster_created']);
    expect(decisionKinds(prev, structuredClone(prev))).toEqual(['status_update']);

    const fenced = structuredClone(prev);
    fenced.proxy.generation += 1;
    fenced.proxy.spec.masterDbUid = '';
    fenced.keepers['k1']!.status.healthy = false;
    fenced.cluster.status.failover = event();
    expect(decisionKinds(prev, fenced).sort()).toEqual(['failover', 'keeper_unhealthy', 'proxy_fence']);

    const promoted = structuredClone(fenced);
    const k2 = Object.values(promoted.dbs).find((d) => d.spec.keeperUID === 'k2')!;
    promoted.cluster.status.master = k2.uid;
    delete promoted.dbs[Object.values(promoted.dbs).find((d) => d.spec.keeperUID === 'k1')!.uid];
    promoted.dbs['db-new'] = { ...structuredClone(k2), uid: 'db-new', spec: { ...structuredClone(k2.spec), keeperUID: 'k3', role: 'standby' } };
    expect(decisionKinds(fenced, promoted).sort()).toEqual(['db_removed', 'new_primary', 'new_standby']);

    const sync = structuredClone(prev);
    sync.dbs[sync.cluster.status.master]!.spec.synchronousStandbys = ['db-k2'];
    expect(decisionKinds(prev, sync)).toEqual(['sync_set_change']);
  });

  it('startedEvents, eventReason and finishedFailoverPhases follow the failover trace', () => {
    const prev = routed();
    const next = structuredClone(prev);
    next.cluster.status.failover = event();
    expect(startedEvents(prev, next).map((e) => e.id)).toEqual(['e1']);
    expect(startedEvents(next, structuredClone(next))).toEqual([]);
    expect(eventReason(event(), prev)).toBe('keeper_lost');
    const forced = structuredClone(prev);
    forced.keepers['k1']!.status.forceFail = true;
    expect(eventReason(event(), forced)).toBe('failkeeper');
    expect(eventReason(event({ cause: 'postgres of keeper k1 reported unhealthy for more than failInterval' }), prev)).toBe('postgres_unhealthy');
    expect(eventReason(event({ kind: 'switchover', cause: 'requested with stolonctl switchover at now' }), prev)).toBe('manual');
    expect(eventReason(event({ kind: 'switchover', cause: 'requested by keeper k1, stopping at now' }), prev)).toBe('drain');

    const done = structuredClone(next);
    delete done.cluster.status.failover;
    done.failoverHistory = [
      event({
        phases: {
          primaryLastSeen: '2025-01-01T00:00:06.000Z',
          declaredFailed: '2025-01-01T00:00:10.000Z',
          proxiesFenced: '2025-01-01T00:00:10.100Z',
          candidateChosen: '2025-01-01T00:00:10.100Z',
          promoted: '2025-01-01T00:00:11.000Z',
          proxiesRouted: '2025-01-01T00:00:11.000Z',
        },
      }),
    ];
    expect(finishedFailoverPhases(next, done)).toEqual([
      { phase: 'detection', seconds: 4 },
      { phase: 'fence', seconds: 0.1 },
      { phase: 'choose', seconds: 0 },
      { phase: 'promote', seconds: 0.9 },
      { phase: 'route', seconds: 0 },
      { phase: 'total', seconds: 5 },
    ]);
    expect(finishedFailoverPhases(done, structuredClone(done))).toEqual([]);
    // Started and finished in the same pass still counts as started.
    expect(startedEvents(prev, done).map((e) => e.id)).toEqual(['e1']);
  });

  it('clusterGauges: keepers by state, primary health, synchronous replication', () => {
    const cd = aCluster({ spec: { initMode: 'new', synchronousReplication: true } }).initialized().withPrimary('k1').withStandby('k2').build();
    cd.keepers['k3'] = { ...structuredClone(cd.keepers['k2']!), uid: 'k3' };
    cd.dbs[cd.cluster.status.master]!.status.synchronousStandbys = ['db-k2'];
    expect(clusterGauges(cd)).toEqual({ keepers: { healthy: 2, no_db: 1, unhealthy: 0 }, primaryHealthy: 1, synchronousReplication: 1, synchronousStandbysInSync: 1 });
    cd.keepers['k1']!.status.healthy = false;
    expect(clusterGauges(cd)).toMatchObject({ keepers: { healthy: 1, no_db: 1, unhealthy: 1 }, primaryHealthy: 0 });
  });
});

const handles: SentinelHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) {
    await h.stop('test over');
  }
});

describe('sentinel metrics, in a running sentinel', () => {
  it('a failover on the memory store counts decisions, one failover by reason and the phases; gauges follow clusterdata', { timeout: 20_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    const spec = { initMode: 'new', sleepInterval: '200ms', requestTimeout: '500ms', failInterval: '2s', proxyCheckInterval: '200ms', proxyTimeout: '1s' } as const;
    await admin.overwriteClusterData(serializeClusterData(aCluster({ spec }).initialized().withPrimary('k1').withStandby('k2').routedTo('k1', ['p1'], 2).build()));
    let keepers = ['k1', 'k2'];
    let n = 0;
    // Keepers report what clusterdata asks (converged), p1 acknowledges every generation.
    const publish = async (): Promise<ClusterData> => {
      const cd = parseClusterData((await admin.getClusterData())?.text ?? '');
      n += 1;
      for (const k of keepers) {
        await admin.setInfo('keepers', k, { ...keeperInfo(k, cd), infoUID: `${k}-${n}` }, 2000);
      }
      await admin.setInfo('proxies', 'p1', { ...proxyInfo('p1', cd.proxy.generation), infoUID: `p1-${n}` }, 2000);
      return cd;
    };
    await publish();
    const ticker = setInterval(() => void publish().catch(() => undefined), 100);
    const registry = new Registry();
    try {
      const h = await start({ uid: 's1', leaderTtlMs: 1000 }, { store: new MemoryStore(backend, { clusterName: 'c1' }), logger: createLogger({ level: 'silent', component: 'sentinel' }), registry });
      handles.push(h);
      await waitFor(() => h.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      await new Promise((r) => setTimeout(r, 500));
      let text = await registry.metrics();
      expect(sample(text, 'stolon_sentinel_is_leader')).toBe(1);
      expect(sample(text, 'stolon_sentinel_leader_changes_total')).toBe(1);
      expect(sample(text, 'stolon_sentinel_primary_healthy')).toBe(1);
      expect(sample(text, 'stolon_sentinel_keepers{state="healthy"}')).toBe(2);

      keepers = ['k2'];
      await admin.deleteInfo('keepers', 'k1');
      await waitFor(async () => ((await publish()).failoverHistory ?? []).length === 1, { timeoutMs: 10_000, what: 'the failover finished', intervalMs: 100 });
      await waitFor(async () => sample(await registry.metrics(), 'stolon_sentinel_primary_healthy') === 1, { timeoutMs: 5000, what: 'primary healthy again' });
      text = await registry.metrics();
      expect(sample(text, 'stolon_sentinel_failovers_total{reason="keeper_lost"}')).toBe(1);
      expect(sample(text, 'stolon_sentinel_decisions_total{kind="failover"}')).toBe(1);
      expect(sample(text, 'stolon_sentinel_decisions_total{kind="proxy_fence"}')).toBe(1);
      expect(sample(text, 'stolon_sentinel_decisions_total{kind="new_primary"}')).toBe(1);
      expect(sample(text, 'stolon_sentinel_decisions_total{kind="failover_finished"}')).toBe(1);
      expect(sample(text, 'stolon_sentinel_failover_phase_duration_seconds_count{phase="total"}')).toBe(1);
      // The info was deleted right after k1's last publish: detection took one pass, not a lease.
      expect(sample(text, 'stolon_sentinel_failover_phase_duration_seconds_sum{phase="detection"}')).toBeLessThan(1);
      expect(sample(text, 'stolon_sentinel_failover_phase_duration_seconds_sum{phase="total"}')).toBeGreaterThan(0);
      expect(sample(text, 'stolon_sentinel_keepers{state="unhealthy"}')).toBe(1);
      expect(sample(text, 'stolon_sentinel_pass_duration_seconds_count')).toBeGreaterThan(5);
      expect(Date.now() / 1000 - (sample(text, 'stolon_sentinel_last_cluster_check_success_seconds') ?? 0)).toBeLessThan(5);
    } finally {
      clearInterval(ticker);
      await admin.close();
    }
  });
});
