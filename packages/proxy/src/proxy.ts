/**
 * The proxy daemon: a TCP forwarder that sends every client connection to the current primary,
 * as clusterdata names it, and fails closed (docs/design.md#fail-closed). It owns:
 * - the check loop (a serial loop, docs/design.md#serial-loops): on every clusterdata watch event
 *   and every `proxyCheckInterval` it reads and validates clusterdata, applies the target, then
 *   publishes its ProxyInfo (the proxy generation it enforces) under a TTL of `proxyTimeout`;
 * - the watchdog: a timer separate from the loop that routes nowhere when no check succeeded
 *   within `proxyTimeout`, because a store call can hang and a hung check must not keep routing;
 * - the forwarder (`forwarder.ts`): accepts clients, dials the target, then moves the bytes on
 *   one of the data paths of `datapath.ts`: the native relay (`relay.ts`) or, with
 *   `dataPath: 'event-loop'`, Node streams (TCP keepalive beyond Node's: `keepalive.ts`);
 * - the listeners (`listeners.ts`): the main port and the optional read-only port, whose
 *   clients the forwarder balances over standbys.
 *
 * The fencing handshake with the sentinel: when the target changes, old connections are closed
 * (and their `close` events awaited) BEFORE the new proxy generation is published, and a new
 * primary is routed to only AFTER the publication succeeded.
 *
 * Behaviour in detail, and where it differs from Stolon's proxy: docs/architecture.md, "The proxy".
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/proxy/cmd/proxy.go (Stolon's proxy)
 */
import { readFileSync } from 'node:fs';
import {
  DEFAULT_SPEC,
  StolonError,
  errorMessage,
  parseClusterData,
  parseDurationMs,
  resolveSpec,
  type ProxyInfo,
} from '@stolon-ts/cluster';
import { BUG_SENTENCE, newUid, startPassLoop, type Logger, type PassLoop, type PassResult } from '@stolon-ts/common';
import type { Store } from '@stolon-ts/store';
import {
  describeTarget,
  resolveReadOnlyTargets,
  resolveTarget,
  sameTarget,
  sameTargets,
  type ProxyTarget,
  type ReadOnlyDecision,
} from './target.js';
import { NativePath } from './datapath.js';
import { Forwarder } from './forwarder.js';
import { Keepalive } from './keepalive.js';
import { Listeners } from './listeners.js';
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
import { CheckFailure, bounded, plural } from './util.js';

/**
 * How long after the watchdog's deadline the relay threads close their connections by themselves
 * (the dead-man switch for a stalled main thread). Later than the watchdog, so that normally the
 * watchdog closes them (and logs it); still well before a new primary can accept writes: the
 * ProxyInfo TTL counts from the publish (after the check started), etcd reaps expired leases
 * every 500 ms, and the sentinel must then see it, decide, and have the new primary promoted.
 */
const RELAY_DEADLINE_SLACK_MS = 250;
/** Bound on each best-effort step of `stop` (closing the watch, deleting the info). */
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

function msFromDefault(text: string): number {
  // DEFAULT_SPEC durations are constants known to parse.
  return parseDurationMs(text) ?? 0;
}

function describeTargets(ts: readonly ProxyTarget[]): string {
  return ts.length === 0 ? 'none' : ts.map(describeTarget).join(', ');
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

class ProxyDaemon {
  private readonly uid: string;
  private readonly listenAddress: string;
  private readonly port: number;
  private readonly stopListening: boolean;
  private readonly maxConnections: number;
  private readonly keepaliveIdleMs: number;
  private readonly keepalive: Keepalive;
  private readonly roConfig: ReadOnlyConfig | null;
  /** The native relay (`dataPath: 'native'`), or null when bytes are piped in the event loop. */
  private readonly native: NativePath | null;
  private readonly store: Store;
  private readonly log: Logger;

  /** Where new clients go and the state; see {@link Routing}. */
  private readonly routing: Routing = { state: 'starting', target: null, roTargets: [] };
  private readonly forwarder: Forwarder;
  /** Proxy generation of the last applied clusterdata (null before any). */
  private generation: number | null = null;
  private everSucceeded = false;

  // Timings adopted from the last successfully read spec (Stolon's defaults until then: ours).
  private checkIntervalMs = msFromDefault(DEFAULT_SPEC.proxyCheckInterval);
  private proxyTimeoutMs = msFromDefault(DEFAULT_SPEC.proxyTimeout);

  // Check loop (common's pass loop: serial checks, the clusterdata watch, one sentence per check).
  private loop: PassLoop | null = null;

  // Watchdog.
  private watchdogTimer: NodeJS.Timeout | undefined;
  /** True from the watchdog firing until the next successful check. */
  private watchdogFired = false;
  /** How often the watchdog fired (lets a check tell that the target moved under it). */
  private watchdogFires = 0;

  private readonly listeners: Listeners;

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
    this.native = (config.dataPath ?? 'native') === 'native' ? new NativePath(config.relayThreads || defaultRelayThreads(), this.log) : null;
    this.keepalive = new Keepalive(
      { idleMs: this.keepaliveIdleMs, intervalS: config.tcpKeepaliveIntervalS ?? 0, count: config.tcpKeepaliveCount ?? 0 },
      this.log,
    );
    this.forwarder = new Forwarder({
      log: this.log,
      maxConnections: this.maxConnections,
      keepaliveIdleMs: this.keepaliveIdleMs,
      keepalive: this.keepalive,
      native: this.native,
      routing: this.routing,
      stopping: () => this.stopRequested,
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
      stopping: () => this.stopRequested,
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
    };
  }

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
    const limit = openFilesLimit();
    const needed = 2 * this.maxConnections + 64;
    if (limit !== undefined && (this.maxConnections === 0 || limit < needed)) {
      this.log.warn(
        { openFilesLimit: limit, maxConnections: this.maxConnections },
        this.maxConnections === 0
          ? `no connection limit (--max-connections 0): past about ${Math.floor((limit - 64) / 2)} connections the open-files limit (${limit}) will refuse new ones`
          : `the open-files limit (${limit}) is below what --max-connections ${this.maxConnections} needs (${needed}: two per connection); raise it (ulimit -n) or lower --max-connections`,
      );
    }
    // Serial: the next check is armed only after the current one settled, with the interval
    // re-read from the last spec; requests during a check coalesce into one more check. The
    // clusterdata watch triggers checks; each attempt to start it is bounded by proxyTimeout.
    this.loop = startPassLoop({
      log: this.log,
      run: (ctx) => this.runCheck(ctx.pass, ctx.trigger),
      intervalMs: () => this.checkIntervalMs,
      watch: { store: this.store, topics: ['clusterdata'], timeoutMs: () => this.proxyTimeoutMs },
      passField: 'check',
    });
  }

  // ---------------------------------------------------------------- check loop

  /**
   * One check; never rejects. Its one sentence goes to the pass loop's log: a bug every check,
   * anything else when the state, target, generation or failure kind changed (debug otherwise).
   */
  private async runCheck(seq: number, trigger: string): Promise<PassResult> {
    const startedAt = performance.now();
    let before = this.routing.target;
    let roBefore = this.routing.roTargets;
    const watchdogFiresBefore = this.watchdogFires;
    let reason: string;
    let failure: CheckFailure | null = null;
    const closed = { main: 0, ro: 0 };
    try {
      const r = await this.check(startedAt);
      reason = r.reason;
      closed.main += r.closed.main;
      closed.ro += r.closed.ro;
    } catch (err) {
      failure = this.classify(err);
      reason = this.failureSentence(failure);
      const storeTrouble = failure.kind === 'store' || failure.kind === 'slow';
      if (!this.stopRequested && !storeTrouble) {
        // Fail closed: invalid clusterdata (or a bug) means route nowhere at once, on both ports.
        const c = await this.routeNowhere();
        closed.main += c.main;
        closed.ro += c.ro;
      }
      // A store that cannot be read is given until proxyTimeout (the watchdog, counted from the
      // last successful check) before connections are dropped: a short etcd leader election
      // must not cut every client connection.
      if (!this.stopRequested) {
        if (this.everSucceeded) {
          // Once the watchdog fired the state stays store-lost (listener closed) until a success.
          this.routing.state = storeTrouble || this.watchdogFired ? 'store-lost' : 'fenced';
        }
      }
    }
    if (this.stopRequested && failure === null) {
      reason = `check abandoned: stopping (${reason})`;
    }
    if (this.watchdogFires !== watchdogFiresBefore) {
      before = null; // the watchdog already logged the change to none
      roBefore = [];
    }
    const gen = `proxy generation ${this.generation ?? 'unknown'}`;
    if (!sameTarget(before, this.routing.target)) {
      this.log.info(
        { check: seq, from: describeTarget(before), to: describeTarget(this.routing.target), generation: this.generation, closed: closed.main },
        `target changed from ${describeTarget(before)} to ${describeTarget(this.routing.target)} ` +
          `(${gen}); closed ${plural(closed.main, 'connection')}`,
      );
    }
    if (this.roConfig !== null && !sameTargets(roBefore, this.routing.roTargets)) {
      this.log.info(
        {
          check: seq,
          from: describeTargets(roBefore),
          to: describeTargets(this.routing.roTargets),
          generation: this.generation,
          closed: closed.ro,
        },
        `read-only targets changed from ${describeTargets(roBefore)} to ${describeTargets(this.routing.roTargets)} ` +
          `(${gen}); closed ${plural(closed.ro, 'read-only connection')}`,
      );
    }
    const fields = {
      trigger,
      state: this.routing.state,
      target: describeTarget(this.routing.target),
      ...(this.roConfig !== null ? { roTargets: describeTargets(this.routing.roTargets) } : {}),
      generation: this.generation,
      connections: this.forwarder.count(),
      durationMs: Math.round(performance.now() - startedAt),
    };
    const key = `${this.routing.state}|${fields.target}|${fields.roTargets ?? ''}|${this.generation}|${failure?.kind ?? ''}`;
    if (failure === null) {
      return { sentence: reason, fields, key };
    }
    // A repeated failure is logged at debug without its stack: the sentence carries the message.
    return { sentence: reason, fields, key, level: failure.kind === 'bug' ? 'error' : 'warn', err: failure.err };
  }

  /**
   * Reads, validates, applies and publishes. Returns the reason sentence and how many
   * connections it closed.
   * @throws CheckFailure (or anything unexpected, classified by the caller).
   */
  private async check(startedAt: number): Promise<{ reason: string; closed: { main: number; ro: number } }> {
    const timeoutMs = this.proxyTimeoutMs;
    const rec = await bounded(this.storeCall(this.store.getClusterData(), 'reading clusterdata'), timeoutMs, 'reading clusterdata');
    if (this.stopRequested) {
      return { reason: 'stopping', closed: { main: 0, ro: 0 } };
    }

    let decision: { target: ProxyTarget | null; generation: number | null; reason: string };
    let ro: ReadOnlyDecision | null = null;
    let spec: { proxyCheckIntervalMs: number; proxyTimeoutMs: number } | null = null;
    if (rec === null) {
      decision = { target: null, generation: null, reason: 'fenced: no clusterdata in the store (cluster not initialised)' };
      if (this.roConfig !== null) {
        ro = { targets: [], fallback: false, reason: 'read-only: no clusterdata, routing nowhere' };
      }
    } else {
      // Both throw ClusterDataInvalidError / SpecValidationError (StolonErrors → 'invalid').
      const cd = parseClusterData(rec.text);
      spec = resolveSpec(cd.cluster.spec);
      decision = resolveTarget(cd, this.uid);
      if (this.roConfig !== null) {
        ro = resolveReadOnlyTargets(cd, {
          maxLagBytes: this.roConfig.maxLagBytes,
          fallback: this.roConfig.fallbackToPrimary ? decision.target : null,
        });
      }
    }

    // Close every connection whose backend is no longer allowed first, and wait until they are
    // gone: only then may the new generation be published (the sentinel's fencing handshake).
    // A new primary is routed to, from either port, only after the publication succeeded.
    const mainChanged = !sameTarget(this.routing.target, decision.target);
    const roNext = ro?.targets ?? [];
    if (mainChanged) {
      this.routing.target = null;
    }
    this.routing.roTargets = mainChanged && decision.target !== null ? roNext.filter((t) => !sameTarget(t, decision.target)) : roNext;
    const closed = await this.closeStale();
    if (decision.generation !== null && spec !== null) {
      const info: ProxyInfo = {
        infoUID: newUid(),
        UID: this.uid,
        Generation: decision.generation,
        ProxyTimeout: Math.round(spec.proxyTimeoutMs * 1e6),
      };
      await bounded(
        this.storeCall(this.store.setInfo('proxies', this.uid, info, spec.proxyTimeoutMs), 'publishing proxy info'),
        timeoutMs,
        'publishing proxy info',
      );
    }
    if (this.stopRequested) {
      return { reason: 'stopping', closed };
    }
    const newTimeoutMs = spec?.proxyTimeoutMs ?? this.proxyTimeoutMs;
    if (performance.now() - startedAt >= newTimeoutMs) {
      // What was read may be older than the watchdog allows; do not act on it.
      throw new CheckFailure(
        'slow',
        `check took ${Math.round(performance.now() - startedAt)} ms, longer than proxyTimeout (${newTimeoutMs} ms)`,
      );
    }

    // Success: adopt the spec's timings, re-arm the watchdog, route, listen.
    if (spec !== null) {
      this.checkIntervalMs = spec.proxyCheckIntervalMs;
      this.proxyTimeoutMs = spec.proxyTimeoutMs;
    }
    this.generation = decision.generation;
    this.everSucceeded = true;
    this.watchdogFired = false;
    this.armWatchdog(startedAt + this.proxyTimeoutMs);
    this.routing.target = decision.target;
    this.routing.roTargets = roNext;
    this.routing.state = decision.target === null ? 'fenced' : 'routing';
    this.listeners.setWanted(true);
    await this.listeners.sync();
    return { reason: ro === null ? decision.reason : `${decision.reason}; ${ro.reason}`, closed };
  }

  /** Marks errors thrown by a store call so they are told apart from validation errors. */
  private async storeCall<T>(p: Promise<T>, what: string): Promise<T> {
    try {
      return await p;
    } catch (err) {
      if (err instanceof StolonError) {
        throw new CheckFailure('store', `${what}: ${err.message}`, err);
      }
      // The store contract says StoreUnavailableError; anything else is a bug in a backend.
      throw new CheckFailure('bug', `${what}: ${errorMessage(err)}`, err);
    }
  }

  private classify(err: unknown): CheckFailure {
    if (err instanceof CheckFailure) {
      return err;
    }
    if (err instanceof StolonError) {
      // ClusterDataInvalidError, SpecValidationError: the data, not the proxy, is wrong.
      return new CheckFailure('invalid', err.message, err);
    }
    return new CheckFailure('bug', errorMessage(err), err);
  }

  private failureSentence(f: CheckFailure): string {
    switch (f.kind) {
      case 'store':
        return `store unreachable: ${f.message}; routing nowhere`;
      case 'slow':
        return `store too slow: ${f.message}; routing nowhere`;
      case 'invalid':
        return `invalid clusterdata: ${f.message}`;
      case 'bug':
        return `${BUG_SENTENCE} (proxy check: ${f.message}); routing nowhere`;
    }
  }

  // ---------------------------------------------------------------- watchdog

  private armWatchdog(deadline: number): void {
    clearTimeout(this.watchdogTimer);
    const ms = Math.max(0, deadline - performance.now());
    this.watchdogTimer = setTimeout(() => this.onWatchdog(), ms);
    // The same deadline (plus RELAY_DEADLINE_SLACK_MS) for the relay threads, enforced without
    // this thread (relay.ts `renew`).
    this.native?.renew(ms + RELAY_DEADLINE_SLACK_MS);
  }

  private onWatchdog(): void {
    this.watchdogTimer = undefined;
    if (this.stopRequested) {
      return;
    }
    const was = describeTarget(this.routing.target);
    const connections = this.forwarder.count();
    this.routing.state = 'store-lost';
    this.watchdogFired = true;
    this.watchdogFires++;
    if (this.stopListening) {
      this.listeners.setWanted(false);
    }
    // Stop publishing: nothing is published until a check succeeds again, so the sentinel sees
    // this proxy vanish when its info TTL expires, by which time it routes nowhere.
    this.log.warn(
      { from: was, connections, proxyTimeoutMs: this.proxyTimeoutMs, generation: this.generation },
      `no successful check within proxyTimeout (${this.proxyTimeoutMs} ms): ` +
        (this.routing.target === null ? 'routing nowhere' : `target changed from ${was} to none`) +
        (this.roConfig !== null && this.routing.roTargets.length > 0 ? `, read-only targets changed from ${describeTargets(this.routing.roTargets)} to none` : '') +
        ` (proxy generation ${this.generation ?? 'unknown'}), closing ${plural(connections, 'connection')}` +
        (this.stopListening ? `, closing the listener${this.roConfig !== null ? 's' : ''} until a check succeeds` : ', still listening'),
    );
    void this.routeNowhere();
    void this.listeners.sync();
  }

  // ---------------------------------------------------------------- routing

  /** Routes nowhere on both listeners and destroys every connection. */
  private routeNowhere(): Promise<{ main: number; ro: number }> {
    this.routing.target = null;
    this.routing.roTargets = [];
    return this.closeStale();
  }

  /**
   * Closes (both sides at once) every connection whose backend is no longer allowed: main
   * connections not to `target`, read-only ones not to one of `roTargets`; waits until they are
   * all gone. @returns how many were closed, per listener.
   */
  private closeStale(): Promise<{ main: number; ro: number }> {
    const { routing } = this;
    return this.forwarder.closeWhere((kind, t) =>
      kind === 'main' ? !sameTarget(t, routing.target) : !routing.roTargets.some((r) => sameTarget(r, t)),
    );
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
    clearTimeout(this.watchdogTimer);
    this.watchdogTimer = undefined;
    this.listeners.setWanted(false);
    // A check in flight may be publishing; deleting the info before it lands would be undone.
    // Its store calls are bounded by proxyTimeout; loop.stop() waits for it.
    await this.loop?.stop();
    await this.routeNowhere();
    this.native?.stop();
    this.forwarder.dropRefusing();
    await this.listeners.sync();
    if (this.everSucceeded) {
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
