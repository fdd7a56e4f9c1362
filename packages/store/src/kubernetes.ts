/**
 * The Kubernetes store: the `Store` contract on the Kubernetes API (`@kubernetes/client-node` for
 * configuration and credentials, our own HTTP for deadlines and watches; see `kube-client.ts`).
 * Everything lives in one namespace (`resolveKubeConfig`). Clusterdata is an annotation of one
 * ConfigMap, written by compare-and-set on its `resourceVersion`; every info is a
 * `coordination.k8s.io/v1` Lease with a TTL, read with the clock-skew rule of
 * {@link LeaseObservations}; the sentinel leader holds a Lease with client-go's lock rules;
 * watches are Kubernetes watches, one per topic, with a timer per Lease for expiries. Every method
 * is bounded by `timeoutMs`.
 *
 * Object names, timings, watch and error handling: docs/architecture.md, "Store backends".
 * Tested only against the stand-in API server in `@stolon-ts/harness`, never a real one.
 * @see the Kubernetes documentation, "Kubernetes API Concepts" (resourceVersion, watch, bookmarks, 410 Gone)
 * @see https://kubernetes.io/docs/concepts/architecture/leases/ and the Lease v1 API (coordination.k8s.io/v1)
 * @see https://github.com/sorintlab/stolon/blob/master/internal/store/k8s.go (Stolon's Kubernetes backend)
 */
import { NotLeaderError, StolonError, StoreConflictError, StoreUnavailableError } from '@stolon-ts/cluster';
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeHttp, KubeRequestError, type KubeResponse, type KubeWatchStream } from './kube-client.js';
import {
  CLUSTERDATA_ANNOTATION,
  CLUSTER_LABEL,
  INFO_KIND_LABEL,
  LeaseObservations,
  STATUS_ANNOTATION,
  UID_ANNOTATION,
  checkKubeClusterName,
  clusterDataConfigMapName,
  infoLeaseName,
  leaderLeaseName,
  leaseDurationSeconds,
  microTime,
  readConfigMap,
  readLease,
  type ConfigMapView,
  type LeaseView,
} from './kube-objects.js';
import { LeaderElection, type ElectionAttempt, type ElectionBackend, type ElectionLoop } from './election.js';
import { StoreHandles } from './handles.js';
import type {
  ClusterDataRecord,
  Election,
  InfoKind,
  InfoTypes,
  Store,
  StoreWatch,
  WatchTopic,
} from './store.js';
import {
  DEFAULT_TIMEOUT_MS,
  KeyedSerializer,
  LEADER_VALID_FRACTION,
  TopicDispatcher,
  checkTtl,
  checkUid,
  monotonicMs,
  parseInfoText,
} from './util.js';

/** Options of {@link KubernetesStore}. */
export interface KubernetesStoreOptions {
  /** Cluster name; part of every object name and the `stolon-cluster` label. */
  readonly clusterName: string;
  /** API server and credentials (from `resolveKubeConfig`). */
  readonly kubeConfig: KubeConfig;
  /** Namespace of every object (from `resolveKubeConfig`). */
  readonly namespace: string;
  /** Per-call timeout in ms; no store method takes longer. @default 5000 */
  readonly timeoutMs?: number;
  /**
   * `timeoutSeconds` of each watch request, in s, randomised up to twice that (as client-go) so
   * watchers do not reconnect in step; the server then ends the stream and it is resumed from the
   * last resourceVersion. @default 300
   */
  readonly watchTimeoutSeconds?: number;
}

/** Delay between renewal attempts after a failed one, in ms (as the etcd backend's keepalive). */
const RENEW_RETRY_MS = 250;
/** Watch reconnect backoff: first delay and cap, in ms. */
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 2000;

const API_CORE = '/api/v1';
const API_COORDINATION = '/apis/coordination.k8s.io/v1';

/** One info this process publishes and keeps renewing. */
interface KeptInfo {
  readonly kind: InfoKind;
  readonly uid: string;
  readonly name: string;
  text: string;
  ttlMs: number;
  /** resourceVersion of our last write, undefined when the Lease may not exist. */
  rv: string | undefined;
  acquireTime: string | undefined;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
  /** Monotonic time at which our last successful write was sent, and the duration it set (ms). */
  confirmedAt: number | undefined;
  confirmedDurationMs: number;
}

/**
 * A store backed by the Kubernetes API (ConfigMap for clusterdata, Leases for infos and the
 * sentinel leader). Every method throws `StoreUnavailableError` when the API server cannot be
 * reached, refuses the credentials, or does not answer within `timeoutMs`, and after
 * {@link KubernetesStore.close}.
 * @see Store for the per-method contract, and the module comment for the design.
 */
export class KubernetesStore implements Store {
  /** @internal */
  readonly http: KubeHttp;
  /** @internal */
  readonly timeoutMs: number;
  /** @internal */
  readonly namespace: string;
  /** @internal */
  readonly clusterName: string;
  /** @internal */
  readonly watchTimeoutSeconds: number;
  /** @internal The clock-skew rule's memory, shared by lists, watches and elections. */
  readonly observations = new LeaseObservations();
  private readonly handles: StoreHandles;
  /** The ConfigMap as last read or written, to replace it without reading it again. */
  private configMap: ConfigMapView | undefined;
  private readonly infos = new Map<string, KeptInfo>();
  /** Serialises setInfo/deleteInfo and renewals per (kind, uid). */
  private readonly infoLocks = new KeyedSerializer();
  private readonly background = new Set<Promise<unknown>>();

  /**
   * Creates the client; nothing is sent until the first call.
   * @throws ConfigError (`field: 'cluster-name'`) when the cluster name cannot be part of object
   *   names and label values (see `checkKubeClusterName`).
   */
  constructor(opts: KubernetesStoreOptions) {
    checkKubeClusterName(opts.clusterName);
    this.clusterName = opts.clusterName;
    this.namespace = opts.namespace;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
    this.http = new KubeHttp(opts.kubeConfig);
    this.handles = new StoreHandles(`kubernetes store for cluster ${opts.clusterName}`, this.timeoutMs);
  }

  // ---- request plumbing ----

  /** @internal A deadline `timeoutMs` from now (monotonic ms). */
  deadline(): number {
    return monotonicMs() + this.timeoutMs;
  }

  /** @internal Path of a ConfigMap (or the collection). */
  configMapPath(name?: string): string {
    return `${API_CORE}/namespaces/${encodeURIComponent(this.namespace)}/configmaps${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
  }

  /** @internal Path of a Lease (or the collection). */
  leasePath(name?: string): string {
    return `${API_COORDINATION}/namespaces/${encodeURIComponent(this.namespace)}/leases${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
  }

  /**
   * One request, with every failure mapped to a StolonError (see the module comment).
   * @internal
   */
  async req(
    what: string,
    method: string,
    path: string,
    opts: { deadline: number; body?: unknown; query?: Record<string, string>; allow?: readonly number[] },
  ): Promise<KubeResponse> {
    try {
      return await this.http.request(method, path, opts);
    } catch (err) {
      throw this.mapError(what, err);
    }
  }

  /** @internal */
  mapError(what: string, err: unknown): StolonError {
    if (err instanceof StolonError) {
      return err;
    }
    const where = `the Kubernetes API server at ${this.http.server} (namespace ${this.namespace})`;
    if (err instanceof KubeRequestError) {
      switch (err.kind) {
        case 'timeout':
          return new StoreUnavailableError(`${where} did not answer ${what} within ${this.timeoutMs} ms; check that it is up and reachable`, {
            cause: err,
          });
        case 'network':
          return new StoreUnavailableError(`${what} failed: ${err.message}; check that ${where} is up and reachable`, { cause: err });
        case 'http':
          if (err.status === 401) {
            return new StoreUnavailableError(`${where} refused the credentials for ${what} (401 ${err.message}); check the kubeconfig user or the service account token`, {
              cause: err,
            });
          }
          if (err.status === 403) {
            return new StoreUnavailableError(
              `${where} forbids ${what} (403 ${err.message}); grant this program's service account that request on configmaps or leases.coordination.k8s.io in namespace ${this.namespace} (deploy/base/rbac.yaml lists what each component needs)`,
              { cause: err },
            );
          }
          if (err.status === 400 || err.status === 422) {
            return new StolonError('STORE_DATA_INVALID', `${where} refused ${what} as invalid (${err.status} ${err.reason}): ${err.message}`, {
              cause: err,
            });
          }
          return new StoreUnavailableError(`${where} failed ${what} (${err.status} ${err.reason}): ${err.message}`, { cause: err });
      }
    }
    return new StoreUnavailableError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }

  /** Runs a best-effort background request (expired-Lease deletes); close() waits for them. */
  private inBackground(p: Promise<unknown>): void {
    const q = p.catch(() => undefined);
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  // ---- clusterdata ----

  private get configMapName(): string {
    return clusterDataConfigMapName(this.clusterName);
  }

  private async readConfigMapNow(deadline: number): Promise<ConfigMapView | undefined> {
    const res = await this.req(`get ConfigMap ${this.configMapName}`, 'GET', this.configMapPath(this.configMapName), {
      deadline,
      allow: [404],
    });
    this.configMap = res.status === 404 ? undefined : readConfigMap(res.body, `ConfigMap ${this.configMapName}`);
    return this.configMap;
  }

  /** The ConfigMap object to send when replacing `base` with `text` as clusterdata. */
  private replacement(base: ConfigMapView | undefined, text: string): Record<string, unknown> {
    const raw = base?.raw ?? {};
    const meta = (raw['metadata'] ?? {}) as Record<string, unknown>;
    return {
      ...raw,
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        ...meta,
        name: this.configMapName,
        namespace: this.namespace,
        labels: { ...base?.labels, [CLUSTER_LABEL]: this.clusterName },
        annotations: { ...base?.annotations, [CLUSTERDATA_ANNOTATION]: text },
        ...(base === undefined ? {} : { resourceVersion: base.resourceVersion }),
      },
    };
  }

  /** @inheritDoc */
  async getClusterData(): Promise<ClusterDataRecord | null> {
    this.handles.ensureOpen('getClusterData');
    const cm = await this.readConfigMapNow(this.deadline());
    const text = cm?.annotations[CLUSTERDATA_ANNOTATION];
    return cm === undefined || text === undefined ? null : { text, revision: cm.resourceVersion };
  }

  /**
   * @inheritDoc
   * A ConfigMap of the right name without the `stolon-clusterdata` annotation counts as "no
   * clusterdata": creating (expected `null`) adopts it, with its resourceVersion as precondition.
   *
   * With `leader`: a ConfigMap write cannot be made conditional on the leader Lease in one
   * request, so the guard is checked here, just before each write request is sent (this
   * candidate's leadership is valid by its last confirmed renewal, 3/4 of the lease duration), and
   * the request's deadline is cut to the end of that validity. Not guaranteed: a write sent in
   * time but delayed in flight (or applied after the client gave up waiting) can land after
   * another sentinel took over; the resourceVersion precondition then still keeps it from
   * overwriting anything the new leader wrote, but one decision of the old leader can be stored.
   */
  async putClusterData(text: string, expectedRevision: string | null, leader?: Election): Promise<string> {
    this.handles.ensureOpen('putClusterData');
    const guard = leader === undefined ? undefined : this.leaderGuard(leader);
    guard?.check();
    const deadline = Math.min(this.deadline(), guard?.validUntil() ?? Number.POSITIVE_INFINITY);
    const name = this.configMapName;
    if (expectedRevision === null) {
      const res = await this.req(`create ConfigMap ${name}`, 'POST', this.configMapPath(), {
        deadline,
        body: this.replacement(undefined, text),
        allow: [409],
      });
      if (res.status !== 409) {
        this.configMap = readConfigMap(res.body, `ConfigMap ${name}`);
        return this.configMap.resourceVersion;
      }
      const existing = await this.readConfigMapNow(deadline);
      if (existing === undefined || existing.annotations[CLUSTERDATA_ANNOTATION] !== undefined) {
        throw new StoreConflictError(
          `clusterdata of ${this.clusterName} already exists (ConfigMap ${name}, resourceVersion ${existing?.resourceVersion ?? '?'}); read it and retry`,
        );
      }
      guard?.check();
      return this.replaceConfigMap(existing, text, deadline, null);
    }
    const cached = this.configMap;
    const base = cached !== undefined && cached.resourceVersion === expectedRevision ? cached : await this.readConfigMapNow(deadline);
    if (base === undefined || base.annotations[CLUSTERDATA_ANNOTATION] === undefined || base.resourceVersion !== expectedRevision) {
      throw new StoreConflictError(
        `clusterdata of ${this.clusterName} changed: expected resourceVersion ${expectedRevision}, found ${base?.annotations[CLUSTERDATA_ANNOTATION] === undefined ? 'none' : base.resourceVersion}; read it and retry`,
        { revision: expectedRevision },
      );
    }
    guard?.check();
    return this.replaceConfigMap(base, text, deadline, expectedRevision);
  }

  /**
   * The check of `leader`, an election of this client: `check` throws NotLeaderError unless it
   * leads now by its last confirmed renewal; `validUntil` is when that leadership ends
   * (monotonic ms).
   * @throws NotLeaderError at once when `leader` is not an election of this client.
   */
  private leaderGuard(leader: Election): { check(): void; validUntil(): number } {
    const backend = leader instanceof LeaderElection ? leader.backend : undefined;
    if (!(backend instanceof KubeElectionBackend) || !backend.belongsTo(this)) {
      throw new NotLeaderError(`the election given is not a candidacy of this Kubernetes client for ${this.clusterName}; clusterdata not written`);
    }
    return {
      check: () => {
        if (!leader.isLeader()) {
          throw new NotLeaderError(`not the sentinel leader of ${this.clusterName} (any more); clusterdata not written`);
        }
      },
      validUntil: () => backend.leaderValidUntil(),
    };
  }

  /** PUT with `base`'s resourceVersion as precondition; 404/409 → StoreConflictError. */
  private async replaceConfigMap(base: ConfigMapView, text: string, deadline: number, expected: string | null): Promise<string> {
    const name = this.configMapName;
    const res = await this.req(`replace ConfigMap ${name}`, 'PUT', this.configMapPath(name), {
      deadline,
      body: this.replacement(base, text),
      allow: [404, 409],
    });
    if (res.status === 404 || res.status === 409) {
      this.configMap = undefined;
      throw new StoreConflictError(
        `clusterdata of ${this.clusterName} changed while writing (ConfigMap ${name}: ${res.status === 404 ? 'deleted' : 'resourceVersion moved'}); read it and retry`,
        expected === null ? {} : { revision: expected },
      );
    }
    this.configMap = readConfigMap(res.body, `ConfigMap ${name}`);
    return this.configMap.resourceVersion;
  }

  /** @inheritDoc */
  async overwriteClusterData(text: string): Promise<string> {
    this.handles.ensureOpen('overwriteClusterData');
    const deadline = this.deadline();
    const name = this.configMapName;
    // Another writer can slip in between our read and write: retry (as client-go's RetryOnConflict)
    // until the deadline, which bounds the loop.
    for (;;) {
      const base = await this.readConfigMapNow(deadline);
      const res =
        base === undefined
          ? await this.req(`create ConfigMap ${name}`, 'POST', this.configMapPath(), { deadline, body: this.replacement(undefined, text), allow: [409] })
          : await this.req(`replace ConfigMap ${name}`, 'PUT', this.configMapPath(name), { deadline, body: this.replacement(base, text), allow: [404, 409] });
      if (res.status < 300) {
        this.configMap = readConfigMap(res.body, `ConfigMap ${name}`);
        return this.configMap.resourceVersion;
      }
      if (monotonicMs() >= deadline) {
        throw this.mapError(`overwrite ConfigMap ${name}`, new KubeRequestError('kept conflicting with other writers', 'timeout'));
      }
    }
  }

  // ---- infos ----

  private infoBody(e: KeptInfo, now: number): Record<string, unknown> {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: e.name,
        namespace: this.namespace,
        labels: { [CLUSTER_LABEL]: this.clusterName, [INFO_KIND_LABEL]: e.kind },
        annotations: { [STATUS_ANNOTATION]: e.text, [UID_ANNOTATION]: e.uid },
        ...(e.rv === undefined ? {} : { resourceVersion: e.rv }),
      },
      spec: {
        holderIdentity: e.uid,
        leaseDurationSeconds: leaseDurationSeconds(e.ttlMs),
        acquireTime: e.acquireTime ?? microTime(now),
        renewTime: microTime(now),
        leaseTransitions: 0,
      },
    };
  }

  /**
   * Writes (creates or renews) the Lease of `e`: PUT with our last resourceVersion, POST when it
   * is gone (deleted as expired by a reader, or never created), re-read on a conflict (another
   * process with the same uid: last writer wins, as on etcd).
   */
  private async writeInfo(e: KeptInfo, deadline: number): Promise<void> {
    const what = `write ${e.kind} info Lease ${e.name}`;
    const confirmed = (sentAt: number): void => {
      e.confirmedAt = sentAt;
      e.confirmedDurationMs = leaseDurationSeconds(e.ttlMs) * 1000;
    };
    for (let attempt = 0; attempt < 4; attempt++) {
      const now = Date.now();
      const sentAt = monotonicMs();
      if (e.rv === undefined) {
        const res = await this.req(what, 'POST', this.leasePath(), { deadline, body: this.infoBody(e, now), allow: [409] });
        if (res.status !== 409) {
          e.rv = readLease(res.body, `Lease ${e.name}`).resourceVersion;
          e.acquireTime ??= microTime(now);
          confirmed(sentAt);
          return;
        }
      } else {
        const res = await this.req(what, 'PUT', this.leasePath(e.name), { deadline, body: this.infoBody(e, now), allow: [404, 409] });
        if (res.status < 300) {
          e.rv = readLease(res.body, `Lease ${e.name}`).resourceVersion;
          confirmed(sentAt);
          return;
        }
        if (res.status === 404) {
          e.rv = undefined;
          continue;
        }
      }
      // 409: it exists with another resourceVersion than ours; read it and write over it.
      const got = await this.req(`get Lease ${e.name}`, 'GET', this.leasePath(e.name), { deadline, allow: [404] });
      e.rv = got.status === 404 ? undefined : readLease(got.body, `Lease ${e.name}`).resourceVersion;
    }
    throw new StoreUnavailableError(`${what}: the Lease kept changing under us; is another process publishing ${e.kind} info with uid ${e.uid}?`);
  }

  private scheduleRenewal(e: KeptInfo, ms: number): void {
    clearTimeout(e.timer);
    if (e.stopped || this.handles.isClosed) {
      return;
    }
    e.timer = setTimeout(() => {
      e.timer = undefined;
      void this.infoLocks.run(`${e.kind}/${e.uid}`, async () => {
        if (e.stopped || this.handles.isClosed) {
          return;
        }
        const interval = Math.max(100, e.ttlMs / 3);
        try {
          await this.writeInfo(e, monotonicMs() + Math.min(this.timeoutMs, interval));
          this.scheduleRenewal(e, interval);
        } catch {
          this.scheduleRenewal(e, Math.min(interval, RENEW_RETRY_MS));
        }
      });
    }, ms);
  }

  /**
   * @inheritDoc
   * The Lease's `leaseDurationSeconds` is `ceil(ttlMs / 1000)` (at least 1); it is renewed every
   * `ttlMs / 3` until {@link KubernetesStore.deleteInfo} or close.
   * @throws RangeError when `ttlMs` is not positive or `uid` is empty or contains `/`.
   */
  async setInfo<K extends InfoKind>(kind: K, uid: string, info: InfoTypes[K], ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    checkUid(uid);
    this.handles.ensureOpen('setInfo');
    const deadline = this.deadline();
    const key = `${kind}/${uid}`;
    const text = JSON.stringify(info);
    await this.infoLocks.run(key, async () => {
      let e = this.infos.get(key);
      if (e === undefined) {
        e = {
          kind,
          uid,
          name: infoLeaseName(this.clusterName, kind, uid),
          text,
          ttlMs,
          rv: undefined,
          acquireTime: undefined,
          timer: undefined,
          stopped: false,
          confirmedAt: undefined,
          confirmedDurationMs: 0,
        };
        this.infos.set(key, e);
      }
      e.text = text;
      e.ttlMs = ttlMs;
      try {
        await this.writeInfo(e, deadline);
      } finally {
        // Renew from now on even if this write failed: the caller retries, and so do we.
        this.scheduleRenewal(e, Math.max(100, ttlMs / 3));
      }
    });
  }

  /**
   * How long, in ms from now, the info Lease this client publishes for (kind, uid) is certain to
   * live: the send time of its last successful write plus the duration that write set, minus now.
   * No reader can count the Lease as expired earlier: readers count the duration from when they
   * see that write (see {@link LeaseObservations}), which is after it was sent. A primary's keeper
   * uses this to fence PostgreSQL in time (docs/architecture.md, "Self-fencing primary").
   * @returns ms (≤ 0 once readers may count it expired), or undefined when this client keeps no
   *   Lease for the entry (never written successfully, deleted, or the store closed). Never
   *   throws, no I/O.
   */
  infoLeaseRemainingMs(kind: InfoKind, uid: string): number | undefined {
    const e = this.infos.get(`${kind}/${uid}`);
    if (e === undefined || e.confirmedAt === undefined) {
      return undefined;
    }
    return e.confirmedAt + e.confirmedDurationMs - monotonicMs();
  }

  /** @inheritDoc */
  async deleteInfo(kind: InfoKind, uid: string): Promise<void> {
    this.handles.ensureOpen('deleteInfo');
    const deadline = this.deadline();
    const key = `${kind}/${uid}`;
    await this.infoLocks.run(key, async () => {
      const e = this.infos.get(key);
      if (e !== undefined) {
        e.stopped = true;
        clearTimeout(e.timer);
        this.infos.delete(key);
      }
      const name = e?.name ?? infoLeaseName(this.clusterName, kind, uid);
      await this.req(`delete ${kind} info Lease ${name}`, 'DELETE', this.leasePath(name), { deadline, allow: [404] });
      this.observations.forget(name);
    });
  }

  /**
   * Deletes an expired info Lease, only if it is still at `resourceVersion` (a renewal wins).
   * Best effort, in the background.
   * @internal
   */
  deleteExpired(name: string, resourceVersion: string): void {
    if (this.handles.isClosed) {
      return;
    }
    this.inBackground(
      this.req(`delete expired Lease ${name}`, 'DELETE', this.leasePath(name), {
        deadline: this.deadline(),
        body: { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion } },
        allow: [404, 409],
      }),
    );
  }

  /** Label selector of the info Leases of `kind`. @internal */
  infoSelector(kind: InfoKind): string {
    return `${CLUSTER_LABEL}=${this.clusterName},${INFO_KIND_LABEL}=${kind}`;
  }

  /**
   * @inheritDoc
   * Expired Leases (by the rule of {@link LeaseObservations}) are left out and deleted in the
   * background. Invalid entries (an unreadable Lease, no `stolon-status` annotation, not a JSON
   * object) are reported through `onInvalid` with the uid (or the Lease name when no uid can be
   * read) and an error naming the Lease.
   */
  async listInfos<K extends InfoKind>(
    kind: K,
    onInvalid?: (uid: string, err: Error) => void,
  ): Promise<Record<string, InfoTypes[K]>> {
    this.handles.ensureOpen('listInfos');
    const res = await this.req(`list ${kind} info Leases`, 'GET', this.leasePath(), {
      deadline: this.deadline(),
      query: { labelSelector: this.infoSelector(kind) },
    });
    const items = (res.body as { items?: unknown }).items;
    if (!Array.isArray(items)) {
      throw new StolonError('STORE_DATA_INVALID', `list ${kind} info Leases: the API server answered without items`, { transient: true });
    }
    const out: Record<string, InfoTypes[K]> = {};
    const present = new Set<string>();
    for (const item of items) {
      let lease: LeaseView;
      try {
        lease = readLease(item, `${kind} info`);
      } catch (err) {
        const name = (item as { metadata?: { name?: unknown } }).metadata?.name;
        onInvalid?.(typeof name === 'string' ? name : '?', err as Error);
        continue;
      }
      present.add(lease.name);
      const uid = lease.annotations[UID_ANNOTATION] ?? lease.holder;
      if (uid === '') {
        onInvalid?.(lease.name, new Error(`${kind} info Lease ${lease.name} has neither a ${UID_ANNOTATION} annotation nor a holderIdentity`));
        continue;
      }
      if (lease.durationMs === undefined) {
        onInvalid?.(uid, new Error(`${kind} info Lease ${lease.name} has no spec.leaseDurationSeconds`));
        continue;
      }
      if (this.observations.expired(lease.name, lease.resourceVersion, lease.durationMs)) {
        this.deleteExpired(lease.name, lease.resourceVersion);
        continue;
      }
      const text = lease.annotations[STATUS_ANNOTATION];
      if (text === undefined) {
        onInvalid?.(uid, new Error(`${kind} info Lease ${lease.name} has no ${STATUS_ANNOTATION} annotation`));
        continue;
      }
      try {
        out[uid] = parseInfoText(text) as InfoTypes[K];
      } catch (err) {
        onInvalid?.(uid, new Error(`${kind} info Lease ${lease.name}, annotation ${STATUS_ANNOTATION}: ${(err as Error).message}`));
      }
    }
    this.observations.retainOnly(`${clusterDataConfigMapName(this.clusterName)}.${kind}.`, present);
    return out;
  }

  // ---- watches ----

  /**
   * @inheritDoc
   * One Kubernetes watch per topic (see the module comment); resolves once every topic is listed
   * and its watch established.
   * @throws StoreUnavailableError when that does not happen within `timeoutMs`.
   */
  async watch(topics: readonly WatchTopic[], listener: (topic: WatchTopic) => void): Promise<StoreWatch> {
    this.handles.ensureOpen('watch');
    const w = new KubeWatch(this, [...new Set(topics)], listener, (x) => this.handles.forgetWatch(x));
    try {
      return await this.handles.openWatch(w, () => w.start(this.deadline()));
    } catch (err) {
      throw this.mapError('establish watch', err);
    }
  }

  // ---- election ----

  /**
   * @inheritDoc
   * The Lease duration is `ceil(ttlMs / 1000)` s; leadership is reported lost once no renewal was
   * confirmed for 3/4 of it.
   * @throws RangeError when `ttlMs` is not positive.
   */
  async campaign(candidateUid: string, ttlMs: number): Promise<Election> {
    return this.handles.campaign(ttlMs, () => new KubeElectionBackend(this, candidateUid, leaseDurationSeconds(ttlMs)));
  }

  /** @internal The leader Lease, or undefined when absent. */
  async readLeaderLease(deadline: number): Promise<LeaseView | undefined> {
    const name = leaderLeaseName(this.clusterName);
    const res = await this.req(`get Lease ${name}`, 'GET', this.leasePath(name), { deadline, allow: [404] });
    return res.status === 404 ? undefined : readLease(res.body, `sentinel leader Lease ${name}`);
  }

  /**
   * @inheritDoc
   * The holder of the leader Lease unless nobody holds it or it has expired by the rule of
   * {@link LeaseObservations} (a process that has just started trusts it for one duration).
   * @throws StolonError `STORE_DATA_INVALID` when the Lease cannot be read (e.g. a spec field of
   *   the wrong type), naming it.
   */
  async getLeader(): Promise<string | null> {
    this.handles.ensureOpen('getLeader');
    const lease = await this.readLeaderLease(this.deadline());
    if (lease === undefined || lease.holder === '') {
      return null;
    }
    if (lease.durationMs !== undefined && this.observations.expired(lease.name, lease.resourceVersion, lease.durationMs)) {
      return null;
    }
    return lease.holder;
  }

  // ---- lifecycle ----

  /**
   * @inheritDoc
   * Resigns elections, closes watches and deletes this process's info Leases in parallel (each
   * bounded by `timeoutMs`, failures ignored: Leases left behind expire by their duration).
   */
  async close(): Promise<void> {
    // From here on every public call throws; what close() itself sends below does not check.
    if (!this.handles.markClosed()) {
      return;
    }
    const deadline = this.deadline();
    const infos = [...this.infos.values()];
    for (const e of infos) {
      e.stopped = true;
      clearTimeout(e.timer);
    }
    this.infos.clear();
    await Promise.all([
      this.handles.resignAndCloseAll(),
      ...infos.map((e) =>
        this.req(`delete ${e.kind} info Lease ${e.name}`, 'DELETE', this.leasePath(e.name), { deadline, allow: [404] }).catch(() => undefined),
      ),
    ]);
    await this.settleBackground(deadline);
    this.http.closeAll();
  }

  private async settleBackground(deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...this.background]),
      new Promise<void>((r) => {
        timer = setTimeout(r, Math.max(0, deadline - monotonicMs()));
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Test hook: stops this client as a crash would. Renewals stop and watches close, but nothing
   * is deleted or released: infos expire after their duration, and a leadership held passes on
   * once the leader Lease expires.
   */
  async abandon(): Promise<void> {
    if (!this.handles.markClosed()) {
      return;
    }
    for (const e of this.infos.values()) {
      e.stopped = true;
      clearTimeout(e.timer);
    }
    this.infos.clear();
    this.handles.abandonElections();
    await this.handles.closeWatches();
    this.http.closeAll();
  }
}

/** What a topic watches. */
interface TopicTarget {
  readonly path: string;
  readonly query: Record<string, string>;
  /** Lease topics keep expiry timers; info topics also delete expired Leases. */
  readonly leases: boolean;
  readonly infoKind: InfoKind | undefined;
}

function topicTarget(store: KubernetesStore, topic: WatchTopic): TopicTarget {
  switch (topic) {
    case 'clusterdata':
      return {
        path: store.configMapPath(),
        query: { fieldSelector: `metadata.name=${clusterDataConfigMapName(store.clusterName)}` },
        leases: false,
        infoKind: undefined,
      };
    case 'sentinel-leader':
      return {
        path: store.leasePath(),
        query: { fieldSelector: `metadata.name=${leaderLeaseName(store.clusterName)}` },
        leases: true,
        infoKind: undefined,
      };
    case 'keepers':
    case 'sentinels':
    case 'proxies':
      return { path: store.leasePath(), query: { labelSelector: store.infoSelector(topic) }, leases: true, infoKind: topic };
  }
}

/**
 * One topic's list-then-watch loop (a small client-go Reflector): it keeps the resourceVersion to
 * resume from and, for Lease topics, the resourceVersion of each known Lease with a timer at its
 * expiry (by the rule of {@link LeaseObservations}).
 */
class TopicWatch {
  private readonly target: TopicTarget;
  private lastRv = '';
  private stream: KubeWatchStream | undefined;
  /** Identifies the stream being opened or open; events of any other stream are ignored. */
  private current: object | undefined;
  private closed = false;
  private needList = false;
  private notifyWhenBack = false;
  private reconnecting = false;
  private pauseTimer: NodeJS.Timeout | undefined;
  private endPause: (() => void) | undefined;
  /** Known Leases: resourceVersion, what readers see of them, expiry timer. */
  private readonly known = new Map<string, { rv: string; seen: string; timer: NodeJS.Timeout | undefined }>();

  constructor(
    private readonly store: KubernetesStore,
    private readonly topic: WatchTopic,
    private readonly dispatcher: TopicDispatcher,
  ) {
    this.target = topicTarget(store, topic);
  }

  /**
   * Lists and opens the watch; rejects if that fails by `deadline`. (A stream that fails at once
   * is taken over by the reconnect loop.)
   */
  async start(deadline: number): Promise<void> {
    await this.list(deadline);
    await this.open(deadline);
  }

  private async list(deadline: number): Promise<void> {
    const res = await this.store.req(`list for the ${this.topic} watch`, 'GET', this.target.path, { deadline, query: this.target.query });
    const body = res.body as { metadata?: { resourceVersion?: unknown }; items?: unknown };
    const rv = body.metadata?.resourceVersion;
    if (typeof rv !== 'string' || rv === '' || !Array.isArray(body.items)) {
      throw new StolonError('STORE_DATA_INVALID', `list for the ${this.topic} watch: answer without items or metadata.resourceVersion`, {
        transient: true,
      });
    }
    this.lastRv = rv;
    if (!this.target.leases) {
      return;
    }
    const seen = new Set<string>();
    for (const item of body.items) {
      const name = this.track(item)?.name;
      if (name !== undefined) {
        seen.add(name);
      }
    }
    for (const name of [...this.known.keys()]) {
      if (!seen.has(name)) {
        this.untrack(name);
      }
    }
  }

  /**
   * Opens a watch from `lastRv`.
   * @returns false when the stream already failed (its end was handed to {@link TopicWatch.lost}).
   */
  private async open(deadline: number): Promise<boolean> {
    const token = {};
    this.current = token;
    const seconds = Math.round(this.store.watchTimeoutSeconds * (1 + Math.random()));
    let stream: KubeWatchStream;
    try {
      stream = await this.store.http.watch(
        this.target.path,
        { ...this.target.query, resourceVersion: this.lastRv, allowWatchBookmarks: 'true' },
        deadline,
        seconds,
        this.store.timeoutMs,
        {
          onEvent: (ev) => {
            if (this.current === token) {
              this.onEvent(ev.type, ev.object);
            }
          },
          onEnd: (err) => {
            if (this.current === token) {
              this.current = undefined;
              this.stream = undefined;
              this.lost(err === undefined ? 'ended' : 'broken');
            }
          },
        },
      );
    } catch (err) {
      if (this.current === token) {
        this.current = undefined;
      }
      throw err;
    }
    // Events are handled as they arrive, so the stream may have failed before we get here.
    if (this.current !== token || this.closed) {
      stream.close();
      return false;
    }
    this.stream = stream;
    return true;
  }

  private onEvent(type: string, object: unknown): void {
    if (this.closed) {
      return;
    }
    const rv = (object as { metadata?: { resourceVersion?: unknown } } | null)?.metadata?.resourceVersion;
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
      case 'DELETED': {
        if (typeof rv === 'string' && rv !== '') {
          this.lastRv = rv;
        }
        let meaningful = true;
        if (this.target.leases) {
          if (type === 'DELETED') {
            const name = (object as { metadata?: { name?: unknown } }).metadata?.name;
            if (typeof name === 'string') {
              this.untrack(name);
              this.store.observations.forget(name);
            }
          } else {
            // A renewal only moves renewTime: what readers see (the info, the holder) is the same,
            // so it wakes nobody (as an etcd keepalive makes no watch event).
            meaningful = this.track(object)?.changed ?? true;
          }
        }
        if (meaningful || type !== 'MODIFIED') {
          this.dispatcher.notify(this.topic);
        }
        return;
      }
      case 'BOOKMARK':
        // Everything up to rv was delivered: resume from there (cheaper, and not "too old" later).
        if (typeof rv === 'string' && rv !== '') {
          this.lastRv = rv;
        }
        return;
      default: {
        // ERROR: 410 Gone (history compacted past lastRv) or anything else the server could not
        // serve. Either way the stream is over and only a fresh list is trustworthy.
        this.current = undefined;
        const s = this.stream;
        this.stream = undefined;
        s?.close();
        this.needList = true;
        this.lost('error');
      }
    }
  }

  /**
   * The stream is gone. `ended` (cleanly, e.g. at `timeoutSeconds`): resume from `lastRv` at once,
   * without a listener call unless that fails (nothing was missed). `error` (an ERROR event):
   * relist at once. `broken`: reconnect after a backoff. Either of the last two calls the
   * listener once the watch is back, because events may have been missed.
   */
  private lost(why: 'ended' | 'broken' | 'error'): void {
    if (this.closed) {
      return;
    }
    if (why !== 'ended') {
      this.notifyWhenBack = true;
    }
    if (!this.reconnecting) {
      void this.reconnect(why === 'broken' ? BACKOFF_FIRST_MS : 0);
    }
  }

  /** Relists if needed and re-opens the watch, with a bounded backoff (100 ms doubling to 2 s, ±25 %). */
  private async reconnect(firstDelay: number): Promise<void> {
    this.reconnecting = true;
    let delay = firstDelay;
    while (!this.closed) {
      await this.pause(delay);
      if (this.closed) {
        break;
      }
      try {
        const deadline = this.store.deadline();
        if (this.needList) {
          await this.list(deadline);
          this.needList = false;
        }
        if (await this.open(deadline)) {
          break;
        }
      } catch (err) {
        if (err instanceof KubeRequestError && err.status === 410) {
          this.needList = true;
        }
      }
      // Failed (or failed at once): events may have been missed meanwhile.
      this.notifyWhenBack = true;
      delay = Math.round(Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_FIRST_MS, delay * 2)) * (0.75 + Math.random() / 2));
    }
    this.reconnecting = false;
    if (!this.closed && this.notifyWhenBack) {
      this.notifyWhenBack = false;
      this.dispatcher.notify(this.topic);
    }
  }

  private pause(ms: number): Promise<void> {
    if (ms <= 0) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.endPause = resolve;
      this.pauseTimer = setTimeout(() => {
        this.endPause = undefined;
        resolve();
      }, ms);
    });
  }

  /**
   * Starts or refreshes the expiry timer of a Lease.
   * @returns its name and whether what readers see of it changed (info annotation or holder),
   *   or undefined when it cannot be read.
   */
  private track(object: unknown): { name: string; changed: boolean } | undefined {
    let lease: LeaseView;
    try {
      lease = readLease(object, `${this.topic} watch`);
    } catch {
      return undefined;
    }
    const prev = this.known.get(lease.name);
    const seen =
      this.target.infoKind !== undefined
        ? `${lease.annotations[UID_ANNOTATION] ?? ''}\n${lease.annotations[STATUS_ANNOTATION] ?? ''}\n${lease.durationMs ?? ''}`
        : `${lease.holder}\n${lease.durationMs ?? ''}`;
    const changed = prev === undefined || prev.seen !== seen;
    if (prev?.rv === lease.resourceVersion) {
      return { name: lease.name, changed: false };
    }
    clearTimeout(prev?.timer);
    let timer: NodeJS.Timeout | undefined;
    // A leader Lease nobody holds cannot expire; a Lease without a duration is left alone.
    if (lease.durationMs !== undefined && (this.target.infoKind !== undefined || lease.holder !== '')) {
      const expiresAt = this.store.observations.expiresAt(lease.name, lease.resourceVersion, lease.durationMs);
      const rv = lease.resourceVersion;
      timer = setTimeout(() => this.expired(lease.name, rv), Math.max(0, expiresAt - monotonicMs()) + 1);
    }
    this.known.set(lease.name, { rv: lease.resourceVersion, seen, timer });
    return { name: lease.name, changed };
  }

  private untrack(name: string): void {
    clearTimeout(this.known.get(name)?.timer);
    this.known.delete(name);
  }

  /** A Lease passed its expiry without a new resourceVersion: the listener learns it now. */
  private expired(name: string, rv: string): void {
    const k = this.known.get(name);
    if (this.closed || k === undefined || k.rv !== rv) {
      return;
    }
    k.timer = undefined;
    // Readers now see it gone: if it is renewed after all, that is news again.
    k.seen = '';
    this.dispatcher.notify(this.topic);
    if (this.target.infoKind !== undefined) {
      this.store.deleteExpired(name, rv);
    }
  }

  close(): void {
    this.closed = true;
    this.current = undefined;
    clearTimeout(this.pauseTimer);
    this.endPause?.();
    this.endPause = undefined;
    this.stream?.close();
    this.stream = undefined;
    for (const name of [...this.known.keys()]) {
      this.untrack(name);
    }
  }
}

/** A watch over several topics, one {@link TopicWatch} each. @internal */
class KubeWatch implements StoreWatch {
  private readonly dispatcher: TopicDispatcher;
  private readonly topics: TopicWatch[];
  private closed = false;

  constructor(
    store: KubernetesStore,
    topics: readonly WatchTopic[],
    listener: (topic: WatchTopic) => void,
    private readonly onClose: (w: KubeWatch) => void,
  ) {
    this.dispatcher = new TopicDispatcher(listener);
    this.topics = topics.map((t) => new TopicWatch(store, t, this.dispatcher));
  }

  async start(deadline: number): Promise<void> {
    await Promise.all(this.topics.map((t) => t.start(deadline)));
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.dispatcher.close();
    for (const t of this.topics) {
      t.close();
    }
    this.onClose(this);
    await Promise.resolve();
  }
}

/**
 * The Kubernetes steps of a candidacy for the sentinel leader Lease, with client-go's Lease lock
 * rules (module comment); the loop is `LeaderElection`. Each attempt reads the Lease, then
 * creates, renews, takes over or follows; wake-ups come from a watch on the Lease (a resign or an
 * expiry is acted on at once) and from timers. A failed attempt leaves a leader leading until
 * its renew deadline (3/4 of the duration after its last successful write was sent), retrying
 * every 250 ms meanwhile; a follower retries every duration/3.
 * @internal
 */
class KubeElectionBackend implements ElectionBackend {
  /** After each attempt: our own first write is then in the watch's initial list, not an event. */
  readonly openWatch = 'before-sleeps';
  /** A request may take until the renew deadline: the loss is reported on time regardless. */
  readonly stepDownTimer = true;
  /** Monotonic time at which the last successful create/renew/takeover was sent. */
  private lastRenew = Number.NEGATIVE_INFINITY;
  private readonly durationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private readonly name: string;

  constructor(
    private readonly store: KubernetesStore,
    private readonly uid: string,
    private readonly durationSec: number,
  ) {
    this.durationMs = durationSec * 1000;
    this.renewDeadlineMs = this.durationMs * LEADER_VALID_FRACTION;
    this.retryMs = Math.max(100, this.durationMs / 3);
    this.name = leaderLeaseName(store.clusterName);
  }

  leaderValidUntil(): number {
    return this.lastRenew + this.renewDeadlineMs;
  }

  /** True when this candidacy runs on `store`. */
  belongsTo(store: KubernetesStore): boolean {
    return store === this.store;
  }

  /** Watches the leader Lease so that a resign or an expiry wakes the loop at once (best effort). */
  watch(wake: () => void): Promise<StoreWatch> {
    return this.store.watch(['sentinel-leader'], () => wake());
  }

  private record(now: number, transitions: number, acquireTime: string, rv: string | undefined): Record<string, unknown> {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: {
        name: this.name,
        namespace: this.store.namespace,
        labels: { [CLUSTER_LABEL]: this.store.clusterName },
        ...(rv === undefined ? {} : { resourceVersion: rv }),
      },
      spec: {
        holderIdentity: this.uid,
        leaseDurationSeconds: this.durationSec,
        acquireTime,
        renewTime: microTime(now),
        leaseTransitions: transitions,
      },
    };
  }

  /**
   * One read-and-act pass (client-go's tryAcquireOrRenew).
   * @throws StolonError when a request fails or the Lease cannot be read.
   */
  async tryAcquireOrRenew(loop: ElectionLoop): Promise<ElectionAttempt> {
    // A leader's requests must not outlive its renew deadline.
    const deadline = loop.leading() ? Math.min(this.store.deadline(), this.lastRenew + this.renewDeadlineMs) : this.store.deadline();
    const sentAt = monotonicMs();
    const now = Date.now();
    const lease = await this.store.readLeaderLease(deadline);
    if (loop.stopped()) {
      return { leader: undefined, nextMs: 0 };
    }
    if (lease === undefined) {
      const res = await this.store.req(`create Lease ${this.name}`, 'POST', this.store.leasePath(), {
        deadline,
        body: this.record(now, 0, microTime(now), undefined),
        allow: [409],
      });
      return this.afterWrite(res, sentAt, false, loop);
    }
    const expiresAt = lease.durationMs === undefined ? Number.POSITIVE_INFINITY : this.store.observations.expiresAt(lease.name, lease.resourceVersion, lease.durationMs);
    if (lease.holder === this.uid) {
      // Ours (also after a restart with the same uid, as client-go): renew.
      const res = await this.store.req(`renew Lease ${this.name}`, 'PUT', this.store.leasePath(this.name), {
        deadline,
        body: this.record(now, lease.transitions, lease.acquireTime ?? microTime(now), lease.resourceVersion),
        allow: [404, 409],
      });
      return this.afterWrite(res, sentAt, true, loop);
    }
    if (lease.holder !== '' && monotonicMs() < expiresAt) {
      return { leader: false, nextMs: Math.min(this.retryMs, expiresAt - monotonicMs() + 1) };
    }
    // Free (resigned) or expired: take it over, counting the transition.
    const res = await this.store.req(`take over Lease ${this.name}`, 'PUT', this.store.leasePath(this.name), {
      deadline,
      body: this.record(now, lease.transitions + 1, microTime(now), lease.resourceVersion),
      allow: [404, 409],
    });
    return this.afterWrite(res, sentAt, false, loop);
  }

  /**
   * Acts on the answer to a create, renew or takeover sent at `sentAt`.
   * @param renewing true for a renewal of a Lease we hold.
   */
  private afterWrite(res: KubeResponse, sentAt: number, renewing: boolean, loop: ElectionLoop): ElectionAttempt {
    if (res.status >= 300) {
      // Someone else wrote first (409) or it was deleted (404): read again soon. A holder whose
      // renewal conflicted (e.g. an earlier renewal that timed out here but was applied) keeps
      // leading until its renew deadline, as client-go does, instead of flapping.
      return { leader: renewing ? undefined : false, nextMs: Math.min(this.retryMs, RENEW_RETRY_MS) };
    }
    const lease = readLease(res.body, `sentinel leader Lease ${this.name}`);
    // Our own write: observed now, so a takeover check by this process counts from here too.
    this.store.observations.observe(lease.name, lease.resourceVersion);
    // Recorded even when resign() ran meanwhile, so that resign releases what we just took.
    this.lastRenew = sentAt;
    if (loop.stopped()) {
      return { leader: undefined, nextMs: 0 };
    }
    return { leader: true, nextMs: this.retryMs };
  }

  /** Unreachable API server or similar: a leader keeps trying fast until its renew deadline. */
  async recover(leading: boolean): Promise<number> {
    return leading ? RENEW_RETRY_MS : this.retryMs;
  }

  /**
   * Waits for a pass in flight (bounded by the store timeout), then clears `holderIdentity` if
   * the Lease still names this candidate (with its resourceVersion as precondition). Best effort:
   * if the API server is unreachable the Lease expires after its duration instead. Never throws.
   */
  async release(loopEnded: Promise<void>): Promise<void> {
    const deadline = this.store.deadline();
    await loopEnded;
    if (this.lastRenew === Number.NEGATIVE_INFINITY) {
      return; // never held it
    }
    try {
      const lease = await this.store.readLeaderLease(deadline);
      if (lease === undefined || lease.holder !== this.uid) {
        return;
      }
      const raw = lease.raw;
      const spec = (raw['spec'] ?? {}) as Record<string, unknown>;
      await this.store.req(`release Lease ${this.name}`, 'PUT', this.store.leasePath(this.name), {
        deadline,
        body: { ...raw, spec: { ...spec, holderIdentity: '', renewTime: microTime(Date.now()) } },
        allow: [404, 409],
      });
    } catch {
      // See the docstring: the Lease expires instead.
    }
  }

  /** Nothing runs between attempts: the Lease passes on once it expires. */
  abandon(): void {}
}
