/**
 * The etcd v3 store, on microsoft/etcd3 with Stolon's key layout (see `store.ts`). It owns the
 * client's fault handling and timeouts: etcd3's default retries and per-host circuit breakers are
 * switched off (they would stretch a call past the timeout; docs/design.md#errors), every call
 * carries a gRPC deadline and is raced against the same deadline, so no method takes longer than
 * `timeoutMs` (close() at most about twice that); loops retry at their next tick instead.
 *
 * Leases (infos and the sentinel election) are kept alive by this module, not by etcd3's `Lease`:
 * one keepalive every TTL/3 with its own deadline (retried every 250 ms after a failure), so the
 * time of the last confirmed keepalive is known exactly. That is what lets a leader give up
 * leadership at 3/4 of the TTL after the last confirmation, before its lease can expire and
 * another sentinel win (docs/design.md#fail-closed). The election is our own lease + create-revision election
 * (as etcd's Go `concurrency.Election`, keys `<prefix>/<cluster>/sentinel-leader/<lease id hex>`)
 * rather than etcd3's `Election`, which uses a fixed `election/` key prefix and unbounded waits.
 *
 * TTLs: etcd leases are whole seconds, so `ttlMs` is rounded up to seconds (minimum 1 s), and
 * etcd itself raises any TTL below its minimum (with default `--heartbeat-interval` 100 ms and
 * `--election-timeout` 1000 ms: 2 s). The TTL etcd grants is the one used for keepalive timing.
 * Expired leases are reaped by etcd every 500 ms, so an entry may outlive its TTL by about that.
 */
import { ConfigError, NotLeaderError, StolonError, StoreConflictError, StoreUnavailableError } from '@stolon-ts/cluster';
import type { KeeperInfo, ProxyInfo } from '@stolon-ts/cluster';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import type * as GrpcModule from '@grpc/grpc-js';
import type { VerifyOptions } from '@grpc/grpc-js';
import type * as CockatielModule from 'cockatiel';
import type * as Etcd3Module from 'etcd3';
import type { Etcd3, IKeyValue, ILeaseKeepAliveResponse, Watcher } from 'etcd3';
import { LeaderElection, type ElectionAttempt, type ElectionBackend, type ElectionLoop } from './election.js';
import { StoreHandles } from './handles.js';
import { KeptLease } from './kept-lease.js';
import type {
  ClusterDataRecord,
  ClusterView,
  Election,
  InfoChange,
  InfoKind,
  InfoTypes,
  Store,
  StoreWatch,
  WatchTopic,
} from './store.js';
import {
  DEFAULT_PREFIX,
  DEFAULT_TIMEOUT_MS,
  KeyLayout,
  KeyedSerializer,
  TopicDispatcher,
  checkTtl,
  checkUid,
  monotonicMs,
  parseInfoText,
} from './util.js';

/*
 * etcd3, gRPC and cockatiel are CommonJS and are required, not imported: an ES import of a
 * CommonJS package makes Node parse its source, and that of every module it re-exports, to find
 * its export names (cjs-module-lexer), which cost a keeper ~0.07 CPU-seconds at start. `require`
 * returns the same module objects an import gets.
 */
const requireCjs = createRequire(import.meta.url);
const { credentials: grpcCredentials } = requireCjs('@grpc/grpc-js') as typeof GrpcModule;
const { ExponentialBackoff, noop } = requireCjs('cockatiel') as typeof CockatielModule;
const { Etcd3: Etcd3Client, EtcdLeaseInvalidError } = requireCjs('etcd3') as typeof Etcd3Module;

/** Options of {@link EtcdStore}. */
export interface EtcdStoreOptions {
  /** Client URLs, e.g. `['http://127.0.0.1:2379']` (`https://` enables TLS with system roots). */
  readonly endpoints: readonly string[];
  /** Cluster name, the second key segment. */
  readonly clusterName: string;
  /** Key prefix, used verbatim as Stolon does for etcdv3. @default 'stolon/cluster' */
  readonly prefix?: string;
  /** Per-call timeout in ms; no store method takes longer. @default 5000 */
  readonly timeoutMs?: number;
  /** TLS material for `https://` endpoints (`--store-ca-file`, `--store-cert-file`, `--store-key`, `--store-skip-tls-verify`). */
  readonly tls?: EtcdTlsOptions;
  /** etcd user and password, when etcd authentication is enabled (`--store-user`, `--store-password-file`). */
  readonly auth?: EtcdAuthOptions;
}

/** TLS settings of {@link EtcdStoreOptions}; every buffer holds PEM text. */
export interface EtcdTlsOptions {
  /** CA certificate(s) that signed etcd's server certificate; unset: the system CAs. */
  readonly ca?: Buffer | undefined;
  /** Client certificate (chain) for etcd's `--client-cert-auth`; needs `key`. */
  readonly cert?: Buffer | undefined;
  /** Private key of `cert`. Never logged. */
  readonly key?: Buffer | undefined;
  /** Accept any server certificate (no chain or name check). For tests only. */
  readonly skipVerify?: boolean | undefined;
}

/** etcd authentication of {@link EtcdStoreOptions}. */
export interface EtcdAuthOptions {
  readonly username: string;
  /** Never logged, never part of an error message. */
  readonly password: string;
}

/** The host of a client URL, without IPv6 brackets ('' when it does not parse). */
function endpointHost(url: string): string {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return '';
  }
}

let ipServernameWarningFiltered = false;

/**
 * Drops Node's DEP0123 warning ("Setting the TLS ServerName to an IP address is not permitted by
 * RFC 6066"), which grpc-js triggers for every `https://<IP address>` endpoint: Node already
 * ignores such a server name (no SNI is sent), and the certificate is still checked against the IP
 * address. Every other warning is emitted as before. Installed once per process.
 */
function filterIpServernameWarning(): void {
  if (ipServernameWarningFiltered) {
    return;
  }
  ipServernameWarningFiltered = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [, typeOrOptions, code] = args;
    const c = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: unknown }).code : code;
    if (c === 'DEP0123') {
      return;
    }
    emit(...args);
  }) as typeof process.emitWarning;
}

/**
 * Calls `make` while `@grpc/grpc-js`'s `credentials.createSsl` also applies `verify`: etcd3 builds
 * its channel credentials with `createSsl(ca, key, cert)` inside its (synchronous) constructor and
 * has no option for verify options, which `--store-skip-tls-verify` needs. Restored before returning.
 */
function withVerifyOptions<T>(verify: VerifyOptions | undefined, make: () => T): T {
  if (verify === undefined) {
    return make();
  }
  const original = grpcCredentials.createSsl;
  grpcCredentials.createSsl = (ca, key, cert) => original(ca, key, cert, verify);
  try {
    return make();
  } finally {
    grpcCredentials.createSsl = original;
  }
}

/** Delay between keepalive attempts after a failed one, in ms. */
const KEEPALIVE_RETRY_MS = 250;
/** Pause before a campaign starts over after an error, in ms (capped by TTL/4). */
const CAMPAIGN_RETRY_MS = 1000;

function isPositiveRevision(rev: string): boolean {
  return /^[1-9][0-9]*$/.test(rev);
}

/**
 * A store backed by etcd v3.
 *
 * Every method throws `StoreUnavailableError` when etcd cannot be reached, answers with an error,
 * or does not answer within `timeoutMs`, and after {@link EtcdStore.close}.
 * @see Store for the per-method contract.
 */
export class EtcdStore implements Store {
  /** @internal */
  readonly client: Etcd3;
  /** @internal */
  readonly timeoutMs: number;
  /** @internal */
  readonly keys: KeyLayout;
  private readonly endpoints: readonly string[];
  private readonly clusterName: string;
  /** For error hints: https endpoints, a client certificate, a CA file, the etcd user. */
  private readonly tlsInUse: boolean;
  private readonly clientCertGiven: boolean;
  private readonly caGiven: boolean;
  private readonly username: string | undefined;
  private readonly handles: StoreHandles;
  private readonly infoLeases = new Map<string, { lease: EtcdLease; ttlSec: number }>();
  /** Serialises setInfo/deleteInfo per (kind, uid) so two calls never grant two leases. */
  private readonly infoLocks = new KeyedSerializer();
  private readonly leases = new Set<KeptLease>();

  /**
   * Creates the client; connects lazily on the first call.
   * @throws ConfigError (`field: 'store-endpoints'`) when `endpoints` is empty.
   */
  constructor(opts: EtcdStoreOptions) {
    if (opts.endpoints.length === 0) {
      throw new ConfigError('no etcd endpoints given: pass --store-endpoints, e.g. http://127.0.0.1:2379', {
        field: 'store-endpoints',
      });
    }
    const tls = opts.tls ?? {};
    const wantsTls = tls.ca !== undefined || tls.cert !== undefined || tls.skipVerify === true;
    if (wantsTls && opts.endpoints.some((e) => !e.startsWith('https://'))) {
      throw new ConfigError(
        `--store-endpoints: ${opts.endpoints.join(',')} is not https://, but TLS flags were given (--store-ca-file, --store-cert-file, --store-key, --store-skip-tls-verify); use https:// endpoints`,
        { field: 'store-endpoints' },
      );
    }
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new ConfigError('--store-cert-file and --store-key go together: give both (the client certificate and its key) or neither', {
        field: tls.cert === undefined ? 'store-cert-file' : 'store-key',
      });
    }
    this.endpoints = opts.endpoints;
    this.clusterName = opts.clusterName;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.keys = new KeyLayout(opts.prefix ?? DEFAULT_PREFIX, opts.clusterName);
    this.handles = new StoreHandles(`etcd store for cluster ${opts.clusterName}`, this.timeoutMs);
    this.tlsInUse = opts.endpoints.some((e) => e.startsWith('https://'));
    this.clientCertGiven = tls.cert !== undefined;
    this.caGiven = tls.ca !== undefined;
    this.username = opts.auth?.username;
    const timeoutMs = this.timeoutMs;
    if (opts.endpoints.some((e) => e.startsWith('https://') && isIP(endpointHost(e)) !== 0)) {
      filterIpServernameWarning();
    }
    const verify: VerifyOptions | undefined = tls.skipVerify === true ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : undefined;
    this.client = withVerifyOptions(verify, () => new Etcd3Client({
      hosts: [...opts.endpoints],
      ...(tls.ca !== undefined || tls.cert !== undefined || verify !== undefined
        ? {
            credentials: {
              // grpc-js takes null for "the system CAs"; etcd3's type says Buffer.
              rootCertificate: (tls.ca ?? null) as Buffer,
              ...(tls.key !== undefined ? { privateKey: tls.key } : {}),
              ...(tls.cert !== undefined ? { certChain: tls.cert } : {}),
            },
          }
        : {}),
      ...(opts.auth !== undefined
        ? {
            auth: {
              username: opts.auth.username,
              password: opts.auth.password,
              // The token exchange is bounded like every other call.
              callOptions: () => ({ deadline: Date.now() + timeoutMs }),
            },
          }
        : {}),
      // No retries and no circuit breaker: a retry would stretch a call past timeoutMs, and an
      // open breaker would fail calls for 5 s after etcd is back. Our loops retry at their next tick.
      faultHandling: {
        host: () => noop,
        global: noop,
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }).next(),
      },
      // Detect a silently dead connection (paused or partitioned etcd) under open watch streams.
      // etcd rejects pings more often than every 5 s (--grpc-keepalive-min-time).
      grpcOptions: {
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': this.timeoutMs,
        // Reconnect within a second of etcd being reachable again (grpc-js defaults grow to
        // 120 s): a keeper cut off for a few seconds must renew its lease before it expires.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
      },
    }));
  }

  // ---- call plumbing ----

  /**
   * Runs `fn` with a gRPC deadline of `deadline` (epoch ms) and races it against the same
   * deadline, mapping every failure to a StolonError.
   * @internal
   */
  async call<T>(what: string, deadline: number, fn: (callOpts: { deadline: number }) => Promise<T>): Promise<T> {
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw this.timeoutError(what);
    }
    let timer: NodeJS.Timeout | undefined;
    // Async wrapper: a synchronous throw in fn becomes a rejection like any other failure.
    const work = (async () => fn({ deadline }))();
    // The loser of the race must not become an unhandled rejection.
    work.catch(() => undefined);
    try {
      return await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(this.timeoutError(what)), remaining);
        }),
      ]);
    } catch (err) {
      throw this.mapError(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** @internal A deadline `timeoutMs` from now, in epoch ms. */
  deadline(): number {
    return Date.now() + this.timeoutMs;
  }

  private timeoutError(what: string): StoreUnavailableError {
    return new StoreUnavailableError(
      `etcd did not answer ${what} within ${this.timeoutMs} ms; check that etcd is up and reachable at ${this.endpoints.join(',')}`,
    );
  }

  /** @internal */
  mapError(what: string, err: unknown): StolonError {
    if (err instanceof StolonError) {
      return err;
    }
    const msg = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    const access = this.accessProblem(msg.replace(/\s+/g, ' '));
    if (access !== undefined) {
      return new StoreUnavailableError(`etcd ${what} failed: ${access.problem}; ${access.fix}`, { cause: err, field: access.field });
    }
    // A TLS-only etcd reached over http:// fails like an unreachable one (gRPC only says it
    // could not connect), so an http client says what else to check.
    const tlsHint =
      !this.tlsInUse && /No connection established/i.test(msg) && !/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT/i.test(msg)
        ? '; if etcd serves TLS, use https:// endpoints with --store-ca-file (and --store-cert-file and --store-key for client certificates)'
        : '';
    return new StoreUnavailableError(
      `etcd ${what} failed (${msg.replace(/\s+/g, ' ')}); check that etcd is up and reachable at ${this.endpoints.join(',')}${tlsHint}`,
      { cause: err },
    );
  }

  /**
   * Recognises a refusal that retrying will not cure (TLS trust, client certificate, etcd
   * authentication or permission) in an etcd/gRPC error message and says which flag fixes it.
   * Messages never carry the password: etcd and etcd3 do not echo it, and it is not added here.
   * @returns the problem, the fix and the flag, or undefined for anything else.
   */
  private accessProblem(msg: string): { problem: string; fix: string; field: string } | undefined {
    const at = this.endpoints.join(',');
    if (/permission denied/i.test(msg)) {
      const who = this.username === undefined ? 'this client' : `--store-user ${this.username}`;
      return {
        problem: `permission denied to ${who} on ${`${this.keys.base}/`}`,
        fix: `grant the user's role readwrite on that prefix (etcdctl role grant-permission <role> readwrite --prefix ${`${this.keys.base}/`}), or use the user meant for cluster ${this.clusterName}`,
        field: 'store-user',
      };
    }
    if (/authentication failed|invalid user ID or password/i.test(msg)) {
      return {
        problem: `etcd rejected user ${this.username ?? '(none)'} (authentication failed)`,
        fix: 'check --store-user and the password in --store-password-file (or the STORE_PASSWORD variable)',
        field: 'store-password-file',
      };
    }
    if (/authentication is not enabled/i.test(msg)) {
      return {
        problem: `etcd at ${at} does not have authentication enabled, but --store-user ${this.username ?? ''} was given`,
        fix: 'enable etcd authentication (etcdctl auth enable), or drop --store-user and --store-password-file',
        field: 'store-user',
      };
    }
    if (/user name is empty|invalid auth token|token.*(missing|not provided)/i.test(msg)) {
      return {
        problem: this.username === undefined ? 'etcd requires authentication and no user was given' : `etcd refused the authentication of ${this.username}`,
        fix: 'pass --store-user and --store-password-file (or the STORE_PASSWORD variable) for a user whose role may read and write the cluster prefix',
        field: 'store-user',
      };
    }
    if (/certificate (has expired|is not yet valid)/i.test(msg) && !/alert/i.test(msg)) {
      return {
        problem: `etcd's server certificate at ${at} is outside its validity period (${msg.match(/certificate (has expired|is not yet valid)/i)?.[0] ?? ''})`,
        fix: "renew etcd's server certificate (or check this host's clock)",
        field: 'store-ca-file',
      };
    }
    if (/self[- ]signed certificate|unable to (verify|get local issuer)|certificate signature failure|UNABLE_TO_VERIFY|DEPTH_ZERO_SELF_SIGNED/i.test(msg) && !/alert/i.test(msg)) {
      return {
        problem: `etcd's server certificate at ${at} is not trusted (${this.caGiven ? 'not signed by the CA in --store-ca-file' : 'not signed by a system CA, and no --store-ca-file was given'})`,
        fix: "pass --store-ca-file with the CA that signed etcd's server certificate (--store-skip-tls-verify only for tests)",
        field: 'store-ca-file',
      };
    }
    if (/does not match certificate's altnames|altnames|ERR_TLS_CERT_ALTNAME_INVALID/i.test(msg)) {
      return {
        problem: `etcd's server certificate does not name the host in --store-endpoints ${at}`,
        fix: 'use an endpoint host or IP address the certificate names (its subjectAltName), or reissue the certificate with it',
        field: 'store-endpoints',
      };
    }
    if (this.tlsInUse && /alert (bad certificate|certificate required|unknown ca|certificate unknown|handshake failure)|alert number 4[2-8]|alert number 116|certificate required/i.test(msg)) {
      return {
        problem: `etcd at ${at} refused ${this.clientCertGiven ? 'the client certificate in --store-cert-file' : 'the connection: it requires a client certificate'}`,
        fix: "pass --store-cert-file and --store-key with a client certificate signed by a CA etcd trusts (its --trusted-ca-file), and that certificate's key",
        field: 'store-cert-file',
      };
    }
    return undefined;
  }

  // ---- clusterdata ----

  /** @inheritDoc */
  async getClusterData(): Promise<ClusterDataRecord | null> {
    this.handles.ensureOpen('getClusterData');
    const res = await this.call('get clusterdata', this.deadline(), (o) =>
      this.client.get(this.keys.clusterData).options(o).exec(),
    );
    const kv = res.kvs[0];
    return kv === undefined ? null : { text: kv.value.toString('utf8'), revision: kv.mod_revision };
  }

  /**
   * @inheritDoc
   * One Range from `<prefix>/<cluster>/clusterdata` up to the end of the proxy infos
   * (`<prefix>/<cluster>/proxies/info/` with its last byte raised): clusterdata, the keeper infos
   * and the proxy infos are the keys of the cluster in that range (the sentinel infos and the
   * leader keys sort after it); anything else found there is left out.
   */
  async readClusterView(): Promise<ClusterView> {
    this.handles.ensureOpen('readClusterView');
    const k = this.keys;
    const proxiesDir = k.infoDir('proxies');
    const end = `${proxiesDir.slice(0, -1)}${String.fromCharCode(proxiesDir.charCodeAt(proxiesDir.length - 1) + 1)}`;
    const res = await this.call('read clusterdata and infos', this.deadline(), (o) =>
      this.client.getAll().inRange({ start: k.clusterData, end }).options(o).exec(),
    );
    let clusterData: ClusterDataRecord | null = null;
    const infos = { keepers: {} as Record<string, KeeperInfo>, proxies: {} as Record<string, ProxyInfo> };
    for (const kv of res.kvs) {
      const key = kv.key.toString('utf8');
      if (key === k.clusterData) {
        clusterData = { text: kv.value.toString('utf8'), revision: kv.mod_revision };
        continue;
      }
      for (const kind of ['keepers', 'proxies'] as const) {
        const dir = k.infoDir(kind);
        if (key.startsWith(dir)) {
          try {
            infos[kind][key.slice(dir.length)] = parseInfoText(kv.value.toString('utf8')) as never;
          } catch {
            // Skipped, as listInfos skips it.
          }
        }
      }
    }
    return { clusterData, ...infos, revision: res.header.revision };
  }

  /**
   * @inheritDoc
   * With `leader`, the transaction also compares the create revision of the candidate's key
   * `<prefix>/<cluster>/sentinel-leader/<lease id hex>` with the one it was elected with: a key
   * that still exists with it is still the lowest, i.e. the leader.
   */
  async putClusterData(text: string, expectedRevision: string | null, leader?: Election): Promise<string> {
    this.handles.ensureOpen('putClusterData');
    if (expectedRevision !== null && !isPositiveRevision(expectedRevision)) {
      // Not a revision this backend hands out (e.g. from another backend): cannot match.
      throw new StoreConflictError(`clusterdata revision "${expectedRevision}" is not an etcd revision; read it and retry`, {
        revision: expectedRevision,
      });
    }
    const claim = leader === undefined ? undefined : this.leaderClaim(leader);
    const key = this.keys.clusterData;
    const res = await this.call('compare-and-set clusterdata', this.deadline(), (o) => {
      const cmp =
        expectedRevision === null ? this.client.if(key, 'Create', '==', 0) : this.client.if(key, 'Mod', '==', expectedRevision);
      if (claim !== undefined) {
        cmp.and(claim.key, 'Create', '==', claim.createRevision);
      }
      return cmp
        .then(this.client.put(key).value(text))
        .else(this.client.get(key), ...(claim === undefined ? [] : [this.client.get(claim.key)]))
        .options(o)
        .commit();
    });
    if (!res.succeeded) {
      if (claim !== undefined && res.responses[1]?.response_range?.kvs[0]?.create_revision !== claim.createRevision) {
        throw new NotLeaderError(
          `not the sentinel leader of ${this.clusterName} any more: its candidate key ${claim.key} is gone (lease expired or revoked); clusterdata not written`,
        );
      }
      const found = res.responses[0]?.response_range?.kvs[0]?.mod_revision;
      throw new StoreConflictError(
        expectedRevision === null
          ? `clusterdata of ${this.clusterName} already exists (revision ${found ?? '?'}); read it and retry`
          : `clusterdata of ${this.clusterName} changed: expected revision ${expectedRevision}, found ${found ?? 'none'}; read it and retry`,
        expectedRevision === null ? {} : { revision: expectedRevision },
      );
    }
    // The put is the transaction's only write, so the key's new mod revision is the header's.
    return res.header.revision;
  }

  /**
   * The candidate key and create revision of `leader`, an election of this client that leads.
   * @throws NotLeaderError otherwise.
   */
  private leaderClaim(leader: Election): { readonly key: string; readonly createRevision: string } {
    const backend = leader instanceof LeaderElection ? leader.backend : undefined;
    const claim = backend instanceof EtcdElectionBackend ? backend.claimOn(this) : undefined;
    if (claim === undefined) {
      throw new NotLeaderError(`the election given is not a candidacy of this etcd client for ${this.clusterName}; clusterdata not written`);
    }
    if (!leader.isLeader()) {
      throw new NotLeaderError(`not the sentinel leader of ${this.clusterName} (any more); clusterdata not written`);
    }
    return claim;
  }

  /** @inheritDoc */
  async overwriteClusterData(text: string): Promise<string> {
    this.handles.ensureOpen('overwriteClusterData');
    const res = await this.call('put clusterdata', this.deadline(), (o) =>
      this.client.put(this.keys.clusterData).value(text).options(o).exec(),
    );
    return res.header.revision;
  }

  // ---- infos ----

  /**
   * @inheritDoc
   * The TTL is `ceil(ttlMs / 1000)` seconds, at least 1, and etcd may raise it to its minimum
   * (2 s with default etcd timing). If etcd no longer knows the lease (it expired while etcd was
   * unreachable), a new one is granted within the same call.
   * @throws RangeError when `ttlMs` is not positive or `uid` is empty or contains `/`.
   */
  async setInfo<K extends InfoKind>(kind: K, uid: string, info: InfoTypes[K], ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    checkUid(uid);
    this.handles.ensureOpen('setInfo');
    const deadline = this.deadline();
    const k = `${kind}/${uid}`;
    const ttlSec = Math.max(1, Math.ceil(ttlMs / 1000));
    const key = this.keys.info(kind, uid);
    const value = JSON.stringify(info);
    await this.infoLocks.run(k, async () => {
      let stale: EtcdLease | undefined;
      for (let attempt = 0; ; attempt++) {
        let entry = this.infoLeases.get(k);
        if (entry !== undefined && (entry.ttlSec !== ttlSec || !entry.lease.alive())) {
          // TTL changed, or keepalives failed for a whole TTL: the key may be gone; use a new lease.
          stale = entry.lease;
          entry = undefined;
          this.infoLeases.delete(k);
        }
        if (entry === undefined) {
          const lease = await this.grantLease(ttlSec, deadline, `grant lease for ${kind} info ${uid}`);
          entry = { lease, ttlSec };
          this.infoLeases.set(k, entry);
        }
        const leaseId = entry.lease.id;
        try {
          await this.call(`put ${kind} info ${uid}`, deadline, (o) =>
            this.client.put(key).value(value).lease(leaseId).options(o).exec(),
          );
          entry.lease.renewIfOverdue();
          break;
        } catch (err) {
          if (attempt === 0 && err instanceof StoreUnavailableError && err.cause instanceof EtcdLeaseInvalidError) {
            // etcd already expired the lease (e.g. it was down longer than the TTL): one new grant.
            entry.lease.close();
            this.infoLeases.delete(k);
            continue;
          }
          throw err;
        }
      }
      if (stale !== undefined) {
        // Only now: the key moved to the new lease, so revoking the old one does not delete it.
        await stale.revoke(deadline).catch(() => undefined);
      }
    });
  }

  /** @inheritDoc */
  infoLeaseRemainingMs(kind: InfoKind, uid: string): number | undefined {
    const entry = this.infoLeases.get(`${kind}/${uid}`);
    return entry === undefined ? undefined : entry.lease.remainingMs();
  }

  /** @inheritDoc */
  async deleteInfo(kind: InfoKind, uid: string): Promise<void> {
    this.handles.ensureOpen('deleteInfo');
    const deadline = this.deadline();
    const k = `${kind}/${uid}`;
    await this.infoLocks.run(k, async () => {
      await this.call(`delete ${kind} info ${uid}`, deadline, (o) =>
        this.client.delete().key(this.keys.info(kind, uid)).options(o).exec(),
      );
      const entry = this.infoLeases.get(k);
      if (entry !== undefined) {
        this.infoLeases.delete(k);
        await entry.lease.revoke(deadline);
      }
    });
  }

  /** @inheritDoc */
  async listInfos<K extends InfoKind>(
    kind: K,
    onInvalid?: (uid: string, err: Error) => void,
  ): Promise<Record<string, InfoTypes[K]>> {
    this.handles.ensureOpen('listInfos');
    const dir = this.keys.infoDir(kind);
    const res = await this.call(`list ${kind} infos`, this.deadline(), (o) =>
      this.client.getAll().prefix(dir).options(o).exec(),
    );
    const out: Record<string, InfoTypes[K]> = {};
    for (const kv of res.kvs) {
      const uid = kv.key.toString('utf8').slice(dir.length);
      try {
        out[uid] = parseInfoText(kv.value.toString('utf8')) as InfoTypes[K];
      } catch (err) {
        onInvalid?.(uid, err instanceof Error ? err : new Error(String(err)));
      }
    }
    return out;
  }

  // ---- leases ----

  /**
   * Grants a lease of `ttlSec` seconds and starts keeping it alive.
   * @internal
   */
  async grantLease(ttlSec: number, deadline: number, what: string): Promise<EtcdLease> {
    const sentAt = monotonicMs();
    const res = await this.call(what, deadline, (o) => this.client.leaseClient.leaseGrant({ TTL: ttlSec, ID: 0 }, o));
    if (res.error) {
      throw new StoreUnavailableError(`etcd refused to ${what}: ${res.error}`);
    }
    const lease = new EtcdLease(this, res.ID, Number(res.TTL) * 1000, sentAt, (l) => this.leases.delete(l));
    if (this.handles.isClosed) {
      // close() ran meanwhile and will not see this lease.
      await lease.revoke(deadline).catch(() => undefined);
      throw this.handles.closedError(what);
    }
    this.leases.add(lease);
    return lease;
  }

  /**
   * One keepalive round trip for lease `id`, bounded by `timeoutMs`.
   * @internal
   */
  async keepaliveOnce(id: string, timeoutMs: number): Promise<ILeaseKeepAliveResponse> {
    const deadline = Date.now() + timeoutMs;
    return this.call(`keepalive lease ${id}`, deadline, async (o) => {
      const stream = await this.client.leaseClient.leaseKeepAlive(o);
      return new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
        stream.on('data', (res) => {
          resolve(res);
          // Half-close: etcd then ends the stream cleanly.
          stream.end();
        });
        stream.on('error', reject);
        stream.write({ ID: id });
      });
    });
  }

  // ---- watches ----

  /**
   * @inheritDoc
   * One etcd watcher per topic; resolves once all are established.
   * @throws StoreUnavailableError when the watchers are not established within `timeoutMs`.
   */
  async watch(topics: readonly WatchTopic[], listener: (topic: WatchTopic) => void): Promise<StoreWatch> {
    this.handles.ensureOpen('watch');
    const w = new EtcdWatch(this, [...new Set(topics)], listener, (x) => this.handles.forgetWatch(x));
    return this.handles.openWatch(w, () => this.call('establish watch', this.deadline(), () => w.established));
  }

  /** @inheritDoc */
  async watchInfoValues(
    topics: readonly WatchTopic[],
    listener: (topic: WatchTopic) => void,
    onInfo: (change: InfoChange) => void,
  ): Promise<StoreWatch> {
    this.handles.ensureOpen('watch');
    const w = new EtcdWatch(this, [...new Set(topics)], listener, (x) => this.handles.forgetWatch(x), onInfo);
    return this.handles.openWatch(w, () => this.call('establish watch', this.deadline(), () => w.established));
  }

  // ---- election ----

  /**
   * @inheritDoc
   * The lease TTL is `ceil(ttlMs / 1000)` seconds (etcd may raise it to its minimum); leadership
   * is reported lost once no keepalive was confirmed for 3/4 of the granted TTL.
   * @throws RangeError when `ttlMs` is not positive.
   */
  async campaign(candidateUid: string, ttlMs: number): Promise<Election> {
    return this.handles.campaign(ttlMs, () => new EtcdElectionBackend(this, candidateUid, Math.max(1, Math.ceil(ttlMs / 1000))));
  }

  /** @inheritDoc */
  async getLeader(): Promise<string | null> {
    this.handles.ensureOpen('getLeader');
    const kv = await this.firstCandidate(this.deadline());
    return kv === undefined ? null : kv.value.toString('utf8');
  }

  /** @internal The candidates under the election prefix, lowest create revision first. */
  async candidates(deadline: number): Promise<IKeyValue[]> {
    const res = await this.call('list sentinel-leader candidates', deadline, (o) =>
      this.client.getAll().prefix(`${this.keys.election}/`).sort('Create', 'Ascend').options(o).exec(),
    );
    return res.kvs;
  }

  private async firstCandidate(deadline: number): Promise<IKeyValue | undefined> {
    const res = await this.call('get sentinel-leader', deadline, (o) =>
      this.client.getAll().prefix(`${this.keys.election}/`).sort('Create', 'Ascend').limit(1).options(o).exec(),
    );
    return res.kvs[0];
  }

  // ---- lifecycle ----

  /**
   * @inheritDoc
   * Resigns elections, closes watches and revokes info leases in parallel (each bounded by
   * `timeoutMs`, failures ignored: unrevoked leases expire by TTL), then closes the client.
   */
  async close(): Promise<void> {
    if (!this.handles.markClosed()) {
      return;
    }
    const deadline = this.deadline();
    await Promise.all([
      this.handles.resignAndCloseAll(),
      ...[...this.infoLeases.values()].map((e) => e.lease.revoke(deadline).catch(() => undefined)),
    ]);
    this.infoLeases.clear();
    for (const l of this.leases) {
      l.close();
    }
    this.client.close();
  }

  /**
   * Test hook: stops this client as a crash would. Keepalives stop and the client closes, but
   * nothing is revoked or deleted: infos expire after their TTL, and a leadership held passes on
   * once its lease expires.
   */
  async abandon(): Promise<void> {
    if (!this.handles.markClosed()) {
      return;
    }
    this.handles.abandonElections();
    for (const l of this.leases) {
      l.close();
    }
    await this.handles.closeWatches();
    this.client.close();
  }
}

/**
 * An etcd lease kept alive by a keepalive every TTL/3 (every 250 ms after a failure); see
 * `KeptLease` for the timing rules.
 * @internal
 */
class EtcdLease extends KeptLease {
  constructor(
    private readonly store: EtcdStore,
    id: string,
    ttlMs: number,
    lastConfirmed: number,
    onClose: (l: KeptLease) => void,
  ) {
    super(id, ttlMs, lastConfirmed, store.timeoutMs, KEEPALIVE_RETRY_MS, onClose);
  }

  /** One keepalive; etcd answers TTL 0 for a lease it no longer knows. */
  protected async renewOnce(limitMs: number): Promise<boolean> {
    const res = await this.store.keepaliveOnce(this.id, limitMs);
    return Number(res.TTL) > 0;
  }

  /**
   * Stops keepalives and revokes the lease, deleting its keys. A lease etcd no longer knows is fine.
   * @throws StoreUnavailableError when etcd does not answer by `deadline`.
   */
  async revoke(deadline: number): Promise<void> {
    this.close();
    try {
      await this.store.call(`revoke lease ${this.id}`, deadline, (o) =>
        this.store.client.leaseClient.leaseRevoke({ ID: this.id }, o),
      );
    } catch (err) {
      if (err instanceof StoreUnavailableError && err.cause instanceof EtcdLeaseInvalidError) {
        return;
      }
      throw err;
    }
  }
}

const TOPIC_TARGET: Record<WatchTopic, (k: KeyLayout) => { key: string } | { prefix: string }> = {
  clusterdata: (k) => ({ key: k.clusterData }),
  keepers: (k) => ({ prefix: k.infoDir('keepers') }),
  sentinels: (k) => ({ prefix: k.infoDir('sentinels') }),
  proxies: (k) => ({ prefix: k.infoDir('proxies') }),
  'sentinel-leader': (k) => ({ prefix: `${k.election}/` }),
};

/** The watch topics whose keys are info entries. */
const INFO_TOPICS: ReadonlySet<WatchTopic> = new Set<WatchTopic>(['keepers', 'sentinels', 'proxies']);

/** Delay before re-creating a watcher that etcd cancelled (e.g. compaction), in ms. */
const REWATCH_MS = 500;

/**
 * Stops listening to an etcd3 watcher and cancels it; resolves once etcd answered, never
 * rejects. Not for a watcher etcd cancelled itself: etcd3 no longer tracks it, and cancelling
 * it makes etcd3 throw on the answer.
 */
function dropWatcher(w: Watcher): Promise<void> {
  w.removeAllListeners('data');
  w.removeAllListeners('connected');
  w.on('error', () => undefined);
  return w.cancel().catch(() => undefined);
}

/**
 * One etcd watcher per topic. A put or delete calls the listener; so does every reconnect after
 * the first connection and every watcher cancelled by etcd (which is then re-created), because
 * events may have been missed.
 * @internal
 */
class EtcdWatch implements StoreWatch {
  /** Resolves once every topic's watcher is connected for the first time. */
  readonly established: Promise<void>;
  private readonly dispatcher: TopicDispatcher;
  private readonly watchers = new Set<Watcher>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly store: EtcdStore,
    topics: readonly WatchTopic[],
    listener: (topic: WatchTopic) => void,
    private readonly onClose: (w: EtcdWatch) => void,
    /** Given every info put and delete with its value, and `resync` where events may have been missed. */
    private readonly onInfo?: (change: InfoChange) => void,
  ) {
    this.dispatcher = new TopicDispatcher(listener);
    this.established = Promise.all(topics.map((t) => this.open(t))).then(() => undefined);
  }

  /** Creates the watcher of `topic`; resolves on its first connection. */
  private open(topic: WatchTopic): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.closed) {
        resolve();
        return;
      }
      const target = TOPIC_TARGET[topic](this.store.keys);
      const builder = this.store.client.watch();
      const w = ('key' in target ? builder.key(target.key) : builder.prefix(target.prefix)).watcher();
      this.watchers.add(w);
      let connected = false;
      const kind = INFO_TOPICS.has(topic) && this.onInfo !== undefined ? (topic as InfoKind) : undefined;
      const dir = kind === undefined ? '' : this.store.keys.infoDir(kind);
      w.on('connected', () => {
        if (connected) {
          this.resync(kind);
          this.dispatcher.notify(topic);
        }
        connected = true;
        resolve();
      });
      w.on('data', (res) => {
        if (res.events.length > 0) {
          if (kind !== undefined) {
            for (const e of res.events) {
              const key = e.kv.key.toString('utf8');
              if (key.startsWith(dir)) {
                this.onInfo?.({ kind, uid: key.slice(dir.length), text: e.type === 'Delete' ? null : e.kv.value.toString('utf8'), revision: e.kv.mod_revision });
              }
            }
          }
          this.dispatcher.notify(topic);
        }
      });
      // Without an 'error' listener an EventEmitter error would crash the process.
      w.on('error', () => {
        // etcd cancelled the watcher (compaction, etc.) and etcd3 dropped it; re-create it. (No
        // w.cancel(): cancelling a watcher etcd3 no longer tracks makes it throw on the answer.)
        this.watchers.delete(w);
        if (this.closed) {
          return;
        }
        this.resync(kind);
        this.dispatcher.notify(topic);
        const t = setTimeout(() => {
          this.timers.delete(t);
          void this.open(topic);
        }, REWATCH_MS);
        this.timers.add(t);
      });
    });
  }

  /** Tells `onInfo` that events of `kind` may have been missed. */
  private resync(kind: InfoKind | undefined): void {
    if (kind !== undefined && !this.closed) {
      this.onInfo?.({ kind, resync: true });
    }
  }

  /** @inheritDoc */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.dispatcher.close();
    for (const t of this.timers) {
      clearTimeout(t);
    }
    this.onClose(this);
    const cancels = [...this.watchers].map((w) => dropWatcher(w));
    this.watchers.clear();
    // Cancelling waits for etcd's answer; bound it so close() never hangs on a dead etcd.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(cancels),
      new Promise<void>((r) => {
        timer = setTimeout(r, this.store.timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

/** Thrown inside an attempt when the candidacy is over (lease lost, key gone): handled as a failure. */
class CandidacyOver extends Error {}

/**
 * The etcd steps of a candidacy for the sentinel leader lease (the loop is `LeaderElection`):
 * grant a lease, create `<election prefix>/<lease id hex>` with the candidate uid, and be leader
 * while that key has the lowest create revision under the prefix and a keepalive was confirmed
 * within 3/4 of the TTL. A watcher on the prefix, keepalive results and a recheck every TTL/3
 * drive re-evaluation; the candidates are read again only after a watch event (or a new watch) or
 * once a TTL, since nothing else changes them (the keepalives alone say whether the lease lives,
 * and every clusterdata write is guarded by the candidate key anyway). A failed attempt, a lost lease or a vanished key ends the candidacy at
 * once: its lease is revoked (so the key does not block others until the TTL runs out) and,
 * after a pause of min(1 s, TTL/4), the next attempt starts over with a new lease.
 * @internal
 */
class EtcdElectionBackend implements ElectionBackend {
  /** The watcher is up before the candidates are read, and wakes the loop once connected. */
  readonly openWatch = 'before-attempts';
  /** The attempt scheduled for the end of validity reports the loss (as before the loop was shared). */
  readonly stepDownTimer = false;
  /** The lease of the current candidacy, undefined between candidacies. */
  private lease: EtcdLease | undefined;
  private key = '';
  /** The create revision of `key`, as last read; undefined between candidacies. */
  private createRevision: string | undefined;
  /** The revoke of the lease of a candidacy that just ended, until `recover` waited for it. */
  private giveUp: Promise<void> | undefined;
  /**
   * The candidates as last read and when (monotonic ms), reused by an attempt while the prefix
   * watch has reported nothing since the read (`candidatesStale`) and the read is younger than
   * the lease TTL: only a watch event (a key created or deleted, our own included) or a new watch
   * can change them. An idle leader reads them once a TTL instead of on every keepalive.
   */
  private candidatesRead: { readonly kvs: IKeyValue[]; readonly at: number } | undefined;
  private candidatesStale = true;

  constructor(
    private readonly store: EtcdStore,
    private readonly uid: string,
    private readonly ttlSec: number,
  ) {}

  leaderValidUntil(): number {
    return this.lease === undefined ? Number.NEGATIVE_INFINITY : this.lease.leaderValidUntil();
  }

  /**
   * What a write guarded by this candidacy compares: its key and that key's create revision, when
   * this backend belongs to `store` and a candidacy with a key runs; undefined otherwise.
   */
  claimOn(store: EtcdStore): { readonly key: string; readonly createRevision: string } | undefined {
    return store === this.store && this.lease !== undefined && this.createRevision !== undefined
      ? { key: this.key, createRevision: this.createRevision }
      : undefined;
  }

  /**
   * Starts a candidacy (grant, create the key) if none runs, then reads the candidates.
   * @throws StoreUnavailableError when etcd fails, and CandidacyOver when the lease was lost or
   *   the key vanished; either way the candidacy ended and its lease is being revoked.
   */
  async tryAcquireOrRenew(loop: ElectionLoop): Promise<ElectionAttempt> {
    let lease = this.lease;
    try {
      if (lease === undefined) {
        const granted = await this.store.grantLease(this.ttlSec, this.store.deadline(), 'grant sentinel-leader lease');
        if (loop.stopped()) {
          await granted.revoke(this.store.deadline()).catch(() => undefined);
          return { leader: false, nextMs: 0 };
        }
        lease = granted;
        this.lease = lease;
        lease.onUpdate(() => loop.wake());
        const key = `${this.store.keys.election}/${BigInt(lease.id).toString(16)}`;
        this.key = key;
        const id = lease.id;
        await this.store.call('create sentinel-leader candidate key', this.store.deadline(), (o) =>
          this.store.client
            .if(key, 'Create', '==', 0)
            .then(this.store.client.put(key).value(this.uid).lease(id))
            .options(o)
            .commit(),
        );
      }
      if (!lease.alive()) {
        throw new CandidacyOver('sentinel-leader lease lost');
      }
      const kvs = await this.readCandidates(lease.ttlMs);
      const mine = kvs.find((kv) => kv.key.toString('utf8') === this.key);
      if (mine === undefined) {
        throw new CandidacyOver('sentinel-leader candidate key gone'); // lease expired or key deleted
      }
      this.createRevision = mine.create_revision;
      const first = kvs[0];
      const validFor = lease.leaderValidUntil() - monotonicMs();
      const leader = first !== undefined && first.key.toString('utf8') === this.key && validFor > 0;
      const recheckMs = Math.max(100, lease.ttlMs / 3);
      // Wake up when leadership stops being valid, even if nothing else happens.
      return { leader, nextMs: leader ? Math.min(recheckMs, validFor + 1) : recheckMs };
    } catch (err) {
      this.candidatesRead = undefined;
      if (lease !== undefined && this.lease === lease) {
        this.lease = undefined;
        this.createRevision = undefined;
        if (!loop.stopped()) {
          // Give the key up now instead of letting it block others until the TTL runs out
          // (after a stop, release() revokes).
          this.giveUp = lease.revoke(this.store.deadline()).catch(() => undefined);
        }
      }
      throw err;
    }
  }

  /**
   * The candidates, lowest create revision first: read from etcd unless the last read is younger
   * than `maxAgeMs` and the prefix watch reported nothing since it was sent.
   * @throws StoreUnavailableError when etcd fails
   */
  private async readCandidates(maxAgeMs: number): Promise<IKeyValue[]> {
    const now = monotonicMs();
    const last = this.candidatesRead;
    if (last !== undefined && !this.candidatesStale && now - last.at < maxAgeMs) {
      return last.kvs;
    }
    // Cleared before the read: an event that arrives while it runs marks its answer stale.
    this.candidatesStale = false;
    this.candidatesRead = undefined;
    const kvs = await this.store.candidates(this.store.deadline());
    this.candidatesRead = { kvs, at: now };
    return kvs;
  }

  /** Waits for the revoke of the ended candidacy's lease; a new one starts after min(1 s, TTL/4). */
  async recover(): Promise<number> {
    const giveUp = this.giveUp;
    this.giveUp = undefined;
    await giveUp;
    return Math.min(CAMPAIGN_RETRY_MS, (this.ttlSec * 1000) / 4);
  }

  /**
   * Revokes the lease (deleting the candidate key), bounded by the store timeout. A grant in
   * flight at the stop is revoked by the attempt itself. Never throws: if etcd is unreachable
   * the key expires with the lease TTL instead.
   */
  async release(): Promise<void> {
    await this.lease?.revoke(this.store.deadline()).catch(() => undefined);
  }

  /** Stops keepalives without revoking: the candidate key stays until the lease expires. */
  abandon(): void {
    this.lease?.close();
  }

  /** Watches the election prefix so a resigned or expired leader is noticed at once. */
  async watch(wake: () => void, ended: () => void): Promise<StoreWatch> {
    const w = this.store.client.watch().prefix(`${this.store.keys.election}/`).watcher();
    // Any of these may mean the candidates changed (or changes were missed): read them again.
    const stale = (): void => {
      this.candidatesStale = true;
    };
    w.on('data', () => {
      stale();
      wake();
    });
    w.on('connected', () => {
      stale();
      wake();
    });
    // Cancelled by etcd and dropped by etcd3 (so never cancel() it); the loop opens another.
    w.on('error', () => {
      stale();
      ended();
    });
    return {
      close: async () => {
        stale();
        await dropWatcher(w);
      },
    };
  }
}
