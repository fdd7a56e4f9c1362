/**
 * The sentinel's Prometheus metrics (`GET /metrics` on `--metrics-listen-address`; docs/metrics.md,
 * "Sentinel"). Stolon's names where Stolon had the metric (`stolon_sentinel_is_leader`,
 * `stolon_sentinel_last_cluster_check_success_seconds`), ours otherwise. Stolon's
 * `stolon_sentinel_leader_count` is `stolon_sentinel_leader_changes_total` here: a counter must end
 * in `_total` (`promtool check metrics` refuses the old name).
 *
 * Only the leader decides: `decisions_total`, `failovers_total`, `switchovers_total` and the phase
 * histogram move on the sentinel that led when the decision was written (sum their increases over
 * all sentinels). The cluster gauges (`keepers`, `primary_healthy`, `synchronous_*`) are what each
 * sentinel last read from clusterdata, leader or not (aggregate them with max()).
 *
 * Everything is updated on events (a pass, a leadership change); a scrape reads the values.
 * The derivations from clusterdata ({@link decisionKinds}, {@link startedEvents},
 * {@link finishedFailoverPhases}, {@link clusterGauges}) are pure and unit-tested.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ClusterData, FailoverEvent } from '@stolon-ts/cluster';

/** What a leader's write changed (`stolon_sentinel_decisions_total{kind}`). */
export type DecisionKind =
  | 'cluster_created'
  | 'failover'
  | 'switchover'
  | 'proxy_fence'
  | 'proxy_route'
  | 'new_primary'
  | 'new_standby'
  | 'db_removed'
  | 'sync_set_change'
  | 'keeper_added'
  | 'keeper_removed'
  | 'keeper_unhealthy'
  | 'keeper_healthy'
  | 'failover_finished'
  | 'status_update';

/** The `state` label values of `stolon_sentinel_keepers`; each keeper counts in exactly one. */
const KEEPER_STATES = ['healthy', 'no_db', 'unhealthy'] as const;

/** The `phase` label values of `stolon_sentinel_failover_phase_duration_seconds`. */
const FAILOVER_PHASES = [
  'detection',
  'fence',
  'choose',
  'promote',
  'route',
  'total',
] as const;

/**
 * The phase histogram's spans: the phase label, and the failover trace timestamps it runs
 * between (`FailoverEvent.phases`). `detection`: primary last seen → declared failed; `fence`:
 * declared failed → proxies fenced; `choose`: proxies fenced → candidate chosen; `promote`:
 * candidate chosen → promoted; `route`: promoted → proxies routed; `total`: primary last seen →
 * proxies routed (the `stolonctl events` write-outage bound).
 */
const PHASE_SPANS: readonly (readonly [(typeof FAILOVER_PHASES)[number], keyof FailoverEvent['phases'], keyof FailoverEvent['phases']])[] = [
  ['detection', 'primaryLastSeen', 'declaredFailed'],
  ['fence', 'declaredFailed', 'proxiesFenced'],
  ['choose', 'proxiesFenced', 'candidateChosen'],
  ['promote', 'candidateChosen', 'promoted'],
  ['route', 'promoted', 'proxiesRouted'],
  ['total', 'primaryLastSeen', 'proxiesRouted'],
];

/**
 * What changed from `prev` to `next` (a leader's write), as {@link DecisionKind}s, each at most
 * once; `status_update` when none of the others applies (e.g. a DB's reported status). Pure.
 * @param prev the clusterdata read (undefined: the sentinel created the cluster)
 * @param next the clusterdata written
 */
export function decisionKinds(prev: ClusterData | undefined, next: ClusterData): DecisionKind[] {
  if (prev === undefined) {
    return ['cluster_created'];
  }
  const kinds = new Set<DecisionKind>();
  for (const ev of startedEvents(prev, next)) {
    kinds.add(ev.kind);
  }
  if (next.proxy.generation !== prev.proxy.generation || next.proxy.spec.masterDbUid !== prev.proxy.spec.masterDbUid) {
    if (next.proxy.spec.masterDbUid === '' && prev.proxy.spec.masterDbUid !== '') {
      kinds.add('proxy_fence');
    } else if (next.proxy.spec.masterDbUid !== '' && next.proxy.spec.masterDbUid !== prev.proxy.spec.masterDbUid) {
      kinds.add('proxy_route');
    }
  }
  if (next.cluster.status.master !== prev.cluster.status.master && next.cluster.status.master !== '') {
    kinds.add('new_primary');
  }
  for (const [uid, db] of Object.entries(next.dbs)) {
    if (prev.dbs[uid] === undefined && db.spec.role === 'standby') {
      kinds.add('new_standby');
    }
  }
  if (Object.keys(prev.dbs).some((uid) => next.dbs[uid] === undefined)) {
    kinds.add('db_removed');
  }
  const prevMaster = prev.dbs[prev.cluster.status.master];
  const nextMaster = next.dbs[next.cluster.status.master];
  if (
    prevMaster !== undefined &&
    nextMaster !== undefined &&
    prevMaster.uid === nextMaster.uid &&
    [...prevMaster.spec.synchronousStandbys].sort().join(',') !== [...nextMaster.spec.synchronousStandbys].sort().join(',')
  ) {
    kinds.add('sync_set_change');
  }
  for (const [uid, k] of Object.entries(next.keepers)) {
    const before = prev.keepers[uid];
    if (before === undefined) {
      kinds.add('keeper_added');
    } else if (before.status.healthy !== k.status.healthy) {
      kinds.add(k.status.healthy ? 'keeper_healthy' : 'keeper_unhealthy');
    }
  }
  if (Object.keys(prev.keepers).some((uid) => next.keepers[uid] === undefined)) {
    kinds.add('keeper_removed');
  }
  if (finishedEvents(prev, next).length > 0) {
    kinds.add('failover_finished');
  }
  return kinds.size === 0 ? ['status_update'] : [...kinds];
}

/** The failover or switchover that `next` starts (in progress in `next`, not in `prev`), if any. Pure. */
export function startedEvents(prev: ClusterData, next: ClusterData): FailoverEvent[] {
  const ev = next.cluster.status.failover;
  const started = ev !== undefined && ev.id !== prev.cluster.status.failover?.id ? [ev] : [];
  // An event that started and finished in the same pass goes straight to the history.
  for (const done of finishedEvents(prev, next)) {
    if (done.id !== prev.cluster.status.failover?.id && !started.some((e) => e.id === done.id)) {
      started.push(done);
    }
  }
  return started;
}

/** Events in `next`'s `failoverHistory` that are not in `prev`'s. Pure. */
function finishedEvents(prev: ClusterData, next: ClusterData): FailoverEvent[] {
  const before = new Set((prev.failoverHistory ?? []).map((e) => e.id));
  return (next.failoverHistory ?? []).filter((e) => !before.has(e.id));
}

/**
 * The `reason` label of a failover or switchover event, from its cause (trace.ts, decide.ts,
 * switchover.ts): failovers `keeper_lost`, `failkeeper` (`stolonctl failkeeper`: the keeper was
 * forced failed in `prev`), `postgres_start_error`, `postgres_unhealthy`, `not_converged`;
 * switchovers `drain` (asked by the primary's stopping keeper) or `manual` (`stolonctl
 * switchover`); `other` for a cause this version does not know. Pure.
 */
export function eventReason(ev: FailoverEvent, prev: ClusterData | undefined): string {
  const c = ev.cause;
  if (ev.kind === 'switchover') {
    return /^requested by keeper .*, stopping/.test(c) ? 'drain' : 'manual';
  }
  if (/^keeper .* lost/.test(c)) {
    return prev?.keepers[ev.oldPrimary.keeperUID]?.status.forceFail === true ? 'failkeeper' : 'keeper_lost';
  }
  if (/cannot be started/.test(c)) {
    return 'postgres_start_error';
  }
  if (/reported unhealthy/.test(c)) {
    return 'postgres_unhealthy';
  }
  if (/did not converge/.test(c)) {
    return 'not_converged';
  }
  return 'other';
}

/**
 * The phase durations of the failovers `next` finished (not switchovers), in seconds, for each
 * span of `PHASE_SPANS` whose two timestamps are recorded and parse. Pure.
 */
export function finishedFailoverPhases(prev: ClusterData, next: ClusterData): { phase: string; seconds: number }[] {
  const out: { phase: string; seconds: number }[] = [];
  for (const ev of finishedEvents(prev, next)) {
    if (ev.kind !== 'failover') {
      continue;
    }
    for (const [phase, from, to] of PHASE_SPANS) {
      const a = Date.parse(ev.phases[from] ?? '');
      const b = Date.parse(ev.phases[to] ?? '');
      if (!Number.isNaN(a) && !Number.isNaN(b)) {
        out.push({ phase, seconds: Math.max(0, b - a) / 1000 });
      }
    }
  }
  return out;
}

/** The cluster gauges' values from one clusterdata. */
export interface ClusterGauges {
  /** Keepers per state: `healthy` (healthy, holds a DB), `no_db` (healthy, no DB), `unhealthy`. */
  readonly keepers: Record<(typeof KEEPER_STATES)[number], number>;
  /** 1: clusterdata names a primary DB whose keeper and DB status are healthy. */
  readonly primaryHealthy: 0 | 1;
  /** 1: the spec enables synchronous replication. */
  readonly synchronousReplication: 0 | 1;
  /** How many standbys the primary's DB status lists as known in sync. */
  readonly synchronousStandbysInSync: number;
}

/** {@link ClusterGauges} of `cd`. Pure. */
export function clusterGauges(cd: ClusterData): ClusterGauges {
  const withDb = new Set(Object.values(cd.dbs).map((d) => d.spec.keeperUID));
  const keepers = { healthy: 0, no_db: 0, unhealthy: 0 };
  for (const k of Object.values(cd.keepers)) {
    keepers[!k.status.healthy ? 'unhealthy' : withDb.has(k.uid) ? 'healthy' : 'no_db'] += 1;
  }
  const master = cd.dbs[cd.cluster.status.master];
  const primaryHealthy = master !== undefined && master.status.healthy && cd.keepers[master.spec.keeperUID]?.status.healthy === true;
  return {
    keepers,
    primaryHealthy: primaryHealthy ? 1 : 0,
    synchronousReplication: cd.cluster.spec.synchronousReplication === true ? 1 : 0,
    synchronousStandbysInSync: master?.status.synchronousStandbys.length ?? 0,
  };
}

/** The sentinel's metrics in a registry; sentinel.ts calls the methods on its events. */
export class SentinelMetrics {
  private readonly leaderChanges: Counter;
  private readonly lastCheck: Gauge;
  private readonly passDuration: Histogram;
  private readonly decisions: Counter<'kind'>;
  private readonly failovers: Counter<'reason'>;
  private readonly switchovers: Counter<'reason'>;
  private readonly phases: Histogram<'phase'>;
  private readonly keepers: Gauge<'state'>;
  private readonly primaryHealthy: Gauge;
  private readonly syncReplication: Gauge;
  private readonly syncInSync: Gauge;

  /**
   * Registers the sentinel's metrics in `registry`.
   * @param isLeader read at each scrape for `stolon_sentinel_is_leader`
   */
  constructor(registry: Registry, isLeader: () => boolean) {
    const registers = [registry];
    new Gauge({
      name: 'stolon_sentinel_is_leader',
      help: '1 while this sentinel is the leader (Stolon\'s metric)',
      registers,
      collect() {
        this.set(isLeader() ? 1 : 0);
      },
    });
    this.leaderChanges = new Counter({ name: 'stolon_sentinel_leader_changes_total', help: 'Times this sentinel became the leader', registers });
    this.lastCheck = new Gauge({
      name: 'stolon_sentinel_last_cluster_check_success_seconds',
      help: 'When a pass last read valid clusterdata and (leader) wrote its decision, seconds since the epoch (Stolon\'s metric)',
      registers,
    });
    this.passDuration = new Histogram({
      name: 'stolon_sentinel_pass_duration_seconds',
      help: 'Duration of the sentinel passes (store reads, decide, write)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.decisions = new Counter({
      name: 'stolon_sentinel_decisions_total',
      help: 'Clusterdata writes of the leader by what they changed (one write may count under several kinds)',
      labelNames: ['kind'] as const,
      registers,
    });
    this.failovers = new Counter({ name: 'stolon_sentinel_failovers_total', help: 'Failovers this sentinel started, by reason', labelNames: ['reason'] as const, registers });
    this.switchovers = new Counter({ name: 'stolon_sentinel_switchovers_total', help: 'Switchovers this sentinel started, by reason', labelNames: ['reason'] as const, registers });
    this.phases = new Histogram({
      name: 'stolon_sentinel_failover_phase_duration_seconds',
      help: 'Durations of the phases of the failovers this sentinel finished, from the failover trace (stolonctl events)',
      labelNames: ['phase'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
      registers,
    });
    this.keepers = new Gauge({ name: 'stolon_sentinel_keepers', help: 'Keepers in clusterdata by state, as this sentinel last read it', labelNames: ['state'] as const, registers });
    this.primaryHealthy = new Gauge({ name: 'stolon_sentinel_primary_healthy', help: '1 when clusterdata has a primary whose keeper and DB are healthy', registers });
    this.syncReplication = new Gauge({ name: 'stolon_sentinel_synchronous_replication', help: '1 when the cluster spec enables synchronous replication', registers });
    this.syncInSync = new Gauge({ name: 'stolon_sentinel_synchronous_standbys_in_sync', help: 'Standbys the primary\'s DB status lists as known in sync', registers });
    for (const phase of FAILOVER_PHASES) {
      this.phases.zero({ phase });
    }
    this.leaderChanges.inc(0);
  }

  /** This sentinel became the leader. */
  becameLeader(): void {
    this.leaderChanges.inc();
  }

  /** `pass` wrapped to observe its duration in `stolon_sentinel_pass_duration_seconds`, whatever its outcome. */
  timed<A extends unknown[], T>(pass: (...args: A) => Promise<T>): (...args: A) => Promise<T> {
    return async (...args) => {
      const end = this.passDuration.startTimer();
      try {
        return await pass(...args);
      } finally {
        end();
      }
    };
  }

  /**
   * A pass read valid clusterdata (and, leading, wrote its decision or had none): sets the last
   * check time and the cluster gauges from `cd`.
   * @param wallMs now, ms since the epoch
   */
  checked(cd: ClusterData, wallMs: number): void {
    this.lastCheck.set(wallMs / 1000);
    const g = clusterGauges(cd);
    for (const state of KEEPER_STATES) {
      this.keepers.set({ state }, g.keepers[state]);
    }
    this.primaryHealthy.set(g.primaryHealthy);
    this.syncReplication.set(g.synchronousReplication);
    this.syncInSync.set(g.synchronousStandbysInSync);
  }

  /**
   * The leader wrote `next` over `prev` (undefined: created the cluster): counts the decision
   * kinds, the failovers and switchovers started and the phases of the failovers finished.
   */
  decided(prev: ClusterData | undefined, next: ClusterData): void {
    for (const kind of decisionKinds(prev, next)) {
      this.decisions.inc({ kind });
    }
    if (prev === undefined) {
      return;
    }
    for (const ev of startedEvents(prev, next)) {
      (ev.kind === 'failover' ? this.failovers : this.switchovers).inc({ reason: eventReason(ev, prev) });
    }
    for (const { phase, seconds } of finishedFailoverPhases(prev, next)) {
      this.phases.observe({ phase }, seconds);
    }
  }
}
