/**
 * A stand-in for the Kubernetes API server, for the Kubernetes store backend's tests: a plain
 * `node:http` server on 127.0.0.1 that implements, from the Kubernetes API documentation, the part
 * of the API the backend uses (ConfigMaps and Leases: get, list with selectors, create, replace,
 * delete with preconditions, watch with bookmarks and `410 Gone`) with the real server's
 * concurrency semantics (one global resourceVersion, `409 Conflict` on a stale replace), plus
 * namespaces and the discovery documents kubectl needs (`kube-standin-discovery.ts`). What it
 * implements, checks and does not: docs/architecture.md, "Store backends". It was never checked
 * against a real API server; kubectl and Patroni's Kubernetes client are run against it
 * (`kube-standin-kubectl.test.ts`, `kube-standin-patroni.test.ts`).
 *
 * Test hooks: {@link KubeApiServerStandin.setUnavailable} (`'refuse'` resets every connection,
 * `'hang'` accepts and never answers, pausing open watch streams), `dropWatches` (ends every
 * watch stream cleanly), `compactHistory` (forgets the event history: a watch from an older
 * resourceVersion gets 410), `setInterceptor` (answer chosen requests with an error), and
 * in-process object access that bypasses HTTP (but not resourceVersions or watch events).
 * @see the Kubernetes documentation, "Kubernetes API Concepts" (resourceVersion, watch, bookmarks, 410 Gone)
 * @see https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md (Status, concurrency control)
 * @see https://kubernetes.io/docs/concepts/architecture/leases/ and the Lease v1 API (coordination.k8s.io/v1)
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { discoveryDocument } from './kube-standin-discovery.js';
import { freePort } from './ports.js';

/**
 * The resource types the stand-in serves. `pods` only as far as a keeper labels its own pod:
 * objects put in-process ({@link KubeApiServerStandin.putObject}), then get and a JSON merge
 * patch (`application/merge-patch+json`) of one pod; no pod spec or status is checked.
 * `namespaces` (cluster-scoped): create, get, list, watch and delete; an object can only be
 * created in a namespace that exists (404 otherwise, as the real server's NamespaceLifecycle).
 */
export type StandinResource = 'configmaps' | 'leases' | 'pods' | 'namespaces';

/** Object metadata, as much of `ObjectMeta` as the stand-in looks at. */
export interface KubeObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** A Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: KubeObjectMeta;
  [field: string]: unknown;
}

/** An error answer: becomes a `Status` object with this HTTP code. */
export interface StandinError {
  readonly code: number;
  /** `StatusReason`, e.g. `Conflict`, `NotFound`, `ServiceUnavailable`. */
  readonly reason: string;
  readonly message: string;
}

/** A request as the interceptor sees it. */
export interface StandinRequest {
  readonly method: string;
  /** Path without the query, e.g. `/apis/coordination.k8s.io/v1/namespaces/ns/leases/x`. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly resource: StandinResource | undefined;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  /** True for `?watch=1` requests. */
  readonly watch: boolean;
  /** Request headers (e.g. `authorization`, to fail one client's requests only). */
  readonly headers: IncomingHttpHeaders;
}

/** Options of {@link startKubeApiServerStandin}. */
export interface KubeApiServerStandinOptions {
  /** Events kept for watches resuming from a resourceVersion; older ones give 410. @default 1000 */
  readonly historyLimit?: number;
  /** Period of `BOOKMARK` events on watches that allow them, in ms. @default 1000 */
  readonly bookmarkIntervalMs?: number;
  /** When set, every request must carry `Authorization: Bearer <token>` (else 401). */
  readonly token?: string;
  /**
   * More accepted bearer tokens, each mapped to the user it authenticates (e.g. one per
   * component, to tell in {@link KubeApiServerStandin.requests} who sent what). With `token` or
   * `users` set, a request carrying none of them gets 401; `token` itself authenticates as user
   * `standin-admin`.
   */
  readonly users?: Readonly<Record<string, string>>;
  /** Keep the structured request log ({@link KubeApiServerStandin.requests}). @default false */
  readonly logRequests?: boolean;
  /**
   * Namespaces to create at start, besides those every cluster has (`default`, `kube-system`,
   * `kube-public`, `kube-node-lease`). Creating an object in any other namespace is a 404 until
   * that namespace is created (POST `/api/v1/namespaces` or {@link KubeApiServerStandin.createNamespace}).
   */
  readonly namespaces?: readonly string[];
  /**
   * How long a list at a resourceVersion newer than the current one waits for it before the 504
   * "Too large resource version" (the real server's watch cache waits 3 s). @default 3000
   */
  readonly tooLargeResourceVersionWaitMs?: number;
}

/** Kubernetes' authorization verb of a request (as the API server's `RequestInfo` resolves it). */
export type StandinVerb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

/** One request as the authorizer of a real API server would see it (`logRequests`). */
export interface StandinLoggedRequest {
  readonly method: string;
  /** Path without the query. */
  readonly path: string;
  /** The query string, without `?` ('' for none). */
  readonly query: string;
  /** Undefined for a path that names no resource the stand-in serves. */
  readonly verb: StandinVerb | undefined;
  /** The resource's API group (`''` for core, `coordination.k8s.io` for Leases). */
  readonly apiGroup: string | undefined;
  readonly resource: StandinResource | undefined;
  readonly namespace: string | undefined;
  /**
   * The object's name: from the path, or for a list or watch from a `metadata.name=<name>` field
   * selector, as the real API server does (so RBAC `resourceNames` apply to such requests).
   */
  readonly name: string | undefined;
  /** Who sent it: the user of the bearer token (`users`, `standin-admin` for `token`), else `anonymous`. */
  readonly user: string;
}

/** Availability modes of {@link KubeApiServerStandin.setUnavailable}. */
export type StandinUnavailableMode = 'refuse' | 'hang' | false;

/** A running stand-in API server. */
export interface KubeApiServerStandin {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  readonly port: number;
  /** The resourceVersion of the last write (`"0"` before any). */
  resourceVersion(): string;
  /** Number of watch streams currently open. */
  watchCount(): number;
  /** Every request received (method and path with query), oldest first; the last 10 000. */
  requestLog(): readonly string[];
  /**
   * Every request received since the start, oldest first, with its authorization verb, resource,
   * name and user; empty unless started with `logRequests`. Unbounded: for short tests.
   */
  requests(): readonly StandinLoggedRequest[];
  /**
   * `'refuse'`: every open connection is reset (watches included) and new ones are reset at once.
   * `'hang'`: requests are accepted and never answered, open watch streams stop delivering
   * (events are held, not lost). `false`: back to normal; held requests are reset and held watch
   * events delivered.
   */
  setUnavailable(mode: StandinUnavailableMode): void;
  /** Ends every open watch stream cleanly (as the real server does at `timeoutSeconds`). @returns how many. */
  dropWatches(): number;
  /** Forgets the event history: a watch from a resourceVersion older than the current one gets 410. */
  compactHistory(): void;
  /** Answers every request for which `fn` returns an error with that error (`undefined`: normal). */
  setInterceptor(fn: ((req: StandinRequest) => StandinError | undefined) | undefined): void;
  /** The stored object (a copy), or undefined. */
  getObject(resource: StandinResource, namespace: string, name: string): KubeObject | undefined;
  /**
   * Creates or replaces an object in-process, without validation or preconditions (to store
   * contents a client would be refused, e.g. invalid JSON in an annotation). Watches see it.
   * @returns the stored object (a copy) with its new resourceVersion.
   */
  putObject(resource: StandinResource, namespace: string, obj: KubeObject): KubeObject;
  /** Creates a namespace in-process (as `kubectl create namespace`); no-op when it exists. */
  createNamespace(name: string): void;
  /** Deletes an object in-process; watches see it. @returns whether it existed. */
  deleteObject(resource: StandinResource, namespace: string, name: string): boolean;
  /** Closes every connection and the listener. Idempotent. */
  stop(): Promise<void>;
}

interface ResourceType {
  readonly prefix: string;
  readonly namespaced: boolean;
  readonly apiVersion: string;
  readonly kind: string;
  readonly listKind: string;
}

const RESOURCES: Record<StandinResource, ResourceType> = {
  configmaps: { prefix: '/api/v1', namespaced: true, apiVersion: 'v1', kind: 'ConfigMap', listKind: 'ConfigMapList' },
  leases: {
    prefix: '/apis/coordination.k8s.io/v1',
    namespaced: true,
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    listKind: 'LeaseList',
  },
  pods: { prefix: '/api/v1', namespaced: true, apiVersion: 'v1', kind: 'Pod', listKind: 'PodList' },
  namespaces: { prefix: '/api/v1', namespaced: false, apiVersion: 'v1', kind: 'Namespace', listKind: 'NamespaceList' },
};

/** The namespaces a new cluster has (kube-apiserver creates them at start). */
const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'] as const;

/**
 * A boolean query parameter as the real server reads it (k8s.io/apimachinery
 * `Convert_Slice_string_To_bool`): absent is false, `0` and `false` (any case) are false, anything
 * else (`1`, `true`, `True`, even the empty string) is true.
 */
export function queryBool(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  return v !== null && v !== '0' && v.toLowerCase() !== 'false';
}

/**
 * RFC 7386 JSON merge patch of `target` by `patch`: objects merge key by key, `null` removes a
 * key, anything else replaces.
 */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) {
    return clone(patch);
  }
  const out: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) {
      delete out[k];
    } else {
      out[k] = mergePatch(out[k], v);
    }
  }
  return out;
}

/** Request bodies above this are refused with 413, as the real server's 3 MiB limit. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;
/** Total size of all annotations of an object (keys + values), as `TotalAnnotationSizeLimitB`. */
const MAX_ANNOTATIONS_BYTES = 256 * 1024;
/** ConfigMap data limit (`MaxSecretSize`, 1 MiB). */
const MAX_CONFIGMAP_BYTES = 1024 * 1024;

type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface StoredEvent {
  readonly rv: number;
  readonly type: EventType;
  readonly resource: StandinResource;
  readonly namespace: string;
  /** The object after the change (for DELETED: as deleted, with the deletion's resourceVersion). */
  readonly object: KubeObject;
  /** The object before the change (MODIFIED: for selector transitions; both: to list at an older resourceVersion). */
  readonly previous: KubeObject | undefined;
}

interface Requirement {
  readonly key: string;
  readonly op: 'eq' | 'ne' | 'exists' | 'notexists';
  readonly value: string;
}

interface Selector {
  readonly labels: readonly Requirement[];
  readonly fields: readonly Requirement[];
}

interface Watcher {
  readonly resource: StandinResource;
  readonly namespace: string | undefined;
  readonly selector: Selector;
  readonly res: ServerResponse;
  readonly bookmarks: boolean;
  readonly timers: NodeJS.Timeout[];
  /** Lines held while the server "hangs". */
  held: string[];
  closed: boolean;
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN_RE = new RegExp(`^${DNS1123_LABEL}(\\.${DNS1123_LABEL})*$`);
const QUALIFIED_NAME_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const CONFIGMAP_KEY_RE = /^[-._a-zA-Z0-9]+$/;
/** `metav1.RFC3339Micro` (`2006-01-02T15:04:05.000000Z07:00`): exactly six fractional digits. */
const MICROTIME_RE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{6})(Z|[+-]\d{2}:\d{2})$/;
const MICRO_LAYOUT = '2006-01-02T15:04:05.000000Z07:00';

/** Why `name` is not a DNS-1123 subdomain, or undefined when it is (`IsDNS1123Subdomain`). */
function dnsSubdomainProblem(name: string): string | undefined {
  if (name.length > 253) {
    return 'must be no more than 253 characters';
  }
  if (!DNS1123_SUBDOMAIN_RE.test(name)) {
    return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Why `key` is not a qualified name (label/annotation key), or undefined (`IsQualifiedName`). */
function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split('/');
  let name = key;
  if (parts.length === 2) {
    const prefix = parts[0] ?? '';
    name = parts[1] ?? '';
    if (prefix === '') {
      return 'prefix part must be non-empty';
    }
    const p = dnsSubdomainProblem(prefix);
    if (p !== undefined) {
      return `prefix part ${p}`;
    }
  } else if (parts.length > 2) {
    return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional DNS subdomain prefix and '/'";
  }
  if (name.length === 0) {
    return 'name part must be non-empty';
  }
  if (name.length > 63) {
    return 'name part must be no more than 63 characters';
  }
  if (!QUALIFIED_NAME_RE.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/**
 * Why `s` is not a MicroTime as the real server decodes it (`time.Parse(RFC3339Micro, s)`: RFC 3339
 * with exactly six fractional digits), in the words of Go's `time.ParseError`; undefined when it is one.
 */
function microTimeProblem(s: string): string | undefined {
  const head = `parsing time ${JSON.stringify(s)} as ${JSON.stringify(MICRO_LAYOUT)}: cannot parse`;
  const dt = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/.exec(s);
  if (dt === null) {
    return `${head} ${JSON.stringify(s)} as "2006"`;
  }
  const rest = s.slice(dt[0].length);
  const frac = /^\.\d{6}/.exec(rest);
  if (frac === null) {
    return `${head} ${JSON.stringify(rest)} as ".000000"`;
  }
  const zone = rest.slice(frac[0].length);
  if (!/^(Z|[+-]\d{2}:\d{2})$/.test(zone)) {
    return `${head} ${JSON.stringify(zone)} as "Z07:00"`;
  }
  const m = MICROTIME_RE.exec(s);
  if (m === null || !Number.isFinite(Date.parse(`${m[1] ?? ''}${m[3] ?? 'Z'}`))) {
    return `parsing time ${JSON.stringify(s)}: value out of range`;
  }
  return undefined;
}

/**
 * Normalises a MicroTime to the server's form, `2006-01-02T15:04:05.000000Z` (UTC).
 * @returns undefined when `s` is not a valid MicroTime ({@link microTimeProblem}).
 */
function normaliseMicroTime(s: string): string | undefined {
  const m = MICROTIME_RE.exec(s);
  if (m === null || microTimeProblem(s) !== undefined) {
    return undefined;
  }
  const base = Date.parse(`${m[1] ?? ''}${m[3] ?? 'Z'}`);
  return `${new Date(base).toISOString().slice(0, 19)}.${m[2] ?? '000000'}Z`;
}

/** A field schema: each known field maps to `true` (kept as it is) or to the schema of its object value. */
interface FieldSchema {
  readonly [field: string]: true | FieldSchema;
}

/** `ObjectMeta`'s fields; anything else in `metadata` is an unknown field. */
const OBJECT_META: FieldSchema = Object.fromEntries(
  [
    'name',
    'generateName',
    'namespace',
    'selfLink',
    'uid',
    'resourceVersion',
    'generation',
    'creationTimestamp',
    'deletionTimestamp',
    'deletionGracePeriodSeconds',
    'labels',
    'annotations',
    'ownerReferences',
    'finalizers',
    'managedFields',
  ].map((f) => [f, true as const]),
);

/**
 * The fields of each type, from the core/v1 and coordination.k8s.io/v1 API reference, to drop
 * (or refuse) unknown ones as the real server does; `pods`: not checked (no schema here).
 */
const SCHEMAS: Record<StandinResource, FieldSchema | undefined> = {
  configmaps: { apiVersion: true, kind: true, metadata: OBJECT_META, data: true, binaryData: true, immutable: true },
  leases: {
    apiVersion: true,
    kind: true,
    metadata: OBJECT_META,
    spec: { holderIdentity: true, leaseDurationSeconds: true, acquireTime: true, renewTime: true, leaseTransitions: true, strategy: true, preferredHolder: true },
  },
  namespaces: { apiVersion: true, kind: true, metadata: OBJECT_META, spec: { finalizers: true }, status: { phase: true, conditions: true } },
  pods: undefined,
};

/** Removes from `obj` (recursively) the fields `schema` does not know. @returns their paths, e.g. `spec.foo`. */
function pruneUnknown(obj: Record<string, unknown>, schema: FieldSchema, prefix = ''): string[] {
  const out: string[] = [];
  for (const k of Object.keys(obj)) {
    const sub = schema[k];
    const path = `${prefix}${k}`;
    const v = obj[k];
    if (sub === undefined) {
      out.push(path);
      delete obj[k];
    } else if (sub !== true && isRecord(v)) {
      out.push(...pruneUnknown(v, sub, `${path}.`));
    }
  }
  return out;
}

/** The `fieldValidation` directive of a write (`Warn` when absent, the default of current servers). */
type FieldValidation = 'Ignore' | 'Warn' | 'Strict';

function fieldValidationOf(q: URLSearchParams, optionsKind: string): FieldValidation {
  const v = q.get('fieldValidation') ?? '';
  if (v === '') {
    return 'Warn';
  }
  if (v === 'Ignore' || v === 'Warn' || v === 'Strict') {
    return v;
  }
  const message = `Unsupported value: ${JSON.stringify(v)}: supported values: "Ignore", "Strict", "Warn"`;
  throw new HttpError(422, 'Invalid', `${optionsKind}.meta.k8s.io "" is invalid: fieldValidation: ${message}`, {
    group: 'meta.k8s.io',
    kind: optionsKind,
    causes: [{ reason: 'FieldValueNotSupported', message, field: 'fieldValidation' }],
  });
}

/**
 * What the real server's decoding of a request body does beyond JSON: MicroTimes must parse
 * (else 400), unknown fields are dropped (`Ignore`), dropped with a warning (`Warn`, added to
 * `warnings`) or refused with 400 (`Strict`). Mutates `obj`.
 * @throws HttpError 400 BadRequest, worded as the real server's decode errors
 */
function decodeObject(resource: StandinResource, obj: KubeObject, mode: FieldValidation, warnings: string[]): void {
  const kind = RESOURCES[resource].kind;
  const cannot = (why: string): HttpError => new HttpError(400, 'BadRequest', `${kind} in version "v1" cannot be handled as a ${kind}: ${why}`);
  const spec = obj['spec'];
  if (resource === 'leases' && isRecord(spec)) {
    for (const f of ['acquireTime', 'renewTime'] as const) {
      const v = spec[f];
      if (v === undefined || v === null) {
        continue;
      }
      if (typeof v !== 'string') {
        throw cannot(`json: cannot unmarshal ${typeof v} into Go struct field LeaseSpec.spec.${f} of type string`);
      }
      const problem = microTimeProblem(v);
      if (problem !== undefined) {
        throw cannot(problem);
      }
    }
  }
  const schema = SCHEMAS[resource];
  const unknown = schema === undefined ? [] : pruneUnknown(obj, schema);
  const texts = unknown.map((u) => `unknown field ${JSON.stringify(u)}`);
  if (texts.length > 0 && mode === 'Strict') {
    throw cannot(`strict decoding error: ${texts.join(', ')}`);
  }
  if (mode === 'Warn') {
    warnings.push(...texts);
  }
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalid(kind: string, name: string, causes: Array<{ field: string; message: string }>): HttpError {
  return new HttpError(
    422,
    'Invalid',
    `${kind} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`,
    { name, kind, causes: causes.map((c) => ({ reason: 'FieldValueInvalid', message: c.message, field: c.field })) },
  );
}

/** Validates an object to store and normalises its MicroTimes. @throws HttpError 422. */
function validateObject(resource: StandinResource, obj: KubeObject): void {
  const t = RESOURCES[resource];
  const name = obj.metadata.name ?? '';
  const causes: Array<{ field: string; message: string }> = [];
  const nameProblem =
    resource === 'namespaces' && name.length > 63 ? 'must be no more than 63 characters' : resource === 'namespaces' && name.includes('.') ? 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\'' : dnsSubdomainProblem(name);
  if (nameProblem !== undefined) {
    causes.push({ field: 'metadata.name', message: `Invalid value: "${name}": ${nameProblem}` });
  }
  for (const [field, map, isLabels] of [
    ['metadata.labels', obj.metadata.labels, true],
    ['metadata.annotations', obj.metadata.annotations, false],
  ] as const) {
    if (map === undefined) {
      continue;
    }
    if (!isRecord(map)) {
      causes.push({ field, message: 'must be a map of strings' });
      continue;
    }
    let size = 0;
    for (const [k, v] of Object.entries(map)) {
      if (typeof v !== 'string') {
        causes.push({ field: `${field}[${k}]`, message: 'must be a string' });
        continue;
      }
      size += k.length + Buffer.byteLength(v);
      const kp = qualifiedNameProblem(k);
      if (kp !== undefined) {
        causes.push({ field, message: `Invalid value: "${k}": ${kp}` });
      }
      if (isLabels && (v.length > 63 || !LABEL_VALUE_RE.test(v))) {
        causes.push({
          field,
          message: `Invalid value: "${v}": a valid label value must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)`,
        });
      }
    }
    if (!isLabels && size > MAX_ANNOTATIONS_BYTES) {
      causes.push({ field, message: `Too long: must have at most ${MAX_ANNOTATIONS_BYTES} bytes` });
    }
  }
  if (resource === 'configmaps') {
    const data = obj['data'];
    if (data !== undefined && data !== null) {
      if (!isRecord(data)) {
        causes.push({ field: 'data', message: 'must be a map of strings' });
      } else {
        let size = 0;
        for (const [k, v] of Object.entries(data)) {
          if (typeof v !== 'string') {
            causes.push({ field: `data[${k}]`, message: 'must be a string' });
          } else {
            size += k.length + Buffer.byteLength(v);
          }
          if (!CONFIGMAP_KEY_RE.test(k) || k.length > 253) {
            causes.push({ field: 'data', message: `Invalid value: "${k}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'` });
          }
        }
        if (size > MAX_CONFIGMAP_BYTES) {
          causes.push({ field: 'data', message: `Too long: must have at most ${MAX_CONFIGMAP_BYTES} bytes` });
        }
      }
    }
  } else if (resource === 'leases') {
    const spec = obj['spec'];
    if (spec !== undefined && spec !== null) {
      if (!isRecord(spec)) {
        causes.push({ field: 'spec', message: 'must be an object' });
      } else {
        const holder = spec['holderIdentity'];
        if (holder !== undefined && holder !== null && typeof holder !== 'string') {
          causes.push({ field: 'spec.holderIdentity', message: 'must be a string' });
        }
        const dur = spec['leaseDurationSeconds'];
        if (dur !== undefined && dur !== null && (!Number.isInteger(dur) || (dur as number) <= 0)) {
          causes.push({ field: 'spec.leaseDurationSeconds', message: `Invalid value: ${JSON.stringify(dur)}: must be greater than 0` });
        }
        const tr = spec['leaseTransitions'];
        if (tr !== undefined && tr !== null && (!Number.isInteger(tr) || (tr as number) < 0)) {
          causes.push({ field: 'spec.leaseTransitions', message: `Invalid value: ${JSON.stringify(tr)}: must be greater than or equal to 0` });
        }
        for (const f of ['acquireTime', 'renewTime'] as const) {
          const v = spec[f];
          if (v === undefined || v === null) {
            continue;
          }
          // Decoding already refused (400) a value that is not a MicroTime (decodeProblems).
          const norm = typeof v === 'string' ? normaliseMicroTime(v) : undefined;
          if (norm !== undefined) {
            spec[f] = norm;
          }
        }
      }
    }
  }
  if (causes.length > 0) {
    throw invalid(t.kind, name, causes);
  }
}

/** Parses an equality-based selector. @throws HttpError 400 for set-based or malformed ones. */
function parseRequirements(text: string | null, what: 'label' | 'field'): Requirement[] {
  if (text === null || text.trim() === '') {
    return [];
  }
  return text.split(',').map((raw) => {
    const part = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([^=!\s]+)\s*!=\s*(.*)$/.exec(part)) !== null) {
      return { key: m[1] ?? '', op: 'ne' as const, value: (m[2] ?? '').trim() };
    }
    if ((m = /^([^=!\s]+)\s*==?\s*(.*)$/.exec(part)) !== null) {
      return { key: m[1] ?? '', op: 'eq' as const, value: (m[2] ?? '').trim() };
    }
    if (what === 'label' && (m = /^!\s*([^=!\s]+)$/.exec(part)) !== null) {
      return { key: m[1] ?? '', op: 'notexists' as const, value: '' };
    }
    if (what === 'label' && /^[^=!\s(),]+$/.test(part)) {
      return { key: part, op: 'exists' as const, value: '' };
    }
    throw new HttpError(400, 'BadRequest', `unable to parse requirement: ${what} selector "${text}" (the stand-in supports =, ==, != and existence only)`);
  });
}

function matchRequirement(r: Requirement, value: string | undefined): boolean {
  switch (r.op) {
    case 'eq':
      return value === r.value;
    case 'ne':
      return value !== r.value;
    case 'exists':
      return value !== undefined;
    case 'notexists':
      return value === undefined;
  }
}

function fieldValue(obj: KubeObject, key: string): string | undefined {
  if (key === 'metadata.name') {
    return obj.metadata.name;
  }
  if (key === 'metadata.namespace') {
    return obj.metadata.namespace;
  }
  throw new HttpError(400, 'BadRequest', `field label not supported: ${key}`);
}

function matches(sel: Selector, obj: KubeObject): boolean {
  return (
    sel.labels.every((r) => matchRequirement(r, obj.metadata.labels?.[r.key])) &&
    sel.fields.every((r) => matchRequirement(r, fieldValue(obj, r.key)))
  );
}

function statusBody(code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    ...(details === undefined ? {} : { details }),
    code,
  };
}

/** Options of {@link writeStandinKubeconfig}. */
export interface StandinKubeconfigOptions {
  /** Namespace of every context (where the store's objects go). */
  readonly namespace: string;
  /**
   * Bearer tokens, one user and one context per token (`user-<token>`, `ctx-<token>`); the
   * current context is the first token's. Tokens must be YAML plain scalars (letters, digits, `-`).
   */
  readonly tokens: readonly string[];
}

/**
 * Writes a kubeconfig file for a stand-in API server (or any API server at `server` over plain
 * HTTP): one cluster `standin`, one user and context per token, all in `opts.namespace`.
 * @param file path of the file to write (replaced if it exists; mode 0600)
 * @param server base URL, e.g. {@link KubeApiServerStandin.url}
 * @returns `file`
 * @throws RangeError when `tokens` is empty or a token or the namespace is not made of letters,
 *   digits and `-`; the error of `writeFile` when the file cannot be written.
 */
export async function writeStandinKubeconfig(file: string, server: string, opts: StandinKubeconfigOptions): Promise<string> {
  const { namespace, tokens } = opts;
  if (tokens.length === 0) {
    throw new RangeError('writeStandinKubeconfig: give at least one token');
  }
  for (const v of [namespace, ...tokens]) {
    if (!/^[A-Za-z0-9-]+$/.test(v)) {
      throw new RangeError(`writeStandinKubeconfig: "${v}" must be letters, digits and '-' only`);
    }
  }
  const lines = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: standin',
    '  cluster:',
    `    server: ${server}`,
    'users:',
    ...tokens.flatMap((t) => [`- name: user-${t}`, '  user:', `    token: ${t}`]),
    'contexts:',
    ...tokens.flatMap((t) => [`- name: ctx-${t}`, '  context:', '    cluster: standin', `    user: user-${t}`, `    namespace: ${namespace}`]),
    `current-context: ctx-${tokens[0]!}`,
  ];
  await writeFile(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return file;
}

/** Starts the stand-in on a free port of 127.0.0.1. */
export async function startKubeApiServerStandin(opts: KubeApiServerStandinOptions = {}): Promise<KubeApiServerStandin> {
  const historyLimit = opts.historyLimit ?? 1000;
  const bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
  const tooLargeWaitMs = opts.tooLargeResourceVersionWaitMs ?? 3000;
  const objects = new Map<string, KubeObject>();
  let rv = 0;
  /** Watches may resume from any resourceVersion >= this (events after it are all in `history`). */
  let compactedThrough = 0;
  const history: StoredEvent[] = [];
  const watchers = new Set<Watcher>();
  const sockets = new Set<Socket>();
  const held = new Set<ServerResponse>();
  const log: string[] = [];
  const logged: StandinLoggedRequest[] = [];
  const users = new Map<string, string>(Object.entries(opts.users ?? {}));
  if (opts.token !== undefined) {
    users.set(opts.token, 'standin-admin');
  }
  let mode: StandinUnavailableMode = false;
  let interceptor: ((req: StandinRequest) => StandinError | undefined) | undefined;
  let stopped = false;

  const key = (resource: StandinResource, ns: string, name: string): string => `${resource}/${ns}/${name}`;

  const withType = (resource: StandinResource, obj: KubeObject): KubeObject => ({
    apiVersion: RESOURCES[resource].apiVersion,
    kind: RESOURCES[resource].kind,
    ...clone(obj),
  });

  const send = (w: Watcher, line: string): void => {
    if (w.closed) {
      return;
    }
    if (mode === 'hang') {
      w.held.push(line);
      return;
    }
    w.res.write(line);
  };

  const closeWatcher = (w: Watcher, destroy: boolean): void => {
    if (w.closed) {
      return;
    }
    w.closed = true;
    watchers.delete(w);
    for (const t of w.timers) {
      clearTimeout(t);
      clearInterval(t);
    }
    if (destroy) {
      w.res.destroy();
    } else {
      w.res.end();
    }
  };

  /** The event `w` should see for `ev`, if any (selector transitions become ADDED/DELETED). */
  const eventFor = (w: Watcher, ev: StoredEvent): { type: EventType; object: KubeObject } | undefined => {
    if (ev.resource !== w.resource || (w.namespace !== undefined && ev.namespace !== w.namespace)) {
      return undefined;
    }
    const now = matches(w.selector, ev.object);
    if (ev.type === 'DELETED' || ev.type === 'ADDED' || ev.previous === undefined) {
      return now ? { type: ev.type, object: ev.object } : undefined;
    }
    const before = matches(w.selector, ev.previous);
    if (before && now) {
      return { type: 'MODIFIED', object: ev.object };
    }
    if (!before && now) {
      return { type: 'ADDED', object: ev.object };
    }
    if (before && !now) {
      return { type: 'DELETED', object: ev.object };
    }
    return undefined;
  };

  const deliver = (w: Watcher, ev: StoredEvent): void => {
    const e = eventFor(w, ev);
    if (e !== undefined) {
      send(w, `${JSON.stringify({ type: e.type, object: withType(ev.resource, e.object) })}\n`);
    }
  };

  const record = (ev: StoredEvent): void => {
    history.push(ev);
    while (history.length > historyLimit) {
      const dropped = history.shift();
      if (dropped !== undefined) {
        compactedThrough = dropped.rv;
      }
    }
    for (const w of [...watchers]) {
      deliver(w, ev);
    }
  };

  /** Stores `obj` (already validated) as the new state; emits the event. @returns a copy. */
  const write = (resource: StandinResource, ns: string, obj: KubeObject, previous: KubeObject | undefined): KubeObject => {
    rv += 1;
    const stored: KubeObject = clone(obj);
    if (RESOURCES[resource].namespaced) {
      stored.metadata.namespace = ns;
    } else {
      delete stored.metadata.namespace;
    }
    stored.metadata.resourceVersion = String(rv);
    stored.metadata.uid = previous?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    stored.metadata.creationTimestamp =
      previous?.metadata.creationTimestamp ?? `${new Date().toISOString().slice(0, 19)}Z`;
    delete stored.kind;
    delete stored.apiVersion;
    objects.set(key(resource, ns, stored.metadata.name ?? ''), stored);
    record({ rv, type: previous === undefined ? 'ADDED' : 'MODIFIED', resource, namespace: ns, object: clone(stored), previous });
    return withType(resource, stored);
  };

  const remove = (resource: StandinResource, ns: string, name: string): KubeObject | undefined => {
    const k = key(resource, ns, name);
    const old = objects.get(k);
    if (old === undefined) {
      return undefined;
    }
    objects.delete(k);
    rv += 1;
    const gone = clone(old);
    gone.metadata.resourceVersion = String(rv);
    record({ rv, type: 'DELETED', resource, namespace: ns, object: gone, previous: clone(old) });
    return gone;
  };

  const notFound = (resource: StandinResource, name: string): HttpError =>
    new HttpError(404, 'NotFound', `${resource}${resource === 'leases' ? '.coordination.k8s.io' : ''} "${name}" not found`, {
      name,
      ...(resource === 'leases' ? { group: 'coordination.k8s.io' } : {}),
      kind: resource,
    });

  const conflict = (resource: StandinResource, name: string, why: string): HttpError =>
    new HttpError(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${resource}${resource === 'leases' ? '.coordination.k8s.io' : ''} "${name}": ${why}`,
      { name, kind: resource },
    );

  /** Parses a request body as an object of `resource`. @throws HttpError 400. */
  const parseBody = (resource: StandinResource, body: string, urlNs: string, mode: FieldValidation, warnings: string[]): KubeObject => {
    let v: unknown;
    try {
      v = JSON.parse(body);
    } catch (err) {
      throw new HttpError(400, 'BadRequest', `the body of the request was in an unknown format: ${(err as Error).message}`);
    }
    if (!isRecord(v) || !isRecord(v['metadata'])) {
      throw new HttpError(400, 'BadRequest', 'the body must be an object with metadata');
    }
    const t = RESOURCES[resource];
    if (v['kind'] !== undefined && v['kind'] !== t.kind) {
      throw new HttpError(400, 'BadRequest', `the kind in the data (${String(v['kind'])}) does not match the expected kind (${t.kind})`);
    }
    if (v['apiVersion'] !== undefined && v['apiVersion'] !== t.apiVersion) {
      throw new HttpError(
        400,
        'BadRequest',
        `the API version in the data (${String(v['apiVersion'])}) does not match the expected API version (${t.apiVersion})`,
      );
    }
    const obj = v as KubeObject;
    const ns = obj.metadata.namespace;
    if (t.namespaced && ns !== undefined && ns !== '' && ns !== urlNs) {
      throw new HttpError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    decodeObject(resource, obj, mode, warnings);
    return obj;
  };

  const namespaceNotFound = (ns: string): HttpError => new HttpError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });

  const handleCreate = (resource: StandinResource, ns: string, body: string, q: URLSearchParams, warnings: string[]): { code: number; body: unknown } => {
    const obj = parseBody(resource, body, ns, fieldValidationOf(q, 'CreateOptions'), warnings);
    const name = obj.metadata.name ?? '';
    if (name === '') {
      throw invalid(RESOURCES[resource].kind, name, [{ field: 'metadata.name', message: 'Required value: name or generateName is required' }]);
    }
    if (obj.metadata.resourceVersion !== undefined && obj.metadata.resourceVersion !== '') {
      throw new HttpError(500, 'InternalError', 'resourceVersion should not be set on objects to be created');
    }
    validateObject(resource, obj);
    // NamespaceLifecycle admission: no new objects in a namespace that does not exist.
    if (RESOURCES[resource].namespaced && !objects.has(key('namespaces', '', ns))) {
      throw namespaceNotFound(ns);
    }
    if (resource === 'namespaces') {
      delete obj.metadata.namespace;
      obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': name };
      obj['spec'] = { finalizers: ['kubernetes'] };
      obj['status'] = { phase: 'Active' };
    }
    if (objects.has(key(resource, ns, name))) {
      throw new HttpError(
        409,
        'AlreadyExists',
        `${resource}${resource === 'leases' ? '.coordination.k8s.io' : ''} "${name}" already exists`,
        { name, kind: resource },
      );
    }
    delete obj.metadata.uid;
    return { code: 201, body: write(resource, ns, obj, undefined) };
  };

  const handleReplace = (
    resource: StandinResource,
    ns: string,
    name: string,
    body: string,
    q: URLSearchParams,
    warnings: string[],
  ): { code: number; body: unknown } => {
    const obj = parseBody(resource, body, ns, fieldValidationOf(q, 'UpdateOptions'), warnings);
    if (obj.metadata.name !== name) {
      throw new HttpError(400, 'BadRequest', `the name of the object (${obj.metadata.name ?? ''}) does not match the name on the URL (${name})`);
    }
    const old = objects.get(key(resource, ns, name));
    if (old === undefined) {
      throw notFound(resource, name);
    }
    const want = obj.metadata.resourceVersion;
    if (want !== undefined && want !== '' && want !== old.metadata.resourceVersion) {
      throw conflict(resource, name, 'the object has been modified; please apply your changes to the latest version and try again');
    }
    if (obj.metadata.uid !== undefined && obj.metadata.uid !== '' && obj.metadata.uid !== old.metadata.uid) {
      throw conflict(resource, name, `Precondition failed: UID in precondition: ${obj.metadata.uid}, UID in object meta: ${old.metadata.uid ?? ''}`);
    }
    validateObject(resource, obj);
    // A replace that changes nothing is a no-op: same resourceVersion, no event (as the real server).
    if (JSON.stringify(comparable(obj)) === JSON.stringify(comparable(old))) {
      return { code: 200, body: withType(resource, old) };
    }
    return { code: 200, body: write(resource, ns, obj, clone(old)) };
  };

  const handleDelete = (resource: StandinResource, ns: string, name: string, body: string): { code: number; body: unknown } => {
    const old = objects.get(key(resource, ns, name));
    if (old === undefined) {
      throw notFound(resource, name);
    }
    if (body.trim() !== '') {
      let opts: unknown;
      try {
        opts = JSON.parse(body);
      } catch (err) {
        throw new HttpError(400, 'BadRequest', `the body of the request was in an unknown format: ${(err as Error).message}`);
      }
      const pre = isRecord(opts) && isRecord(opts['preconditions']) ? opts['preconditions'] : {};
      const wantRv = pre['resourceVersion'];
      const wantUid = pre['uid'];
      if (typeof wantUid === 'string' && wantUid !== old.metadata.uid) {
        throw conflict(resource, name, `Precondition failed: UID in precondition: ${wantUid}, UID in object meta: ${old.metadata.uid ?? ''}`);
      }
      if (typeof wantRv === 'string' && wantRv !== old.metadata.resourceVersion) {
        throw conflict(
          resource,
          name,
          `Precondition failed: ResourceVersion in precondition: ${wantRv}, ResourceVersion in object meta: ${old.metadata.resourceVersion ?? ''}`,
        );
      }
    }
    if (resource === 'namespaces') {
      // The real server marks the namespace Terminating and its controller deletes the contents
      // before the namespace goes; here all of it goes at once.
      for (const [k, o] of [...objects.entries()]) {
        const r = k.split('/')[0] as StandinResource;
        if (RESOURCES[r].namespaced && o.metadata.namespace === name) {
          remove(r, name, o.metadata.name ?? '');
        }
      }
    }
    remove(resource, ns, name);
    return {
      code: 200,
      body: {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Success',
        details: { name, ...(resource === 'leases' ? { group: 'coordination.k8s.io' } : {}), kind: resource, uid: old.metadata.uid },
      },
    };
  };

  /** PATCH of one object: a JSON merge patch only (what a keeper sends to label its pod). */
  const handleMergePatch = (
    resource: StandinResource,
    ns: string,
    name: string,
    body: string,
    contentType: string,
    q: URLSearchParams,
    warnings: string[],
  ): { code: number; body: unknown } => {
    const mode = fieldValidationOf(q, 'PatchOptions');
    const type = contentType.split(';')[0]?.trim() ?? '';
    if (type !== 'application/merge-patch+json' && type !== 'application/strategic-merge-patch+json') {
      throw new HttpError(
        415,
        'UnsupportedMediaType',
        `the stand-in accepts only application/merge-patch+json and application/strategic-merge-patch+json patches, not "${contentType}"`,
      );
    }
    const old = objects.get(key(resource, ns, name));
    if (old === undefined) {
      throw notFound(resource, name);
    }
    let patch: unknown;
    try {
      patch = JSON.parse(body);
    } catch {
      throw new HttpError(400, 'BadRequest', 'the patch is not JSON');
    }
    // A strategic merge patch is a JSON merge patch as long as it has no lists (merged by key by a
    // real server) and no $-directives: what Patroni sends. Others are refused, not misapplied.
    if (type === 'application/strategic-merge-patch+json' && strategicOnlyParts(patch)) {
      throw new HttpError(415, 'UnsupportedMediaType', 'the stand-in applies strategic merge patches without lists and $-directives only');
    }
    const merged = mergePatch(clone(old), patch) as KubeObject;
    if (!isRecord(merged) || !isRecord(merged.metadata) || merged.metadata.name !== name) {
      throw invalid(RESOURCES[resource].kind, name, [{ field: 'metadata.name', message: 'field is immutable' }]);
    }
    // A resourceVersion (or uid) in the patch is a precondition, as in a replace.
    if (isRecord(patch) && isRecord(patch['metadata'])) {
      const want = patch['metadata']['resourceVersion'];
      if (typeof want === 'string' && want !== '' && want !== old.metadata.resourceVersion) {
        throw conflict(resource, name, 'the object has been modified; please apply your changes to the latest version and try again');
      }
      const uid = patch['metadata']['uid'];
      if (typeof uid === 'string' && uid !== '' && uid !== old.metadata.uid) {
        throw conflict(resource, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid ?? ''}`);
      }
    }
    decodeObject(resource, merged, mode, warnings);
    validateObject(resource, merged);
    if (JSON.stringify(comparable(merged)) === JSON.stringify(comparable(old))) {
      return { code: 200, body: withType(resource, old) };
    }
    return { code: 200, body: write(resource, ns, merged, clone(old)) };
  };

  /** The objects as they were at resourceVersion `at` (>= compactedThrough): the current ones with the history after `at` undone. */
  const objectsAt = (at: number): Map<string, KubeObject> => {
    const m = new Map(objects);
    for (let i = history.length - 1; i >= 0; i--) {
      const ev = history[i]!;
      if (ev.rv <= at) {
        break;
      }
      const k = key(ev.resource, ev.namespace, ev.object.metadata.name ?? '');
      if (ev.type === 'ADDED' || ev.previous === undefined) {
        m.delete(k);
      } else {
        m.set(k, ev.previous);
      }
    }
    return m;
  };

  const listOptionsInvalid = (field: string, reason: string, message: string): HttpError =>
    new HttpError(422, 'Invalid', `ListOptions.meta.k8s.io "" is invalid: ${field}: ${message}`, {
      group: 'meta.k8s.io',
      kind: 'ListOptions',
      causes: [{ reason, message, field }],
    });

  /**
   * A list, with the real server's resourceVersion semantics: none is the current state; `0` or
   * `N` (resourceVersionMatch unset or NotOlderThan) is the current state once it is at least
   * `N`, waiting up to `tooLargeResourceVersionWaitMs` for it (then 504 "Too large resource
   * version"); `N` with resourceVersionMatch=Exact is the state at `N` (410 Expired when `N` is
   * older than the history). `limit` is ignored (everything in one page, as a server may).
   */
  const handleList = async (resource: StandinResource, ns: string | undefined, sel: Selector, q: URLSearchParams): Promise<{ code: number; body: unknown }> => {
    const rvText = q.get('resourceVersion') ?? '';
    const match = q.get('resourceVersionMatch') ?? '';
    if (match !== '' && match !== 'Exact' && match !== 'NotOlderThan') {
      throw listOptionsInvalid('resourceVersionMatch', 'FieldValueNotSupported', `Unsupported value: ${JSON.stringify(match)}: supported values: "Exact", "NotOlderThan"`);
    }
    if (match !== '' && rvText === '') {
      throw listOptionsInvalid('resourceVersionMatch', 'FieldValueForbidden', 'Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided');
    }
    if (match === 'Exact' && rvText === '0') {
      throw listOptionsInvalid('resourceVersionMatch', 'FieldValueForbidden', 'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"');
    }
    let source = objects;
    let exactRv: number | undefined;
    if (rvText !== '' && rvText !== '0') {
      const want = /^[0-9]+$/.test(rvText) ? Number(rvText) : Number.NaN;
      if (!Number.isSafeInteger(want)) {
        throw new HttpError(400, 'BadRequest', `invalid resource version: ${rvText}`);
      }
      const deadline = Date.now() + tooLargeWaitMs;
      while (want > rv && Date.now() < deadline && !stopped) {
        await new Promise((r) => setTimeout(r, 20));
      }
      if (want > rv) {
        throw new HttpError(504, 'Timeout', `Timeout: Too large resource version: ${want}, current: ${rv}`, {
          causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
          retryAfterSeconds: 1,
        });
      }
      if (match === 'Exact') {
        if (want < compactedThrough) {
          throw new HttpError(410, 'Expired', 'The resourceVersion for the provided list is too old.');
        }
        source = objectsAt(want);
        exactRv = want;
      }
    }
    const items = [...source.entries()]
      .filter(([k]) => k.startsWith(`${resource}/`))
      .map(([, o]) => o)
      .filter((o) => (ns === undefined || o.metadata.namespace === ns) && matches(sel, o))
      .sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name ?? ''}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name ?? ''}`))
      .map((o) => clone(o));
    return {
      code: 200,
      body: { kind: RESOURCES[resource].listKind, apiVersion: RESOURCES[resource].apiVersion, metadata: { resourceVersion: String(exactRv ?? rv) }, items },
    };
  };

  const handleWatch = (resource: StandinResource, ns: string | undefined, sel: Selector, q: URLSearchParams, res: ServerResponse): void => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    // The client learns the watch is established from the headers, before any event.
    res.flushHeaders();
    const w: Watcher = {
      resource,
      namespace: ns,
      selector: sel,
      res,
      bookmarks: queryBool(q, 'allowWatchBookmarks'),
      timers: [],
      held: [],
      closed: false,
    };
    const fromText = q.get('resourceVersion') ?? '';
    const errorEvent = (code: number, reason: string, message: string): void => {
      send(w, `${JSON.stringify({ type: 'ERROR', object: statusBody(code, reason, message) })}\n`);
      closeWatcher(w, false);
    };
    watchers.add(w);
    res.on('close', () => closeWatcher(w, false));
    if (fromText === '' || fromText === '0') {
      // "Get State and Start at Most Recent": synthetic ADDED for the current objects.
      for (const [k, o] of objects) {
        if (k.startsWith(`${resource}/`) && (ns === undefined || o.metadata.namespace === ns) && matches(sel, o)) {
          send(w, `${JSON.stringify({ type: 'ADDED', object: withType(resource, o) })}\n`);
        }
      }
    } else {
      const from = /^[0-9]+$/.test(fromText) ? Number(fromText) : Number.NaN;
      if (!Number.isSafeInteger(from)) {
        errorEvent(400, 'BadRequest', `invalid resource version: ${fromText}`);
        return;
      }
      if (from < compactedThrough) {
        errorEvent(410, 'Expired', `too old resource version: ${from} (${compactedThrough})`);
        return;
      }
      if (from > rv) {
        errorEvent(504, 'Timeout', `Timeout: Too large resource version: ${from}, current: ${rv}`);
        return;
      }
      for (const ev of history) {
        if (ev.rv > from) {
          deliver(w, ev);
        }
      }
    }
    if (w.bookmarks) {
      w.timers.push(
        setInterval(() => {
          if (mode !== 'hang') {
            send(w, `${JSON.stringify({ type: 'BOOKMARK', object: { kind: RESOURCES[resource].kind, apiVersion: RESOURCES[resource].apiVersion, metadata: { resourceVersion: String(rv) } } })}\n`);
          }
        }, bookmarkIntervalMs),
      );
    }
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? '');
    if (Number.isFinite(timeoutSeconds) && timeoutSeconds > 0) {
      w.timers.push(setTimeout(() => closeWatcher(w, false), timeoutSeconds * 1000));
    }
  };

  const parsePath = (path: string): { resource: StandinResource; namespace: string | undefined; name: string | undefined } | undefined => {
    if (path === '/api/v1/namespaces') {
      return { resource: 'namespaces', namespace: undefined, name: undefined };
    }
    const nsPath = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(path);
    if (nsPath !== null) {
      return { resource: 'namespaces', namespace: undefined, name: decodeURIComponent(nsPath[1] ?? '') };
    }
    for (const resource of ['configmaps', 'leases', 'pods'] as const) {
      const prefix = RESOURCES[resource].prefix;
      if (!path.startsWith(`${prefix}/`)) {
        continue;
      }
      const rest = path.slice(prefix.length + 1).split('/').map((s) => decodeURIComponent(s));
      if (rest.length === 1 && rest[0] === resource) {
        return { resource, namespace: undefined, name: undefined };
      }
      if (rest[0] === 'namespaces' && rest.length >= 3 && rest.length <= 4 && rest[2] === resource && (rest[1] ?? '') !== '') {
        return { resource, namespace: rest[1], name: rest.length === 4 && rest[3] !== '' ? rest[3] : undefined };
      }
    }
    return undefined;
  };

  const createNamespace = (name: string): void => {
    if (!objects.has(key('namespaces', '', name))) {
      handleCreate('namespaces', '', JSON.stringify({ metadata: { name } }), new URLSearchParams(), []);
    }
  };
  for (const n of [...SYSTEM_NAMESPACES, ...(opts.namespaces ?? [])]) {
    createNamespace(n);
  }

  const readBody = (req: IncomingMessage): Promise<string> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) {
          reject(new HttpError(413, 'RequestEntityTooLarge', `the request body is larger than ${MAX_BODY_BYTES} bytes`));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const answer = (res: ServerResponse, code: number, body: unknown, warnings: readonly string[] = []): void => {
    const text = JSON.stringify(body);
    if (warnings.length > 0) {
      // RFC 7234 warn-code 299 with the text quoted, as the real server's warning headers.
      res.setHeader('Warning', warnings.map((w) => `299 - ${JSON.stringify(w)}`));
    }
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://standin');
    const method = req.method ?? 'GET';
    log.push(`${method} ${url.pathname}${url.search}`);
    if (log.length > 10_000) {
      log.shift();
    }
    const auth = req.headers.authorization ?? '';
    const user = auth.startsWith('Bearer ') ? users.get(auth.slice('Bearer '.length)) : undefined;
    if (opts.logRequests === true) {
      logged.push(describeRequest(method, url, parsePath(url.pathname), user ?? 'anonymous'));
    }
    if (mode === 'hang') {
      held.add(res);
      res.on('close', () => held.delete(res));
      return;
    }
    const body = method === 'GET' ? '' : await readBody(req);
    if (users.size > 0 && user === undefined) {
      throw new HttpError(401, 'Unauthorized', 'Unauthorized');
    }
    const p = parsePath(url.pathname);
    const isWatch = queryBool(url.searchParams, 'watch');
    const intercepted = interceptor?.({
      method,
      path: url.pathname,
      query: url.searchParams,
      resource: p?.resource,
      namespace: p?.namespace,
      name: p?.name,
      watch: isWatch,
      headers: req.headers,
    });
    if (intercepted !== undefined) {
      throw new HttpError(intercepted.code, intercepted.reason, intercepted.message);
    }
    const discovery = method === 'GET' ? discoveryDocument(url.pathname, `127.0.0.1:${port}`) : undefined;
    if (discovery !== undefined) {
      answer(res, 200, discovery);
      return;
    }
    if (p === undefined) {
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    }
    const { resource, namespace, name } = p;
    const warnings: string[] = [];
    // A real server validates a dry-run write and stores nothing; refused here rather than stored.
    if (method !== 'GET' && url.searchParams.has('dryRun')) {
      throw new HttpError(400, 'BadRequest', 'the stand-in does not implement dryRun');
    }
    if (name === undefined) {
      const sel: Selector = {
        labels: parseRequirements(url.searchParams.get('labelSelector'), 'label'),
        fields: parseRequirements(url.searchParams.get('fieldSelector'), 'field'),
      };
      for (const r of sel.fields) {
        fieldValue({ metadata: {} }, r.key); // throws 400 for unsupported field labels
      }
      if (method === 'GET' && isWatch) {
        handleWatch(resource, namespace, sel, url.searchParams, res);
        return;
      }
      if (method === 'GET') {
        const out = await handleList(resource, namespace, sel, url.searchParams);
        answer(res, out.code, out.body);
        return;
      }
      if (method === 'POST' && (namespace !== undefined || !RESOURCES[resource].namespaced)) {
        const out = handleCreate(resource, namespace ?? '', body, url.searchParams, warnings);
        answer(res, out.code, out.body, warnings);
        return;
      }
      throw new HttpError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${method})`);
    }
    const ns = namespace ?? '';
    switch (method) {
      case 'GET': {
        const o = objects.get(key(resource, ns, name));
        if (o === undefined) {
          throw notFound(resource, name);
        }
        answer(res, 200, withType(resource, o));
        return;
      }
      case 'PUT': {
        const out = handleReplace(resource, ns, name, body, url.searchParams, warnings);
        answer(res, out.code, out.body, warnings);
        return;
      }
      case 'DELETE': {
        const out = handleDelete(resource, ns, name, body);
        answer(res, out.code, out.body);
        return;
      }
      case 'PATCH': {
        const out = handleMergePatch(resource, ns, name, body, req.headers['content-type'] ?? '', url.searchParams, warnings);
        answer(res, out.code, out.body, warnings);
        return;
      }
      default:
        throw new HttpError(405, 'MethodNotAllowed', `the stand-in does not implement ${method} on objects`);
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) {
        answer(res, err.code, statusBody(err.code, err.reason, err.message, err.details));
      } else {
        answer(res, 500, statusBody(500, 'InternalError', `stand-in error: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
  });
  server.on('connection', (sock: Socket) => {
    if (mode === 'refuse' || stopped) {
      sock.destroy();
      return;
    }
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
  });

  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    resourceVersion: () => String(rv),
    watchCount: () => watchers.size,
    requestLog: () => [...log],
    requests: () => [...logged],
    setUnavailable(next: StandinUnavailableMode): void {
      const prev = mode;
      mode = next;
      if (next === 'refuse') {
        for (const w of [...watchers]) {
          closeWatcher(w, true);
        }
        for (const s of sockets) {
          s.destroy();
        }
      }
      if (prev === 'hang' && next !== 'hang') {
        for (const r of held) {
          r.destroy();
        }
        held.clear();
        for (const w of [...watchers]) {
          const lines = w.held;
          w.held = [];
          for (const l of lines) {
            send(w, l);
          }
        }
      }
    },
    dropWatches(): number {
      const n = watchers.size;
      for (const w of [...watchers]) {
        closeWatcher(w, false);
      }
      return n;
    },
    compactHistory(): void {
      history.length = 0;
      compactedThrough = rv;
    },
    setInterceptor(fn): void {
      interceptor = fn;
    },
    getObject(resource, namespace, name) {
      const o = objects.get(key(resource, namespace, name));
      return o === undefined ? undefined : withType(resource, o);
    },
    putObject(resource, namespace, obj) {
      const old = objects.get(key(resource, namespace, obj.metadata.name ?? ''));
      return write(resource, namespace, obj, old === undefined ? undefined : clone(old));
    },
    createNamespace(name: string): void {
      createNamespace(name);
    },
    deleteObject(resource, namespace, name) {
      return remove(resource, namespace, name) !== undefined;
    },
    async stop(): Promise<void> {
      if (stopped) {
        return;
      }
      stopped = true;
      for (const w of [...watchers]) {
        closeWatcher(w, true);
      }
      for (const r of held) {
        r.destroy();
      }
      for (const s of sockets) {
        s.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The authorization view of a request, as the API server's `RequestInfo` resolver builds it:
 * GET of an object is `get`, of a collection `list` (`watch` with `?watch=1`), POST `create`, PUT
 * `update`, PATCH `patch`, DELETE `delete` (`deletecollection` without a name); a list or watch
 * with a `metadata.name=<name>` field selector names that object.
 */
function describeRequest(
  method: string,
  url: URL,
  p: { resource: StandinResource; namespace: string | undefined; name: string | undefined } | undefined,
  user: string,
): StandinLoggedRequest {
  let name = p?.name;
  let verb: StandinVerb | undefined;
  if (p !== undefined) {
    const collection = name === undefined;
    switch (method) {
      case 'GET':
        verb = !collection ? 'get' : queryBool(url.searchParams, 'watch') ? 'watch' : 'list';
        break;
      case 'POST':
        verb = 'create';
        break;
      case 'PUT':
        verb = 'update';
        break;
      case 'PATCH':
        verb = 'patch';
        break;
      case 'DELETE':
        verb = collection ? 'deletecollection' : 'delete';
        break;
    }
    if (collection && (verb === 'list' || verb === 'watch')) {
      const terms = (url.searchParams.get('fieldSelector') ?? '').split(',').map((t) => t.trim());
      const named = terms.map((t) => /^metadata\.name==?(.+)$/.exec(t)?.[1]).filter((n): n is string => n !== undefined);
      name = named.length === 1 ? named[0] : undefined;
    }
  }
  return {
    method,
    path: url.pathname,
    query: url.search.replace(/^\?/, ''),
    verb,
    apiGroup: p === undefined ? undefined : p.resource === 'leases' ? 'coordination.k8s.io' : '',
    resource: p?.resource,
    namespace: p?.namespace,
    name,
    user,
  };
}

/** Whether a strategic merge patch has a list or a `$` directive somewhere (which it would not merge as a JSON merge patch). */
function strategicOnlyParts(patch: unknown): boolean {
  if (Array.isArray(patch)) {
    return true;
  }
  if (!isRecord(patch)) {
    return false;
  }
  return Object.entries(patch).some(([k, v]) => k.startsWith('$') || strategicOnlyParts(v));
}

/** An object without the fields the server owns, keys sorted, to detect no-op replaces. */
function comparable(o: KubeObject): unknown {
  const c = clone(o);
  delete c.kind;
  delete c.apiVersion;
  for (const f of ['namespace', 'resourceVersion', 'uid', 'creationTimestamp'] as const) {
    delete c.metadata[f];
  }
  return sortKeys(c);
}

/** A copy of `v` with object keys sorted, to compare JSON documents. */
function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) {
    return v.map(sortKeys);
  }
  if (isRecord(v)) {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, sortKeys(v[k])]),
    );
  }
  return v;
}
