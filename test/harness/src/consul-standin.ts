/**
 * A stand-in for a Consul agent's HTTP API (a single Consul server that is also the agent the
 * clients talk to), for the Consul store backend's tests: a plain `node:http` server on
 * 127.0.0.1 that implements, from Consul's HTTP API documentation and its source
 * (`agent/kvs_endpoint.go`, `agent/session_endpoint.go`, `agent/consul/kvs_endpoint.go`,
 * `agent/consul/session_endpoint.go`, `agent/consul/session_ttl.go`, `agent/consul/state/kvs.go`,
 * `agent/consul/state/session.go`), the part of the API a leader-election and key-value client
 * uses:
 *
 * - KV: `GET /v1/kv/<key>` (`?recurse`, `?keys` with `separator`, `?raw`), `PUT` (`?cas`,
 *   `?acquire`, `?release`, `?flags`), `DELETE` (`?recurse`, `?cas`), with Consul's indexes:
 *   one Raft index for every write, `CreateIndex`/`ModifyIndex`/`LockIndex` per entry, tombstones
 *   so that a delete raises the index of every prefix above the deleted key.
 * - Blocking queries (`?index=N&wait=D`) on KV and session reads: the answer comes when the
 *   query's index passes N or after `wait` (default 5 min, at most 10 min) plus up to wait/16
 *   jitter, as Consul's `blockingQuery`. Like Consul, a return is no guarantee of a change.
 * - Sessions: create (TTL within [session_ttl_min, 24h], `Behavior` release/delete, `LockDelay`
 *   with Consul's "small number means seconds" rule, the agent's `serfHealth` check as the only
 *   check that exists), renew, destroy, info, list, node. A TTL session is invalidated TTL × 2
 *   after its last renewal, as Consul's timer (`ttl * structs.SessionTTLMultiplier`, 2): the
 *   docs only promise "not before TTL"; mirroring the real timer means a client that is correct
 *   here is correct against the worst case of a real server. Invalidation (TTL expiry or
 *   destroy) releases or deletes the session's keys and starts their lock-delay (at most 60 s);
 *   an explicit `?release=` does not.
 * - ACLs (option `aclToken`): one management token. A request with no token is Consul's
 *   anonymous token under `default_policy = deny`; a request with another token gets
 *   `403 ACL not found`. As in Consul, denied list reads are filtered (404 / empty) instead of
 *   refused.
 * - `GET /v1/status/leader`, `/v1/status/peers`, `/v1/agent/self` (with `DebugConfig.SessionTTLMin`),
 *   `/v1/catalog/nodes`, `/v1/catalog/datacenters`: what python-consul and Patroni look at.
 *
 * Not implemented: Raft and more than one server (there is never a leader election, so
 * `X-Consul-KnownLeader` is always true and `X-Consul-LastContact` 0), consistency modes (all
 * reads are consistent), transaction operations other than KV ones, health checks other than an always-passing
 * `serfHealth`, services and the rest of the catalog, tombstone reaping, key validation beyond
 * "Missing key name", ACL policies (a token may do everything or nothing), namespaces and
 * partitions. Checked against python-consul 0.7.1 (Debian's python3-consul) and Patroni 3.0.2's
 * Consul DCS, never against a real Consul.
 *
 * Test hooks: {@link ConsulStandin.setFault} (`'refuse'` closes the listener and every
 * connection, reopened on the same port when cleared, optionally as a restarted server;
 * `'hang'` accepts requests and never answers them), `expireSession` (invalidate a session now, as its TTL would), in-process reads
 * (`getKey`, `sessionIds`, `index`) and the request log.
 * @see https://developer.hashicorp.com/consul/api-docs/kv
 * @see https://developer.hashicorp.com/consul/api-docs/session
 * @see https://developer.hashicorp.com/consul/api-docs/features/blocking
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { freePort } from './ports.js';

/** Fault modes of {@link ConsulStandin.setFault}. */
export type ConsulFault = 'hang' | 'refuse' | null;

/** Options of {@link startConsulStandin}. */
export interface ConsulStandinOptions {
  /** When set, ACLs are on with `default_policy = deny` and this is the one (management) token. */
  readonly aclToken?: string;
  /** The agent's node name (sessions are created on it). @default 'consul-standin' */
  readonly nodeName?: string;
  /** @default 'dc1' */
  readonly datacenter?: string;
  /**
   * Consul's `session_ttl_min` server setting (a Go duration): shorter session TTLs are refused.
   * Tests may lower it to expire sessions quickly, as a real server can be configured. @default '10s'
   */
  readonly sessionTtlMin?: string;
  /** Listen on this port instead of a free one. */
  readonly port?: number;
}

/** A KV entry as the stand-in stores it (and Consul returns it, `Value` decoded). */
export interface ConsulKvEntry {
  readonly key: string;
  readonly value: Buffer;
  readonly flags: number;
  readonly createIndex: number;
  readonly modifyIndex: number;
  readonly lockIndex: number;
  readonly session: string | undefined;
}

/** A running stand-in Consul agent. */
export interface ConsulStandin {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  readonly port: number;
  /** Every request received (method and path with query), oldest first; the last 10 000. */
  requestLog(): readonly string[];
  /**
   * `'refuse'`: the listener closes and every open connection (blocked reads included) is reset,
   * so new connections are refused. `'hang'`: connections are accepted, requests are read and
   * never answered (nor applied), answers due to blocked reads are held. `null`: back to normal
   * (the listener reopens on the same port; held requests are reset). Session TTL timers keep
   * running through both faults, as on a server the clients are cut off from.
   * @param opts.restarted with `null` after `'refuse'`: come back as a restarted Consul server
   *   would (its Raft data kept): every session gets a full TTL × 2 again (Consul rebuilds its
   *   session timers when it becomes leader) and lock-delays are forgotten (they live in memory).
   */
  setFault(mode: ConsulFault, opts?: { readonly restarted?: boolean }): Promise<void>;
  /** The current fault mode. */
  fault(): ConsulFault;
  /** The Raft index of the last write (1 before any). */
  index(): number;
  /** A stored KV entry (a copy), bypassing HTTP and ACLs. */
  getKey(key: string): ConsulKvEntry | undefined;
  /** IDs of the live sessions. */
  sessionIds(): string[];
  /** Invalidates a session now, as its TTL timer would. @returns whether it existed. */
  expireSession(id: string): boolean;
  /** Closes every connection and the listener, clears every timer. Idempotent. */
  close(): Promise<void>;
}

const NS_PER_MS = 1_000_000;
const NS_PER_S = 1_000_000_000;
/** `structs.SessionTTLMax`. */
const SESSION_TTL_MAX_NS = 24 * 3600 * NS_PER_S;
/** `structs.SessionTTLMultiplier`. */
const SESSION_TTL_MULTIPLIER = 2;
/** `structs.MaxLockDelay`. */
const MAX_LOCK_DELAY_NS = 60 * NS_PER_S;
/** Default lock delay of a new session (`agent/session_endpoint.go`). */
const DEFAULT_LOCK_DELAY_NS = 15 * NS_PER_S;
/** Below this a numeric or string lock delay is read as seconds (`lockDelayMinThreshold`). */
const LOCK_DELAY_MIN_THRESHOLD_NS = 1000;
/** Blocking query limits (`maxQueryTime`, `defaultQueryTime`, `structs.JitterFraction`). */
const MAX_QUERY_TIME_MS = 600_000;
const DEFAULT_QUERY_TIME_MS = 300_000;
const JITTER_FRACTION = 16;
/** `kv_max_value_size` default. */
const KV_MAX_VALUE_SIZE = 512 * 1024;
const SERF_CHECK_ID = 'serfHealth';

const DURATION_UNITS_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * Go's `time.ParseDuration`, in nanoseconds (a float; exact for the values used here).
 * @throws Error with Go's message (`time: invalid duration "x"`) when `s` is not a duration.
 */
export function parseGoDuration(s: string): number {
  const invalid = new Error(`time: invalid duration ${JSON.stringify(s)}`);
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest.startsWith('-') ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') {
    return 0;
  }
  if (rest === '') {
    throw invalid;
  }
  let total = 0;
  const part = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (rest !== '') {
    const m = part.exec(rest);
    if (m === null) {
      throw /^(\d+\.?\d*|\.\d+)$/.test(rest) ? new Error(`time: missing unit in duration ${JSON.stringify(s)}`) : invalid;
    }
    total += Number(m[1]) * (DURATION_UNITS_NS[m[2] ?? ''] ?? 0);
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

/** Go's `time.Duration.String()` for whole seconds (e.g. `10s`, `24h0m0s`); other values as `<n>ns`. */
function goDurationString(ns: number): string {
  if (ns % NS_PER_S !== 0) {
    return `${ns}ns`;
  }
  const total = ns / NS_PER_S;
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) {
    return `${h}h${m}m${sec}s`;
  }
  return m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

/** An error answered with its status and plain-text body (Consul's `HTTPError` and RPC errors). */
class ConsulError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A stored KV entry. */
interface Entry {
  key: string;
  value: Buffer | null;
  flags: number;
  createIndex: number;
  modifyIndex: number;
  lockIndex: number;
  session: string;
}

interface Session {
  readonly id: string;
  readonly name: string;
  readonly node: string;
  readonly nodeChecks: string[] | null;
  readonly lockDelayNs: number;
  readonly behavior: 'release' | 'delete';
  readonly ttl: string;
  readonly createIndex: number;
  timer: NodeJS.Timeout | undefined;
}

/** The answer of one read: status, JSON or raw body, and the query's index. */
interface ReadResult {
  readonly status: number;
  readonly index: number;
  readonly body: unknown;
  readonly raw?: Buffer;
  readonly headers?: Record<string, string>;
}

/** Who sent a request: the management token, nobody (anonymous) or an unknown token. */
type Caller = 'management' | 'anonymous' | 'unknown';

/** One KV operation of a `/v1/txn` request, decoded (values from base64). */
type TxnKvOp =
  | { readonly verb: 'set' | 'cas'; readonly key: string; readonly value: Buffer | null; readonly flags: number; readonly index: number }
  | { readonly verb: 'get' | 'check-not-exists' | 'delete'; readonly key: string }
  | { readonly verb: 'check-index' | 'delete-cas'; readonly key: string; readonly index: number }
  | { readonly verb: 'check-session'; readonly key: string; readonly session: string }
  | { readonly verb: 'lock' | 'unlock'; readonly key: string; readonly value: Buffer | null; readonly flags: number; readonly session: string };

const TXN_VERBS = new Set(['set', 'cas', 'get', 'check-index', 'check-session', 'check-not-exists', 'delete', 'delete-cas', 'lock', 'unlock']);
/** Consul's limit on operations per transaction (`maxTxnOps`). */
const MAX_TXN_OPS = 128;

/**
 * Decodes a `/v1/txn` body: a JSON array of `{ "KV": { Verb, Key, Value (base64), Flags, Index,
 * Session } }`. Only KV operations; node, service and check operations are not implemented (400
 * naming the op).
 * @throws ConsulError 400 for a body Consul would refuse, 413 past the op limit.
 */
function decodeTxn(raw: string): TxnKvOp[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new ConsulError(400, `Failed to parse body: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!Array.isArray(parsed)) {
    throw new ConsulError(400, 'Failed to parse body: expected a JSON array of operations');
  }
  if (parsed.length > MAX_TXN_OPS) {
    throw new ConsulError(413, `Transaction contains too many operations (${parsed.length} > ${MAX_TXN_OPS})`);
  }
  return parsed.map((item: unknown, i: number): TxnKvOp => {
    const kv = (item as { KV?: Record<string, unknown> } | null)?.KV;
    if (kv === undefined || kv === null || typeof kv !== 'object') {
      throw new ConsulError(400, `Failed to parse body: operation ${i} is not a KV operation (the stand-in implements KV operations only)`);
    }
    const verb = String(kv['Verb'] ?? '');
    const key = String(kv['Key'] ?? '');
    if (!TXN_VERBS.has(verb)) {
      throw new ConsulError(400, `Failed to parse body: unknown KV verb "${verb}" (the stand-in implements ${[...TXN_VERBS].join(', ')})`);
    }
    const index = Number(kv['Index'] ?? 0);
    switch (verb) {
      case 'set':
      case 'cas': {
        const v = kv['Value'];
        const value = typeof v === 'string' && v !== '' ? Buffer.from(v, 'base64') : null;
        if (value !== null && value.length > KV_MAX_VALUE_SIZE) {
          throw new ConsulError(413, `Value for key "${key}" is too large (${value.length} > ${KV_MAX_VALUE_SIZE} bytes)`);
        }
        return { verb, key, value, flags: Number(kv['Flags'] ?? 0), index };
      }
      case 'check-index':
      case 'delete-cas':
        return { verb, key, index };
      case 'check-session':
        return { verb, key, session: String(kv['Session'] ?? '') };
      case 'lock':
      case 'unlock': {
        const v = kv['Value'];
        return { verb, key, value: typeof v === 'string' && v !== '' ? Buffer.from(v, 'base64') : null, flags: Number(kv['Flags'] ?? 0), session: String(kv['Session'] ?? '') };
      }
      default:
        return { verb: verb as 'get' | 'check-not-exists' | 'delete', key };
    }
  });
}

/**
 * The store: KV entries, tombstones, sessions, lock delays and the indexes, as Consul's state
 * store (one Raft index, table indexes for `kvs`+`tombstones` and `sessions`).
 */
class ConsulState {
  raftIndex = 1;
  kvsTableIndex = 0;
  sessionsTableIndex = 0;
  readonly kv = new Map<string, Entry>();
  readonly tombstones = new Map<string, number>();
  readonly sessions = new Map<string, Session>();
  readonly lockDelays = new Map<string, number>();
  /** Called after every change, to wake blocked reads. */
  onChange: () => void = () => undefined;

  constructor(
    readonly nodeName: string,
    readonly sessionTtlMinNs: number,
  ) {}

  /** A new Raft index for a write. */
  private next(): number {
    this.raftIndex += 1;
    return this.raftIndex;
  }

  /** `kvsSetTxn`: stores `e` unless it equals the existing entry (then nothing changes). */
  private setEntry(idx: number, e: Omit<Entry, 'createIndex' | 'modifyIndex'>, updateSession: boolean): void {
    const existing = this.kv.get(e.key);
    const session = updateSession ? e.session : (existing?.session ?? '');
    if (existing !== undefined && existing.lockIndex === e.lockIndex && existing.flags === e.flags && existing.session === session && sameValue(existing.value, e.value)) {
      return;
    }
    this.kv.set(e.key, { ...e, session, createIndex: existing?.createIndex ?? idx, modifyIndex: idx });
    this.kvsTableIndex = idx;
  }

  /** `kvsDeleteTxn`: deletes `key` and leaves a tombstone. */
  private deleteEntry(idx: number, key: string): void {
    if (this.kv.delete(key)) {
      this.tombstones.set(key, idx);
      this.kvsTableIndex = idx;
    }
  }

  kvsSet(key: string, value: Buffer | null, flags: number): boolean {
    this.setEntry(this.next(), { key, value, flags, lockIndex: 0, session: '' }, false);
    this.onChange();
    return true;
  }

  kvsCas(key: string, value: Buffer | null, flags: number, cas: number): boolean {
    const idx = this.next();
    const existing = this.kv.get(key);
    const ok = cas === 0 ? existing === undefined : existing !== undefined && existing.modifyIndex === cas;
    if (ok) {
      this.setEntry(idx, { key, value, flags, lockIndex: 0, session: '' }, false);
      this.onChange();
    }
    return ok;
  }

  /** `KVLock`, after the leader's lock-delay check (which answers false without a Raft write). */
  kvsLock(key: string, value: Buffer | null, flags: number, session: string): boolean {
    const delayUntil = this.lockDelays.get(key);
    if (delayUntil !== undefined && delayUntil > Date.now()) {
      return false;
    }
    const idx = this.next();
    if (session === '') {
      throw new ConsulError(500, 'missing session');
    }
    if (!this.sessions.has(session)) {
      throw new ConsulError(500, `invalid session ${JSON.stringify(session)}`);
    }
    const e = this.kv.get(key);
    if (e !== undefined && e.session !== '' && e.session !== session) {
      return false;
    }
    const lockIndex = e === undefined ? 1 : e.session === session ? e.lockIndex : e.lockIndex + 1;
    this.setEntry(idx, { key, value, flags, lockIndex, session }, true);
    this.onChange();
    return true;
  }

  kvsUnlock(key: string, value: Buffer | null, flags: number, session: string): boolean {
    const idx = this.next();
    if (session === '') {
      throw new ConsulError(500, 'missing session');
    }
    const e = this.kv.get(key);
    if (e === undefined || e.session !== session) {
      return false;
    }
    this.setEntry(idx, { key, value, flags, lockIndex: e.lockIndex, session: '' }, true);
    this.onChange();
    return true;
  }

  kvsDelete(key: string): boolean {
    this.deleteEntry(this.next(), key);
    this.onChange();
    return true;
  }

  /** `KVSDeleteCAS`: true when deleted, and (as Consul) when the key does not exist. */
  kvsDeleteCas(key: string, cas: number): boolean {
    const idx = this.next();
    const e = this.kv.get(key);
    if (e === undefined) {
      return true;
    }
    if (e.modifyIndex !== cas) {
      return false;
    }
    this.deleteEntry(idx, key);
    this.onChange();
    return true;
  }

  kvsDeleteTree(prefix: string): boolean {
    const idx = this.next();
    for (const key of [...this.kv.keys()]) {
      if (key.startsWith(prefix)) {
        this.deleteEntry(idx, key);
      }
    }
    this.onChange();
    return true;
  }

  /** `kvsMaxIndex`: the index of the `kvs` and `tombstones` tables. */
  kvsMaxIndex(): number {
    return this.kvsTableIndex;
  }

  /** `KVS.Get`: the entry's ModifyIndex, else the table index (at least 1). */
  get(key: string): { index: number; entry: Entry | undefined } {
    const entry = this.kv.get(key);
    return { index: entry?.modifyIndex ?? Math.max(1, this.kvsMaxIndex()), entry };
  }

  /** `KVS.List`: the highest ModifyIndex or tombstone under `prefix`, else the table index. */
  list(prefix: string): { index: number; entries: Entry[] } {
    const entries = [...this.kv.values()].filter((e) => e.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let lindex = 0;
    for (const e of entries) {
      lindex = Math.max(lindex, e.modifyIndex);
    }
    if (prefix !== '') {
      for (const [k, i] of this.tombstones) {
        if (k.startsWith(prefix)) {
          lindex = Math.max(lindex, i);
        }
      }
    } else {
      lindex = this.kvsMaxIndex();
    }
    return { index: Math.max(1, lindex !== 0 ? lindex : this.kvsMaxIndex()), entries };
  }

  sessionsIndex(): number {
    return Math.max(1, this.sessionsTableIndex);
  }

  createSession(s: Omit<Session, 'id' | 'createIndex' | 'timer'>, ttlNs: number, onExpire: (id: string) => void): string {
    if (s.node !== this.nodeName) {
      throw new ConsulError(500, 'Missing node registration');
    }
    for (const c of s.nodeChecks ?? []) {
      if (c !== SERF_CHECK_ID) {
        throw new ConsulError(500, `Missing check '${c}' registration`);
      }
    }
    const idx = this.next();
    const id = randomUUID();
    const session: Session = { ...s, id, createIndex: idx, timer: undefined };
    this.sessions.set(id, session);
    this.sessionsTableIndex = idx;
    this.resetTimer(session, ttlNs, onExpire);
    this.onChange();
    return id;
  }

  /** `createSessionTimer`: invalidation TTL × 2 from now. */
  resetTimer(s: Session, ttlNs: number, onExpire: (id: string) => void): void {
    clearTimeout(s.timer);
    s.timer = undefined;
    if (ttlNs > 0) {
      s.timer = setTimeout(() => onExpire(s.id), (ttlNs / NS_PER_MS) * SESSION_TTL_MULTIPLIER);
      s.timer.unref();
    }
  }

  /** As a newly elected leader (`initializeSessionTimers`): full TTLs again, no lock-delays. */
  restartTimers(onExpire: (id: string) => void): void {
    this.lockDelays.clear();
    for (const s of this.sessions.values()) {
      this.resetTimer(s, s.ttl === '' ? 0 : parseGoDuration(s.ttl), onExpire);
    }
  }

  /** `deleteSessionTxn`: removes the session, releases or deletes its keys, starts lock-delays. */
  destroySession(id: string): boolean {
    const idx = this.next();
    const s = this.sessions.get(id);
    if (s === undefined) {
      return false;
    }
    clearTimeout(s.timer);
    this.sessions.delete(id);
    this.sessionsTableIndex = idx;
    const delayMs = Math.min(s.lockDelayNs, MAX_LOCK_DELAY_NS) / NS_PER_MS;
    const now = Date.now();
    for (const e of [...this.kv.values()].filter((x) => x.session === id)) {
      if (s.behavior === 'release') {
        this.setEntry(idx, { ...e, session: '' }, true);
      } else {
        this.deleteEntry(idx, e.key);
      }
      if (delayMs > 0) {
        this.lockDelays.set(e.key, now + delayMs);
      }
    }
    this.onChange();
    return true;
  }

  /**
   * `TxnRequest` of KV operations (`/v1/txn`): every op is checked and applied in order on a copy
   * of the KV table at one Raft index; the copy replaces the table only when no op failed.
   * @returns for each op, the entry it read or wrote (null for deletes and checks without one),
   *   or the errors (`OpIndex`, `What`) that rolled the transaction back.
   */
  txn(ops: readonly TxnKvOp[]): { results: Array<Entry | null>; errors: Array<{ OpIndex: number; What: string }> } {
    const idx = this.next();
    const kv = new Map(this.kv);
    const tombstones = new Map(this.tombstones);
    const results: Array<Entry | null> = [];
    const errors: Array<{ OpIndex: number; What: string }> = [];
    let changed = false;
    const put = (e: Omit<Entry, 'createIndex' | 'modifyIndex'>): Entry => {
      const existing = kv.get(e.key);
      const next = { ...e, createIndex: existing?.createIndex ?? idx, modifyIndex: idx };
      kv.set(e.key, next);
      changed = true;
      return next;
    };
    const remove = (key: string): void => {
      if (kv.delete(key)) {
        tombstones.set(key, idx);
        changed = true;
      }
    };
    ops.forEach((op, i) => {
      const existing = kv.get(op.key);
      const fail = (what: string): void => {
        errors.push({ OpIndex: i, What: what });
      };
      switch (op.verb) {
        case 'set':
        case 'cas': {
          if (op.verb === 'cas' && (op.index === 0 ? existing !== undefined : existing?.modifyIndex !== op.index)) {
            fail(`failed to set key "${op.key}", index is stale`);
            return;
          }
          // `kvsSetTxn`: LockIndex comes from the request (0), the holder stays; a write that
          // changes nothing is skipped. Consul answers writes with the entry without its value.
          const next = { key: op.key, value: op.value, flags: op.flags, lockIndex: 0, session: existing?.session ?? '' };
          const same = existing !== undefined && existing.lockIndex === 0 && existing.flags === op.flags && sameValue(existing.value, op.value);
          results.push({ ...(same ? existing : put(next)), value: null });
          return;
        }
        case 'get':
        case 'check-index':
        case 'check-session':
          if (existing === undefined) {
            fail(`key "${op.key}" doesn't exist`);
          } else if (op.verb === 'check-index' && existing.modifyIndex !== op.index) {
            fail(`failed index check for key "${op.key}", current modify index ${existing.modifyIndex} != ${op.index}`);
          } else if (op.verb === 'check-session' && existing.session !== op.session) {
            fail(`failed session check for key "${op.key}", current session "${existing.session}" != "${op.session}"`);
          } else {
            // Only `get` answers with the value.
            results.push(op.verb === 'get' ? existing : { ...existing, value: null });
          }
          return;
        case 'lock':
          // `kvsLockTxn`: the session must exist; a lock held by another session fails.
          if (!this.sessions.has(op.session)) {
            fail(`invalid session "${op.session}"`);
          } else if ((this.lockDelays.get(op.key) ?? 0) > Date.now()) {
            fail(`failed to lock key "${op.key}" due to lock delay`);
          } else if (existing !== undefined && existing.session !== '' && existing.session !== op.session) {
            fail(`failed to lock key "${op.key}", lock is already held`);
          } else {
            const lockIndex = existing === undefined ? 1 : existing.session === op.session ? existing.lockIndex : existing.lockIndex + 1;
            results.push({ ...put({ key: op.key, value: op.value, flags: op.flags, lockIndex, session: op.session }), value: null });
          }
          return;
        case 'unlock':
          // `kvsUnlockTxn`: only the holder unlocks (no lock-delay: it is not an invalidation).
          if (existing === undefined || existing.session !== op.session) {
            fail(`failed to unlock key "${op.key}", lock isn't held, or is held by another session`);
          } else {
            results.push({ ...put({ key: op.key, value: op.value, flags: op.flags, lockIndex: existing.lockIndex, session: '' }), value: null });
          }
          return;
        case 'check-not-exists':
          if (existing !== undefined) {
            fail(`key "${op.key}" exists`);
            return;
          }
          results.push(null);
          return;
        case 'delete':
          remove(op.key);
          results.push(null);
          return;
        case 'delete-cas':
          if (existing !== undefined && existing.modifyIndex !== op.index) {
            fail(`failed to delete key "${op.key}", index is stale`);
            return;
          }
          remove(op.key);
          results.push(null);
          return;
      }
    });
    if (errors.length > 0) {
      return { results: [], errors };
    }
    if (changed) {
      this.kv.clear();
      for (const [k, e] of kv) {
        this.kv.set(k, e);
      }
      for (const [k, t] of tombstones) {
        this.tombstones.set(k, t);
      }
      this.kvsTableIndex = idx;
      this.onChange();
    }
    return { results, errors };
  }

  clearTimers(): void {
    for (const s of this.sessions.values()) {
      clearTimeout(s.timer);
    }
  }
}

function sameValue(a: Buffer | null, b: Buffer | null): boolean {
  return (a ?? Buffer.alloc(0)).equals(b ?? Buffer.alloc(0));
}

/** A KV entry as Consul's JSON (`structs.DirEntry`): an empty value is `null`. */
function entryJson(e: Entry): Record<string, unknown> {
  return {
    LockIndex: e.lockIndex,
    Key: e.key,
    Flags: e.flags,
    Value: e.value === null || e.value.length === 0 ? null : e.value.toString('base64'),
    ...(e.session !== '' ? { Session: e.session } : {}),
    CreateIndex: e.createIndex,
    ModifyIndex: e.modifyIndex,
  };
}

function sessionJson(s: Session): Record<string, unknown> {
  return {
    ID: s.id,
    Name: s.name,
    Node: s.node,
    LockDelay: s.lockDelayNs,
    Behavior: s.behavior,
    TTL: s.ttl,
    NodeChecks: s.nodeChecks,
    ServiceChecks: null,
    CreateIndex: s.createIndex,
    ModifyIndex: s.createIndex,
  };
}

/** `strconv.ParseUint` of a query parameter, with Consul's 500 on a bad number. */
function parseUint(v: string | null): number {
  const s = v ?? '';
  if (!/^\d+$/.test(s)) {
    throw new ConsulError(500, `strconv.ParseUint: parsing ${JSON.stringify(s)}: invalid syntax`);
  }
  return Number(s);
}

/** The blocking parameters of a read (`parseWait`), or undefined when it does not block. */
function blockingParams(q: URLSearchParams): { minIndex: number; waitMs: number } | undefined {
  const index = q.get('index') ?? '';
  let waitMs = DEFAULT_QUERY_TIME_MS;
  if ((q.get('wait') ?? '') !== '') {
    let ns: number;
    try {
      ns = parseGoDuration(q.get('wait') ?? '');
    } catch {
      throw new ConsulError(400, 'Invalid wait time');
    }
    waitMs = ns / NS_PER_MS;
  }
  if (index === '') {
    return undefined;
  }
  if (!/^\d+$/.test(index)) {
    throw new ConsulError(400, 'Invalid index');
  }
  const minIndex = Number(index);
  if (minIndex === 0) {
    return undefined;
  }
  if (waitMs <= 0 || waitMs > MAX_QUERY_TIME_MS) {
    waitMs = waitMs <= 0 ? DEFAULT_QUERY_TIME_MS : MAX_QUERY_TIME_MS;
  }
  return { minIndex, waitMs: waitMs + Math.random() * (waitMs / JITTER_FRACTION) };
}

/** The JSON body of a session create, keys case-insensitive as Go's decoder. */
function decodeSessionBody(raw: string, nodeName: string, ttlMinNs: number): { fields: Omit<Session, 'id' | 'createIndex' | 'timer'>; ttlNs: number } {
  let parsed: unknown = {};
  if (raw.trim() !== '') {
    try {
      parsed = JSON.parse(raw);
    } catch (err) {
      throw new ConsulError(400, `Request decode failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const body = new Map<string, unknown>(Object.entries(typeof parsed === 'object' && parsed !== null ? parsed : {}).map(([k, v]) => [k.toLowerCase(), v]));
  const str = (k: string): string => {
    const v = body.get(k);
    if (v !== undefined && v !== null && typeof v !== 'string') {
      throw new ConsulError(400, `Request decode failed: ${k}: expected a string`);
    }
    return v ?? '';
  };
  let lockDelayNs = DEFAULT_LOCK_DELAY_NS;
  const ld = body.get('lockdelay');
  if (typeof ld === 'string' || typeof ld === 'number') {
    try {
      lockDelayNs = typeof ld === 'string' ? parseGoDuration(ld) : ld;
    } catch (err) {
      throw new ConsulError(400, `Request decode failed: ${(err as Error).message}`);
    }
    if (lockDelayNs < LOCK_DELAY_MIN_THRESHOLD_NS) {
      lockDelayNs *= NS_PER_S;
    }
  }
  // FixupChecks: a `Checks` or `NodeChecks` key replaces the default serfHealth check.
  const checks = [body.get('checks'), body.get('nodechecks')].filter((c) => c !== undefined);
  const nodeChecks = checks.length === 0 ? [SERF_CHECK_ID] : checks.flatMap((c) => (Array.isArray(c) ? c.map(String) : []));
  const behavior = str('behavior') === '' ? 'release' : str('behavior');
  if (behavior !== 'release' && behavior !== 'delete') {
    throw new ConsulError(500, `Invalid Behavior setting '${behavior}'`);
  }
  const ttl = str('ttl');
  let ttlNs = 0;
  if (ttl !== '') {
    try {
      ttlNs = parseGoDuration(ttl);
    } catch (err) {
      throw new ConsulError(500, `Session TTL '${ttl}' invalid: ${(err as Error).message}`);
    }
    if (ttlNs !== 0 && (ttlNs < ttlMinNs || ttlNs > SESSION_TTL_MAX_NS)) {
      throw new ConsulError(500, `Invalid Session TTL '${ttlNs}', must be between [${goDurationString(ttlMinNs)}=${goDurationString(SESSION_TTL_MAX_NS)}]`);
    }
  }
  const node = str('node') === '' ? nodeName : str('node');
  return { fields: { name: str('name'), node, nodeChecks: nodeChecks.length === 0 ? null : nodeChecks, lockDelayNs, behavior, ttl }, ttlNs };
}

/** The ACL message of Consul's `PermissionDeniedError` for the anonymous token. */
function anonymousDenied(resource: string, access: 'read' | 'write', name: string): ConsulError {
  return new ConsulError(
    403,
    `Permission denied: anonymous token lacks permission '${resource}:${access}' on ${JSON.stringify(name)}. The anonymous token is used implicitly when a request does not specify a token.`,
  );
}

/**
 * Starts the stand-in on 127.0.0.1 (a free port unless `opts.port`).
 * @throws Error when the port cannot be bound or `sessionTtlMin` is not a Go duration.
 */
export async function startConsulStandin(opts: ConsulStandinOptions = {}): Promise<ConsulStandin> {
  const nodeName = opts.nodeName ?? 'consul-standin';
  const dc = opts.datacenter ?? 'dc1';
  const ttlMinNs = parseGoDuration(opts.sessionTtlMin ?? '10s');
  const state = new ConsulState(nodeName, ttlMinNs);
  const port = opts.port ?? (await freePort());
  const sockets = new Set<Socket>();
  const held = new Set<ServerResponse>();
  const waiters = new Set<() => void>();
  const waiterCleanups = new Set<() => void>();
  const log: string[] = [];
  let mode: ConsulFault = null;
  let closed = false;
  let server: Server | undefined;

  state.onChange = () => {
    for (const w of [...waiters]) {
      w();
    }
  };
  const expire = (id: string): void => {
    state.destroySession(id);
  };

  const caller = (req: IncomingMessage, q: URLSearchParams): Caller => {
    if (opts.aclToken === undefined) {
      return 'management';
    }
    const auth = req.headers.authorization ?? '';
    const bearer = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
    const header = req.headers['x-consul-token'];
    const token = q.get('token') ?? (typeof header === 'string' && header !== '' ? header : undefined) ?? bearer ?? '';
    if (token === '') {
      return 'anonymous';
    }
    return token === opts.aclToken ? 'management' : 'unknown';
  };
  /** Refuses a request Consul's ACLs would refuse: unknown token always, anonymous for this permission. */
  const authorize = (who: Caller, resource: string, access: 'read' | 'write', name: string): void => {
    if (who === 'unknown') {
      throw new ConsulError(403, 'ACL not found');
    }
    if (who === 'anonymous') {
      throw anonymousDenied(resource, access, name);
    }
  };

  const writeAnswer = (res: ServerResponse, status: number, body: string | Buffer, headers: Record<string, string>): void => {
    if (res.destroyed || res.headersSent) {
      return;
    }
    if (mode === 'hang') {
      held.add(res);
      return;
    }
    res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };
  const sendJson = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    writeAnswer(res, status, JSON.stringify(body), { 'Content-Type': 'application/json', ...headers });
  };
  const sendError = (res: ServerResponse, err: unknown): void => {
    if (err instanceof ConsulError) {
      writeAnswer(res, err.status, err.message, { 'Content-Type': 'text/plain; charset=utf-8', ...err.headers });
    } else {
      writeAnswer(res, 500, `stand-in error: ${err instanceof Error ? err.message : String(err)}`, { 'Content-Type': 'text/plain; charset=utf-8' });
    }
  };
  const sendRead = (res: ServerResponse, r: ReadResult): void => {
    const meta = {
      'X-Consul-Index': String(r.index),
      'X-Consul-KnownLeader': 'true',
      'X-Consul-LastContact': '0',
      'X-Consul-Effective-Consistency': 'leader',
      ...(r.headers ?? {}),
    };
    if (r.status !== 200) {
      writeAnswer(res, r.status, '', meta);
    } else if (r.raw !== undefined) {
      writeAnswer(res, 200, r.raw, { ...meta, 'Content-Type': 'text/plain', 'X-Content-Type-Options': 'nosniff' });
    } else {
      sendJson(res, 200, r.body, meta);
    }
  };

  /** Runs `query` now, or as a blocking query until its index passes `?index` or the wait ends. */
  const blockingRead = (res: ServerResponse, q: URLSearchParams, query: () => ReadResult): void => {
    const params = blockingParams(q);
    const first = query();
    if (params === undefined || first.index > params.minIndex) {
      sendRead(res, first);
      return;
    }
    let done = false;
    const finish = (r: ReadResult | undefined): void => {
      if (done) {
        return;
      }
      done = true;
      waiters.delete(check);
      waiterCleanups.delete(cleanup);
      clearTimeout(timer);
      if (r !== undefined) {
        sendRead(res, r);
      }
    };
    const check = (): void => {
      let r: ReadResult;
      try {
        r = query();
      } catch (err) {
        finish(undefined);
        sendError(res, err);
        return;
      }
      if (r.index > params.minIndex) {
        finish(r);
      }
    };
    const cleanup = (): void => finish(undefined);
    const timer = setTimeout(() => {
      try {
        finish(query());
      } catch (err) {
        finish(undefined);
        sendError(res, err);
      }
    }, params.waitMs);
    waiters.add(check);
    waiterCleanups.add(cleanup);
    res.once('close', cleanup);
  };

  const kvRead = (who: Caller, key: string, q: URLSearchParams): ReadResult => {
    if (q.has('recurse') || q.has('keys')) {
      if (who === 'unknown') {
        throw new ConsulError(403, 'ACL not found');
      }
      const { index, entries } = state.list(key);
      // Denied entries are filtered out (FilterDirEnt), not refused.
      const visible = who === 'anonymous' ? [] : entries;
      const filtered: Record<string, string> = who === 'anonymous' && entries.length > 0 ? { 'X-Consul-Results-Filtered-By-ACLs': 'true' } : {};
      if (q.has('keys')) {
        const keys = listKeys(visible, key, q.get('separator') ?? q.get('seperator') ?? '');
        return keys.length === 0 && key !== '' ? { status: 404, index, body: null, headers: filtered } : { status: 200, index, body: keys, headers: filtered };
      }
      return visible.length === 0 ? { status: 404, index, body: null, headers: filtered } : { status: 200, index, body: visible.map(entryJson) };
    }
    if (key === '') {
      throw new ConsulError(400, 'Missing key name');
    }
    authorize(who, 'key', 'read', key);
    const { index, entry } = state.get(key);
    if (entry === undefined) {
      return { status: 404, index, body: null };
    }
    if (q.has('raw')) {
      return { status: 200, index, body: null, raw: entry.value ?? Buffer.alloc(0) };
    }
    return { status: 200, index, body: [entryJson(entry)] };
  };

  const kvPut = (who: Caller, key: string, q: URLSearchParams, body: Buffer): boolean => {
    if (key === '') {
      throw new ConsulError(400, 'Missing key name');
    }
    conflicting(q, ['cas', 'acquire', 'release']);
    authorize(who, 'key', 'write', key);
    const flags = q.has('flags') ? parseUint(q.get('flags')) : 0;
    const value = body.length === 0 ? null : body;
    if (q.has('acquire')) {
      return state.kvsLock(key, value, flags, q.get('acquire') ?? '');
    }
    if (q.has('release')) {
      return state.kvsUnlock(key, value, flags, q.get('release') ?? '');
    }
    if (q.has('cas')) {
      return state.kvsCas(key, value, flags, parseUint(q.get('cas')));
    }
    return state.kvsSet(key, value, flags);
  };

  const kvDelete = (who: Caller, key: string, q: URLSearchParams): boolean => {
    conflicting(q, ['recurse', 'cas']);
    if (q.has('recurse')) {
      authorize(who, 'key', 'write', key);
      return state.kvsDeleteTree(key);
    }
    if (key === '') {
      throw new ConsulError(400, 'Missing key name');
    }
    authorize(who, 'key', 'write', key);
    if (q.has('cas')) {
      return state.kvsDeleteCas(key, parseUint(q.get('cas')));
    }
    return state.kvsDelete(key);
  };

  const handleKv = async (req: IncomingMessage, res: ServerResponse, path: string, q: URLSearchParams, who: Caller): Promise<void> => {
    const key = decodeURIComponent(path.slice('/v1/kv/'.length));
    switch (req.method ?? '') {
      case 'GET':
        blockingRead(res, q, () => kvRead(who, key, q));
        return;
      case 'PUT': {
        const body = await readBody(req, KV_MAX_VALUE_SIZE);
        sendJson(res, 200, kvPut(who, key, q, body));
        return;
      }
      case 'DELETE':
        sendJson(res, 200, kvDelete(who, key, q));
        return;
      default:
        throw methodNotAllowed(req.method, ['GET', 'PUT', 'DELETE']);
    }
  };

  const handleSession = async (req: IncomingMessage, res: ServerResponse, path: string, q: URLSearchParams, who: Caller): Promise<void> => {
    const [, , , op = '', ...rest] = path.split('/');
    const arg = decodeURIComponent(rest.join('/'));
    const needId = (): void => {
      if (arg === '') {
        throw new ConsulError(400, op === 'node' ? 'Missing node name' : 'Missing session');
      }
    };
    const visible = (list: Session[]): Record<string, unknown>[] => (who === 'management' ? list.map(sessionJson) : []);
    const expectMethod = (m: string): void => {
      if (req.method !== m) {
        throw methodNotAllowed(req.method, [m]);
      }
    };
    switch (op) {
      case 'create': {
        expectMethod('PUT');
        const { fields, ttlNs } = decodeSessionBody((await readBody(req, 1024 * 1024)).toString('utf8'), nodeName, ttlMinNs);
        authorize(who, 'session', 'write', fields.node);
        sendJson(res, 200, { ID: state.createSession(fields, ttlNs, expire) });
        return;
      }
      case 'destroy': {
        expectMethod('PUT');
        needId();
        authorize(who, 'session', 'write', state.sessions.get(arg)?.node ?? nodeName);
        state.destroySession(arg);
        sendJson(res, 200, true);
        return;
      }
      case 'renew': {
        expectMethod('PUT');
        needId();
        const s = state.sessions.get(arg);
        if (s === undefined) {
          throw new ConsulError(404, `Session id '${arg}' not found`);
        }
        authorize(who, 'session', 'write', s.node);
        state.resetTimer(s, s.ttl === '' ? 0 : parseGoDuration(s.ttl), expire);
        sendJson(res, 200, [sessionJson(s)]);
        return;
      }
      case 'info':
      case 'list':
      case 'node': {
        expectMethod('GET');
        if (who === 'unknown') {
          throw new ConsulError(403, 'ACL not found');
        }
        if (op !== 'list') {
          needId();
        }
        // memdb's `id` index: sorted by ID
        const pick = (): Session[] =>
          [...state.sessions.values()].filter((s) => (op === 'list' ? true : op === 'info' ? s.id === arg : s.node === arg)).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        blockingRead(res, q, () => ({ status: 200, index: state.sessionsIndex(), body: visible(pick()) }));
        return;
      }
      default:
        throw new ConsulError(404, '404 page not found\n');
    }
  };

  const handleTxn = async (req: IncomingMessage, res: ServerResponse, who: Caller): Promise<void> => {
    if (req.method !== 'PUT') {
      throw methodNotAllowed(req.method, ['PUT']);
    }
    const ops = decodeTxn((await readBody(req, KV_MAX_VALUE_SIZE * 2)).toString('utf8'));
    for (const op of ops) {
      authorize(who, 'key', op.verb === 'get' || op.verb.startsWith('check') ? 'read' : 'write', op.key);
    }
    const { results, errors } = state.txn(ops);
    if (errors.length > 0) {
      sendJson(res, 409, { Results: null, Errors: errors });
      return;
    }
    // As Consul: ops without an entry (deletes, check-not-exists) add no result.
    sendJson(res, 200, { Results: results.filter((e): e is Entry => e !== null).map((e) => ({ KV: entryJson(e) })), Errors: null }, { 'X-Consul-Index': String(state.raftIndex) });
  };

  const handleMisc = (req: IncomingMessage, res: ServerResponse, path: string, who: Caller): void => {
    const addr = `127.0.0.1:${port}`;
    const meta = { 'X-Consul-Index': String(state.raftIndex), 'X-Consul-KnownLeader': 'true', 'X-Consul-LastContact': '0' };
    if (req.method !== 'GET') {
      throw methodNotAllowed(req.method, ['GET']);
    }
    switch (path) {
      case '/v1/status/leader':
        sendJson(res, 200, addr);
        return;
      case '/v1/status/peers':
        sendJson(res, 200, [addr]);
        return;
      case '/v1/agent/self':
        authorize(who, 'agent', 'read', nodeName);
        sendJson(res, 200, agentSelf(nodeName, dc, addr, ttlMinNs));
        return;
      case '/v1/catalog/datacenters':
        sendJson(res, 200, [dc]);
        return;
      case '/v1/catalog/nodes':
        sendJson(res, 200, who === 'management' ? [catalogNode(nodeName, dc)] : [], meta);
        return;
      default:
        throw new ConsulError(404, '404 page not found\n');
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://standin');
    log.push(`${req.method ?? '?'} ${url.pathname}${url.search}`);
    if (log.length > 10_000) {
      log.splice(0, log.length - 10_000);
    }
    if (mode === 'hang') {
      held.add(res);
      return;
    }
    const q = url.searchParams;
    if (q.has('dc') && q.get('dc') !== dc && q.get('dc') !== '') {
      throw new ConsulError(500, 'No path to datacenter');
    }
    const who = caller(req, q);
    const path = url.pathname;
    if (path.startsWith('/v1/kv/')) {
      await handleKv(req, res, path, q, who);
    } else if (path.startsWith('/v1/session/')) {
      await handleSession(req, res, path, q, who);
    } else if (path === '/v1/txn') {
      await handleTxn(req, res, who);
    } else {
      handleMisc(req, res, path, who);
    }
  };

  const listen = async (): Promise<void> => {
    // No request timeout: like Go's net/http server, and a held ('hang') request keeps hanging.
    const s = createServer({ requestTimeout: 0 }, (req, res) => {
      handle(req, res).catch((err: unknown) => sendError(res, err));
    });
    // Consul keeps idle connections open; a short keep-alive would race clients that reuse them.
    s.keepAliveTimeout = 15 * 60_000;
    s.on('connection', (sock: Socket) => {
      if (mode === 'refuse' || closed) {
        sock.destroy();
        return;
      }
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve();
      });
    });
    server = s;
  };
  const shutdownListener = async (): Promise<void> => {
    const s = server;
    server = undefined;
    for (const c of [...waiterCleanups]) {
      c();
    }
    for (const r of held) {
      r.destroy();
    }
    held.clear();
    for (const sock of sockets) {
      sock.destroy();
    }
    if (s !== undefined) {
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  };

  await listen();

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requestLog: () => [...log],
    fault: () => mode,
    async setFault(next: ConsulFault, faultOpts: { readonly restarted?: boolean } = {}): Promise<void> {
      if (closed) {
        return;
      }
      const prev = mode;
      mode = next;
      if (next === 'refuse' && prev !== 'refuse') {
        await shutdownListener();
        return;
      }
      if (prev === 'hang' && next !== 'hang') {
        for (const r of held) {
          r.destroy();
        }
        held.clear();
      }
      if (prev === 'refuse' && next !== 'refuse') {
        if (faultOpts.restarted === true) {
          state.restartTimers(expire);
        }
        await listen();
      }
    },
    index: () => state.raftIndex,
    getKey(key: string): ConsulKvEntry | undefined {
      const e = state.kv.get(key);
      return e === undefined
        ? undefined
        : { key: e.key, value: Buffer.from(e.value ?? Buffer.alloc(0)), flags: e.flags, createIndex: e.createIndex, modifyIndex: e.modifyIndex, lockIndex: e.lockIndex, session: e.session === '' ? undefined : e.session };
    },
    sessionIds: () => [...state.sessions.keys()],
    expireSession: (id: string) => state.destroySession(id),
    async close(): Promise<void> {
      if (closed) {
        return;
      }
      closed = true;
      state.clearTimers();
      await shutdownListener();
    },
  };
}

/** `KVS.ListKeys`: keys under `prefix`, cut after the first `separator` past it, de-duplicated. */
function listKeys(entries: readonly Entry[], prefix: string, separator: string): string[] {
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    if (separator === '') {
      keys.push(e.key);
      continue;
    }
    const i = e.key.slice(prefix.length).indexOf(separator);
    if (i < 0) {
      keys.push(e.key);
      continue;
    }
    const k = e.key.slice(0, prefix.length + i + separator.length);
    if (!seen.has(k)) {
      seen.add(k);
      keys.push(k);
    }
  }
  return keys;
}

/** `conflictingFlags`: 400 when more than one of `flags` is present. */
function conflicting(q: URLSearchParams, flags: readonly string[]): void {
  if (flags.filter((f) => q.has(f)).length > 1) {
    throw new ConsulError(400, `Conflicting flags: ${goQueryEncode(q)}\n`);
  }
}

/** Go's `url.Values.Encode()`: keys sorted. */
function goQueryEncode(q: URLSearchParams): string {
  const pairs = [...q.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

/** `MethodNotAllowedError`: 405 with an `Allow` header. */
function methodNotAllowed(method: string | undefined, allow: readonly string[]): ConsulError {
  return new ConsulError(405, `method ${method ?? ''} not allowed`, { Allow: allow.join(',') });
}

/** The request body, refusing more than `limit` bytes with Consul's 413. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      throw new ConsulError(413, `Request body(${req.headers['content-length'] ?? size} bytes) too large, max size: ${limit} bytes.`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** The shape of `GET /v1/agent/self` (the parts clients read). */
function agentSelf(nodeName: string, dc: string, addr: string, ttlMinNs: number): Record<string, unknown> {
  return {
    Config: { Datacenter: dc, PrimaryDatacenter: dc, NodeName: nodeName, NodeID: '00000000-0000-0000-0000-000000000001', Revision: 'standin', Server: true, Version: '1.15.0' },
    DebugConfig: { Datacenter: dc, NodeName: nodeName, SessionTTLMin: goDurationString(ttlMinNs) },
    Coord: null,
    Member: { Name: nodeName, Addr: addr.split(':')[0], Port: 8301, Tags: { dc, role: 'consul' }, Status: 1 },
    Meta: {},
  };
}

function catalogNode(nodeName: string, dc: string): Record<string, unknown> {
  return { ID: '00000000-0000-0000-0000-000000000001', Node: nodeName, Address: '127.0.0.1', Datacenter: dc, TaggedAddresses: null, Meta: {}, CreateIndex: 1, ModifyIndex: 1 };
}
