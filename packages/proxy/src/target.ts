/**
 * Where the proxy should send clients, decided from clusterdata alone (pure; no I/O). The check
 * loop in `proxy.ts` calls {@link resolveTarget} on every parsed clusterdata and acts on the
 * result; keeping the decision here lets it be read (and tested) as one small function.
 *
 * Fail closed (DESIGN.md §4, STYLE.md rule 11): anything other than "a published primary with an
 * address, and this proxy enabled" means no target. Fields the proxy relies on are checked here,
 * because `parseClusterData` only checks the top level and the cluster spec: a malformed proxy
 * or DB object must make the proxy route nowhere, not crash it.
 * @see ../../../../shared/reference/stolon.md §6 (Stolon `Check` in `cmd/proxy/cmd/proxy.go`)
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
 * `proxy.spec.masterDbUid` is set, that DB exists with an address and port, and `proxyUid` is in
 * `proxy.spec.enabledProxies`; otherwise none. An absent or null `masterDbUid` /
 * `enabledProxies` counts as empty (Stolon omits empty values from its JSON).
 * @param cd clusterdata already checked by `parseClusterData`
 * @param proxyUid this proxy's UID
 * @throws ClusterDataInvalidError when the proxy object, or the primary's DB object, has fields of
 *   the wrong type (the caller routes nowhere and fails the check).
 * @see ../../../../shared/reference/stolon.md §4.6 and §6
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
  const none = (why: string): TargetDecision => ({ target: null, generation, reason: `fenced: ${why} (${gen})` });

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
  return { target, generation, reason: `routing to ${formatAddress(host, port)} (db ${masterDbUid}, ${gen})` };
}
