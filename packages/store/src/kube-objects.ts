/**
 * The Kubernetes backend's objects: their names, labels and annotations, the Lease and ConfigMap
 * shapes it reads (checked, with errors naming the object), MicroTime, and the clock-skew rule for
 * Lease expiry ({@link LeaseObservations}). No I/O. Not exported from the package index.
 * @see ./kubernetes.ts for the design.
 * @internal
 */
import { createHash } from 'node:crypto';
import { ConfigError, StolonError } from '@stolon-ts/cluster';
import type { InfoKind } from './store.js';

/** ConfigMap annotation holding the clusterdata JSON (Stolon's name). @internal */
export const CLUSTERDATA_ANNOTATION = 'stolon-clusterdata';
/** Lease annotation holding an info JSON (Stolon's name for the pod annotation). @internal */
export const STATUS_ANNOTATION = 'stolon-status';
/** Lease annotation holding the info's uid verbatim (the Lease name may be sanitised). @internal */
export const UID_ANNOTATION = 'stolon-uid';
/** Label on every object of a cluster (Stolon's name). @internal */
export const CLUSTER_LABEL = 'stolon-cluster';
/** Label on info Leases: `keepers`, `sentinels` or `proxies`. @internal */
export const INFO_KIND_LABEL = 'stolon-info-kind';

/** Longest uid part of an info Lease name before the hash suffix. */
const MAX_UID_PART = 100;

/**
 * Checks that `clusterName` can be used in object names and label values: a DNS-1123 label
 * (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63).
 * Stolon has the same constraint in practice: it uses the name in the ConfigMap name and the
 * `stolon-cluster` label.
 * @throws ConfigError (`field: 'cluster-name'`) naming the rule.
 * @see https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
 * @internal
 */
export function checkKubeClusterName(clusterName: string): void {
  if (clusterName.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(clusterName)) {
    throw new ConfigError(
      `--cluster-name: "${clusterName}" cannot be used with the kubernetes backend: it becomes part of object names and the ${CLUSTER_LABEL} label, so it must be lowercase letters, digits and '-', start and end with a letter or digit, and be at most 63 characters`,
      { field: 'cluster-name' },
    );
  }
}

/** The ConfigMap holding clusterdata: `stolon-cluster-<clusterName>` (Stolon's name). @internal */
export function clusterDataConfigMapName(clusterName: string): string {
  return `stolon-cluster-${clusterName}`;
}

/** The sentinel leader Lease: `stolon-cluster-<clusterName>-sentinel-leader`. @internal */
export function leaderLeaseName(clusterName: string): string {
  return `stolon-cluster-${clusterName}-sentinel-leader`;
}

/**
 * The Lease name of an info: `stolon-cluster-<cluster>.<kind>.<uid part>`, a DNS-1123 subdomain.
 * The dots make it unambiguous (cluster names have none, kinds are fixed words). The uid part is
 * the uid itself when it is already lowercase letters, digits and '-' (starting and ending with a
 * letter or digit, at most 100 characters); otherwise it is sanitised (lowercased, other
 * characters replaced by '-', trimmed, truncated) and suffixed with `-` and the first 10 hex digits
 * of the uid's SHA-256, so distinct uids keep distinct names ("k_1" and "k-1" differ).
 * @internal
 */
export function infoLeaseName(clusterName: string, kind: InfoKind, uid: string): string {
  const clean = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(uid) && uid.length <= MAX_UID_PART;
  let part = uid;
  if (!clean) {
    const sanitised = uid
      .toLowerCase()
      .replace(/[^a-z0-9-]/g, '-')
      .slice(0, MAX_UID_PART)
      .replace(/^-+|-+$/g, '');
    const hash = createHash('sha256').update(uid).digest('hex').slice(0, 10);
    part = sanitised === '' ? hash : `${sanitised}-${hash}`;
  }
  return `${clusterDataConfigMapName(clusterName)}.${kind}.${part}`;
}

/** The Lease duration for a TTL: whole seconds, rounded up, at least 1 (the field is an integer). @internal */
export function leaseDurationSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000));
}

/**
 * A MicroTime as the API server writes it: RFC 3339 in UTC with six fractional digits,
 * e.g. `2024-05-06T07:08:09.123000Z`.
 * @internal
 */
export function microTime(epochMs: number): string {
  const iso = new Date(epochMs).toISOString(); // 2024-05-06T07:08:09.123Z
  return `${iso.slice(0, 23)}000Z`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An error about store contents: transient (someone may fix the object), with the object named. */
function invalidStoreData(message: string): StolonError {
  return new StolonError('STORE_DATA_INVALID', message, { transient: true });
}

/** The metadata the backend reads. @internal */
interface ObjectMetaView {
  readonly name: string;
  readonly resourceVersion: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

function readMeta(obj: unknown, what: string): ObjectMetaView & { raw: Record<string, unknown> } {
  if (!isRecord(obj) || !isRecord(obj['metadata'])) {
    throw invalidStoreData(`${what}: the API server answered with something that is not a Kubernetes object (no metadata)`);
  }
  const m = obj['metadata'];
  const name = m['name'];
  const rv = m['resourceVersion'];
  if (typeof name !== 'string' || typeof rv !== 'string' || rv === '') {
    throw invalidStoreData(`${what}: object without metadata.name or metadata.resourceVersion`);
  }
  const strings = (field: 'labels' | 'annotations'): Record<string, string> => {
    const v = m[field];
    if (v === undefined || v === null) {
      return {};
    }
    if (!isRecord(v) || Object.values(v).some((x) => typeof x !== 'string')) {
      throw invalidStoreData(`${what}: metadata.${field} of ${name} is not a map of strings`);
    }
    return v as Record<string, string>;
  };
  return { name, resourceVersion: rv, labels: strings('labels'), annotations: strings('annotations'), raw: obj };
}

/** A ConfigMap as the backend reads it; `raw` is the whole object, kept for replace. @internal */
export interface ConfigMapView extends ObjectMetaView {
  readonly raw: Record<string, unknown>;
}

/**
 * Reads a ConfigMap returned by the API server.
 * @throws StolonError `STORE_DATA_INVALID` (transient) naming the object when the answer is not
 *   an object with a name, a resourceVersion and string-valued labels and annotations.
 * @internal
 */
export function readConfigMap(obj: unknown, what: string): ConfigMapView {
  return readMeta(obj, what);
}

/** A Lease as the backend reads it (`coordination.k8s.io/v1`). @internal */
export interface LeaseView extends ObjectMetaView {
  readonly raw: Record<string, unknown>;
  /** `spec.holderIdentity`; '' when absent or empty (nobody holds it). */
  readonly holder: string;
  /** `spec.leaseDurationSeconds` in ms; undefined when absent. */
  readonly durationMs: number | undefined;
  readonly acquireTime: string | undefined;
  readonly renewTime: string | undefined;
  /** `spec.leaseTransitions`, 0 when absent. */
  readonly transitions: number;
}

/**
 * Reads a Lease returned by the API server.
 * @throws StolonError `STORE_DATA_INVALID` (transient) naming the Lease and the field when the
 *   metadata is unusable or a spec field has the wrong type (e.g. a non-integer duration).
 * @see https://kubernetes.io/docs/concepts/architecture/leases/ and the Lease v1 API (coordination.k8s.io/v1)
 * @internal
 */
export function readLease(obj: unknown, what: string): LeaseView {
  const meta = readMeta(obj, what);
  const specRaw = meta.raw['spec'];
  const spec = specRaw === undefined || specRaw === null ? {} : specRaw;
  if (!isRecord(spec)) {
    throw invalidStoreData(`${what}: Lease ${meta.name} has a spec that is not an object`);
  }
  const field = <T>(name: string, ok: (v: unknown) => v is T, expected: string): T | undefined => {
    const v = spec[name];
    if (v === undefined || v === null) {
      return undefined;
    }
    if (!ok(v)) {
      throw invalidStoreData(`${what}: Lease ${meta.name} has spec.${name} = ${JSON.stringify(v)}, expected ${expected}`);
    }
    return v;
  };
  const isString = (v: unknown): v is string => typeof v === 'string';
  const isPositiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;
  const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
  const duration = field('leaseDurationSeconds', isPositiveInt, 'a positive integer');
  return {
    ...meta,
    holder: field('holderIdentity', isString, 'a string') ?? '',
    durationMs: duration === undefined ? undefined : duration * 1000,
    acquireTime: field('acquireTime', isString, 'a MicroTime string'),
    renewTime: field('renewTime', isString, 'a MicroTime string'),
    transitions: field('leaseTransitions', isCount, 'a non-negative integer') ?? 0,
  };
}

/**
 * The clock-skew rule of this backend: **a reader measures a Lease's age on its own monotonic
 * clock, from the moment it first saw the Lease's current resourceVersion**, as client-go's
 * leader election does ("leaseDurationSeconds … is measured against time of last observed
 * renewTime"). Every renewal writes a new `renewTime`, hence a new resourceVersion, so a Lease
 * whose resourceVersion this process has seen unchanged for longer than `leaseDurationSeconds`
 * has not been renewed for at least that long, whatever the clocks of the writer and of the API
 * server say. `renewTime` is written (for humans and other tools) but never compared with the
 * local wall clock, so no amount of clock skew between nodes can make a live Lease look expired.
 *
 * The price: a process that has just started (or a reader that meets a Lease for the first time)
 * trusts every Lease for one full duration from that moment, so an expiry can be seen up to one
 * duration late by a fresh reader, and up to the reader's polling period late by a reader that
 * neither watches nor lists often. Late is the safe direction for failover: it can delay a
 * failover by at most one TTL after a sentinel restart, never cause one.
 * @internal
 */
export class LeaseObservations {
  private readonly seen = new Map<string, { readonly rv: string; readonly at: number }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /**
   * Records that Lease `name` was seen at `resourceVersion` now, unless that resourceVersion was
   * already seen.
   * @returns the monotonic time (ms) at which this resourceVersion was first seen.
   */
  observe(name: string, resourceVersion: string): number {
    const s = this.seen.get(name);
    if (s !== undefined && s.rv === resourceVersion) {
      return s.at;
    }
    const at = this.now();
    this.seen.set(name, { rv: resourceVersion, at });
    return at;
  }

  /** Monotonic time (ms) at which the Lease expires for this reader (observing it first). */
  expiresAt(name: string, resourceVersion: string, durationMs: number): number {
    return this.observe(name, resourceVersion) + durationMs;
  }

  /** True once this reader has seen `resourceVersion` unchanged for at least `durationMs`. */
  expired(name: string, resourceVersion: string, durationMs: number): boolean {
    return this.now() >= this.expiresAt(name, resourceVersion, durationMs);
  }

  /** Drops what is known about `name` (deleted). */
  forget(name: string): void {
    this.seen.delete(name);
  }

  /** Drops every name starting with `prefix` that is not in `keep` (after a full list). */
  retainOnly(prefix: string, keep: ReadonlySet<string>): void {
    for (const name of this.seen.keys()) {
      if (name.startsWith(prefix) && !keep.has(name)) {
        this.seen.delete(name);
      }
    }
  }
}
