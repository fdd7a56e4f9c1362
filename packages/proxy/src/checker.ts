/**
 * The check loop and the watchdog: what the proxy routes to and when. A check (one pass of
 * common's pass loop, docs/design.md#serial-loops) runs on every clusterdata watch event and
 * every `proxyCheckInterval`: it reads and validates clusterdata, decides the targets (target.ts),
 * closes the connections that lost their backend through the forwarder and waits until they are
 * gone, publishes this proxy's ProxyInfo (the proxy generation it enforces) under a TTL of
 * `proxyTimeout`, then adopts the spec's timings, re-arms the watchdog and routes. The watchdog,
 * a timer apart from the loop, routes nowhere and drops every connection when no check succeeded
 * within `proxyTimeout` (a store call can hang, and a hung check must not keep routing), or
 * earlier, before this proxy's info lease could expire (`Store.infoLeaseRemainingMs`): the
 * sentinel stops waiting for a proxy whose info is gone, so the proxy must have stopped
 * forwarding by then. The native relay threads hold the same deadline. Only a successful check
 * publishes, so the info's progress marker (`infoUID`) changes exactly once per successful check
 * and freezes while checks fail (the sentinel stops waiting for such a proxy proxyTimeout + 1 s
 * after it last saw the marker change). Owns the {@link Routing} it writes, the generation, the
 * timings and the watchdog. More: docs/architecture.md, "The proxy".
 */
import {
  DEFAULT_SPEC,
  StolonError,
  errorMessage,
  parseClusterData,
  parseDurationMs,
  resolveSpec,
  STOLON_TS_VERSION,
  type ClusterData,
  type ProxyInfo,
  type ResolvedSpec,
} from '@stolon-ts/cluster';
import { BUG_SENTENCE, PassTracker, failpoint, memberRequest, newUid, startPassLoop, type Logger, type PassLoop, type PassResult } from '@stolon-ts/common';
import type { Store } from '@stolon-ts/store';
import type { NativePath } from './datapath.js';
import type { Forwarder } from './forwarder.js';
import type { Listeners } from './listeners.js';
import type { ProxyMetrics } from './metrics.js';
import {
  describeTarget,
  resolveReadOnlyTargets,
  resolveTarget,
  sameTarget,
  sameTargets,
  type ProxyTarget,
  type ReadOnlyDecision,
} from './target.js';
import type { ProxyHealthSnapshot } from './health.js';
import type { ReadOnlyConfig, Routing } from './types.js';
import { CheckFailure, bounded, plural } from './util.js';

/**
 * How long after the watchdog's deadline the relay threads close their connections by themselves
 * (the dead-man switch for a stalled main thread). Later than the watchdog, so that normally the
 * watchdog closes them (and logs it); still well before a new primary can accept writes: the
 * ProxyInfo TTL counts from the publish (after the check started), etcd reaps expired leases
 * every 500 ms, and the sentinel must then see it, decide, and have the new primary promoted.
 */
const RELAY_DEADLINE_SLACK_MS = 250;

function msFromDefault(text: string): number {
  // DEFAULT_SPEC durations are constants known to parse.
  return parseDurationMs(text) ?? 0;
}

function describeTargets(ts: readonly ProxyTarget[]): string {
  return ts.length === 0 ? 'none' : ts.map(describeTarget).join(', ');
}

/** What {@link Checker} needs. */
export interface CheckerOptions {
  /** This proxy's UID: published in its ProxyInfo, looked up in `enabledProxies`. */
  readonly uid: string;
  readonly store: Store;
  readonly log: Logger;
  /** The read-only listener's routing settings; null: there is no read-only listener. */
  readonly readOnly: Pick<ReadOnlyConfig, 'maxLagBytes' | 'fallbackToPrimary'> | null;
  /** Close the listeners when the watchdog fires (`--stop-listening`). */
  readonly stopListening: boolean;
  /** Written by every check and by the watchdog; read by the forwarder. */
  readonly routing: Routing;
  /** The connection table: closes the connections whose backend is no longer allowed. */
  readonly connections: Pick<Forwarder, 'closeWhere' | 'count' | 'releaseHeld'>;
  /** Opened after every successful check, closed by the watchdog (with `stopListening`). */
  readonly listeners: Pick<Listeners, 'setWanted' | 'sync'>;
  /** The native relay, whose dead-man deadline follows the watchdog's; null on the event-loop path. */
  readonly relay: Pick<NativePath, 'renew'> | null;
  /** True once the proxy is stopping: a check in flight then changes nothing. */
  readonly stopping: () => boolean;
  /**
   * The member API token (failsafe mode: while the store is unreachable, keep routing while the
   * primary's keeper confirms it still holds the role); undefined: fail closed at the watchdog.
   */
  readonly memberToken?: string | undefined;
  /** Counts checks and target changes (metrics.ts). */
  readonly metrics: Pick<ProxyMetrics, 'checkFailed' | 'checkSucceeded' | 'targetChanged'>;
}

/** What failsafe mode needs from the last successful check: whom to ask about which primary. */
interface FailsafeTarget {
  /** The primary's keeper's member API, `host:port`. */
  readonly memberAddress: string;
  readonly dbUid: string;
  readonly generation: number;
}

/** Longest wait for the primary's keeper's answer, in ms (bounded further by proxyCheckInterval). */
const FAILSAFE_ASK_TIMEOUT_MS = 1000;
/**
 * How often failsafe mode asks the primary's keeper while no check succeeds, in ms (at most
 * proxyCheckInterval). A yes can come late: the keeper's first confirmation round may be ~1 s
 * before this proxy's watchdog would fire, so asked only every proxyCheckInterval (1 s) the proxy
 * could ask just before that round and next only after its watchdog fired (the likely cause of
 * 27.7 s without routing through the proxy during an etcd kill in CI, whose logs were not kept).
 * A local HTTP GET 4 times a second, only during an outage, costs nothing worth saving.
 */
const FAILSAFE_ASK_EVERY_MS = 250;

/**
 * Whom failsafe mode asks after this check: the keeper of the routed primary, when the spec has
 * `failsafeMode` on and that keeper publishes a member address; null otherwise.
 */
function failsafeTargetOf(cd: ClusterData, target: ProxyTarget | null, generation: number | null): FailsafeTarget | null {
  const master = cd.dbs[cd.proxy.spec.masterDbUid];
  const addr = master === undefined ? undefined : cd.keepers[master.spec.keeperUID]?.status.memberAddress;
  if (target === null || generation === null || master === undefined || addr === undefined || addr === '' || !resolveSpec(cd.cluster.spec).failsafeMode) {
    return null;
  }
  return { memberAddress: addr, dbUid: master.uid, generation };
}

/** The check loop and the watchdog; see the module header. */
export class Checker {
  private readonly uid: string;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly readOnly: Pick<ReadOnlyConfig, 'maxLagBytes' | 'fallbackToPrimary'> | null;
  private readonly stopListening: boolean;
  private readonly routing: Routing;
  private readonly connections: Pick<Forwarder, 'closeWhere' | 'count' | 'releaseHeld'>;
  private readonly listeners: Pick<Listeners, 'setWanted' | 'sync'>;
  private readonly relay: Pick<NativePath, 'renew'> | null;
  private readonly stopping: () => boolean;
  private readonly memberToken: string | undefined;
  private readonly metrics: Pick<ProxyMetrics, 'checkFailed' | 'checkSucceeded' | 'targetChanged'>;

  /** Set by a successful check in failsafe mode with a primary routed to; null otherwise. */
  private failsafeTarget: FailsafeTarget | null = null;
  private failsafeTimer: NodeJS.Timeout | undefined;
  private failsafeAsking = false;
  /** Whether the last failsafe answer confirmed (for logging changes only); undefined: not asking. */
  private failsafeConfirmed: boolean | undefined;

  /** Proxy generation of the last applied clusterdata (null before any). */
  private generation: number | null = null;
  private everSucceeded = false;

  // Timings adopted from the last successfully read spec (Stolon's defaults until then: ours).
  private checkIntervalMs = msFromDefault(DEFAULT_SPEC.proxyCheckInterval);
  private proxyTimeoutMs = msFromDefault(DEFAULT_SPEC.proxyTimeout);
  /** The clusterdata text the last parse accepted, and what it gave. */
  private lastParsed: { readonly text: string; readonly cd: ClusterData; readonly spec: ResolvedSpec } | undefined;

  // Check loop (common's pass loop: serial checks, the clusterdata watch, one sentence per check).
  private loop: PassLoop | null = null;
  /** When checks start and settle (the status endpoint's liveness). */
  private readonly passes = new PassTracker();

  // Watchdog.
  private watchdogTimer: NodeJS.Timeout | undefined;
  /** performance.now() ms: the start of the last successful check + proxyTimeout (or later, by failsafe mode). */
  private checkDeadline = 0;
  /** performance.now() ms: the start of the last successful check. */
  private lastGoodCheckAt = 0;
  /** True when the last successful check published this proxy's info (so its lease bounds the watchdog). */
  private leaseBound = false;
  /** True from the watchdog firing until the next successful check. */
  private watchdogFired = false;
  /** How often the watchdog fired (lets a check tell that the target moved under it). */
  private watchdogFires = 0;

  constructor(opts: CheckerOptions) {
    this.uid = opts.uid;
    this.store = opts.store;
    this.log = opts.log;
    this.readOnly = opts.readOnly;
    this.stopListening = opts.stopListening;
    this.routing = opts.routing;
    this.connections = opts.connections;
    this.listeners = opts.listeners;
    this.relay = opts.relay;
    this.stopping = opts.stopping;
    this.memberToken = opts.memberToken;
    this.metrics = opts.metrics;
  }

  /** The proxy generation this proxy enforces (its last successful check's); null before any. */
  enforcedGeneration(): number | null {
    return this.generation;
  }

  /** True once a check succeeded (this proxy then has published its info). */
  hasSucceeded(): boolean {
    return this.everSucceeded;
  }

  /**
   * What the status endpoint decides from (health.ts): the check loop's passes, the routing, the
   * last successful check and the watchdog's deadline, all in performance.now() ms.
   */
  health(): ProxyHealthSnapshot {
    return {
      state: this.routing.state,
      target: this.routing.target === null ? null : describeTarget(this.routing.target),
      roTargets: this.routing.roTargets.length,
      readOnly: this.readOnly !== null,
      loop: this.passes.snapshot(),
      lastGoodCheckAtMs: this.everSucceeded ? this.lastGoodCheckAt : undefined,
      deadlineMs: this.everSucceeded && !this.watchdogFired ? this.checkDeadline : undefined,
      proxyTimeoutMs: this.proxyTimeoutMs,
      checkIntervalMs: this.checkIntervalMs,
      holdMs: this.routing.target === null ? this.routing.holdMs : 0,
      nowMs: this.passes.nowMs(),
    };
  }

  /** Starts the check loop; the first check runs on the next tick. */
  start(): void {
    // Serial: the next check is armed only after the current one settled, with the interval
    // re-read from the last spec; requests during a check coalesce into one more check. The
    // clusterdata watch triggers checks; each attempt to start it is bounded by proxyTimeout.
    this.scheduleFailsafe();
    this.loop = startPassLoop({
      log: this.log,
      run: this.passes.wrap((ctx) => this.runCheck(ctx.pass, ctx.trigger)),
      intervalMs: () => this.checkIntervalMs,
      watch: { store: this.store, topics: ['clusterdata'], timeoutMs: () => this.proxyTimeoutMs },
      passField: 'check',
    });
  }

  /**
   * Disarms the watchdog and stops the loop; resolves once the check in flight (its store calls
   * bounded by proxyTimeout) settled. Call once `stopping()` is true.
   */
  async stop(): Promise<void> {
    clearTimeout(this.watchdogTimer);
    this.watchdogTimer = undefined;
    clearTimeout(this.failsafeTimer);
    this.failsafeTimer = undefined;
    await this.loop?.stop();
  }

  /** Routes nowhere on both listeners and closes every connection (held ones too). @returns how many, per listener. */
  routeNowhere(): Promise<{ main: number; ro: number }> {
    this.routing.target = null;
    this.routing.roTargets = [];
    this.endHold();
    return this.closeStale();
  }

  /** Stops holding new clients and closes the held ones (fail closed: as when not holding). */
  private endHold(): void {
    this.routing.holdMs = 0;
    this.connections.releaseHeld();
  }

  /**
   * Closes (both sides at once) every connection whose backend is no longer allowed: main
   * connections not to `target`, read-only ones not to one of `roTargets`; waits until they are
   * all gone. @returns how many were closed, per listener.
   */
  private closeStale(): Promise<{ main: number; ro: number }> {
    const { routing } = this;
    return this.connections.closeWhere((kind, t) =>
      kind === 'main' ? !sameTarget(t, routing.target) : !routing.roTargets.some((r) => sameTarget(r, t)),
    );
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
      this.metrics.checkFailed(failure.kind);
      reason = this.failureSentence(failure);
      const storeTrouble = failure.kind === 'store' || failure.kind === 'slow';
      if (!this.stopping() && !storeTrouble) {
        // Fail closed: invalid clusterdata (or a bug) means route nowhere at once, on both ports.
        const c = await this.routeNowhere();
        closed.main += c.main;
        closed.ro += c.ro;
      }
      // Holding needs a fresh clusterdata saying a planned switchover is in progress: a check
      // that cannot read one ends the hold (the connections held are closed, as without it).
      this.endHold();
      // A store that cannot be read is given until proxyTimeout (the watchdog, counted from the
      // last successful check) before connections are dropped: a short etcd leader election
      // must not cut every client connection.
      if (!this.stopping()) {
        if (this.everSucceeded) {
          // Once the watchdog fired the state stays store-lost (listener closed) until a success.
          this.routing.state = storeTrouble || this.watchdogFired ? 'store-lost' : 'fenced';
        }
      }
    }
    if (this.stopping() && failure === null) {
      reason = `check abandoned: stopping (${reason})`;
    }
    if (this.watchdogFires !== watchdogFiresBefore) {
      before = null; // the watchdog already logged the change to none
      roBefore = [];
    }
    const gen = `proxy generation ${this.generation ?? 'unknown'}`;
    if (!sameTarget(before, this.routing.target)) {
      this.metrics.targetChanged();
      this.log.info(
        { check: seq, from: describeTarget(before), to: describeTarget(this.routing.target), generation: this.generation, closed: closed.main },
        `target changed from ${describeTarget(before)} to ${describeTarget(this.routing.target)} ` +
          `(${gen}); closed ${plural(closed.main, 'connection')}`,
      );
    }
    if (this.readOnly !== null && !sameTargets(roBefore, this.routing.roTargets)) {
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
      ...(this.readOnly !== null ? { roTargets: describeTargets(this.routing.roTargets) } : {}),
      generation: this.generation,
      connections: this.connections.count(),
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
    // Failpoint (docs/design.md, "Failpoints"): this check fails as a check cut off from the store does.
    await failpoint('proxyCheckFail').catch((err: unknown) => {
      throw new CheckFailure('store', `reading clusterdata: ${errorMessage(err)}`, err);
    });
    const rec = await bounded(this.storeCall(this.store.getClusterData(), 'reading clusterdata'), timeoutMs, 'reading clusterdata');
    if (this.stopping()) {
      return { reason: 'stopping', closed: { main: 0, ro: 0 } };
    }

    let decision: { target: ProxyTarget | null; generation: number | null; reason: string; hold: boolean };
    let ro: ReadOnlyDecision | null = null;
    let spec: Pick<ResolvedSpec, 'proxyCheckIntervalMs' | 'proxyTimeoutMs' | 'switchoverHoldTimeoutMs'> | null = null;
    let cd: ClusterData | null = null;
    if (rec === null) {
      decision = { target: null, generation: null, reason: 'fenced: no clusterdata in the store (cluster not initialised)', hold: false };
      if (this.readOnly !== null) {
        ro = { targets: [], fallback: false, reason: 'read-only: no clusterdata, routing nowhere' };
      }
    } else {
      ({ cd, spec } = this.parse(rec.text));
      decision = resolveTarget(cd, this.uid);
      if (this.readOnly !== null) {
        ro = resolveReadOnlyTargets(cd, {
          maxLagBytes: this.readOnly.maxLagBytes,
          fallback: this.readOnly.fallbackToPrimary ? decision.target : null,
        });
      }
    }

    // Close every connection whose backend is no longer allowed first, and wait until they are
    // gone: only then may the new generation be published (the sentinel's fencing handshake).
    // A new primary is routed to, from either port, only after the publication succeeded.
    const mainChanged = !sameTarget(this.routing.target, decision.target);
    const roNext = ro?.targets ?? [];
    // A planned switchover: hold new main-listener clients from now (holding routes nowhere).
    // Not the other way: a hold ends only once this check succeeded, so a client arriving while
    // the new primary's generation is being published is held and then connected, not closed.
    const holdMs = decision.hold && spec !== null ? spec.switchoverHoldTimeoutMs : 0;
    if (holdMs > 0) {
      this.routing.holdMs = holdMs;
    }
    if (mainChanged) {
      this.routing.target = null;
    }
    this.routing.roTargets = mainChanged && decision.target !== null ? roNext.filter((t) => !sameTarget(t, decision.target)) : roNext;
    const closed = await this.closeStale();
    const newTimeoutMs = spec?.proxyTimeoutMs ?? this.proxyTimeoutMs;
    this.throwIfSlow(startedAt, newTimeoutMs); // a slow check publishes nothing (no progress)
    if (decision.generation !== null && spec !== null) {
      const info: ProxyInfo = {
        infoUID: newUid(),
        UID: this.uid,
        Generation: decision.generation,
        ProxyTimeout: Math.round(spec.proxyTimeoutMs * 1e6),
        Version: STOLON_TS_VERSION,
      };
      await bounded(
        this.storeCall(this.store.setInfo('proxies', this.uid, info, spec.proxyTimeoutMs), 'publishing proxy info'),
        timeoutMs,
        'publishing proxy info',
      );
    }
    if (this.stopping()) {
      return { reason: 'stopping', closed };
    }
    this.throwIfSlow(startedAt, newTimeoutMs);

    // Success: adopt the spec's timings, re-arm the watchdog, route, listen.
    if (spec !== null) {
      this.checkIntervalMs = spec.proxyCheckIntervalMs;
      this.proxyTimeoutMs = spec.proxyTimeoutMs;
    }
    this.generation = decision.generation;
    this.failsafeTarget = cd === null ? null : failsafeTargetOf(cd, decision.target, decision.generation);
    this.everSucceeded = true;
    this.metrics.checkSucceeded(Date.now());
    this.watchdogFired = false;
    this.leaseBound = decision.generation !== null && spec !== null;
    this.lastGoodCheckAt = startedAt;
    this.armWatchdog(startedAt + this.proxyTimeoutMs);
    this.routing.target = decision.target;
    this.routing.roTargets = roNext;
    this.routing.holdMs = holdMs;
    this.connections.releaseHeld(); // to the new primary, or closed when the hold ended without one
    this.routing.state = decision.target === null ? 'fenced' : 'routing';
    this.listeners.setWanted(true);
    await this.listeners.sync();
    return { reason: ro === null ? decision.reason : `${decision.reason}; ${ro.reason}`, closed };
  }

  /**
   * Parses and validates clusterdata and resolves its spec; the same text as the last check's
   * (at rest every check reads the same document) gives the same objects without parsing again.
   * @throws ClusterDataInvalidError / SpecValidationError (StolonErrors → 'invalid'); nothing is
   *   kept of a document that throws, so it throws again at every check
   */
  private parse(text: string): { readonly cd: ClusterData; readonly spec: ResolvedSpec } {
    if (this.lastParsed?.text !== text) {
      const cd = parseClusterData(text);
      this.lastParsed = { text, cd, spec: resolveSpec(cd.cluster.spec) };
    }
    return this.lastParsed;
  }

  /**
   * What was read may be older than the watchdog allows: do not act on it (nor publish it).
   * @throws CheckFailure 'slow' when the check started `timeoutMs` or more ago.
   */
  private throwIfSlow(startedAt: number, timeoutMs: number): void {
    const took = performance.now() - startedAt;
    if (took >= timeoutMs) {
      throw new CheckFailure('slow', `check took ${Math.round(took)} ms, longer than proxyTimeout (${timeoutMs} ms)`);
    }
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
        return `store unreachable: ${f.message}; ${this.stillRouting()}`;
      case 'slow':
        return `store too slow: ${f.message}; ${this.stillRouting()}`;
      case 'invalid':
        return `invalid clusterdata: ${f.message}`;
      case 'bug':
        return `${BUG_SENTENCE} (proxy check: ${f.message}); routing nowhere`;
    }
  }

  /**
   * Where clients still go after a check that could not reach the store: the targets stay until
   * the watchdog fires (a short etcd leader election must not cut every connection), so the
   * sentence names them; once the watchdog fired, or before any target, it routes nowhere.
   */
  private stillRouting(): string {
    const { target, roTargets } = this.routing;
    const to = [
      ...(target === null ? [] : [`to ${describeTarget(target)}`]),
      ...(roTargets.length === 0 ? [] : [`read-only clients to ${describeTargets(roTargets)}`]),
    ];
    return to.length === 0
      ? 'routing nowhere'
      : `still routing ${to.join(' and ')} until the watchdog fires (no successful check within proxyTimeout, ${this.proxyTimeoutMs} ms)`;
  }

  // ---------------------------------------------------------------- failsafe

  /**
   * Every {@link FAILSAFE_ASK_EVERY_MS} (or proxyCheckInterval when shorter): {@link askFailsafe},
   * which asks only when no check succeeded for a while.
   */
  private scheduleFailsafe(): void {
    this.failsafeTimer = setTimeout(() => {
      if (this.stopping()) {
        return;
      }
      this.scheduleFailsafe();
      void this.askFailsafe();
    }, Math.min(FAILSAFE_ASK_EVERY_MS, this.checkIntervalMs));
    this.failsafeTimer.unref();
  }

  /**
   * Failsafe mode (docs/architecture.md, "Store outages: failsafe mode"): when no check succeeded
   * for more than a check interval plus 500 ms and the watchdog has not fired, asks the primary's
   * keeper whether it still holds the role for the routed DB at this proxy generation. A yes
   * moves the watchdog to the ask's start + the keeper's answer (at most proxyTimeout), past this
   * proxy's own info lease: the primary then stays writable only while every keeper confirms it,
   * and no other keeper becomes writable before it fenced itself, so routing to it is safe. A no,
   * or no answer, changes nothing: the watchdog fires as without failsafe mode.
   */
  private async askFailsafe(): Promise<void> {
    const t = this.failsafeTarget;
    const token = this.memberToken;
    const startedAt = performance.now();
    const sinceCheckMs = startedAt - this.lastGoodCheckAt;
    if (t === null || token === undefined || this.failsafeAsking || this.watchdogFired || this.routing.target === null || sinceCheckMs < this.checkIntervalMs + 500) {
      if (sinceCheckMs < this.checkIntervalMs + 500 && this.failsafeConfirmed !== undefined) {
        this.failsafeConfirmed = undefined;
      }
      return;
    }
    this.failsafeAsking = true;
    let holds = false;
    let why: string;
    try {
      const r = await memberRequest(t.memberAddress, `/failsafe/primary?db=${encodeURIComponent(t.dbUid)}&generation=${t.generation}`, {
        token,
        timeoutMs: Math.min(FAILSAFE_ASK_TIMEOUT_MS, this.checkIntervalMs),
      });
      const a = r.body as { holds?: unknown; remainingMs?: unknown; reason?: unknown } | undefined;
      why = typeof a?.reason === 'string' ? a.reason : `HTTP ${r.status}`;
      if (r.status === 200 && a?.holds === true && typeof a.remainingMs === 'number' && a.remainingMs > 0 && !this.stopping() && !this.watchdogFired) {
        holds = true;
        const until = startedAt + Math.min(a.remainingMs, this.proxyTimeoutMs);
        if (until > this.watchdogDeadline().at) {
          this.leaseBound = false;
          this.armWatchdog(until);
        }
      }
    } catch (err) {
      why = `unreachable at ${t.memberAddress}: ${errorMessage(err)}`;
    } finally {
      this.failsafeAsking = false;
    }
    if (holds !== this.failsafeConfirmed) {
      this.failsafeConfirmed = holds;
      this.log.warn(
        { target: describeTarget(this.routing.target), generation: t.generation },
        holds
          ? `store unreachable, failsafe: the primary's keeper confirms it holds the role (${why}); still routing`
          : `store unreachable, failsafe: the primary's keeper does not confirm (${why}); routing stops when the watchdog fires`,
      );
    }
  }

  // ---------------------------------------------------------------- watchdog

  /**
   * Arms the watchdog for a successful check whose proxyTimeout ends at `checkDeadline`
   * (performance.now() ms); see {@link scheduleWatchdog}.
   */
  private armWatchdog(checkDeadline: number): void {
    this.checkDeadline = checkDeadline;
    this.scheduleWatchdog();
  }

  /**
   * The watchdog's deadline, in performance.now() ms: the last successful check's start +
   * proxyTimeout, or earlier the moment this proxy's info lease could expire (when that check
   * published; `Store.infoLeaseRemainingMs` errs early; no lease counts as expired), and whether
   * the lease is what bounds it.
   */
  private watchdogDeadline(): { readonly at: number; readonly lease: boolean } {
    if (!this.leaseBound) {
      return { at: this.checkDeadline, lease: false };
    }
    const leaseEnd = performance.now() + (this.store.infoLeaseRemainingMs('proxies', this.uid) ?? 0);
    return leaseEnd < this.checkDeadline ? { at: leaseEnd, lease: true } : { at: this.checkDeadline, lease: false };
  }

  /** Sets the watchdog timer to {@link watchdogDeadline}; renews the relay's deadline to match. */
  private scheduleWatchdog(): void {
    clearTimeout(this.watchdogTimer);
    const ms = Math.max(0, this.watchdogDeadline().at - performance.now());
    this.watchdogTimer = setTimeout(() => this.onWatchdog(), ms);
    // The same deadline (plus RELAY_DEADLINE_SLACK_MS) for the relay threads, enforced without
    // this thread (relay.ts `renew`).
    this.relay?.renew(ms + RELAY_DEADLINE_SLACK_MS);
  }

  /**
   * No check succeeded within proxyTimeout, or this proxy's info lease could expire now: route
   * nowhere, drop every connection, stop listening (with `stopListening`). A lease renewed since
   * the timer was set (the store's keepalive) only moves the deadline.
   */
  private onWatchdog(): void {
    this.watchdogTimer = undefined;
    if (this.stopping()) {
      return;
    }
    const deadline = this.watchdogDeadline();
    if (deadline.at > performance.now()) {
      this.scheduleWatchdog();
      return;
    }
    const was = describeTarget(this.routing.target);
    if (this.routing.target !== null) {
      this.metrics.targetChanged();
    }
    const connections = this.connections.count();
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
      (deadline.lease
        ? `no successful check before this proxy's info lease could expire (proxyTimeout ${this.proxyTimeoutMs} ms): `
        : `no successful check within proxyTimeout (${this.proxyTimeoutMs} ms): `) +
        (this.routing.target === null ? 'routing nowhere' : `target changed from ${was} to none`) +
        (this.readOnly !== null && this.routing.roTargets.length > 0 ? `, read-only targets changed from ${describeTargets(this.routing.roTargets)} to none` : '') +
        ` (proxy generation ${this.generation ?? 'unknown'}), closing ${plural(connections, 'connection')}` +
        (this.stopListening ? `, closing the listener${this.readOnly !== null ? 's' : ''} until a check succeeds` : ', still listening'),
    );
    void this.routeNowhere();
    void this.listeners.sync();
  }
}
