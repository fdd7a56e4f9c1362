/**
 * Reading and creating the clusterdata document. Every component calls `parseClusterData` on
 * every read: an unsupported format version or an invalid spec makes the caller do nothing (the
 * proxy: route nowhere). See docs/design.md#the-cluster-spec.
 */
import { ClusterDataInvalidError, SpecValidationError } from './errors.js';
import { validateSpec } from './spec.js';
import { CURRENT_FORMAT_VERSION, type ClusterData, type ClusterSpec } from './types.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * Parses and checks clusterdata bytes from the store: JSON, `formatVersion` 1, the top-level
 * objects present, a valid cluster spec.
 * @throws ClusterDataInvalidError naming the problem (the spec's own field in `field`).
 */
export function parseClusterData(text: string): ClusterData {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ClusterDataInvalidError(`clusterdata is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!isObject(raw)) {
    throw new ClusterDataInvalidError('clusterdata is not a JSON object');
  }
  if (raw['formatVersion'] !== CURRENT_FORMAT_VERSION) {
    throw new ClusterDataInvalidError(
      `unsupported clusterdata format version ${JSON.stringify(raw['formatVersion'])}; this version reads only ${CURRENT_FORMAT_VERSION}`,
      { field: 'formatVersion' },
    );
  }
  for (const key of ['cluster', 'keepers', 'dbs', 'proxy'] as const) {
    if (!isObject(raw[key])) {
      throw new ClusterDataInvalidError(`clusterdata.${key} is missing or not an object`, {
        field: key,
      });
    }
  }
  const cluster = raw['cluster'] as Record<string, unknown>;
  if (typeof cluster['uid'] !== 'string' || !isObject(cluster['status'])) {
    throw new ClusterDataInvalidError('clusterdata.cluster lacks uid or status', {
      field: 'cluster',
    });
  }
  try {
    validateSpec(cluster['spec']);
  } catch (err) {
    if (err instanceof SpecValidationError) {
      throw new ClusterDataInvalidError(`clusterdata.cluster.spec is invalid: ${err.message}`, {
        field: `cluster.spec.${err.field ?? ''}`,
        cause: err,
      });
    }
    throw err;
  }
  return raw as unknown as ClusterData;
}

/**
 * A fresh clusterdata document for `stolonctl init` / the sentinel's initial spec: a new cluster
 * uid, phase `initializing`, no keepers or DBs, an empty proxy object.
 * @param spec an already validated spec
 * @param uid the new cluster uid (8 hex chars, see `newUid` in @stolon-ts/common)
 * @param nowIso wall-clock RFC 3339 time
 */
export function newClusterData(spec: ClusterSpec, uid: string, nowIso: string): ClusterData {
  return {
    formatVersion: CURRENT_FORMAT_VERSION,
    changeTime: nowIso,
    cluster: {
      uid,
      generation: 1,
      changeTime: nowIso,
      spec: structuredClone(spec),
      status: { phase: 'initializing', master: '' },
    },
    keepers: {},
    dbs: {},
    proxy: {
      uid: '',
      generation: 1,
      changeTime: nowIso,
      spec: { masterDbUid: '', enabledProxies: [] },
      status: {},
    },
  };
}

/** Serialises clusterdata the one way every writer does (compact JSON). */
export function serializeClusterData(cd: ClusterData): string {
  return JSON.stringify(cd);
}
