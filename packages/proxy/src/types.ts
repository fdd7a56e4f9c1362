/**
 * The proxy's shapes: its configuration, dependencies, state and handle (the package's public
 * API, exported from index.ts), and the routing the check loop decides and the forwarder reads.
 * No logic here, so every proxy module can import it without an import cycle. How the proxy
 * works: docs/architecture.md, "The proxy".
 */
import type { Logger } from '@stolon-ts/common';
import type { Registry } from 'prom-client';
import type { Store } from '@stolon-ts/store';
import type { ProxyHealthSnapshot } from './health.js';
import type { ProxyTarget } from './target.js';

/** What `start` (proxy.ts) needs to know. */
export interface ProxyConfig {
  /**
   * This proxy's UID: published as `UID` in its ProxyInfo and looked up in
   * `proxy.spec.enabledProxies`. Random per process start (`newUid()`), as in Stolon.
   */
  uid: string;
  /** Address to listen on for clients (the `--listen-address` flag defaults to 127.0.0.1). */
  listenAddress: string;
  /** TCP port to listen on; 0 lets the OS choose (see {@link ProxyHandle.port}). The `--port` flag defaults to 5432. */
  port: number;
  /**
   * Close the listening socket when no check succeeded within `proxyTimeout`, so load balancers
   * and Kubernetes readiness probes stop sending clients; it re-opens on the next successful
   * check. When false, the listener stays open and new connections are closed at once.
   * @default true
   */
  stopListening?: boolean;
  /**
   * The member API bearer token (`--member-token-file` or STPROXY_MEMBER_TOKEN): in failsafe mode,
   * while the store is unreachable, the proxy keeps routing while the primary's keeper confirms
   * it still holds the role. Undefined: it stops routing at the watchdog, as without failsafe mode.
   */
  memberToken?: string;
  /**
   * Most client connections forwarded at once, both listeners together (`--max-connections`);
   * 0 means no limit. A client over the limit gets a PostgreSQL ErrorResponse (SQLSTATE 53300)
   * after its startup packet, and a warning is logged. Each connection holds two file
   * descriptors: the proxy warns at start when the open-files limit cannot hold them all.
   * @default {@link DEFAULT_MAX_CONNECTIONS}
   */
  maxConnections?: number;
  /**
   * Seconds of idleness before TCP keepalive probes start, on both sides of every connection
   * (`--tcp-keepalive-idle`, TCP_KEEPIDLE); 0 keeps the kernel's `net.ipv4.tcp_keepalive_time`.
   * Node (libuv) then probes every 1 s, 10 times (see `tcpKeepaliveCount`).
   * @default 0
   */
  tcpKeepaliveIdleS?: number;
  /**
   * Stolon's `--tcp-keepalive-count` (TCP_KEEPCNT), set on both sides of every connection by the
   * relay addon (`setKeepalive`; Node itself cannot). 0: libuv's 10 when `tcpKeepaliveIdleS` is
   * set, else the kernel's `tcp_keepalive_probes`. Without the addon built, a non-zero value is
   * logged as not applied.
   * @default 0
   */
  tcpKeepaliveCount?: number;
  /**
   * Stolon's `--tcp-keepalive-interval` in seconds (TCP_KEEPINTVL), set as `tcpKeepaliveCount`.
   * 0: libuv's 1 s when `tcpKeepaliveIdleS` is set, else the kernel's `tcp_keepalive_intvl`.
   * @default 0
   */
  tcpKeepaliveIntervalS?: number;
  /** The read-only listener (`--ro-port`); absent or null: none. */
  readOnly?: ReadOnlyConfig | null;
  /**
   * How bytes are moved once a connection is set up (`--data-path`): `native`, the relay
   * threads of `relay.ts` (the addon built by `npm run build`); `event-loop`, Node streams on
   * the main thread (slower: about 0.65 of HAProxy's throughput against about 1.1 for `native`,
   * docs/benchmarks.md). `native` without the addon built makes `start` (proxy.ts) throw.
   * @default 'native'
   */
  dataPath?: DataPath;
  /**
   * Relay threads for `dataPath: 'native'` (`--relay-threads`); 0: `defaultRelayThreads` (relay.ts)
   * (one per CPU, at most 4). A connection stays on the thread that got it (least loaded first).
   * @default 0
   */
  relayThreads?: number;
}

/** See {@link ProxyConfig.dataPath}. */
export type DataPath = 'native' | 'event-loop';

/** The read-only listener's settings (the `--ro-*` flags). */
export interface ReadOnlyConfig {
  /** Address to listen on (`--ro-listen-address`, defaulting to `--listen-address`). */
  listenAddress: string;
  /** TCP port; 0 lets the OS choose (see {@link ProxyHandle.roPort}). */
  port: number;
  /**
   * Most bytes of WAL a standby's replayed LSN may be behind the primary's LSN, as last
   * reported in clusterdata (`--ro-max-lag-bytes`). @see resolveReadOnlyTargets
   */
  maxLagBytes: number;
  /**
   * Send read-only clients to the primary when no standby qualifies, and only while the main
   * port routes to it (`--ro-fallback-to-primary`).
   */
  fallbackToPrimary: boolean;
}

/** Most relay threads (`--relay-threads`): more than CPUs only adds context switches. */
export const MAX_RELAY_THREADS = 64;

/** Default of {@link ProxyConfig.maxConnections}: far above PostgreSQL's own default of 100. */
export const DEFAULT_MAX_CONNECTIONS = 2000;

/** What `start` (proxy.ts) uses; tests substitute an in-memory store and a captured logger. */
export interface ProxyDeps {
  /** The store client; not closed by the proxy (its owner, the bin, closes it). */
  store: Store;
  /** The process logger (docs/design.md#logging). */
  logger: Logger;
  /**
   * Where to register the proxy's metrics (metrics.ts; the status endpoint's `/metrics`).
   * Default: a private registry nobody scrapes.
   */
  registry?: Registry;
}

/**
 * The proxy's lifecycle:
 * - `starting`: no check has succeeded yet; not listening (a proxy that never reached the store
 *   never listens, as in Stolon).
 * - `routing`: the last check succeeded and clients are forwarded to the primary.
 * - `fenced`: routing nowhere because clusterdata says so (no primary, this proxy not enabled,
 *   no clusterdata) or is invalid; still listening, new connections are closed at once (during a
 *   planned switchover they are held instead: {@link Routing.holdMs}).
 * - `store-lost`: the last check could not read the store or publish. The targets stay until no
 *   check succeeded within `proxyTimeout`; then the watchdog fires and the proxy routes nowhere
 *   (with `stopListening` the listener is then closed).
 * - `stopping`, `stopped`: after {@link ProxyHandle.stop}.
 * - `failed`: stopped on a fatal error (the listener could not be opened); `done` rejects.
 *
 * The state is the main listener's: while `fenced`, the read-only listener may still serve
 * standbys (reads during a failover are safe); in `store-lost` it keeps or drops its targets
 * together with the main listener.
 */
export type ProxyState = 'starting' | 'routing' | 'fenced' | 'store-lost' | 'stopping' | 'stopped' | 'failed';

/** The running proxy (docs/design.md#daemon-handles). */
export interface ProxyHandle {
  /** Resolves when the listener opened for the first time; rejects if the proxy stops first. */
  readonly ready: Promise<void>;
  /** Resolves when the proxy stopped; rejects with the first fatal error. */
  readonly done: Promise<void>;
  /**
   * Stops checking, closes the listener, destroys every connection and deletes this proxy's
   * ProxyInfo (best effort). Resolves when stopped (also after a fatal error); idempotent.
   */
  stop(reason: string): Promise<void>;
  /** The bound TCP port once the listener opened (useful with port 0), else the configured port. */
  port(): number;
  /** As {@link port}, for the read-only listener; null when there is none. */
  roPort(): number | null;
  /** The current {@link ProxyState}. */
  state(): ProxyState;
  /**
   * Client connections currently forwarded (each paired with one connection to a backend), on
   * both listeners, or on one when `kind` is given.
   */
  connections(kind?: ListenerKind): number;
  /** What the status endpoint's checks decide from (health.ts: `proxyChecks`). */
  health(): ProxyHealthSnapshot;
}

/** Which listener a connection came in on: `main` (the primary) or `ro` (read-only). */
export type ListenerKind = 'main' | 'ro';

/**
 * Where new clients go, and the {@link ProxyState} that goes with it. One object, shared: the
 * check loop and the watchdog (checker.ts) and the lifecycle (proxy.ts: stopping, stopped) write
 * it; the forwarder (forwarder.ts) reads it on every accept. Internal: not exported by index.ts.
 */
export interface Routing {
  state: ProxyState;
  /** The main listener's backend (the primary); null: nowhere. */
  target: ProxyTarget | null;
  /** Where the read-only listener may send new clients (empty: nowhere). */
  roTargets: readonly ProxyTarget[];
  /**
   * While `target` is null during a planned switchover: how long, in ms, each new main-listener
   * client is held (accepted, not connected) waiting for the new primary (the spec's
   * `switchoverHoldTimeout`); 0: not holding, new clients are closed at once.
   */
  holdMs: number;
}
