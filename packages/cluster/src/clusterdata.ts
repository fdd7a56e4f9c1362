/**
 * Reading and creating the clusterdata document. Every component calls `parseClusterData` on
 * every read: an unsupported format version, an invalid spec or any field of the wrong shape
 * (the schema in clusterdata-schema.ts) makes the caller do nothing (the proxy: route nowhere).
 * The leader sentinel reads with `repairClusterData`, which may drop entries that are not needed
 * for safety. See docs/design.md#fail-closed and docs/architecture.md#invalid-clusterdata.
 */
import { clusterDataIssues, type ClusterDataIssue } from './clusterdata-schema.js';
import { ClusterDataInvalidError, SpecValidationError } from './errors.js';
import { validateSpec } from './spec.js';
import { CURRENT_FORMAT_VERSION, type ClusterData, type ClusterSpec, type KeeperInfo } from './types.js';

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** What every "invalid clusterdata" message ends with: how to get out of it. */
const FIX =
  'no component acts on it until it is fixed: correct the named fields in the stored document, or restore a good copy of it ' +
  '(docs/architecture.md#invalid-clusterdata; `stolonctl status` shows this error)';

/** How many problems one message lists. */
const MAX_LISTED = 5;

function invalidError(issues: readonly ClusterDataIssue[], extra = ''): ClusterDataInvalidError {
  const listed = issues.slice(0, MAX_LISTED).map((i) => `${i.path}: ${i.message}`);
  const more = issues.length > MAX_LISTED ? `; and ${issues.length - MAX_LISTED} more` : '';
  return new ClusterDataInvalidError(`clusterdata is invalid: ${listed.join('; ')}${more}${extra}; ${FIX}`, {
    field: issues[0]?.path ?? '',
  });
}

/**
 * JSON, an object, `formatVersion` 1, the top-level objects present and a valid cluster spec.
 * @throws ClusterDataInvalidError naming the problem
 */
function readDocument(text: string): Record<string, unknown> {
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
  return raw;
}

/**
 * Parses and checks clusterdata bytes from the store: JSON, `formatVersion` 1, a valid cluster
 * spec, every other field of the shape the `ClusterData` type gives it, and the cross-field
 * rules (each keeper and DB stored under its uid, `cluster.status.master` "" or a DB of role
 * master, each DB's keeper present). Fields this version does not know are kept (written by a
 * newer minor version); see clusterdata-schema.ts.
 * @throws ClusterDataInvalidError listing the problems by JSON path (`dbs.x.spec.keeperUID:
 *   expected string, got null`) and how to fix them; `field` is the first path.
 */
export function parseClusterData(text: string): ClusterData {
  if (validTexts.includes(text)) {
    return JSON.parse(text) as ClusterData;
  }
  const raw = readDocument(text);
  const issues = clusterDataIssues(raw);
  if (issues.length > 0) {
    throw invalidError(issues);
  }
  rememberValid(text);
  return raw as unknown as ClusterData;
}

/**
 * The last few documents (exact text) that passed every check of {@link parseClusterData}, oldest
 * first. The checks depend on the text alone, so the same text read again (every pass of every
 * component reads clusterdata, which at rest does not change) is only parsed, not checked again:
 * the schema check was most of an idle pass's CPU. A few, not one: the leader sentinel also checks
 * the document it is about to write. Each call still returns a new object from `JSON.parse`.
 */
const validTexts: string[] = [];
const VALID_TEXTS_KEPT = 4;

function rememberValid(text: string): void {
  validTexts.push(text);
  if (validTexts.length > VALID_TEXTS_KEPT) {
    validTexts.shift();
  }
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

/** What {@link repairClusterData} made of a stored document. */
export interface ClusterDataRepair {
  /** The document, valid except for DBs naming a live keeper whose entry was dropped. */
  readonly cd: ClusterData;
  /** One sentence per dropped entry (what and why); empty when the document was valid. */
  readonly dropped: readonly string[];
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function field(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const p of path) {
    if (!isObject(cur)) {
      return undefined;
    }
    cur = cur[p];
  }
  return cur;
}

/**
 * The DBs and keepers the repair must never drop, read defensively from a document that may be
 * malformed: the primary DB (`cluster.status.master`), the DB proxies route to, the DBs of a
 * failover or switchover in progress, every DB named as a synchronous standby (a failover may only
 * promote one of those), and the keepers of all of these.
 */
function protectedEntries(raw: Record<string, unknown>): { dbs: Set<string>; keepers: Set<string> } {
  const dbs = new Set<string>();
  const add = (v: unknown) => {
    const s = str(v);
    if (s !== undefined) {
      dbs.add(s);
    }
  };
  add(field(raw, 'cluster', 'status', 'master'));
  add(field(raw, 'proxy', 'spec', 'masterDbUid'));
  add(field(raw, 'cluster', 'status', 'failover', 'oldPrimary', 'dbUid'));
  add(field(raw, 'cluster', 'status', 'failover', 'newPrimary', 'dbUid'));
  for (const db of Object.values(raw['dbs'] as Record<string, unknown>)) {
    for (const list of [field(db, 'spec', 'synchronousStandbys'), field(db, 'status', 'synchronousStandbys')]) {
      if (Array.isArray(list)) {
        list.forEach(add);
      }
    }
  }
  const keepers = new Set<string>();
  for (const uid of dbs) {
    const k = str(field(raw, 'dbs', uid, 'spec', 'keeperUID'));
    if (k !== undefined) {
      keepers.add(k);
    }
  }
  return { dbs, keepers };
}

/** Why an issue cannot be repaired by dropping its entry, or undefined when it can. */
function unrepairable(i: ClusterDataIssue, prot: { dbs: Set<string>; keepers: Set<string> }): string | undefined {
  const e = i.entry;
  if (e === undefined) {
    return 'not inside a keeper, DB or failoverHistory entry';
  }
  if (e.kind === 'db' && prot.dbs.has(e.key)) {
    return `DB ${e.key} is the primary, the proxies' target, part of a failover in progress or a synchronous standby`;
  }
  if (e.kind === 'keeper' && prot.keepers.has(e.key)) {
    return `keeper ${e.key} holds the primary DB, the proxies' target, a DB of a failover in progress or a synchronous standby`;
  }
  return undefined;
}

function dropEntries(raw: Record<string, unknown>, issues: readonly ClusterDataIssue[], dropped: string[]): void {
  const history = new Set<number>();
  const seen = new Set<string>();
  for (const i of issues) {
    const e = i.entry!;
    const id = `${e.kind}:${e.key}`;
    if (seen.has(id)) {
      continue;
    }
    seen.add(id);
    const why = `${i.path}: ${i.message}`;
    if (e.kind === 'keeper') {
      delete (raw['keepers'] as Record<string, unknown>)[e.key];
      dropped.push(`dropped keeper entry ${e.key} (${why}); it is registered again from its keeper's live info`);
    } else if (e.kind === 'db') {
      delete (raw['dbs'] as Record<string, unknown>)[e.key];
      dropped.push(`dropped standby DB ${e.key} (${why}); its keeper gets a new standby DB (a resync)`);
    } else {
      history.add(Number(e.key));
      dropped.push(`dropped failoverHistory[${e.key}] (${why}); it is a record only`);
    }
  }
  if (history.size > 0 && Array.isArray(raw['failoverHistory'])) {
    raw['failoverHistory'] = raw['failoverHistory'].filter((_, n) => !history.has(n));
  }
}

/**
 * The leader sentinel's read: like {@link parseClusterData}, but a problem confined to an entry
 * that is not needed for safety is repaired by dropping that entry: a keeper entry (status only;
 * `decide` registers the keeper again from its live info), a standby DB (`decide` gives its
 * keeper a new one), a failoverHistory element (a record). Never dropped, so the document is
 * refused instead: the primary DB, the DB the proxies route to, the DBs of a failover in
 * progress, any synchronous standby, their keepers, and anything outside those entries (the
 * cluster and proxy objects). A DB naming a missing keeper is kept when that keeper is live
 * (`decide` registers it in the same pass); otherwise it is a standby DB to drop (or, if
 * protected, a refusal). Stolon has no such repair: its sentinel fails to decode the document
 * and does nothing.
 * @param text the stored document
 * @param keeperInfos the live keeper infos, keyed by keeper uid (those of another cluster uid do
 *   not count, as in `decide`)
 * @returns the usable document and one sentence per dropped entry
 * @throws ClusterDataInvalidError as {@link parseClusterData} when the document cannot be repaired
 *   that way (the message says which problem is not repairable and why)
 */
export function repairClusterData(text: string, keeperInfos: Readonly<Record<string, KeeperInfo>>): ClusterDataRepair {
  if (validTexts.includes(text)) {
    // Passed every check of parseClusterData: nothing to repair.
    return { cd: JSON.parse(text) as ClusterData, dropped: [] };
  }
  const raw = readDocument(text);
  const clusterUid = field(raw, 'cluster', 'uid');
  const liveKeepers = new Set(Object.entries(keeperInfos).filter(([, i]) => i.clusterUID === clusterUid).map(([uid]) => uid));
  const dropped: string[] = [];
  // Each round drops at least one entry, so this ends; a dropped keeper can orphan a DB, a
  // dropped DB nothing the schema checks.
  for (;;) {
    const all = clusterDataIssues(raw);
    const issues = all.filter((i) => i.missingKeeper === undefined || !liveKeepers.has(i.missingKeeper));
    if (issues.length === 0) {
      if (dropped.length === 0 && all.length === 0) {
        rememberValid(text);
      }
      return { cd: raw as unknown as ClusterData, dropped };
    }
    const prot = protectedEntries(raw);
    const bad = issues.find((i) => unrepairable(i, prot) !== undefined);
    if (bad !== undefined) {
      const done = dropped.length > 0 ? ` (after ${dropped.join('; ')})` : '';
      throw invalidError(issues, `; not repaired: ${bad.path}: ${unrepairable(bad, prot)}, so the sentinel does not guess${done}`);
    }
    dropEntries(raw, issues, dropped);
  }
}
