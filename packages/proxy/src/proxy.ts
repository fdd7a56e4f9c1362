/**
 * The proxy daemon: a TCP forwarder that sends every client connection to the current primary,
 * as clusterdata names it, and fails closed (DESIGN.md §4, STYLE.md rule 11).
 *
 * Three independent parts:
 * - the check loop (serial ticks, STYLE.md rule 10): on every clusterdata watch event and every
 *   `proxyCheckInterval` it reads and validates clusterdata, applies the target, then publishes
 *   its ProxyInfo (the proxy generation it now enforces) under a TTL of `proxyTimeout`;
 * - the watchdog: a timer separate from the loop that routes nowhere (and, with
 *   `stopListening`, closes the listener) when no check succeeded within `proxyTimeout`, because
 *   a store call can hang and a hung check must not keep routing;
 * - the forwarder: accepts clients, dials the target, and pipes bytes both ways. When the target
 *   changes (including to or from none) every existing connection is destroyed at once.
 *
 * The fencing handshake with the sentinel: when the target changes, old connections are closed
 * (and their `close` events awaited) BEFORE the new proxy generation is published, and a new
 * primary is routed to only AFTER the publication succeeded (as Stolon: the sentinel must know
 * every proxy that may route to a primary).
 *
 * Differences from Stolon, on purpose: a failed read, publish or validation routes nowhere at
 * once instead of only when the watchdog fires; the watchdog deadline counts from the START of
 * the last successful check, so it always fires before the ProxyInfo TTL (counted from the
 * publish, which is later) can expire and the sentinel can consider this proxy gone; checks also
 * run on watch events, not only every interval.
 * @see ../../../../shared/reference/stolon.md §4.6 and §6 (Stolon `cmd/proxy/cmd/proxy.go`, pollon)
 */
import net from 'node:net';
import {
  DEFAULT_SPEC,
  StolonError,
  errorMessage,
  parseClusterData,
  parseDurationMs,
  resolveSpec,
  type ProxyInfo,
} from '@stolon-ts/cluster';
import { BUG_SENTENCE, newUid, startSerialLoop, type Logger, type SerialLoop } from '@stolon-ts/common';
import type { Store, StoreWatch } from '@stolon-ts/store';
import { describeTarget, formatAddress, resolveTarget, sameTarget, type ProxyTarget } from './target.js';

/** What {@link start} needs to know. */
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
}

/** What {@link start} uses; tests substitute an in-memory store and a captured logger. */
export interface ProxyDeps {
  /** The store client; not closed by the proxy (its owner, the bin, closes it). */
  store: Store;
  /** The process logger (STYLE.md rule 17). */
  logger: Logger;
}

/**
 * The proxy's lifecycle:
 * - `starting`: no check has succeeded yet; not listening (a proxy that never reached the store
 *   never listens, as in Stolon).
 * - `routing`: the last check succeeded and clients are forwarded to the primary.
 * - `fenced`: routing nowhere because clusterdata says so (no primary, this proxy not enabled,
 *   no clusterdata) or is invalid; still listening, new connections are closed at once.
 * - `store-lost`: routing nowhere because the last check could not read the store or publish,
 *   or no check succeeded within `proxyTimeout` (the watchdog fired; with `stopListening` the
 *   listener is then closed).
 * - `stopping`, `stopped`: after {@link ProxyHandle.stop}.
 * - `failed`: stopped on a fatal error (the listener could not be opened); `done` rejects.
 */
export type ProxyState = 'starting' | 'routing' | 'fenced' | 'store-lost' | 'stopping' | 'stopped' | 'failed';

/** The running proxy (STYLE.md rule 9). */
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
  /** The current {@link ProxyState}. */
  state(): ProxyState;
  /** Client connections currently open (each paired with one connection to the primary). */
  connections(): number;
}

/** How long dialling the primary may take before the client connection is closed. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * After one side of a connection ended cleanly, how long the other side may take to flush and
 * close before it is destroyed (so a slow peer cannot hold a half-closed pair forever).
 */
const LINGER_MS = 5_000;
/** Bound on each best-effort step of `stop` (closing the watch, deleting the info). */
const STOP_STEP_TIMEOUT_MS = 2_000;
/** Bound on waiting for destroyed sockets to emit `close` (they do at once; this is a guard). */
const CLOSE_WAIT_MS = 2_000;

/** Why a check failed; decides the state and the log line. */
type FailureKind = 'store' | 'invalid' | 'slow' | 'bug';

class CheckFailure extends Error {
  constructor(
    readonly kind: FailureKind,
    message: string,
    readonly err?: unknown,
  ) {
    super(message);
  }
}

/** One forwarded client connection and its connection to the primary. */
interface Pair {
  readonly id: number;
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  readonly target: ProxyTarget;
  /** Resolves once both sockets emitted `close`. */
  readonly closed: Promise<void>;
}

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
 * Races `p` against a timer. On timeout the late result is disposed of with `dispose` (a watch
 * that arrives late is closed) and its rejection swallowed.
 */
function bounded<T>(p: Promise<T>, ms: number, what: string, dispose?: (v: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reject(new CheckFailure('store', `${what}: no answer within ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        if (timedOut) {
          dispose?.(v);
        } else {
          resolve(v);
        }
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!timedOut) {
          reject(err);
        }
      },
    );
  });
}

function msFromDefault(text: string): number {
  // DEFAULT_SPEC durations are constants known to parse.
  return parseDurationMs(text) ?? 0;
}

class ProxyDaemon {
  private readonly uid: string;
  private readonly listenAddress: string;
  private readonly configuredPort: number;
  private readonly stopListening: boolean;
  private readonly store: Store;
  private readonly log: Logger;

  private current: ProxyState = 'starting';
  private target: ProxyTarget | null = null;
  /** Proxy generation of the last applied clusterdata (null before any). */
  private generation: number | null = null;
  private everSucceeded = false;

  // Timings adopted from the last successfully read spec (Stolon's defaults until then: ours).
  private checkIntervalMs = msFromDefault(DEFAULT_SPEC.proxyCheckInterval);
  private proxyTimeoutMs = msFromDefault(DEFAULT_SPEC.proxyTimeout);

  // Check loop (serial ticks: common's startSerialLoop).
  private loop: SerialLoop | null = null;
  private checkSeq = 0;
  /** What asked for the next check, for its log line. */
  private nextTrigger = 'start';
  private lastLogKey = '';

  // Watchdog.
  private watchdogTimer: NodeJS.Timeout | undefined;
  /** True from the watchdog firing until the next successful check. */
  private watchdogFired = false;
  /** How often the watchdog fired (lets a check tell that the target moved under it). */
  private watchdogFires = 0;

  // Watch.
  private watch: StoreWatch | null = null;
  private watchFailing = false;

  // Listener, reconciled to `listenWanted` through a queue so open/close never interleave.
  private server: net.Server | null = null;
  private boundPort: number | null = null;
  private listenWanted = false;
  private listenerQueue: Promise<void> = Promise.resolve();

  // Connections.
  private readonly pairs = new Set<Pair>();
  private nextPairId = 1;
  private accepted = 0;
  private refused = 0;

  // Lifecycle.
  private stopRequested = false;
  private stopPromise: Promise<void> | null = null;
  private fatal: { err: unknown } | null = null;
  readonly ready = deferred();
  readonly done = deferred();

  constructor(config: ProxyConfig, deps: ProxyDeps) {
    this.uid = config.uid;
    this.listenAddress = config.listenAddress;
    this.configuredPort = config.port;
    this.stopListening = config.stopListening ?? true;
    this.store = deps.store;
    this.log = deps.logger;
  }

  handle(): ProxyHandle {
    return {
      ready: this.ready.promise,
      done: this.done.promise,
      stop: (reason) => this.stop(reason),
      port: () => this.boundPort ?? this.configuredPort,
      state: () => this.current,
      connections: () => this.pairs.size,
    };
  }

  begin(): void {
    this.log.info(
      { listenAddress: this.listenAddress, port: this.configuredPort, stopListening: this.stopListening },
      `proxy ${this.uid} starting: not listening until clusterdata has been read`,
    );
    // Serial: the next tick is armed only after the current check settled, with the interval
    // re-read from the last spec; requests during a check coalesce into one more check.
    this.loop = startSerialLoop({
      run: () => {
        const trigger = this.nextTrigger;
        this.nextTrigger = 'interval';
        return this.runCheck(trigger);
      },
      intervalMs: () => this.checkIntervalMs,
      // runCheck never rejects; this is a guard.
      onError: (err) => this.log.error({ err }, `${BUG_SENTENCE} (proxy check loop: ${errorMessage(err)})`),
    });
  }

  // ---------------------------------------------------------------- check loop

  /** Asks for a check now, or once more right after the running one (requests coalesce). */
  private requestCheck(trigger: string): void {
    if (this.stopRequested || this.loop === null) {
      return;
    }
    this.nextTrigger = trigger;
    this.loop.trigger();
  }

  /** One pass; never rejects. Ends in exactly one reason sentence in the log. */
  private async runCheck(trigger: string): Promise<void> {
    const seq = ++this.checkSeq;
    const startedAt = performance.now();
    let before = this.target;
    const watchdogFiresBefore = this.watchdogFires;
    let reason: string;
    let failure: CheckFailure | null = null;
    let closed = 0;
    try {
      const r = await this.check(startedAt);
      reason = r.reason;
      closed = r.closed;
    } catch (err) {
      failure = this.classify(err);
      reason = this.failureSentence(failure);
      const storeTrouble = failure.kind === 'store' || failure.kind === 'slow';
      if (!this.stopRequested && !storeTrouble) {
        // Fail closed: invalid clusterdata (or a bug) means route nowhere at once.
        closed += await this.retarget(null);
      }
      // A store that cannot be read is given until proxyTimeout (the watchdog, counted from the
      // last successful check) before connections are dropped (DESIGN.md §4): a short etcd
      // leader election must not cut every client connection.
      if (!this.stopRequested) {
        if (this.everSucceeded) {
          // Once the watchdog fired the state stays store-lost (listener closed) until a success.
          this.current = storeTrouble || this.watchdogFired ? 'store-lost' : 'fenced';
        }
      }
    }
    if (this.stopRequested && failure === null) {
      reason = `check abandoned: stopping (${reason})`;
    }
    if (this.watchdogFires !== watchdogFiresBefore) {
      before = null; // the watchdog already logged the change to none
    }
    if (!sameTarget(before, this.target)) {
      this.log.info(
        { check: seq, from: describeTarget(before), to: describeTarget(this.target), generation: this.generation, closed },
        `target changed from ${describeTarget(before)} to ${describeTarget(this.target)} ` +
          `(proxy generation ${this.generation ?? 'unknown'}); closed ${closed} connection${closed === 1 ? '' : 's'}`,
      );
    }
    const fields = {
      check: seq,
      trigger,
      state: this.current,
      target: describeTarget(this.target),
      generation: this.generation,
      connections: this.pairs.size,
      durationMs: Math.round(performance.now() - startedAt),
    };
    const key = `${this.current}|${fields.target}|${this.generation}|${failure?.kind ?? ''}`;
    const changed = key !== this.lastLogKey;
    this.lastLogKey = key;
    if (failure?.kind === 'bug') {
      this.log.error({ ...fields, err: failure.err }, reason);
    } else if (failure !== null && changed) {
      this.log.warn({ ...fields, err: failure.err }, reason);
    } else if (failure !== null) {
      // Same failure as last time: the sentence already carries the message; no stack again.
      this.log.debug(fields, reason);
    } else {
      this.log[changed ? 'info' : 'debug'](fields, reason);
    }
  }

  /**
   * Reads, validates, applies and publishes. Returns the reason sentence and how many
   * connections it closed.
   * @throws CheckFailure (or anything unexpected, classified by the caller).
   */
  private async check(startedAt: number): Promise<{ reason: string; closed: number }> {
    const timeoutMs = this.proxyTimeoutMs;
    const rec = await bounded(this.storeCall(this.store.getClusterData(), 'reading clusterdata'), timeoutMs, 'reading clusterdata');
    if (await this.ensureWatch(timeoutMs)) {
      // The watch started after the read: re-check once so a change in between is not missed.
      this.requestCheck('watch established');
    }
    if (this.stopRequested) {
      return { reason: 'stopping', closed: 0 };
    }

    let decision: { target: ProxyTarget | null; generation: number | null; reason: string };
    let spec: { proxyCheckIntervalMs: number; proxyTimeoutMs: number } | null = null;
    if (rec === null) {
      decision = { target: null, generation: null, reason: 'fenced: no clusterdata in the store (cluster not initialised)' };
    } else {
      // Both throw ClusterDataInvalidError / SpecValidationError (StolonErrors → 'invalid').
      const cd = parseClusterData(rec.text);
      spec = resolveSpec(cd.cluster.spec);
      decision = resolveTarget(cd, this.uid);
    }

    let closed = 0;
    if (!sameTarget(this.target, decision.target)) {
      // Close every connection to the old target first, and wait until they are gone: only
      // then may the new generation be published (the sentinel's fencing handshake).
      closed = await this.retarget(null);
    }
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
    this.target = decision.target;
    this.current = decision.target === null ? 'fenced' : 'routing';
    this.listenWanted = true;
    await this.syncListener();
    return { reason: decision.reason, closed };
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

  /** Starts the clusterdata watch if it is not running. @returns true when it just started. */
  private async ensureWatch(timeoutMs: number): Promise<boolean> {
    if (this.watch !== null || this.stopRequested) {
      return false;
    }
    try {
      const w = await bounded(
        this.store.watch(['clusterdata'], () => this.requestCheck('clusterdata changed')),
        timeoutMs,
        'starting the clusterdata watch',
        (late) => void late.close().catch(() => undefined),
      );
      if (this.stopRequested) {
        await w.close().catch(() => undefined);
        return false;
      }
      this.watch = w;
      this.watchFailing = false;
      return true;
    } catch (err) {
      // Not a check failure: the periodic check still runs; only reaction time suffers.
      this.log[this.watchFailing ? 'debug' : 'warn'](
        { err },
        `cannot watch clusterdata (${errorMessage(err)}); relying on the check every ${this.checkIntervalMs} ms`,
      );
      this.watchFailing = true;
      return false;
    }
  }

  // ---------------------------------------------------------------- watchdog

  private armWatchdog(deadline: number): void {
    clearTimeout(this.watchdogTimer);
    this.watchdogTimer = setTimeout(() => this.onWatchdog(), Math.max(0, deadline - performance.now()));
  }

  private onWatchdog(): void {
    this.watchdogTimer = undefined;
    if (this.stopRequested) {
      return;
    }
    const was = describeTarget(this.target);
    const connections = this.pairs.size;
    this.current = 'store-lost';
    this.watchdogFired = true;
    this.watchdogFires++;
    if (this.stopListening) {
      this.listenWanted = false;
    }
    // Stop publishing: nothing is published until a check succeeds again, so the sentinel sees
    // this proxy vanish when its info TTL expires, by which time it routes nowhere.
    this.log.warn(
      { from: was, connections, proxyTimeoutMs: this.proxyTimeoutMs, generation: this.generation },
      `no successful check within proxyTimeout (${this.proxyTimeoutMs} ms): ` +
        (this.target === null ? 'routing nowhere' : `target changed from ${was} to none`) +
        ` (proxy generation ${this.generation ?? 'unknown'}), closing ${connections} connection${connections === 1 ? '' : 's'}` +
        (this.stopListening ? ', closing the listener until a check succeeds' : ', still listening'),
    );
    void this.retarget(null);
    void this.syncListener();
  }

  // ---------------------------------------------------------------- listener

  /** Brings the listener to `listenWanted` (queued: open and close never interleave). */
  private syncListener(): Promise<void> {
    const next = this.listenerQueue
      .then(() => this.reconcileListener())
      .catch((err: unknown) => this.fail(err));
    this.listenerQueue = next;
    return next;
  }

  private async reconcileListener(): Promise<void> {
    const want = this.listenWanted && !this.stopRequested;
    if (want && this.server === null) {
      await this.openListener();
    } else if (!want && this.server !== null) {
      await this.closeListener();
    }
  }

  private async openListener(): Promise<void> {
    const server = net.createServer({ noDelay: true, keepAlive: true }, (s) => this.onConnection(s));
    // Re-open on the port first bound, so clients (and port 0 users) find us again.
    const port = this.boundPort ?? this.configuredPort;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.listenAddress, port }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw new StolonError('INTERNAL', `cannot listen on ${formatAddress(this.listenAddress, port)}: ${errorMessage(err)}`, {
        cause: err,
      });
    });
    server.on('error', (err) => {
      // Accept errors (EMFILE...) after listening: the server keeps accepting; report them.
      this.log.warn({ err }, `listener error on ${formatAddress(this.listenAddress, this.boundPort ?? port)}: ${err.message}`);
    });
    this.server = server;
    const addr = server.address();
    this.boundPort = addr !== null && typeof addr === 'object' ? addr.port : port;
    // The e2e harness waits for this line: keep it starting with "proxy listening on".
    this.log.info(
      { listenAddress: this.listenAddress, port: this.boundPort },
      `proxy listening on ${formatAddress(this.listenAddress, this.boundPort)}`,
    );
    if (!this.ready.settled) {
      this.ready.resolve();
    }
  }

  private async closeListener(): Promise<void> {
    const server = this.server;
    if (server === null) {
      return;
    }
    this.server = null;
    // close() stops accepting now; its callback waits for the server's connections, which are
    // destroyed separately (retarget), so this is short; bounded anyway.
    await bounded(
      new Promise<void>((resolve) => server.close(() => resolve())),
      CLOSE_WAIT_MS,
      'closing the listener',
    ).catch(() => undefined);
    this.log.info(
      { listenAddress: this.listenAddress, port: this.boundPort },
      `proxy stopped listening on ${formatAddress(this.listenAddress, this.boundPort ?? this.configuredPort)}`,
    );
  }

  // ---------------------------------------------------------------- forwarding

  /**
   * Sets the target and destroys every existing connection (both sides at once), waiting until
   * they all emitted `close`. @returns how many connections were closed.
   */
  private async retarget(next: ProxyTarget | null): Promise<number> {
    this.target = next;
    const victims = [...this.pairs];
    for (const p of victims) {
      p.client.destroy();
      p.upstream.destroy();
    }
    if (victims.length > 0) {
      await bounded(Promise.all(victims.map((p) => p.closed)), CLOSE_WAIT_MS, 'closing connections').catch(
        (err: unknown) => this.log.warn({ err }, `connections did not report closed within ${CLOSE_WAIT_MS} ms`),
      );
    }
    return victims.length;
  }

  private onConnection(client: net.Socket): void {
    const target = this.target;
    const from = `${client.remoteAddress ?? '?'}:${client.remotePort ?? '?'}`;
    if (target === null || this.stopRequested) {
      this.refused++;
      // Closed at once: there is no primary this proxy may route to.
      client.on('error', () => undefined);
      client.destroy();
      this.log.debug({ from, refused: this.refused }, `closed connection from ${from}: no target (${this.current})`);
      return;
    }
    this.accepted++;
    const id = this.nextPairId++;
    client.setNoDelay(true);
    client.setKeepAlive(true);
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true, keepAlive: true });
    upstream.setTimeout(CONNECT_TIMEOUT_MS);

    let clientClosed = false;
    let upstreamClosed = false;
    let markClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      markClosed = resolve;
    });
    const pair: Pair = { id, client, upstream, target, closed };
    this.pairs.add(pair);
    const to = formatAddress(target.host, target.port);
    this.log.debug({ conn: id, from, to, connections: this.pairs.size }, `connection ${id} from ${from} to ${to}`);

    const destroyBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    const finish = (): void => {
      if (clientClosed && upstreamClosed && this.pairs.delete(pair)) {
        this.log.debug({ conn: id, connections: this.pairs.size }, `connection ${id} closed`);
        markClosed();
      }
    };
    // After one side closed cleanly, end the other (flushing what is queued) and destroy it if it
    // lingers, so no pair outlives its peer.
    const endThenDestroy = (s: net.Socket): void => {
      if (s.destroyed) {
        return;
      }
      s.end();
      setTimeout(() => s.destroy(), LINGER_MS).unref();
    };

    let connected = false;
    upstream.on('connect', () => {
      connected = true;
      upstream.setTimeout(0);
    });
    upstream.on('timeout', () => {
      this.log.warn({ conn: id, to }, `cannot connect to primary ${to} within ${CONNECT_TIMEOUT_MS} ms; closing connection ${id}`);
      destroyBoth();
    });
    upstream.on('error', (err) => {
      if (!connected) {
        this.log.warn({ conn: id, to, err }, `connection ${id} to primary ${to} failed: ${err.message}`);
      } else {
        this.log.debug({ conn: id, to, err }, `connection ${id} to primary ${to}: ${err.message}`);
      }
      destroyBoth();
    });
    client.on('error', (err) => {
      this.log.debug({ conn: id, from, err }, `connection ${id} from ${from}: ${err.message}`);
      destroyBoth();
    });
    client.on('close', () => {
      clientClosed = true;
      endThenDestroy(upstream);
      finish();
    });
    upstream.on('close', () => {
      upstreamClosed = true;
      endThenDestroy(client);
      finish();
    });
    // pipe() gives backpressure both ways: a slow reader pauses the other side. Data sent before
    // the primary answered is queued by the socket until it connects.
    client.pipe(upstream);
    upstream.pipe(client);
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
    this.current = 'stopping';
    this.log.info({ reason }, `proxy stopping: ${reason}`);
    clearTimeout(this.watchdogTimer);
    this.watchdogTimer = undefined;
    this.listenWanted = false;
    // A check in flight may be publishing; deleting the info before it lands would be undone.
    // Its store calls are bounded by proxyTimeout; loop.stop() waits for it.
    await this.loop?.stop();
    await this.retarget(null);
    await this.syncListener();
    const watch = this.watch;
    this.watch = null;
    if (watch !== null) {
      await bounded(watch.close(), STOP_STEP_TIMEOUT_MS, 'closing the watch').catch((err: unknown) =>
        this.log.debug({ err }, `closing the clusterdata watch failed: ${errorMessage(err)}`),
      );
    }
    if (this.everSucceeded) {
      await bounded(this.store.deleteInfo('proxies', this.uid), STOP_STEP_TIMEOUT_MS, 'deleting proxy info').catch(
        (err: unknown) =>
          this.log.warn({ err }, `could not delete this proxy's info (${errorMessage(err)}); it expires with its TTL`),
      );
    }
    this.current = this.fatal !== null ? 'failed' : 'stopped';
    this.log.info(
      { accepted: this.accepted, refused: this.refused },
      `proxy ${this.current}: forwarded ${this.accepted} connections, refused ${this.refused}`,
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
 * @throws RangeError when `config.port` is not an integer in 0–65535 or `config.uid` is empty.
 * @see ../../../../shared/reference/stolon.md §6
 */
export async function start(config: ProxyConfig, deps: ProxyDeps): Promise<ProxyHandle> {
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) {
    throw new RangeError(`port must be an integer in 0-65535, got ${config.port}`);
  }
  if (config.uid === '' || config.uid.includes('/')) {
    throw new RangeError(`uid must be non-empty and contain no '/', got "${config.uid}"`);
  }
  const daemon = new ProxyDaemon(config, deps);
  daemon.begin();
  return daemon.handle();
}
