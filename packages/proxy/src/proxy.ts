/**
 * The proxy daemon: a TCP forwarder that sends every client connection to the current primary,
 * as clusterdata names it, and fails closed (docs/design.md#fail-closed). This module is its
 * entry point and lifecycle: {@link start} checks the configuration and wires the parts, the
 * handle, the start-up log lines, stop (once) and a fatal error. The parts:
 * - checker.ts: the check loop and the watchdog (what to route to; the fencing handshake);
 * - forwarder.ts: the connection table (accept, refuse over the limit, pick, forward, close);
 * - datapath.ts: how bytes move, on the native relay (relay.ts) or in the event loop;
 * - listeners.ts: the main and read-only listening sockets;
 * - keepalive.ts: the TCP keepalive interval and count;
 * - types.ts: the shapes (config, handle, state, routing); target.ts: the pure routing
 *   decisions; pgwire.ts: the bit of the PostgreSQL protocol used to refuse a client.
 *
 * Behaviour in detail, and where it differs from Stolon's proxy: docs/architecture.md, "The proxy".
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/proxy/cmd/proxy.go (Stolon's proxy)
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { StolonError, errorMessage } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import type { Store } from '@stolon-ts/store';
import { Checker } from './checker.js';
import { NativePath } from './datapath.js';
import { Forwarder } from './forwarder.js';
import { Keepalive } from './keepalive.js';
import { Listeners } from './listeners.js';
import { ProxyMetrics } from './metrics.js';
import { defaultRelayThreads, loadRelayAddon } from './relay.js';
import {
  DEFAULT_MAX_CONNECTIONS,
  MAX_RELAY_THREADS,
  type ProxyConfig,
  type ProxyDeps,
  type ProxyHandle,
  type ReadOnlyConfig,
  type Routing,
} from './types.js';
import { bounded, plural } from './util.js';

/** Bound on each best-effort step of `stop` (deleting the info). */
const STOP_STEP_TIMEOUT_MS = 2_000;

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
  settled: boolean;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The caller may never await it; a rejection must not become an unhandled rejection.
  promise.catch(() => undefined);
  const d: Deferred = {
    promise,
    settled: false,
    resolve: () => {
      d.settled = true;
      resolve();
    },
    reject: (err) => {
      d.settled = true;
      reject(err);
    },
  };
  return d;
}

/**
 * The soft open-files limit from /proc/self/limits (Linux); undefined elsewhere or "unlimited".
 */
function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    return soft !== undefined && /^\d+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}

/** Warns at start when the open-files limit cannot hold `maxConnections` (two descriptors each). */
function warnOnOpenFilesLimit(maxConnections: number, log: Logger): void {
  const limit = openFilesLimit();
  const needed = 2 * maxConnections + 64;
  if (limit !== undefined && (maxConnections === 0 || limit < needed)) {
    log.warn(
      { openFilesLimit: limit, maxConnections },
      maxConnections === 0
        ? `no connection limit (--max-connections 0): past about ${Math.floor((limit - 64) / 2)} connections the open-files limit (${limit}) will refuse new ones`
        : `the open-files limit (${limit}) is below what --max-connections ${maxConnections} needs (${needed}: two per connection); raise it (ulimit -n) or lower --max-connections`,
    );
  }
}

/** The running proxy: its parts, wired; its lifecycle. */
class ProxyDaemon {
  private readonly uid: string;
  private readonly listenAddress: string;
  private readonly port: number;
  private readonly stopListening: boolean;
  private readonly maxConnections: number;
  private readonly keepaliveIdleMs: number;
  private readonly roConfig: ReadOnlyConfig | null;
  private readonly store: Store;
  private readonly log: Logger;

  /** Where new clients go and the state; see {@link Routing}. */
  private readonly routing: Routing = { state: 'starting', target: null, roTargets: [], holdMs: 0 };
  /** The native relay (`dataPath: 'native'`), or null when bytes are piped in the event loop. */
  private readonly native: NativePath | null;
  private readonly keepalive: Keepalive;
  private readonly forwarder: Forwarder;
  private readonly listeners: Listeners;
  private readonly checker: Checker;

  // Lifecycle.
  private stopRequested = false;
  private stopPromise: Promise<void> | null = null;
  private fatal: { err: unknown } | null = null;
  readonly ready = deferred();
  readonly done = deferred();

  constructor(config: ProxyConfig, deps: ProxyDeps) {
    this.uid = config.uid;
    this.listenAddress = config.listenAddress;
    this.port = config.port;
    this.stopListening = config.stopListening ?? true;
    this.maxConnections = config.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.keepaliveIdleMs = (config.tcpKeepaliveIdleS ?? 0) * 1000;
    this.roConfig = config.readOnly ?? null;
    this.store = deps.store;
    this.log = deps.logger;
    const stopping = (): boolean => this.stopRequested;
    this.native = (config.dataPath ?? 'native') === 'native' ? new NativePath(config.relayThreads || defaultRelayThreads(), this.log) : null;
    this.keepalive = new Keepalive(
      { idleMs: this.keepaliveIdleMs, intervalS: config.tcpKeepaliveIntervalS ?? 0, count: config.tcpKeepaliveCount ?? 0 },
      this.log,
    );
    const metrics = new ProxyMetrics(deps.registry ?? new Registry(), {
      connections: (kind) => this.forwarder.count(kind),
      held: () => this.forwarder.heldCount(),
      readOnly: this.roConfig !== null,
      generation: () => this.checker.enforcedGeneration(),
      hasPrimary: () => this.routing.target !== null,
      relayLoad: () => this.native?.loads() ?? null,
    });
    this.forwarder = new Forwarder({
      metrics,
      log: this.log,
      maxConnections: this.maxConnections,
      keepaliveIdleMs: this.keepaliveIdleMs,
      keepalive: this.keepalive,
      native: this.native,
      routing: this.routing,
      stopping,
    });
    this.listeners = new Listeners({
      main: { address: config.listenAddress, port: config.port },
      ro: this.roConfig === null ? null : { address: this.roConfig.listenAddress, port: this.roConfig.port },
      keepaliveIdleMs: this.keepaliveIdleMs,
      log: this.log,
      onConnection: (kind, client) => this.forwarder.accept(kind, client),
      onListening: () => {
        if (!this.ready.settled) {
          this.ready.resolve();
        }
      },
      onError: (err) => this.fail(err),
      stopping,
    });
    this.checker = new Checker({
      uid: this.uid,
      store: this.store,
      log: this.log,
      readOnly: this.roConfig,
      stopListening: this.stopListening,
      routing: this.routing,
      connections: this.forwarder,
      listeners: this.listeners,
      relay: this.native,
      stopping,
      memberToken: config.memberToken,
      metrics,
    });
  }

  handle(): ProxyHandle {
    return {
      ready: this.ready.promise,
      done: this.done.promise,
      stop: (reason) => this.stop(reason),
      port: () => this.listeners.mainPort(),
      roPort: () => this.listeners.roPort(),
      state: () => this.routing.state,
      connections: (kind) => this.forwarder.count(kind),
      health: () => this.checker.health(),
    };
  }

  /** Logs how the proxy starts (and what the keepalive flags and the open-files limit allow), then starts checking. */
  begin(): void {
    this.log.info(
      {
        listenAddress: this.listenAddress,
        port: this.port,
        stopListening: this.stopListening,
        maxConnections: this.maxConnections,
        tcpKeepaliveIdleMs: this.keepaliveIdleMs,
        readOnly: this.roConfig,
        dataPath: this.native === null ? 'event-loop' : 'native',
        relayThreads: this.native?.threads() ?? 0,
      },
      `proxy ${this.uid} starting: not listening until clusterdata has been read; ` +
        (this.native === null
          ? 'forwarding in the event loop (--data-path event-loop)'
          : `forwarding on ${plural(this.native.threads(), 'native relay thread')}`),
    );
    this.keepalive.announce();
    warnOnOpenFilesLimit(this.maxConnections, this.log);
    this.checker.start();
  }

  // ---------------------------------------------------------------- lifecycle

  private fail(err: unknown): void {
    if (this.fatal !== null || this.stopPromise !== null) {
      return; // the first fatal error wins
    }
    this.fatal = { err };
    this.log.error({ err }, `proxy failed: ${errorMessage(err)}`);
    void this.stop('fatal error');
  }

  stop(reason: string): Promise<void> {
    this.stopPromise ??= this.shutdown(reason);
    return this.stopPromise;
  }

  private async shutdown(reason: string): Promise<void> {
    this.stopRequested = true;
    this.routing.state = 'stopping';
    this.log.info({ reason }, `proxy stopping: ${reason}`);
    this.listeners.setWanted(false);
    // A check in flight may be publishing; deleting the info before it lands would be undone.
    // Its store calls are bounded by proxyTimeout; the checker's stop waits for it (and disarms
    // the watchdog first).
    await this.checker.stop();
    await this.checker.routeNowhere();
    this.native?.stop();
    this.forwarder.dropRefusing();
    await this.listeners.sync();
    if (this.checker.hasSucceeded()) {
      await bounded(this.store.deleteInfo('proxies', this.uid), STOP_STEP_TIMEOUT_MS, 'deleting proxy info').catch(
        (err: unknown) =>
          this.log.warn({ err }, `could not delete this proxy's info (${errorMessage(err)}); it expires with its TTL`),
      );
    }
    this.routing.state = this.fatal !== null ? 'failed' : 'stopped';
    const { accepted, refused, overLimit } = this.forwarder.totals();
    this.log.info(
      { accepted, refused, overLimit },
      `proxy ${this.routing.state}: forwarded ${accepted} connections, refused ${refused} (no target) and ${overLimit} (over --max-connections)`,
    );
    if (!this.ready.settled) {
      this.ready.reject(new Error(`proxy stopped before it was ready (${reason})`));
    }
    if (this.fatal !== null) {
      this.done.reject(this.fatal.err);
    } else {
      this.done.resolve();
    }
  }
}

/**
 * Starts a proxy: begins checking clusterdata at once and opens the listener after the first
 * successful check. Resolves as soon as the loop runs (the store may still be unreachable; see
 * {@link ProxyHandle.ready}). Never throws for store trouble: the proxy keeps retrying.
 * @throws RangeError when `config.port` (or `config.readOnly.port`) is not an integer in 0–65535,
 *   `config.uid` is empty, a count, limit or duration is negative or not an integer, or
 *   `relayThreads` is above {@link MAX_RELAY_THREADS}; StolonError when `dataPath` is `native`
 *   and the relay addon is not built (the message says how to build it).
 */
export async function start(config: ProxyConfig, deps: ProxyDeps): Promise<ProxyHandle> {
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
    throw new RangeError(`port must be an integer in 0-65535, got ${config.port}`);
  }
  const ro = config.readOnly;
  if (ro !== undefined && ro !== null) {
    if (!Number.isInteger(ro.port) || ro.port < 0 || ro.port > 65535) {
      throw new RangeError(`readOnly.port must be an integer in 0-65535, got ${ro.port}`);
    }
    if (!Number.isSafeInteger(ro.maxLagBytes) || ro.maxLagBytes < 0) {
      throw new RangeError(`readOnly.maxLagBytes must be a non-negative integer, got ${ro.maxLagBytes}`);
    }
  }
  for (const [name, v] of [
    ['maxConnections', config.maxConnections],
    ['tcpKeepaliveIdleS', config.tcpKeepaliveIdleS],
    ['tcpKeepaliveCount', config.tcpKeepaliveCount],
    ['tcpKeepaliveIntervalS', config.tcpKeepaliveIntervalS],
    ['relayThreads', config.relayThreads],
  ] as const) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
      throw new RangeError(`${name} must be a non-negative integer, got ${v}`);
    }
  }
  if (config.uid === '' || config.uid.includes('/')) {
    throw new RangeError(`uid must be non-empty and contain no '/', got "${config.uid}"`);
  }
  if (config.relayThreads !== undefined && config.relayThreads > MAX_RELAY_THREADS) {
    throw new RangeError(`relayThreads must be at most ${MAX_RELAY_THREADS}, got ${config.relayThreads}`);
  }
  if (config.dataPath !== undefined && config.dataPath !== 'native' && config.dataPath !== 'event-loop') {
    throw new RangeError(`dataPath must be 'native' or 'event-loop', got ${JSON.stringify(config.dataPath)}`);
  }
  if ((config.dataPath ?? 'native') === 'native') {
    const addon = loadRelayAddon();
    if ('error' in addon) {
      throw new StolonError('INTERNAL', `${addon.error}; or forward in the event loop with --data-path event-loop (slower)`);
    }
  }
  const daemon = new ProxyDaemon(config, deps);
  daemon.begin();
  return daemon.handle();
}
