/**
 * The store contract every backend implements (etcd v3, Consul, Kubernetes, memory) and the
 * one conformance suite checks (`conformance.ts`). Methods speak our nouns: clusterdata with its
 * revision, infos under a TTL, the sentinel leader lease, and watches. Each method states what
 * is atomic, what it throws and how long it may take (docs/design.md#the-store-contract).
 *
 * Every method may throw `StoreUnavailableError` (transient) when the backend cannot be reached or
 * does not answer within the store's request timeout (the `timeoutMs` the backend was built with;
 * no call takes longer). Loops retry at their next tick; nothing here retries on its own.
 *
 * Key layout (KV backends), the same as Stolon's, so a Stolon user finds the same keys:
 *   <prefix>/<cluster>/clusterdata, <prefix>/<cluster>/{keepers,sentinels,proxies}/info/<uid>,
 *   <prefix>/<cluster>/sentinel-leader
 */
import type { KeeperInfo, ProxyInfo, SentinelInfo } from '@stolon-ts/cluster';

/** The raw clusterdata document and the revision to pass back for compare-and-set. */
export interface ClusterDataRecord {
  /** The document exactly as stored (callers parse it with `parseClusterData`). */
  readonly text: string;
  /** Opaque revision (etcd: mod revision as a decimal string; Kubernetes: the ConfigMap's resourceVersion). */
  readonly revision: string;
}

/** The kinds of info objects components publish under a TTL. */
export type InfoKind = 'keepers' | 'sentinels' | 'proxies';

/** Maps an info kind to its JSON shape. */
export interface InfoTypes {
  keepers: KeeperInfo;
  sentinels: SentinelInfo;
  proxies: ProxyInfo;
}

/** What a watch reports: which part of the cluster's keyspace changed. */
export type WatchTopic = 'clusterdata' | InfoKind | 'sentinel-leader';

/**
 * One put or delete of an info entry, as a watch saw it (`Store.watchInfoValues`), in the
 * store's order for that kind: the value exactly as stored, or `text` null once the entry was
 * deleted or expired. `resync`: events of `kind` may have been missed (a reconnect, a watcher
 * re-created); re-read them. `revision` (etcd: the event's mod revision, a decimal string) orders
 * the change against `ClusterView.revision`: a change at or below a view's revision is already in it.
 */
export type InfoChange =
  | { readonly kind: InfoKind; readonly uid: string; readonly text: string | null; readonly revision?: string }
  | { readonly kind: InfoKind; readonly resync: true };

/** Clusterdata and the keeper and proxy infos, read at one store revision (`Store.readClusterView`). */
export interface ClusterView {
  readonly clusterData: ClusterDataRecord | null;
  readonly keepers: Record<string, KeeperInfo>;
  readonly proxies: Record<string, ProxyInfo>;
  /** The store revision the view was read at (etcd: the response header's revision, a decimal string), when the store says. */
  readonly revision?: string;
}

/** A running watch. */
export interface StoreWatch {
  /** Stops the watch; idempotent. */
  close(): Promise<void>;
}

/**
 * Leadership held on a store lease. Only one `Election` across all sentinels of a cluster is
 * leader at a time, as the store's consensus decides.
 */
export interface Election {
  /** True while this candidate holds the leader lease, as last confirmed by the store. */
  isLeader(): boolean;
  /**
   * Called with `true` when this candidate becomes leader and `false` when it loses leadership
   * (lease lost, keepalive failed, resigned). Called on the next tick, never synchronously.
   */
  onChange(listener: (leader: boolean) => void): void;
  /** Gives up leadership (if held) and stops campaigning; idempotent. */
  resign(): Promise<void>;
}

export interface Store {
  /**
   * Reads clusterdata.
   * @returns the document and its revision, or null when no cluster was initialised.
   */
  getClusterData(): Promise<ClusterDataRecord | null>;

  /**
   * Writes clusterdata only if its revision is still `expectedRevision` (compare-and-set);
   * `expectedRevision` null means "only if no clusterdata exists". Atomic.
   *
   * With `leader` (an `Election` this client's `campaign` returned), the write also requires that
   * this candidate still leads: etcd and the memory store compare the candidate's leader key
   * (still present with the create revision it was elected with, which makes it the lowest) in
   * the same transaction as the revision, so a sentinel that lost its lease cannot write.
   * Kubernetes cannot make a ConfigMap write conditional on the Lease object, so it checks only
   * that the candidate holds the leadership by its last confirmed renewal (renewed within 3/4 of
   * the lease duration) just before sending the write; a write delayed in flight past that can
   * still land (docs/design.md#the-store-contract).
   * @returns the new revision.
   * @throws StoreConflictError when the stored revision moved (or the key exists / is gone).
   * @throws NotLeaderError when `leader` is given and does not lead (any more), or is not an
   *   election of this client.
   */
  putClusterData(text: string, expectedRevision: string | null, leader?: Election): Promise<string>;

  /**
   * Writes clusterdata unconditionally (`stolonctl init --yes`).
   * @returns the new revision.
   */
  overwriteClusterData(text: string): Promise<string>;

  /**
   * Publishes `info` for `uid` under a TTL: if the process stops refreshing it (this call, or the
   * backend's own keepalive of the same lease), the entry disappears at most `ttlMs` (rounded up
   * to whole seconds on etcd and Kubernetes) after the last successful refresh. (Kubernetes: after
   * the reader saw that refresh, which a watching reader does at once; a reader that starts later
   * trusts the entry for one more TTL, see `kubernetes.ts`.) Repeated calls reuse one lease per
   * (kind, uid) while it lives; a lost lease is replaced on the next call.
   */
  setInfo<K extends InfoKind>(kind: K, uid: string, info: InfoTypes[K], ttlMs: number): Promise<void>;

  /**
   * How long, in ms from now, the info entry this client published for (kind, uid) is certain to
   * live: the earliest moment the backend could expire it is `now + result`. Computed from the
   * send time of the last refresh the backend confirmed, so it errs early, never late. A keeper
   * acting as primary fences PostgreSQL before this reaches 0 (docs/architecture.md,
   * "Self-fencing primary").
   * @returns ms (may be ≤ 0 once the lease could have expired), or undefined when this client
   *   holds no lease for the entry (never published, deleted, or lost and not re-granted yet).
   *   Never throws, never does I/O.
   */
  infoLeaseRemainingMs(kind: InfoKind, uid: string): number | undefined;

  /** Removes an info entry now (clean shutdown) and revokes its lease. Missing is fine. */
  deleteInfo(kind: InfoKind, uid: string): Promise<void>;

  /**
   * Lists live info entries of `kind`, keyed by the uid in the key. Entries that are not valid
   * JSON objects are skipped (and reported through `onInvalid` when given).
   */
  listInfos<K extends InfoKind>(
    kind: K,
    onInvalid?: (uid: string, err: Error) => void,
  ): Promise<Record<string, InfoTypes[K]>>;

  /**
   * Optional (etcd only): `getClusterData`, `listInfos('keepers')` and `listInfos('proxies')` in
   * one request, all at one store revision (etcd: one Range over the keys from clusterdata to the
   * proxy infos). Infos that are not valid JSON objects are skipped, as `listInfos` skips them.
   */
  readClusterView?(): Promise<ClusterView>;

  /**
   * Calls `listener` (asynchronously, possibly coalesced) whenever anything under the given topics
   * changes, including deletes and TTL expiry. After a reconnect the listener is called once,
   * because events may have been missed. The caller re-reads what it needs: events carry no data.
   */
  watch(topics: readonly WatchTopic[], listener: (topic: WatchTopic) => void): Promise<StoreWatch>;

  /**
   * Optional (etcd only): `watch`, and besides every info put or delete under the info topics
   * among `topics`, with its value, to `onInfo`: synchronously as the event arrives, before the
   * (coalesced) `listener` call of its topic, so a reader can take the values from the events
   * instead of listing the infos again. A reconnect or a re-created watcher gives `onInfo` a
   * `resync` change of each info topic.
   */
  watchInfoValues?(
    topics: readonly WatchTopic[],
    listener: (topic: WatchTopic) => void,
    onInfo: (change: InfoChange) => void,
  ): Promise<StoreWatch>;

  /**
   * Starts campaigning for the sentinel leader lease with `candidateUid` as value and a lease TTL
   * of `ttlMs`. Resolves at once; leadership is reported through the returned `Election`.
   */
  campaign(candidateUid: string, ttlMs: number): Promise<Election>;

  /** The uid of the current leader, or null when there is none. */
  getLeader(): Promise<string | null>;

  /** Closes the client, revokes this process's leases (best effort); idempotent. */
  close(): Promise<void>;
}
