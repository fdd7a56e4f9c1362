/**
 * The schema of the whole clusterdata document (the `ClusterData` type in types.ts) and the
 * cross-field rules the sentinel's `decide` relies on. Pure: no I/O. `parseClusterData`
 * (clusterdata.ts) turns the issues found here into one error; the sentinel's repair drops the
 * entries they are confined to (docs/architecture.md#invalid-clusterdata).
 *
 * Unknown keys: every object except the cluster spec is a loose object. A field written by a
 * newer minor version (a new status field, a new trace phase) is tolerated and kept on rewrite,
 * because readers of this version do not act on it. A known field with a wrong type or an
 * unknown enum value (a new `role`, `initMode`, phase) is an error: acting on a value this
 * version does not understand could be wrong. The cluster spec stays strict (`validateSpec`): a
 * spec field this version does not know would be silently ignored otherwise.
 */
import { z } from 'zod';
import type { FailsafeEpisode } from './types.js';

/** One problem found in a clusterdata document. */
export interface ClusterDataIssue {
  /** Dotted JSON path of the offending field, e.g. `dbs.x.spec.keeperUID`. */
  readonly path: string;
  /** What is wrong, e.g. `expected string, got null`. */
  readonly message: string;
  /**
   * The entry the problem is confined to, when it is: a keeper entry, a DB entry or a
   * failoverHistory element (the sentinel may drop such entries). Absent for anything else.
   */
  readonly entry?: { readonly kind: 'keeper' | 'db' | 'history'; readonly key: string };
  /** Set when a DB's `spec.keeperUID` names a keeper not in `keepers`: that keeper's uid. */
  readonly missingKeeper?: string;
}

const nonNegInt = z.number().int().min(0);
/** LSNs and byte counts: JSON numbers, exact to 2^53 (types.ts). */
const lsn = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const strings = z.array(z.string());
const stringMap = z.record(z.string(), z.string());
const role = z.enum(['master', 'standby']);
/** A timeline history, as DB statuses and keeper infos carry it (`TimelineHistoryEntry[]`). */
const timelinesHistory = z.array(z.looseObject({ timelineID: nonNegInt, switchPoint: lsn, reason: z.string() }));
/** The WAL a keeper discarded on rejoin (`DiscardedWal`), in DB statuses and keeper infos. */
const discardedWal = z.looseObject({
  fromLsn: lsn,
  toLsn: lsn,
  timelineID: nonNegInt,
  method: z.enum(['pg_rewind', 'pg_basebackup']),
  at: z.string(),
});
const looseSettings = z.looseObject({});
const backupType = z.enum(['full', 'diff', 'incr']);

const failoverEvent = z.looseObject({
  id: z.string(),
  kind: z.enum(['failover', 'switchover']),
  cause: z.string(),
  oldPrimary: z.looseObject({ keeperUID: z.string(), dbUid: z.string(), xLogPos: lsn }),
  newPrimary: z.looseObject({ keeperUID: z.string(), dbUid: z.string(), xLogPos: lsn }).optional(),
  choice: z.string().optional(),
  phases: z.looseObject({
    primaryLastSeen: z.string().optional(),
    declaredFailed: z.string(),
    proxiesFenced: z.string().optional(),
    candidateChosen: z.string().optional(),
    promoted: z.string().optional(),
    proxiesRouted: z.string().optional(),
  }),
  result: z.enum(['completed', 'aborted']).optional(),
  newTimeline: z.looseObject({ timelineID: nonNegInt, switchPoint: lsn }).optional(),
  discardedWal: discardedWal.optional(),
});

const cluster = z.looseObject({
  uid: z.string(),
  generation: nonNegInt,
  changeTime: z.string(),
  // Checked by validateSpec (strict), separately, for its own messages.
  spec: z.unknown(),
  status: z.looseObject({
    phase: z.enum(['initializing', 'normal']),
    master: z.string(),
    failover: failoverEvent.optional(),
    switchoverRequest: z.looseObject({ targetKeeperUID: z.string().optional(), requestedAt: z.string(), requestedBy: z.string().optional(), scheduledAt: z.string().optional() }).optional(),
    reloadRequest: z.looseObject({ generation: nonNegInt, requestedAt: z.string(), keeperUIDs: strings.optional() }).optional(),
    reinitRequest: z.looseObject({ keeperUID: z.string(), dbUid: z.string(), requestedAt: z.string() }).optional(),
    backupRequest: z
      .looseObject({ id: z.string(), keeperUID: z.string(), type: backupType, requestedAt: z.string(), choice: z.string().optional(), primary: z.unknown().optional() })
      .optional(),
  }),
});

const keeper = z.looseObject({
  uid: z.string(),
  generation: nonNegInt,
  changeTime: z.string(),
  spec: z.looseObject({}),
  status: z.looseObject({
    healthy: z.boolean(),
    lastHealthyTime: z.string(),
    bootUUID: z.string(),
    postgresBinaryVersion: z.looseObject({ Maj: z.number(), Min: z.number() }).optional(),
    forceFail: z.boolean().optional(),
    canBeMaster: z.boolean().optional(),
    canBeSynchronousReplica: z.boolean().optional(),
    priority: z.number().optional(),
    memberAddress: z.string().optional(),
  }),
});

const db = z.looseObject({
  uid: z.string(),
  generation: nonNegInt,
  changeTime: z.string(),
  spec: z.looseObject({
    keeperUID: z.string(),
    requestTimeout: z.string(),
    maxStandbys: nonNegInt,
    synchronousReplication: z.boolean(),
    usePgrewind: z.boolean(),
    additionalWalSenders: nonNegInt,
    additionalReplicationSlots: strings.nullable(),
    initMode: z.enum(['none', 'new', 'existing', 'pitr', 'resync']),
    newConfig: looseSettings.optional(),
    pitrConfig: looseSettings.optional(),
    pgParameters: stringMap,
    pgHBA: strings.nullable(),
    suReplAccessMode: z.enum(['all', 'strict', 'keepers']).optional(),
    suAllowedCIDRs: strings.optional(),
    automaticPgRestart: z.boolean().optional(),
    shutdownForSwitchover: z.boolean().optional(),
    restartRequest: z.looseObject({ requestedAt: z.string(), generation: nonNegInt }).optional(),
    reinitRequestedAt: z.string().optional(),
    role,
    followConfig: z
      .looseObject({
        type: z.enum(['internal', 'external']),
        dbuid: z.string().optional(),
        standbySettings: looseSettings.optional(),
        archiveRecoverySettings: looseSettings.optional(),
      })
      .nullable()
      .optional(),
    followers: strings,
    includePreviousConfig: z.boolean(),
    synchronousStandbys: strings,
    externalSynchronousStandbys: strings,
  }),
  status: z.looseObject({
    healthy: z.boolean(),
    currentGeneration: nonNegInt,
    listenAddress: z.string(),
    port: z.string(),
    systemdID: z.string(),
    timelineID: nonNegInt,
    xLogPos: lsn,
    replayedXLogPos: lsn.optional(),
    timelinesHistory,
    pgParameters: stringMap,
    synchronousStandbys: strings,
    olderWalFile: z.string(),
    pendingRestart: strings.optional(),
    discardedWal: discardedWal.optional(),
  }),
});

const proxy = z.looseObject({
  uid: z.string(),
  generation: nonNegInt,
  changeTime: z.string(),
  spec: z.looseObject({ masterDbUid: z.string(), enabledProxies: strings }),
  status: z.looseObject({}),
});

/** A failsafe spell (`FailsafeEpisode`), in a keeper info and in `failsafeHistory`. */
const failsafeEpisodeSchema = z.looseObject({
  keeperUID: z.string(),
  since: z.string(),
  until: z.string(),
  rounds: nonNegInt,
  confirmedRounds: nonNegInt,
  members: nonNegInt,
  fenced: z.boolean(),
  lastFailure: z.string().optional(),
});

/** Whether `v` is a well-formed failsafe spell (an entry of `failsafeHistory` or a keeper info's). */
export function isFailsafeEpisode(v: unknown): v is FailsafeEpisode {
  return failsafeEpisodeSchema.safeParse(v).success;
}

const document = z.looseObject({
  formatVersion: z.literal(1),
  changeTime: z.string(),
  cluster,
  keepers: z.record(z.string(), keeper),
  dbs: z.record(z.string(), db),
  proxy,
  failoverHistory: z.array(failoverEvent).optional(),
  // A record only, written by the sentinel and shown by stolonctl events: an entry that does not
  // match is skipped by its readers (isFailsafeEpisode), never a reason to refuse the document.
  failsafeHistory: z.array(z.unknown()).optional(),
});

function describeValue(v: unknown): string {
  if (v === undefined) {
    return 'nothing (the field is missing)';
  }
  if (v === null) {
    return 'null';
  }
  if (Array.isArray(v)) {
    return 'an array';
  }
  if (typeof v === 'object') {
    return 'an object';
  }
  const text = JSON.stringify(v);
  return `${typeof v} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') {
      return undefined;
    }
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function entryOf(path: readonly PropertyKey[]): ClusterDataIssue['entry'] {
  const [top, key] = path;
  if (key === undefined) {
    return undefined;
  }
  if (top === 'keepers') {
    return { kind: 'keeper', key: String(key) };
  }
  if (top === 'dbs') {
    return { kind: 'db', key: String(key) };
  }
  if (top === 'failoverHistory') {
    return { kind: 'history', key: String(key) };
  }
  return undefined;
}

function issue(path: readonly PropertyKey[], message: string): ClusterDataIssue {
  const entry = entryOf(path);
  return { path: path.map(String).join('.'), message, ...(entry === undefined ? {} : { entry }) };
}

function schemaIssues(raw: unknown): ClusterDataIssue[] {
  const parsed = document.safeParse(raw);
  if (parsed.success) {
    return [];
  }
  return parsed.error.issues.map((i) => {
    let message = i.message;
    if (i.code === 'invalid_type') {
      message = `expected ${i.expected}, got ${describeValue(valueAt(raw, i.path))}`;
    } else if (i.code === 'invalid_value') {
      message = `expected one of ${i.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(valueAt(raw, i.path))}`;
    } else if (i.code === 'too_small' || i.code === 'too_big' || i.code === 'invalid_format') {
      message = `${i.message}, got ${describeValue(valueAt(raw, i.path))}`;
    }
    return issue(i.path, message);
  });
}

/**
 * The cross-field rules `decide` relies on, on a document that passed the schema: every keeper
 * and DB is stored under its own uid, `cluster.status.master` is "" or names a DB, every DB's
 * `spec.keeperUID` names a keeper, and the primary (once chosen) has role `master` or follows an
 * external primary.
 */
function crossFieldIssues(cd: z.infer<typeof document>): ClusterDataIssue[] {
  const out: ClusterDataIssue[] = [];
  for (const [key, k] of Object.entries(cd.keepers)) {
    if (k.uid !== key) {
      out.push(issue(['keepers', key, 'uid'], `is ${JSON.stringify(k.uid)}, not the entry's key ${JSON.stringify(key)}`));
    }
  }
  for (const [key, d] of Object.entries(cd.dbs)) {
    if (d.uid !== key) {
      out.push(issue(['dbs', key, 'uid'], `is ${JSON.stringify(d.uid)}, not the entry's key ${JSON.stringify(key)}`));
    }
    if (!Object.hasOwn(cd.keepers, d.spec.keeperUID)) {
      out.push({
        ...issue(['dbs', key, 'spec', 'keeperUID'], `names keeper ${JSON.stringify(d.spec.keeperUID)}, which is not in keepers`),
        missingKeeper: d.spec.keeperUID,
      });
    }
  }
  const master = cd.cluster.status.master;
  if (master !== '') {
    const m = Object.hasOwn(cd.dbs, master) ? cd.dbs[master] : undefined;
    if (m === undefined) {
      out.push(issue(['cluster', 'status', 'master'], `names DB ${JSON.stringify(master)}, which is not in dbs`));
    } else if (m.spec.role !== 'master' && m.spec.followConfig?.type !== 'external') {
      out.push(
        issue(['cluster', 'status', 'master'], `names DB ${JSON.stringify(master)}, whose spec.role is "standby" and which follows no external primary`),
      );
    }
  }
  return out;
}

/**
 * Every problem of a clusterdata document parsed from JSON: the schema of the `ClusterData`
 * type (the cluster spec excepted: see `validateSpec`), then, if that passed, the cross-field
 * rules. Paths are dotted (`dbs.x.spec.keeperUID`).
 * @param raw the document as parsed from JSON (any value)
 * @returns the problems, empty when the document is valid
 */
export function clusterDataIssues(raw: unknown): ClusterDataIssue[] {
  const issues = schemaIssues(raw);
  return issues.length > 0 ? issues : crossFieldIssues(raw as z.infer<typeof document>);
}

const keeperInfo = z.looseObject({
  infoUID: z.string(),
  uid: z.string(),
  clusterUID: z.string(),
  bootUUID: z.string(),
  postgresBinaryVersion: z.looseObject({ Maj: z.number(), Min: z.number() }),
  postgresState: z
    .looseObject({
      uid: z.string(),
      generation: nonNegInt,
      listenAddress: z.string(),
      port: z.string(),
      healthy: z.boolean(),
      systemID: z.string(),
      timelineID: nonNegInt,
      xLogPos: lsn,
      replayedXLogPos: lsn.optional(),
      timelinesHistory,
      pgParameters: stringMap,
      synchronousStandbys: strings,
      olderWalFile: z.string(),
      role: role.optional(),
      running: z.boolean().optional(),
      startedAt: z.string().optional(),
      streaming: z.boolean().optional(),
      cleanShutdown: z.boolean().optional(),
      pendingRestart: strings.optional(),
      discardedWal: discardedWal.optional(),
      activity: z.string().optional(),
      startError: z.string().optional(),
      refusedSpecCommands: strings.optional(),
      archive: z
        .looseObject({
          stanza: z.string(),
          stanzaError: z.string().optional(),
          archivedCount: nonNegInt.optional(),
          lastArchivedWal: z.string().optional(),
          lastArchivedTime: z.string().optional(),
          failedCount: nonNegInt.optional(),
          lastFailedWal: z.string().optional(),
          lastFailedTime: z.string().optional(),
          failing: z.boolean().optional(),
          readyCount: nonNegInt.optional(),
          readyBytes: z.number().nonnegative().optional(),
          backlogWarning: z.boolean().optional(),
        })
        .optional(),
    })
    .optional(),
  canBeMaster: z.boolean().optional(),
  canBeSynchronousReplica: z.boolean().optional(),
  priority: z.number().optional(),
  memberAddress: z.string().optional(),
  failsafeEpisode: failsafeEpisodeSchema.optional(),
  switchoverRequestedAt: z.string().optional(),
  reloadGeneration: nonNegInt.optional(),
  version: z.string().optional(),
  // Records only, read by stolonctl (backup-request.ts checks them): a malformed one must not
  // make the sentinel drop this keeper's info and so judge the keeper gone.
  backup: z.unknown().optional(),
  backups: z.unknown().optional(),
  backupServer: z.unknown().optional(),
});

const proxyInfo = z.looseObject({ infoUID: z.string(), UID: z.string(), Generation: nonNegInt, ProxyTimeout: z.number() });

/**
 * The problems of one keeper or proxy info as read from the store (the store checks only that it
 * is a JSON object), against the `KeeperInfo` / `ProxyInfo` types; unknown keys tolerated.
 * @param kind which info
 * @param raw the info as parsed from JSON
 * @returns `path: problem` sentences, empty when the info is valid
 */
export function infoIssues(kind: 'keepers' | 'proxies', raw: unknown): string[] {
  const parsed = (kind === 'keepers' ? keeperInfo : proxyInfo).safeParse(raw);
  if (parsed.success) {
    return [];
  }
  return parsed.error.issues.map((i) => {
    const path = i.path.length === 0 ? '(info)' : i.path.map(String).join('.');
    const got = describeValue(valueAt(raw, i.path));
    return i.code === 'invalid_type' ? `${path}: expected ${i.expected}, got ${got}` : `${path}: ${i.message}, got ${got}`;
  });
}
