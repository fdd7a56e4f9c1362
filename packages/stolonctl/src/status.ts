/**
 * `stolonctl status [--format table|json]`: what the store says about the cluster right now —
 * live sentinels (and which one leads), live proxies, keepers with their DB's health,
 * generations, timeline, LSN, lag and pending restarts, WAL discarded on rejoin, the cluster
 * role, phase and master (and for a standby cluster what it follows, without its password), and
 * the replication tree; when the cluster is paused, a loud first line says so. Building the report is a pure function over what was read
 * ({@link buildStatus}); rendering is separate.
 * @see https://github.com/sorintlab/stolon/blob/master/cmd/stolonctl/cmd/status.go (Stolon's command)
 */
import Table from 'cli-table3';
import {
  StoreUnavailableError,
  errorMessage,
  isMasterType,
  type ArchiveState,
  type ClusterData,
  type ClusterPhase,
  type DB,
  type DiscardedWal,
  type FailoverEvent,
  type KeeperInfo,
  type ProxyInfo,
  type Role,
  type SentinelInfo,
} from '@stolon-ts/cluster';
import { memberRequest, redactConninfo, type MemberFailsafeStatus } from '@stolon-ts/common';
import {
  CommandError,
  ExitCode,
  loadClusterData,
  runCommand,
  type CommandContext,
  type ExitCodeValue,
} from './context.js';

/** Output formats of `status`. */
export const STATUS_FORMATS = ['table', 'json'] as const;
/** One of {@link STATUS_FORMATS}. */
export type StatusFormat = (typeof STATUS_FORMATS)[number];

/** The first line of the table output of a paused cluster (`spec.paused`). */
export const PAUSED_BANNER =
  '!!! CLUSTER PAUSED: the sentinel takes no failover or standby action (stolonctl resume to re-enable) !!!';

/** Options of {@link runStatus}. */
export interface StatusOptions {
  /** `--format`. @default "table" */
  readonly format?: StatusFormat;
  /**
   * `--member-address`: keepers' member API addresses (`host:port`) to ask when the store cannot
   * be read, with `memberToken`. @default none
   */
  readonly memberAddresses?: readonly string[];
  /** The member API token (`--member-token-file` or `STOLONCTL_MEMBER_TOKEN`); never printed. */
  readonly memberToken?: string;
}

/** One keeper's answer to `GET /failsafe/status`, or why there is none. */
export interface MemberAnswer {
  readonly address: string;
  readonly answer?: MemberFailsafeStatus;
  readonly error?: string;
}

/** What `status` shows when the store cannot be read and member addresses were given. */
export interface OutageReport {
  /** The store's error. */
  readonly storeError: string;
  readonly members: readonly MemberAnswer[];
  /** The headline, e.g. "store unreachable, failsafe: primary keeper0 confirmed by 1/1 members (last round 300 ms ago)". */
  readonly headline: string;
}

/** How long one member API call of `status` may take, ms. */
const MEMBER_STATUS_TIMEOUT_MS = 2000;

/**
 * Builds the outage headline from the members' answers. Pure.
 * @returns e.g. "store unreachable, failsafe: primary keeper0 confirmed by 1/1 members (last round 300 ms ago)"
 */
export function outageHeadline(members: readonly MemberAnswer[]): string {
  const primary = members.find((m) => m.answer?.primary === true)?.answer;
  if (primary === undefined) {
    const named = members.map((m) => m.answer?.primaryKeeperUID).find((u) => typeof u === 'string');
    return (
      `store unreachable; none of the keepers asked runs the primary` +
      (named !== undefined ? ` (their last clusterdata names ${named}: add its member address)` : '')
    );
  }
  if (primary.failsafeMode !== true) {
    return `store unreachable, failsafe mode off: primary ${primary.keeperUID} fences itself when its lease could expire`;
  }
  const r = primary.lastRound;
  if (r === null) {
    return primary.storeReachable
      ? `the store is reachable from primary ${primary.keeperUID} (not from here): no failsafe rounds needed`
      : `store unreachable, failsafe: primary ${primary.keeperUID} has run no confirmation round yet`;
  }
  const left = primary.fenceRemainingMs === null ? '' : `; fences itself in ${primary.fenceRemainingMs} ms unless confirmed again`;
  return (
    `store unreachable, failsafe: primary ${primary.keeperUID} confirmed by ${r.confirmed}/${r.of} members (last round ${r.agoMs} ms ago` +
    (r.failures.length > 0 ? `; ${r.failures.join('; ')}` : '') +
    `)${r.confirmed < r.of ? left : ''}`
  );
}

function describeMember(m: MemberAnswer): string {
  const a = m.answer;
  if (a === undefined) {
    return `${m.address}: no answer (${m.error ?? 'unknown error'})`;
  }
  const parts = [a.primary ? 'primary' : `not primary (its last clusterdata names ${a.primaryKeeperUID ?? 'no primary'})`];
  parts.push(a.storeReachable ? 'reaches the store' : 'cannot reach the store');
  if (a.lastRound !== null) {
    parts.push(`last round ${a.lastRound.confirmed}/${a.lastRound.of} confirmed ${a.lastRound.agoMs} ms ago`);
  }
  if (a.fenceRemainingMs !== null) {
    parts.push(`may serve ${a.fenceRemainingMs} ms more without a renewal or confirmed round`);
  }
  if (a.promise !== null) {
    parts.push(`confirmed primary ${a.promise.primaryKeeperUID}: will not become primary for ${a.promise.remainingMs} ms`);
  }
  return `${a.keeperUID} at ${m.address}: ${parts.join('; ')}`;
}

/** Renders the outage report: the headline, the store's error, one line per keeper asked. */
export function renderOutage(r: OutageReport): string {
  return [r.headline.charAt(0).toUpperCase() + r.headline.slice(1), `Store error: ${r.storeError}`, 'Keepers asked (member API):', ...r.members.map((m) => `  ${describeMember(m)}`)].join('\n');
}

/** Asks each address's `GET /failsafe/status`, in parallel. Never throws: failures are in `error`. */
async function askMembers(addresses: readonly string[], token: string): Promise<MemberAnswer[]> {
  return Promise.all(
    addresses.map(async (address): Promise<MemberAnswer> => {
      try {
        const r = await memberRequest(address, '/failsafe/status', { token, timeoutMs: MEMBER_STATUS_TIMEOUT_MS });
        const b = r.body as MemberAnswer['answer'] & { error?: string };
        if (r.status !== 200 || b === undefined || typeof b.keeperUID !== 'string') {
          return { address, error: `HTTP ${r.status}${typeof b?.error === 'string' ? `: ${b.error}` : ''}` };
        }
        return { address, answer: b };
      } catch (err) {
        return { address, error: errorMessage(err) };
      }
    }),
  );
}

/** A live sentinel (its info entry exists). */
export interface SentinelRow {
  readonly uid: string;
  /** True when it holds the sentinel leader lease. */
  readonly leader: boolean;
}

/** A live proxy (its info entry exists). */
export interface ProxyRow {
  readonly uid: string;
  /** The proxy generation it reports enforcing. */
  readonly generation: number;
}

/** One keeper: from clusterdata, or only from its info when the sentinel has not added it yet. */
export interface KeeperRow {
  readonly uid: string;
  /** False when the keeper publishes info but is not in clusterdata yet. */
  readonly registered: boolean;
  readonly healthy: boolean;
  /** `host:port` of its DB, "(unknown)" if not reported, "(no db assigned)" without a DB. */
  readonly listenAddress: string;
  readonly pgHealthy: boolean;
  /** The assigned DB's generation (0 without a DB). */
  readonly pgWantedGeneration: number;
  /** The DB generation the keeper reports as applied (0 = unknown). */
  readonly pgCurrentGeneration: number;
  /** The DB's requested role, or null without a DB. */
  readonly role: Role | null;
  /** The assigned DB's uid, or null. */
  readonly dbUid: string | null;
  /** Timeline the DB last reported, or null when unknown. */
  readonly timeline: number | null;
  /** LSN (bytes) the DB last reported, or null when unknown. */
  readonly xLogPos: number | null;
  /** {@link xLogPos} as PostgreSQL prints it (`0/3000060`), or null. */
  readonly lsn: string | null;
  /**
   * Bytes the DB's last reported LSN is behind the primary DB's last reported LSN (0 when not
   * behind); null for the primary itself and when either LSN is unknown.
   */
  readonly lagBytes: number | null;
  /** Parameters changed but waiting for a PostgreSQL restart ([] when none). */
  readonly pendingRestart: readonly string[];
  /** The WAL range the keeper discarded when it rejoined after a failover, or null. */
  readonly discardedWal: DiscardedWal | null;
  /**
   * What the keeper says it is busy with or stuck on (its live info's `activity`: a clone's
   * progress, a failed task with its retry, a rejected configuration, a fence…), or null.
   */
  readonly activity: string | null;
  /** Why the keeper's last start of PostgreSQL failed, while it stays down; or null. */
  readonly startError: string | null;
  /** Command-bearing spec settings the keeper does not apply (its `--allow-spec-commands`); empty: none. */
  readonly refusedSpecCommands: readonly string[];
  /** WAL archiving with pgBackRest as the keeper publishes it (`postgresState.archive`), or null when it does not apply the `backup` section. */
  readonly archive: ArchiveState | null;
}

/** One node of the replication tree. */
export interface TreeNode {
  readonly keeperUid: string;
  readonly dbUid: string;
  readonly role: Role;
  /** True for a standby cluster's primary DB: it follows the external primary. */
  readonly external: boolean;
  readonly followers: readonly TreeNode[];
}

/** Everything `status` shows, in both formats. */
export interface StatusReport {
  readonly clusterName: string;
  readonly sentinels: readonly SentinelRow[];
  readonly proxies: readonly ProxyRow[];
  readonly keepers: readonly KeeperRow[];
  readonly cluster: {
    readonly uid: string;
    /** The spec's cluster role: `standby` replicates from a primary outside the cluster. */
    readonly role: Role;
    /** For a standby cluster, the primary's conninfo with passwords removed; else null. */
    readonly following: string | null;
    readonly phase: ClusterPhase;
    /** `spec.paused`: the sentinel observes but takes no failover or standby action. */
    readonly paused: boolean;
    /** The failover or switchover in progress (`status.failover`), or null. */
    readonly failoverInProgress: { readonly id: string; readonly kind: string; readonly oldPrimaryKeeperUid: string } | null;
    /**
     * A switchover scheduled with `stolonctl switchover --at` and not started yet
     * (`status.switchoverRequest.scheduledAt`), or null; `targetKeeperUid` null: the best standby.
     */
    readonly scheduledSwitchover: { readonly at: string; readonly targetKeeperUid: string | null; readonly requestedAt: string } | null;
    /** True when a master DB is set (Stolon's "available"). */
    readonly available: boolean;
    readonly masterKeeperUid: string | null;
    readonly masterDbUid: string | null;
    readonly proxyGeneration: number;
    /**
     * Failsafe mode (spec `failsafeMode`): whether it is on, and which keepers publish no member
     * API address (while any does, a primary cannot keep its role through a store outage).
     */
    readonly failsafe: { readonly on: boolean; readonly keepers: number; readonly withoutMemberApi: readonly string[] };
  };
  /** The master DB and, recursively, its followers; null without a master. */
  readonly tree: TreeNode | null;
}

/** What `status` reads from the store, as handed to {@link buildStatus}. */
export interface StatusInputs {
  readonly clusterName: string;
  readonly cd: ClusterData;
  readonly sentinels: Readonly<Record<string, SentinelInfo>>;
  /** Uid of the sentinel holding the leader lease, or null. */
  readonly leader: string | null;
  readonly proxies: Readonly<Record<string, ProxyInfo>>;
  readonly keepers: Readonly<Record<string, KeeperInfo>>;
}

const byUid = (a: { uid: string }, b: { uid: string }): number => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0);

/**
 * Formats a byte position as PostgreSQL prints an LSN: upper-case hex `X/Y`, no padding
 * (`formatLsn` of @stolon-ts/postgres, which stolonctl does not depend on).
 * @example formatLsn(0x3000060) === '0/3000060'
 */
export function formatLsn(pos: number): string {
  const hi = Math.floor(pos / 2 ** 32);
  const lo = pos % 2 ** 32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/** The DB's last reported LSN, or null when it never reported one (no PostgreSQL is at LSN 0). */
function reportedLsn(db: DB | undefined): number | null {
  const pos = db?.status.xLogPos;
  return pos !== undefined && Number.isSafeInteger(pos) && pos > 0 ? pos : null;
}

/** Keeper-row fields of a keeper without a DB (or not in clusterdata). */
const NO_DB = {
  pgHealthy: false,
  pgWantedGeneration: 0,
  pgCurrentGeneration: 0,
  role: null,
  dbUid: null,
  timeline: null,
  xLogPos: null,
  lsn: null,
  lagBytes: null,
  pendingRestart: [],
  discardedWal: null,
} as const satisfies Partial<KeeperRow>;

/** The keeper-row fields that come from the keeper's live info rather than clusterdata. */
function liveFields(info: KeeperInfo | undefined): Pick<KeeperRow, 'activity' | 'startError' | 'refusedSpecCommands' | 'archive'> {
  const st = info?.postgresState;
  return {
    activity: st?.activity ?? null,
    startError: st?.startError ?? null,
    refusedSpecCommands: st?.refusedSpecCommands ?? [],
    archive: st?.archive ?? null,
  };
}

/**
 * The table's line about keeper `uid`'s archiving, e.g. `keeper k0: archiving (stanza main): last
 * archived 000000010000000000000007 at 2026-12-06T10:00:00.000Z; 2 failed attempts, failing (last
 * failed 000000010000000000000008 at …); 5 WAL files (83886080 bytes) waiting, above
 * backup.archiveWarnBytes`.
 */
function describeArchive(uid: string, a: ArchiveState): string {
  const parts = [
    a.lastArchivedWal === undefined ? 'nothing archived yet' : `last archived ${a.lastArchivedWal}${a.lastArchivedTime === undefined ? '' : ` at ${a.lastArchivedTime}`}`,
  ];
  if ((a.failedCount ?? 0) > 0) {
    parts.push(
      `${a.failedCount ?? 0} failed attempts${a.failing === true ? ', failing' : ''} (last failed ${a.lastFailedWal ?? '?'}${a.lastFailedTime === undefined ? '' : ` at ${a.lastFailedTime}`})`,
    );
  }
  if (a.readyCount !== undefined) {
    parts.push(`${a.readyCount} WAL files (${a.readyBytes ?? 0} bytes) waiting${a.backlogWarning === true ? ', above backup.archiveWarnBytes' : ''}`);
  }
  if (a.stanzaError !== undefined) {
    parts.push(`stanza-create failed: ${a.stanzaError}`);
  }
  return `keeper ${uid}: archiving (stanza ${a.stanza}): ${parts.join('; ')}`;
}

/** Builds the status report from what was read. Pure. */
export function buildStatus(inp: StatusInputs): StatusReport {
  const { cd } = inp;
  const sentinels = Object.keys(inp.sentinels)
    .map((uid) => ({ uid, leader: uid === inp.leader }))
    .sort(byUid);
  const proxies = Object.entries(inp.proxies)
    .map(([uid, info]) => ({ uid, generation: info.Generation }))
    .sort(byUid);

  const dbByKeeper = new Map<string, DB>();
  for (const db of Object.values(cd.dbs)) {
    dbByKeeper.set(db.spec.keeperUID, db);
  }
  const masterDb = cd.cluster.status.master === '' ? undefined : cd.dbs[cd.cluster.status.master];
  const masterLsn = reportedLsn(masterDb);
  const keepers: KeeperRow[] = Object.values(cd.keepers).map((k) => {
    const db = dbByKeeper.get(k.uid);
    if (db === undefined) {
      return { uid: k.uid, registered: true, healthy: k.status.healthy, listenAddress: '(no db assigned)', ...NO_DB, ...liveFields(inp.keepers[k.uid]) };
    }
    const addr = db.status.listenAddress;
    const lsn = reportedLsn(db);
    const timeline = db.status.timelineID;
    return {
      uid: k.uid,
      registered: true,
      healthy: k.status.healthy,
      listenAddress: addr === undefined || addr === '' ? '(unknown)' : `${addr}:${db.status.port}`,
      pgHealthy: db.status.healthy,
      pgWantedGeneration: db.generation,
      pgCurrentGeneration: db.status.currentGeneration,
      role: db.spec.role,
      dbUid: db.uid,
      timeline: Number.isSafeInteger(timeline) && timeline > 0 ? timeline : null,
      xLogPos: lsn,
      lsn: lsn === null ? null : formatLsn(lsn),
      // The two positions were reported at different moments: a standby may look ahead.
      lagBytes: db === masterDb || lsn === null || masterLsn === null ? null : Math.max(0, masterLsn - lsn),
      pendingRestart: [...(db.status.pendingRestart ?? [])],
      discardedWal: db.status.discardedWal === undefined ? null : { ...db.status.discardedWal },
      ...liveFields(inp.keepers[k.uid]),
    };
  });
  // A keeper that publishes info but that no sentinel has added yet (none running, or the
  // keeper reports another cluster uid) would otherwise be invisible.
  for (const uid of Object.keys(inp.keepers)) {
    if (cd.keepers[uid] === undefined) {
      keepers.push({ uid, registered: false, healthy: false, listenAddress: '(not in clusterdata yet)', ...NO_DB, ...liveFields(inp.keepers[uid]) });
    }
  }
  keepers.sort(byUid);

  const role = cd.cluster.spec.role ?? 'master';
  const failover = cd.cluster.status.failover;
  const sreq = cd.cluster.status.switchoverRequest;
  const conninfo = cd.cluster.spec.standbyConfig?.standbySettings?.primaryConninfo;
  return {
    clusterName: inp.clusterName,
    sentinels,
    proxies,
    keepers,
    cluster: {
      uid: cd.cluster.uid,
      role,
      following: role === 'standby' && conninfo !== undefined ? redactConninfo(conninfo) : null,
      phase: cd.cluster.status.phase,
      paused: cd.cluster.spec.paused === true,
      failoverInProgress:
        failover === undefined
          ? null
          : {
              id: failover.id,
              kind: failover.kind,
              // parseClusterData checks the event; kept defensive so status never crashes on it.
              oldPrimaryKeeperUid: (failover.oldPrimary as FailoverEvent['oldPrimary'] | undefined)?.keeperUID ?? '(unknown)',
            },
      scheduledSwitchover:
        sreq?.scheduledAt === undefined ? null : { at: sreq.scheduledAt, targetKeeperUid: sreq.targetKeeperUID ?? null, requestedAt: sreq.requestedAt },
      available: masterDb !== undefined,
      masterKeeperUid: masterDb?.spec.keeperUID ?? null,
      masterDbUid: masterDb?.uid ?? null,
      proxyGeneration: cd.proxy.generation,
      failsafe: {
        on: cd.cluster.spec.failsafeMode ?? true,
        keepers: Object.keys(cd.keepers).length,
        withoutMemberApi: Object.values(cd.keepers)
          .filter((k) => (k.status.memberAddress ?? '') === '')
          .map((k) => k.uid)
          .sort(),
      },
    },
    tree: masterDb === undefined ? null : treeOf(cd, masterDb.uid, new Set()),
  };
}

function treeOf(cd: ClusterData, dbUid: string, seen: Set<string>): TreeNode | null {
  const db = cd.dbs[dbUid];
  // `seen` guards against a followers cycle in hand-edited clusterdata.
  if (db === undefined || seen.has(dbUid)) {
    return null;
  }
  seen.add(dbUid);
  const followers: TreeNode[] = [];
  for (const f of [...db.spec.followers].sort()) {
    const node = treeOf(cd, f, seen);
    if (node !== null) {
      followers.push(node);
    }
  }
  followers.sort((a, b) => (a.keeperUid < b.keeperUid ? -1 : a.keeperUid > b.keeperUid ? 1 : 0));
  const external = isMasterType(db) && db.spec.role !== 'master';
  return { keeperUid: db.spec.keeperUID, dbUid: db.uid, role: db.spec.role, external, followers };
}

/** A borderless, colourless table in Stolon's tab-aligned look: `head`, then one line per row. */
export function table(head: string[], rows: (string | number | boolean)[][]): string {
  const t = new Table({
    head,
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '  ',
    },
    style: { 'padding-left': 0, 'padding-right': 0, head: [], border: [], compact: true },
  });
  t.push(...rows.map((r) => r.map((c) => String(c))));
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}

function treeLines(node: TreeNode, prefix: string, last: boolean, root: boolean, out: string[]): void {
  const label = `${node.keeperUid}${node.role === 'master' ? ' (master)' : node.external ? ' (follows the external primary)' : ''}`;
  out.push(root ? label : `${prefix}${last ? '└─' : '├─'}${label}`);
  const childPrefix = root ? '' : `${prefix}${last ? '  ' : '│ '}`;
  node.followers.forEach((f, i) => treeLines(f, childPrefix, i === node.followers.length - 1, false, out));
}

/**
 * One line about WAL a keeper threw away when it rejoined.
 * @example "keeper k1 discarded WAL 0/3000060–0/3001000 on timeline 1 (pg_rewind at 2025-01-01T00:00:00.000Z)"
 */
export function describeDiscardedWal(keeperUid: string, d: DiscardedWal): string {
  return (
    `keeper ${keeperUid} discarded WAL ${formatLsn(d.fromLsn)}–${formatLsn(d.toLsn)} on timeline ${d.timelineID} ` +
    `(${d.method} at ${d.at})`
  );
}

/** Renders the report as Stolon's sections with borderless tables. */
export function renderStatusTable(r: StatusReport): string {
  const parts: string[] = [];
  if (r.cluster.paused) {
    // First, before anything scrolls: an operator must not miss that automatic failover is off.
    parts.push(PAUSED_BANNER, '');
  }
  parts.push('=== Active sentinels ===', '');
  parts.push(
    r.sentinels.length === 0
      ? 'No active sentinels'
      : table(['ID', 'LEADER'], r.sentinels.map((s) => [s.uid, s.leader])),
  );
  parts.push('', '=== Active proxies ===', '');
  parts.push(
    r.proxies.length === 0
      ? 'No active proxies'
      : table(['ID', 'GENERATION'], r.proxies.map((p) => [p.uid, p.generation])),
  );
  parts.push('', '=== Keepers ===', '');
  parts.push(
    r.keepers.length === 0
      ? 'No keepers available'
      : table(
          [
            'UID',
            'HEALTHY',
            'PG LISTENADDRESS',
            'PG HEALTHY',
            'PG WANTEDGENERATION',
            'PG CURRENTGENERATION',
            'ROLE',
            'TIMELINE',
            'LSN',
            'LAG',
            'PENDING RESTART',
          ],
          r.keepers.map((k) => [
            k.uid,
            k.healthy,
            k.listenAddress,
            k.pgHealthy,
            k.pgWantedGeneration,
            k.pgCurrentGeneration,
            k.role ?? '-',
            k.timeline ?? '-',
            k.lsn ?? '-',
            k.lagBytes ?? '-',
            k.pendingRestart.length > 0 ? k.pendingRestart.join(',') : '-',
          ]),
        ),
  );
  const discards = r.keepers.flatMap((k) => (k.discardedWal === null ? [] : [describeDiscardedWal(k.uid, k.discardedWal)]));
  if (discards.length > 0) {
    parts.push('', ...discards);
  }
  const busy = r.keepers.flatMap((k) => [
    ...(k.activity === null ? [] : [`keeper ${k.uid}: ${k.activity}`]),
    ...(k.startError === null ? [] : [`keeper ${k.uid}: postgres does not start: ${k.startError}`]),
    ...(k.refusedSpecCommands.length === 0
      ? []
      : [`keeper ${k.uid}: not applied from the spec: ${k.refusedSpecCommands.join(', ')} (allow with --allow-spec-commands on that keeper)`]),
    ...(k.archive === null ? [] : [describeArchive(k.uid, k.archive)]),
  ]);
  if (busy.length > 0) {
    parts.push('', ...busy);
  }
  parts.push('', '=== Cluster Info ===', '');
  parts.push(`Cluster UID: ${r.cluster.uid}`, `Cluster Role: ${r.cluster.role}`);
  if (r.cluster.following !== null) {
    parts.push(`Following: ${r.cluster.following}`);
  }
  parts.push(`Phase: ${r.cluster.phase}`);
  if (r.cluster.paused) {
    parts.push('Paused: true (stolonctl resume to re-enable the sentinel)');
  }
  const fs = r.cluster.failsafe;
  parts.push(
    !fs.on
      ? 'Failsafe mode: off (a store outage stops the primary)'
      : fs.withoutMemberApi.length === 0
        ? `Failsafe mode: on (member API on ${fs.keepers}/${fs.keepers} keepers)`
        : `Failsafe mode: on, but keepers without the member API (${fs.withoutMemberApi.join(', ')}) cannot confirm a primary: ` +
          'through a store outage the primary fences itself',
  );
  const f = r.cluster.failoverInProgress;
  if (f !== null) {
    parts.push(`In progress: ${f.kind} ${f.id} from keeper ${f.oldPrimaryKeeperUid} (stolonctl events shows its phases)`);
  }
  const sch = r.cluster.scheduledSwitchover;
  if (sch !== null) {
    parts.push(
      `Scheduled switchover: at ${sch.at} to ${sch.targetKeeperUid !== null ? `keeper ${sch.targetKeeperUid}` : 'the most up-to-date standby'} ` +
        '(stolonctl switchover --cancel removes it)',
    );
  }
  if (r.cluster.available) {
    parts.push(`Master Keeper: ${r.cluster.masterKeeperUid ?? ''}`);
  } else {
    parts.push('No cluster available (no master elected)');
  }
  if (r.tree !== null) {
    parts.push('', '===== Keepers/DB tree =====', '');
    const lines: string[] = [];
    treeLines(r.tree, '', true, true, lines);
    parts.push(...lines);
  }
  return parts.join('\n');
}

/**
 * The report as one JSON object, with Stolon's snake_case keys where Stolon has the field
 * (`sentinels`, `proxies`, `keepers[].listen_address`, `cluster.master_keeper_uid`, …) plus
 * our additions (`role`, `registered`, `db_uid`, `timeline`, `xLogPos`, `lsn`, `lagBytes`,
 * `pendingRestart`, `discardedWal`, `activity`, `startError`, `refusedSpecCommands`, `archive`; cluster `role`, `following`, `phase`, `paused`,
 * `failover_in_progress`, `scheduled_switchover`; `tree`).
 */
export function statusJson(r: StatusReport): unknown {
  const node = (n: TreeNode): unknown => ({
    keeper_uid: n.keeperUid,
    db_uid: n.dbUid,
    role: n.role,
    external: n.external,
    followers: n.followers.map(node),
  });
  return {
    cluster_name: r.clusterName,
    sentinels: r.sentinels.map((s) => ({ uid: s.uid, leader: s.leader })),
    proxies: r.proxies.map((p) => ({ uid: p.uid, generation: p.generation })),
    keepers: r.keepers.map((k) => ({
      uid: k.uid,
      registered: k.registered,
      healthy: k.healthy,
      listen_address: k.listenAddress,
      pg_healthy: k.pgHealthy,
      pg_wanted_generation: k.pgWantedGeneration,
      pg_current_generation: k.pgCurrentGeneration,
      role: k.role,
      db_uid: k.dbUid,
      timeline: k.timeline,
      xLogPos: k.xLogPos,
      lsn: k.lsn,
      lagBytes: k.lagBytes,
      pendingRestart: k.pendingRestart,
      discardedWal: k.discardedWal,
      activity: k.activity,
      startError: k.startError,
      refusedSpecCommands: k.refusedSpecCommands,
      archive: k.archive,
    })),
    cluster: {
      uid: r.cluster.uid,
      role: r.cluster.role,
      following: r.cluster.following,
      phase: r.cluster.phase,
      paused: r.cluster.paused,
      failover_in_progress:
        r.cluster.failoverInProgress === null
          ? null
          : {
              id: r.cluster.failoverInProgress.id,
              kind: r.cluster.failoverInProgress.kind,
              old_primary_keeper_uid: r.cluster.failoverInProgress.oldPrimaryKeeperUid,
            },
      scheduled_switchover:
        r.cluster.scheduledSwitchover === null
          ? null
          : { at: r.cluster.scheduledSwitchover.at, target_keeper_uid: r.cluster.scheduledSwitchover.targetKeeperUid, requested_at: r.cluster.scheduledSwitchover.requestedAt },
      available: r.cluster.available,
      master_keeper_uid: r.cluster.masterKeeperUid,
      master_db_uid: r.cluster.masterDbUid,
      proxy_generation: r.cluster.proxyGeneration,
    },
    tree: r.tree === null ? null : node(r.tree),
  };
}

/**
 * Prints the cluster status.
 * When the store cannot be read and `memberAddresses` and `memberToken` are given, asks those
 * keepers' member API (`GET /failsafe/status`) instead and prints whether the primary keeps its
 * role under failsafe mode ("store unreachable, failsafe: primary … confirmed by N/N members").
 * @returns 0; 1 when the cluster is not initialised, its clusterdata is invalid or the store
 *   fails (also after printing the members' answers); 2 for an unknown format.
 */
export function runStatus(ctx: CommandContext, opts: StatusOptions = {}): Promise<ExitCodeValue> {
  return runCommand(ctx, 'status', async () => {
    const format = opts.format ?? 'table';
    if (!STATUS_FORMATS.includes(format)) {
      throw new CommandError(`--format: "${String(format)}" is not one of table, json`, ExitCode.usage, {
        field: 'format',
      });
    }
    let cd: ClusterData;
    try {
      ({ cd } = await loadClusterData(ctx));
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) {
        throw err;
      }
      const addresses = opts.memberAddresses ?? [];
      if (addresses.length === 0 || opts.memberToken === undefined) {
        // A refusal naming a flag (TLS trust, credentials, permission) is this command's own
        // configuration, not a store outage: the failsafe hint would only distract.
        if (err.field !== undefined) {
          throw err;
        }
        // One line, as every store failure: the store's own message, then where to look instead.
        throw new CommandError(
          `store unavailable: ${err.message}; to see whether the primary keeps serving under failsafe mode, ` +
            'give --member-address <keeper host:port>[,…] and --member-token-file (or STOLONCTL_MEMBER_TOKEN)',
          ExitCode.runtime,
          { cause: err },
        );
      }
      const members = await askMembers(addresses, opts.memberToken);
      const report: OutageReport = { storeError: err.message, members, headline: outageHeadline(members) };
      ctx.out(format === 'json' ? JSON.stringify({ store: { reachable: false, error: err.message }, headline: report.headline, members }, null, 2) : renderOutage(report));
      // Still a failure for scripts: the store, which decides everything, is unreachable.
      return ExitCode.runtime;
    }
    const [sentinels, leader, proxies, keepers] = await Promise.all([
      ctx.store.listInfos('sentinels'),
      ctx.store.getLeader(),
      ctx.store.listInfos('proxies'),
      ctx.store.listInfos('keepers'),
    ]);
    const report = buildStatus({ clusterName: ctx.clusterName ?? '(unnamed)', cd, sentinels, leader, proxies, keepers });
    ctx.out(format === 'json' ? JSON.stringify(statusJson(report), null, 2) : renderStatusTable(report));
  });
}
