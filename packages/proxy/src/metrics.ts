/**
 * The proxy's Prometheus metrics (`GET /metrics` on `--metrics-listen-address`; docs/metrics.md,
 * "Proxy"). Stolon's proxy had none but `stolon_cluster_identifier`; these names are ours.
 *
 * A scrape costs no work per connection: counters move on events (accept, refusal, close, check,
 * target change), and the gauges read a few numbers the proxy keeps anyway (per-listener
 * connection counts, the generation, the relay threads' connection counts) through
 * {@link ProxyMetricsSources}.
 *
 * Bytes are counted when a connection closes, on both data paths: the native relay reports a
 * connection's bytes only then (`native/relay.c`), and the event loop's are read from the two
 * sockets' `bytesRead` then. A long-lived connection's bytes show up when it ends.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ListenerKind } from './types.js';

/** The `listener` label: `main` (the primary) or `read-only` (`--ro-port`). */
type ListenerLabel = 'main' | 'read-only';

/** The `listener` label of a {@link ListenerKind}. */
function listenerLabel(kind: ListenerKind): ListenerLabel {
  return kind === 'main' ? 'main' : 'read-only';
}

/**
 * Why a client was refused (`stolon_proxy_connections_refused_total{reason}`): `no_target` (no
 * primary, or no qualifying standby on the read-only listener: closed at once), `stopping` (the
 * proxy is stopping), `max_connections` (over `--max-connections`: a PostgreSQL ErrorResponse), `hold_timeout` (held
 * during a planned switchover for `switchoverHoldTimeout` with no new primary routed, or the hold
 * ended without one: closed).
 */
export type RefusalReason = 'no_target' | 'stopping' | 'max_connections' | 'hold_timeout';

/** What the gauges read at each scrape; each must be cheap (no walk over connections). */
export interface ProxyMetricsSources {
  /** Connections forwarded now on one listener. */
  readonly connections: (kind: ListenerKind) => number;
  /** Main-listener clients held now, waiting for the new primary of a planned switchover. */
  readonly held: () => number;
  /** Whether the read-only listener exists (its series are then always exported). */
  readonly readOnly: boolean;
  /** The proxy generation this proxy enforces (its last successful check's), null before any. */
  readonly generation: () => number | null;
  /** True while the main listener routes to a primary. */
  readonly hasPrimary: () => boolean;
  /** Connections each relay thread holds (index = thread), or null on the event-loop data path. */
  readonly relayLoad: () => readonly number[] | null;
}

/** The proxy's metrics in a registry; the forwarder and the checker call the methods on events. */
export class ProxyMetrics {
  private readonly opened: Counter<'listener'>;
  private readonly refusals: Counter<'listener' | 'reason'>;
  private readonly bytes: Counter<'listener' | 'direction'>;
  private readonly targetChanges: Counter;
  private readonly checkFailures: Counter<'kind'>;
  private readonly lastCheck: Gauge;

  /** Registers the proxy's metrics in `registry`; the gauges read `sources` at each scrape. */
  constructor(registry: Registry, sources: ProxyMetricsSources) {
    const registers = [registry];
    const listeners: ListenerKind[] = sources.readOnly ? ['main', 'ro'] : ['main'];
    new Gauge({
      name: 'stolon_proxy_connections',
      help: 'Client connections forwarded now, by listener',
      labelNames: ['listener'] as const,
      registers,
      collect() {
        for (const kind of listeners) {
          this.set({ listener: listenerLabel(kind) }, sources.connections(kind));
        }
      },
    });
    new Gauge({
      name: 'stolon_proxy_held_connections',
      help: 'Client connections held now (accepted, not connected) waiting for the new primary of a planned switchover',
      registers,
      collect() {
        this.set(sources.held());
      },
    });
    this.opened = new Counter({ name: 'stolon_proxy_connections_total', help: 'Client connections forwarded since start, by listener', labelNames: ['listener'] as const, registers });
    this.refusals = new Counter({
      name: 'stolon_proxy_connections_refused_total',
      help: 'Client connections refused since start, by listener and reason (no_target, stopping, max_connections, hold_timeout)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.bytes = new Counter({
      name: 'stolon_proxy_bytes_total',
      help: 'Bytes forwarded, by listener and direction (up: client to server; down: server to client), counted when a connection closes',
      labelNames: ['listener', 'direction'] as const,
      registers,
    });
    this.targetChanges = new Counter({ name: 'stolon_proxy_target_changes_total', help: 'Changes of the main listener\'s target (including to and from none)', registers });
    new Gauge({
      name: 'stolon_proxy_generation',
      help: 'The proxy generation this proxy enforces (-1 before its first successful check)',
      registers,
      collect() {
        this.set(sources.generation() ?? -1);
      },
    });
    new Gauge({
      name: 'stolon_proxy_has_primary',
      help: '1 while the main listener routes to a primary',
      registers,
      collect() {
        this.set(sources.hasPrimary() ? 1 : 0);
      },
    });
    this.checkFailures = new Counter({
      name: 'stolon_proxy_check_failures_total',
      help: 'Failed checks, by kind (store, slow, invalid, bug, ...)',
      labelNames: ['kind'] as const,
      registers,
    });
    this.lastCheck = new Gauge({ name: 'stolon_proxy_last_check_success_seconds', help: 'When a check last succeeded, seconds since the epoch', registers });
    new Gauge({
      name: 'stolon_proxy_relay_thread_connections',
      help: 'Connections each native relay thread holds (absent with --data-path event-loop)',
      labelNames: ['thread'] as const,
      registers,
      collect() {
        const load = sources.relayLoad();
        load?.forEach((n, i) => this.set({ thread: String(i) }, n));
      },
    });
    for (const kind of listeners) {
      const listener = listenerLabel(kind);
      this.opened.inc({ listener }, 0);
      for (const reason of kind === 'main' ? (['no_target', 'max_connections', 'hold_timeout'] as const) : (['no_target', 'max_connections'] as const)) {
        this.refusals.inc({ listener, reason }, 0);
      }
      this.bytes.inc({ listener, direction: 'up' }, 0);
      this.bytes.inc({ listener, direction: 'down' }, 0);
    }
    this.targetChanges.inc(0);
  }

  /** A client on `kind` is forwarded. */
  accepted(kind: ListenerKind): void {
    this.opened.inc({ listener: listenerLabel(kind) });
  }

  /** A client on `kind` is refused for `reason`. */
  refused(kind: ListenerKind, reason: RefusalReason): void {
    this.refusals.inc({ listener: listenerLabel(kind), reason });
  }

  /** A forwarded connection on `kind` closed, after `up` bytes client → server and `down` back. */
  closed(kind: ListenerKind, up: number, down: number): void {
    const listener = listenerLabel(kind);
    if (up > 0) {
      this.bytes.inc({ listener, direction: 'up' }, up);
    }
    if (down > 0) {
      this.bytes.inc({ listener, direction: 'down' }, down);
    }
  }

  /** The main listener's target changed (a check, or the watchdog routing nowhere). */
  targetChanged(): void {
    this.targetChanges.inc();
  }

  /** A check failed; `kind` is the checker's failure kind. */
  checkFailed(kind: string): void {
    this.checkFailures.inc({ kind });
  }

  /** A check succeeded at `wallMs` (ms since the epoch). */
  checkSucceeded(wallMs: number): void {
    this.lastCheck.set(wallMs / 1000);
  }
}
