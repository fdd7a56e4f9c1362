/**
 * The Prometheus registry each daemon serves on `GET /metrics` (`--metrics-listen-address`), on
 * prom-client. Naming follows Prometheus's conventions (base units in names: `_seconds`,
 * `_bytes`; counters end in `_total`) and keeps Stolon's metric names where Stolon had the same
 * metric (`stolon_cluster_identifier`, `stolon_keeper_*`, `stolon_sentinel_*`): see
 * docs/metrics.md for the full list.
 * @see https://prometheus.io/docs/practices/naming/
 */
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { Registry } from 'prom-client';

/**
 * prom-client, loaded on the first {@link createDaemonMetrics} (or the first call here), not at
 * import: with the `@opentelemetry/api` it pulls in, it is ~85 files that stolonctl, which imports
 * this package but serves no metrics, would load for nothing, and that the keeper loads only after
 * its first pass. The package is CommonJS, so a synchronous `require` suffices, and returns the
 * instance an ES `import` of it gets (the same metric classes and registries).
 */
export function promClient(): typeof PromClient {
  return createRequire(import.meta.url)('prom-client') as typeof PromClient;
}

/** The components that serve metrics. */
export type MetricsComponent = 'keeper' | 'sentinel' | 'proxy';

/** A daemon's registry and the source `startStatusEndpoint` serves on `/metrics`. */
export interface DaemonMetrics {
  /** Register the component's own metrics here (`new Gauge({ …, registers: [registry] })`). */
  readonly registry: Registry;
  /** For `StatusChecks.metrics`. */
  readonly source: () => Promise<{ readonly contentType: string; readonly text: string }>;
}

/**
 * How often the event-loop delay behind `nodejs_eventloop_lag_*` is sampled, in ms (prom-client's
 * `eventLoopMonitoringPrecision`, whose own default is 10). Each sample is a timer wake-up: at
 * 10 ms that is 100 wake-ups a second, about 3.5 ms of CPU per second on a 2-core VM for a daemon
 * that is otherwise at rest (a seventh of an idle keeper's CPU; docs/benchmarks.md, "bench:idle").
 * A coarser period still measures each sample's delay exactly, but a stall that ends between two
 * samples goes unseen.
 */
const EVENT_LOOP_SAMPLE_MS = 1000;

/**
 * Creates a daemon's registry with Node's default process metrics (`process_cpu_seconds_total`,
 * `process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`, …) and Stolon's
 * `stolon_cluster_identifier{cluster_name, component} 1`, which lets dashboards group every
 * series of one cluster.
 * @param component which daemon
 * @param clusterName `--cluster-name`
 */
export function createDaemonMetrics(component: MetricsComponent, clusterName: string): DaemonMetrics {
  const { Gauge, Registry, collectDefaultMetrics } = promClient();
  const registry = new Registry();
  collectDefaultMetrics({
    register: registry,
    eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
  });
  const id = new Gauge({
    name: 'stolon_cluster_identifier',
    help: 'Always 1: the cluster and component this process belongs to (Stolon\'s metric)',
    labelNames: ['cluster_name', 'component'] as const,
    registers: [registry],
  });
  id.set({ cluster_name: clusterName, component }, 1);
  return {
    registry,
    source: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
  };
}
