/**
 * Where the proxy should send clients, decided from clusterdata alone (pure; no I/O). The check
 * loop in `checker.ts` calls {@link resolveTarget} on every parsed clusterdata and acts on the
 * result; keeping the decision here lets it be read (and tested) as one small function.
 *
 * Fail closed (docs/design.md#fail-closed): anything other than "a published primary with an
 * address, and this proxy enabled" means no target. `parseClusterData` validates the whole
 * document first; the fields the proxy relies on are checked here again (defence in depth, and
 * for callers handing in a document that did not come through it): a malformed proxy or DB object
 * must make the proxy route nowhere, not crash it.
 * @see Stolon's `ClusterChecker.Check` in cmd/proxy/cmd/proxy.go, which makes the same decision
 */
import { ClusterDataInvalidError, type ClusterData } from '@stolon-ts/cluster';

/** A primary the proxy forwards clients to. */
export interface ProxyTarget {
  /** UID of the primary DB in clusterdata (`proxy.spec.masterDbUid`). */
  readonly dbUid: string;
  /** Host or IP address, as the keeper published it in `dbs[uid].status.listenAddress`. */
  readonly host: string;
  /** TCP port (1–65535), from `dbs[uid].status.port`. */
  readonly port: number;
}

/** The outcome of {@link resolveTarget}. */
export interface TargetDecision {
  /** Where to route, or null to route nowhere (fenced). */
  readonly target: ProxyTarget | null;
  /** `clusterdata.proxy.generation`: what the proxy publishes once it enforces this decision. */
  readonly generation: number;
  /** One human sentence saying why, e.g. "routing to 127.0.0.1:5433 (db abc, proxy generation 7)". */
  readonly reason: string;
  /**
   * True when there is no target because a planned switchover is in progress (see
   * {@link switchoverInProgress}): new clients on the main listener are then held, not closed,
   * until the new primary is routed (or `switchoverHoldTimeout`). Always false with a target.
   */
  readonly hold: boolean;
}

/**
 * True while clusterdata records a planned switchover that has not ended
 * (`cluster.status.failover` with `kind: 'switchover'` and no `result`): from the fence (proxy
 * generation bumped, `masterDbUid` emptied) through the old primary's clean shutdown and the
 * target's promotion, until the sentinel routes the proxies to the new primary (which moves the
 * event to `failoverHistory`). A failover (`kind: 'failover'`), an aborted switchover, or a
 * switchover that became a failover is not one.
 */
function switchoverInProgress(cd: ClusterData): boolean {
  const status: unknown = cd.cluster.status;
  const ev = isObject(status) ? status['failover'] : undefined;
  return isObject(ev) && ev['kind'] === 'switchover' && ev['result'] === undefined;
}

/**
 * `host:port`, with IPv6 literals in brackets (`[::1]:5432`).
 */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `127.0.0.1:5433 (db abc)`, or `none`. */
export function describeTarget(t: ProxyTarget | null): string {
  return t === null ? 'none' : `${formatAddress(t.host, t.port)} (db ${t.dbUid})`;
}

/** True when both are none, or both name the same DB at the same address. */
export function sameTarget(a: ProxyTarget | null, b: ProxyTarget | null): boolean {
  if (a === null || b === null) {
    return a === b;
  }
  return a.dbUid === b.dbUid && a.host === b.host && a.port === b.port;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function invalid(message: string, field: string): ClusterDataInvalidError {
  return new ClusterDataInvalidError(`${message}; routing nowhere until the sentinel writes valid clusterdata`, {
    field,
  });
}

/**
 * Decides the proxy's target from clusterdata: the primary's `listenAddress:port` when
 * `proxy.spec.masterDbUid` is set, that DB exists with spec role `master` (or, in a standby
 * cluster, follows the external primary), an address and a port, and `proxyUid` is in
 * `proxy.spec.enabledProxies`; otherwise none. An absent or null `masterDbUid` /
 * `enabledProxies` counts as empty (Stolon omits empty values from its JSON). The sentinel lists a
 * proxy in `enabledProxies` only once it has seen the proxy's info (as Stolon's does), so it knows
 * every proxy that may hold connections to a primary.
 * @param cd clusterdata already checked by `parseClusterData`
 * @param proxyUid this proxy's UID
 * @throws ClusterDataInvalidError when the proxy object, or the primary's DB object, has fields of
 *   the wrong type (the caller routes nowhere and fails the check).
 */
export function resolveTarget(cd: ClusterData, proxyUid: string): TargetDecision {
  const proxy: unknown = cd.proxy;
  if (!isObject(proxy)) {
    throw invalid('clusterdata.proxy is not an object', 'proxy');
  }
  const generation = proxy['generation'];
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
    throw invalid(`clusterdata.proxy.generation is ${JSON.stringify(generation)}, not a non-negative integer`, 'proxy.generation');
  }
  const spec = proxy['spec'] ?? {};
  if (!isObject(spec)) {
    throw invalid('clusterdata.proxy.spec is not an object', 'proxy.spec');
  }
  const masterDbUid = spec['masterDbUid'] ?? '';
  if (typeof masterDbUid !== 'string') {
    throw invalid('clusterdata.proxy.spec.masterDbUid is not a string', 'proxy.spec.masterDbUid');
  }
  const enabled = spec['enabledProxies'] ?? [];
  if (!Array.isArray(enabled) || !enabled.every((u) => typeof u === 'string')) {
    throw invalid('clusterdata.proxy.spec.enabledProxies is not a list of strings', 'proxy.spec.enabledProxies');
  }
  const gen = `proxy generation ${generation}`;
  const hold = switchoverInProgress(cd);
  const none = (why: string): TargetDecision => ({
    target: null,
    generation,
    reason: `fenced: ${why} (${gen})${hold ? '; planned switchover in progress: holding new connections until the new primary is routed' : ''}`,
    hold,
  });

  if (masterDbUid === '') {
    return none('no primary published');
  }
  if (!enabled.includes(proxyUid)) {
    return none(`this proxy (${proxyUid}) is not in enabledProxies`);
  }
  const db: unknown = cd.dbs[masterDbUid];
  if (db === undefined) {
    return none(`primary db ${masterDbUid} is not in clusterdata`);
  }
  if (!isObject(db) || !isObject(db['status'])) {
    throw invalid(`clusterdata.dbs.${masterDbUid} has no status object`, `dbs.${masterDbUid}.status`);
  }
  // Defence in depth: the sentinel publishes a primary only once its promotion is applied, so
  // this never happens unless clusterdata is wrong; a standby must never get the writers. In a
  // standby cluster the routed DB is the one following the external primary (role standby,
  // followConfig external), as Stolon's "master-type" DB.
  const dbSpec = isObject(db['spec']) ? db['spec'] : {};
  const role = dbSpec['role'];
  const follow = dbSpec['followConfig'];
  const externalFollower = isObject(follow) && follow['type'] === 'external';
  if (role !== 'master' && !externalFollower) {
    return none(
      `db ${masterDbUid} is published as the primary but its spec role is ${JSON.stringify(role ?? null)}, not "master"`,
    );
  }
  const status = db['status'];
  const host = status['listenAddress'] ?? '';
  const rawPort = status['port'] ?? '';
  if (typeof host !== 'string') {
    throw invalid(`clusterdata.dbs.${masterDbUid}.status.listenAddress is not a string`, `dbs.${masterDbUid}.status.listenAddress`);
  }
  if (typeof rawPort !== 'string' && typeof rawPort !== 'number') {
    throw invalid(`clusterdata.dbs.${masterDbUid}.status.port is not a string`, `dbs.${masterDbUid}.status.port`);
  }
  if (host === '' || rawPort === '') {
    return none(`primary db ${masterDbUid} has not published its address yet`);
  }
  const port = typeof rawPort === 'number' ? rawPort : /^\d{1,5}$/.test(rawPort) ? Number(rawPort) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(
      `clusterdata.dbs.${masterDbUid}.status.port is ${JSON.stringify(rawPort)}, not a TCP port (1-65535)`,
      `dbs.${masterDbUid}.status.port`,
    );
  }
  const target: ProxyTarget = { dbUid: masterDbUid, host, port };
  return { target, generation, reason: `routing to ${formatAddress(host, port)} (db ${masterDbUid}, ${gen})`, hold: false };
}

/** Options of {@link resolveReadOnlyTargets} (the `--ro-*` flags). */
export interface ReadOnlyOptions {
  /**
   * Most WAL, in bytes, a standby may be behind the primary and still take read-only clients:
   * the primary's last reported LSN (`dbs[primary].status.xLogPos`) minus the standby's last
   * reported replayed LSN (`status.replayedXLogPos`, or `status.xLogPos` from a keeper that does
   * not report it).
   */
  readonly maxLagBytes: number;
  /**
   * Where the main port routes right now, when `--ro-fallback-to-primary` is set: used when no
   * standby qualifies. Null (or absent) means no fallback.
   */
  readonly fallback?: ProxyTarget | null;
}

/** The outcome of {@link resolveReadOnlyTargets}. */
export interface ReadOnlyDecision {
  /** Where read-only clients may go, sorted by DB uid; empty to route nowhere. */
  readonly targets: readonly ProxyTarget[];
  /** True when `targets` is the primary (no standby qualified and fallback is on). */
  readonly fallback: boolean;
  /**
   * One sentence, e.g. "read-only: 2 standbys (db2 lag 0 B, db3 lag 8192 B); excluded db4: lag
   * 5242880 B > 1048576 B".
   */
  readonly reason: string;
}

function lsnOf(status: Record<string, unknown>, field: string): number | undefined {
  const v = status[field];
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/**
 * Decides where the read-only listener sends new clients (Stolon has no read-only routing:
 * GitHub issue sorintlab/stolon#132). A DB qualifies when all of these hold, each read from
 * clusterdata:
 * - its spec role is `standby` and it is not `proxy.spec.masterDbUid` or `cluster.status.master`
 *   (a standby the sentinel chose for promotion leaves the set the moment its role changes);
 * - `status.healthy`, and `status.currentGeneration === generation` (its keeper has applied the
 *   spec that made it a standby, so PostgreSQL really is in recovery);
 * - it has published an address and port;
 * - the wanted primary (`cluster.status.master`) is in `dbs`, and the standby is on the
 *   primary's timeline (a standby left on an old timeline after a failover may have diverged);
 * - primary `xLogPos` − standby replayed LSN ≤ `maxLagBytes` (a negative difference, from
 *   reports taken at different moments, counts as 0).
 *
 * Freshness: both LSNs are what the keepers reported (every `sleepInterval`) as the sentinel last
 * wrote them: it writes new positions alone at most every 5 s unless a standby's lag changed by
 * a quarter of the spec's `maxStandbyLag` (docs/architecture.md), so the bound is approximate by
 * that much.
 *
 * When none qualifies and `opts.fallback` is a target, that target (the primary) is returned.
 * Malformed standby objects are excluded, not thrown on: only the primary's shape is checked
 * strictly (by {@link resolveTarget}).
 */
export function resolveReadOnlyTargets(cd: ClusterData, opts: ReadOnlyOptions): ReadOnlyDecision {
  const proxy: unknown = cd.proxy;
  const proxySpec = isObject(proxy) && isObject(proxy['spec']) ? proxy['spec'] : {};
  const routedPrimary = typeof proxySpec['masterDbUid'] === 'string' ? proxySpec['masterDbUid'] : '';
  const wanted = isObject(cd.cluster.status) && typeof cd.cluster.status.master === 'string' ? cd.cluster.status.master : '';
  const primary: unknown = wanted === '' ? undefined : cd.dbs[wanted];
  const primaryStatus = isObject(primary) && isObject(primary['status']) ? primary['status'] : undefined;
  const primaryLsn = primaryStatus === undefined ? undefined : lsnOf(primaryStatus, 'xLogPos');
  const primaryTimeline = primaryStatus?.['timelineID'];

  const chosen: { target: ProxyTarget; lag: number }[] = [];
  const excluded: string[] = [];
  for (const uid of Object.keys(cd.dbs).sort()) {
    const db: unknown = cd.dbs[uid];
    if (!isObject(db) || !isObject(db['spec']) || !isObject(db['status'])) {
      excluded.push(`${uid}: malformed`);
      continue;
    }
    const spec = db['spec'];
    const status = db['status'];
    if (spec['role'] !== 'standby' || uid === routedPrimary || uid === wanted) {
      continue; // the primary (or the one being promoted): not a read-only target
    }
    const host = status['listenAddress'];
    const rawPort = status['port'];
    const port = typeof rawPort === 'number' ? rawPort : typeof rawPort === 'string' && /^\d{1,5}$/.test(rawPort) ? Number(rawPort) : NaN;
    const replayed = lsnOf(status, 'replayedXLogPos') ?? lsnOf(status, 'xLogPos');
    let why: string | undefined;
    if (status['healthy'] !== true) {
      why = 'unhealthy';
    } else if (status['currentGeneration'] !== db['generation']) {
      why = `not converged (generation ${String(status['currentGeneration'])} of ${String(db['generation'])})`;
    } else if (typeof host !== 'string' || host === '' || !Number.isInteger(port) || port < 1 || port > 65535) {
      why = 'no address';
    } else if (primaryLsn === undefined) {
      why = 'no primary LSN to measure lag against';
    } else if (status['timelineID'] !== primaryTimeline) {
      why = `timeline ${String(status['timelineID'])}, primary on ${String(primaryTimeline)}`;
    } else if (replayed === undefined) {
      why = 'no LSN reported';
    } else if (primaryLsn - replayed > opts.maxLagBytes) {
      why = `lag ${primaryLsn - replayed} B > ${opts.maxLagBytes} B`;
    }
    if (why !== undefined) {
      excluded.push(`${uid}: ${why}`);
      continue;
    }
    chosen.push({
      target: { dbUid: uid, host: host as string, port },
      lag: Math.max(0, (primaryLsn as number) - (replayed as number)),
    });
  }
  const tail = excluded.length === 0 ? '' : `; excluded ${excluded.join(', ')}`;
  if (chosen.length > 0) {
    const list = chosen.map((c) => `${c.target.dbUid} lag ${c.lag} B`).join(', ');
    return {
      targets: chosen.map((c) => c.target),
      fallback: false,
      reason: `read-only: ${chosen.length} standby${chosen.length === 1 ? '' : 's'} (${list})${tail}`,
    };
  }
  if (opts.fallback !== undefined && opts.fallback !== null) {
    return {
      targets: [opts.fallback],
      fallback: true,
      reason: `read-only: no standby within ${opts.maxLagBytes} B, falling back to the primary ${describeTarget(opts.fallback)}${tail}`,
    };
  }
  return { targets: [], fallback: false, reason: `read-only: no standby within ${opts.maxLagBytes} B, routing nowhere${tail}` };
}

/** True when both lists name the same targets in the same order. */
export function sameTargets(a: readonly ProxyTarget[], b: readonly ProxyTarget[]): boolean {
  return a.length === b.length && a.every((t, i) => sameTarget(t, b[i] ?? null));
}
