/**
 * The HTTP layer of the Consul store: one `consul` (npm) client per endpoint, every call bounded
 * by the store timeout and mapped to our errors, the `X-Consul-Index` of reads, and the KV,
 * session and transaction calls the store makes (Consul HTTP API v1: /v1/kv, /v1/session,
 * /v1/txn; https://developer.hashicorp.com/consul/api-docs). Values travel as UTF-8 text.
 * @internal
 */
import { EventEmitter } from 'node:events';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { ConfigError, StolonError, StoreUnavailableError } from '@stolon-ts/cluster';
import Consul from 'consul';

/** TLS settings for `https://` Consul endpoints; every buffer holds PEM text. @internal */
export interface ConsulTlsOptions {
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
  readonly skipVerify?: boolean | undefined;
}

/** One KV entry as Consul returns it, with the value decoded to text. @internal */
interface ConsulKv {
  readonly key: string;
  readonly value: string;
  readonly modifyIndex: number;
  /** The session holding the key's lock, if any. */
  readonly session: string | undefined;
}

/** A read's entries and the `X-Consul-Index` it answered with (≥ 1). @internal */
export interface ConsulRead {
  readonly kvs: ConsulKv[];
  readonly index: number;
}

/** A transaction operation (the KV subset the store uses). @internal */
export type TxnOp =
  | { readonly verb: 'cas'; readonly key: string; readonly value: string; readonly index: number }
  | { readonly verb: 'set'; readonly key: string; readonly value: string }
  | { readonly verb: 'check-session'; readonly key: string; readonly session: string }
  | { readonly verb: 'lock' | 'unlock'; readonly key: string; readonly value: string; readonly session: string };

/** What a transaction did: the modify index of each KV it wrote, or the op that failed. @internal */
export type TxnResult = { readonly ok: true; readonly modifyIndexes: number[] } | { readonly ok: false; readonly failedOp: number; readonly what: string };

/** The smallest session TTL Consul accepts by default (its `session_ttl_min`), in seconds. */
const CONSUL_DEFAULT_TTL_MIN_SEC = 10;

interface RawKv {
  Key?: unknown;
  Value?: unknown;
  ModifyIndex?: unknown;
  Session?: unknown;
}

function decodeKv(raw: RawKv, base64: boolean): ConsulKv {
  const v = raw.Value;
  const text = typeof v === 'string' ? (base64 ? Buffer.from(v, 'base64').toString('utf8') : v) : Buffer.isBuffer(v) ? v.toString('utf8') : '';
  return {
    key: String(raw.Key ?? ''),
    value: text,
    modifyIndex: Number(raw.ModifyIndex ?? 0),
    session: typeof raw.Session === 'string' && raw.Session !== '' ? raw.Session : undefined,
  };
}

/** An EventEmitter papi accepts as request context: asks for the response, and can cancel. */
function requestContext(): EventEmitter & { includeResponse: true } {
  return Object.assign(new EventEmitter(), { includeResponse: true as const });
}

interface PapiResponse {
  statusCode?: number;
  headers?: Record<string, string | string[] | undefined>;
  body?: unknown;
}

function consulIndex(res: PapiResponse | undefined): number {
  const h = res?.headers?.['x-consul-index'];
  const n = Number(Array.isArray(h) ? h[0] : h);
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/**
 * The HTTP client of one Consul store. Endpoints are tried in order: a call that cannot reach
 * one (no HTTP answer) moves the next call to the next endpoint.
 * @internal
 */
export class ConsulHttp {
  private readonly clients: Consul[];
  private readonly agents: Array<HttpAgent | HttpsAgent> = [];
  private current = 0;
  /** The smallest session TTL the server accepts, in s, as learnt from its refusals. */
  private ttlMinSec = 1;

  /**
   * @param endpoints base URLs such as `http://127.0.0.1:8500` (no path).
   * @throws ConfigError (`store-endpoints`) for an endpoint that is not an http(s) URL, and when
   *   TLS material is given for an `http://` endpoint.
   */
  constructor(
    private readonly endpoints: readonly string[],
    readonly timeoutMs: number,
    private readonly token: string | undefined,
    tls: ConsulTlsOptions | undefined,
    private readonly base: string,
  ) {
    this.clients = endpoints.map((e) => {
      let url: URL;
      try {
        url = new URL(e);
      } catch {
        throw new ConfigError(`--store-endpoints: "${e}" is not a URL; give Consul's HTTP address, e.g. http://127.0.0.1:8500`, { field: 'store-endpoints' });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new ConfigError(`--store-endpoints: "${e}" is not http:// or https://; give Consul's HTTP address, e.g. http://127.0.0.1:8500`, { field: 'store-endpoints' });
      }
      const secure = url.protocol === 'https:';
      const wantsTls = tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined || tls.skipVerify === true);
      if (wantsTls && !secure) {
        throw new ConfigError(`--store-endpoints: ${e} is not https://, but TLS flags were given (--store-ca-file, --store-cert-file, --store-key, --store-skip-tls-verify); use https:// endpoints`, {
          field: 'store-endpoints',
        });
      }
      const agent = secure
        ? new HttpsAgent({
            keepAlive: true,
            ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
            ...(tls?.cert !== undefined ? { cert: tls.cert } : {}),
            ...(tls?.key !== undefined ? { key: tls.key } : {}),
            ...(tls?.skipVerify === true ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {}),
          })
        : new HttpAgent({ keepAlive: true });
      this.agents.push(agent);
      return new Consul({ baseUrl: `${url.origin}/v1`, agent, ...(token !== undefined ? { defaults: { token } } : {}) } as ConstructorParameters<typeof Consul>[0]);
    });
  }

  /** Closes idle keep-alive sockets; calls after this still work but open new sockets. */
  destroy(): void {
    for (const a of this.agents) {
      a.destroy();
    }
  }

  /**
   * Runs one request on the current endpoint with a client-side timeout of `timeoutMs` (or
   * `limitMs`), mapping every failure to a StolonError. `cancel` (if given) aborts it.
   * @returns the papi response and decoded body (or the body for a 404 is undefined).
   */
  private async send<T>(
    what: string,
    fn: (client: Consul, opts: { ctx: EventEmitter; timeout: number }) => Promise<unknown>,
    limitMs = this.timeoutMs,
    cancel?: AbortSignal,
  ): Promise<{ res: PapiResponse | undefined; body: T | undefined }> {
    const i = this.current;
    const client = this.clients[i] as Consul;
    const ctx = requestContext();
    const onAbort = (): void => {
      ctx.emit('cancel');
    };
    cancel?.addEventListener('abort', onAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      const work = fn(client, { ctx, timeout: limitMs });
      work.catch(() => undefined);
      const out = await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          // papi's own timeout covers the socket; this one covers everything else.
          timer = setTimeout(() => {
            ctx.emit('cancel');
            reject(new StoreUnavailableError(`Consul did not answer ${what} within ${limitMs} ms; check that Consul is up and reachable at ${this.endpoints[i] ?? ''}`));
          }, limitMs + 50);
        }),
      ]);
      if (Array.isArray(out)) {
        return { res: out[0] as PapiResponse | undefined, body: out[1] as T | undefined };
      }
      return { res: undefined, body: out as T | undefined };
    } catch (err) {
      throw this.mapError(what, err, i);
    } finally {
      clearTimeout(timer);
      cancel?.removeEventListener('abort', onAbort);
    }
  }

  /** Maps a papi/HTTP failure to a StolonError; moves to the next endpoint on a network error. */
  private mapError(what: string, err: unknown, i: number): StolonError {
    if (err instanceof StolonError) {
      if (this.current === i) {
        this.current = (i + 1) % this.clients.length;
      }
      return err;
    }
    const e = err as { message?: string; statusCode?: number; response?: PapiResponse; isResponse?: boolean };
    const at = this.endpoints[i] ?? '';
    const status = e.isResponse === true ? e.response?.statusCode : undefined;
    const body = typeof e.response?.body === 'string' ? e.response.body : Buffer.isBuffer(e.response?.body) ? e.response.body.toString('utf8') : '';
    if (status === 403 || status === 401) {
      return new StoreUnavailableError(
        `Consul refused ${what} (${status} ${body.trim() || 'permission denied'}): ${
          this.token === undefined ? 'no ACL token was given; pass --store-token-file (or the <PREFIX>_STORE_TOKEN variable)' : 'the ACL token in --store-token-file lacks permission'
        }; the token needs key_prefix "${this.base}/" write and session_prefix "" write`,
        { cause: err, field: 'store-token-file' },
      );
    }
    if (status === undefined && this.current === i) {
      this.current = (i + 1) % this.clients.length;
    }
    const detail = status === undefined ? (e.message ?? String(err)) : `HTTP ${status}${body.trim() === '' ? '' : `: ${body.trim().slice(0, 200)}`}`;
    return new StoreUnavailableError(`Consul ${what} failed (${detail.replace(/\s+/g, ' ')}); check that Consul is up and reachable at ${at}`, { cause: err });
  }

  /**
   * Reads `key` (or every key under it with `recurse`). With `index` > 0 it is a blocking query:
   * Consul answers once the index moved past `index`, or after `waitMs` (plus its jitter).
   * @returns the entries (none for a missing key) and the answer's index.
   */
  async read(key: string, opts: { recurse?: boolean; index?: number; waitMs?: number; cancel?: AbortSignal; consistent?: boolean } = {}): Promise<ConsulRead> {
    const blocking = opts.index !== undefined && opts.index > 0;
    const waitMs = opts.waitMs ?? 0;
    // Consul adds up to wait/16 of jitter to a blocking query.
    const limit = blocking ? waitMs + Math.ceil(waitMs / 16) + this.timeoutMs : this.timeoutMs;
    const { res, body } = await this.send<unknown>(
      `read ${key}`,
      (c, o) =>
        c.kv.get({
          key,
          ...(opts.recurse === true ? { recurse: true } : {}),
          ...(blocking ? { index: String(opts.index), wait: `${Math.ceil(waitMs / 1000)}s` } : {}),
          ...(opts.consistent === true ? { consistent: true } : {}),
          ...o,
        } as never),
      limit,
      opts.cancel,
    );
    const items = body === undefined || body === null ? [] : Array.isArray(body) ? body : [body];
    return { kvs: (items as RawKv[]).map((r) => decodeKv(r, false)), index: consulIndex(res) };
  }

  /**
   * `PUT /v1/kv/<key>?acquire=<session>` (or `release=`): takes (gives back) the key's lock for
   * `session` and writes `value`.
   * @returns whether Consul did it (false: another session holds the lock, or lock-delay).
   */
  async lock(verb: 'acquire' | 'release', key: string, value: string, session: string): Promise<boolean> {
    const { body } = await this.send<unknown>(`${verb} ${key}`, (c, o) => c.kv.set({ key, value, [verb]: session, ...o } as never));
    return body === true;
  }

  /** `DELETE /v1/kv/<key>`; a missing key is fine. */
  async delete(key: string): Promise<void> {
    await this.send(`delete ${key}`, (c, o) => c.kv.del({ key, ...o } as never));
  }

  /**
   * Runs a transaction (`PUT /v1/txn`): every op or none.
   * @returns the modify index of each KV op's entry, or which op failed (409 rolled back).
   */
  async txn(what: string, ops: readonly TxnOp[]): Promise<TxnResult> {
    const operations = ops.map((op) => ({
      KV: {
        Verb: op.verb,
        Key: op.key,
        ...('value' in op ? { Value: Buffer.from(op.value, 'utf8').toString('base64') } : {}),
        ...('index' in op ? { Index: op.index } : {}),
        ...('session' in op ? { Session: op.session } : {}),
      },
    }));
    try {
      const { body } = await this.send<{ Results?: Array<{ KV?: RawKv }> | null }>(what, (c, o) =>
        c.transaction.create(operations as never, o as never),
      );
      return { ok: true, modifyIndexes: (body?.Results ?? []).map((r) => Number(r.KV?.ModifyIndex ?? 0)) };
    } catch (err) {
      const res = (err as { cause?: { response?: PapiResponse } }).cause?.response;
      if (err instanceof StoreUnavailableError && res?.statusCode === 409) {
        const errors = (res.body as { Errors?: Array<{ OpIndex?: number; What?: string }> } | undefined)?.Errors ?? [];
        return { ok: false, failedOp: Number(errors[0]?.OpIndex ?? 0), what: String(errors[0]?.What ?? 'rolled back') };
      }
      throw err;
    }
  }

  /**
   * Creates a session (`PUT /v1/session/create`) with a TTL of at least `ttlSec`, raised to the
   * smallest TTL the server accepts (its `session_ttl_min`, learnt from the refusal Consul sends:
   * "Invalid Session TTL ..., must be between [min=max]").
   * @returns the session id and the TTL in seconds it was created with.
   */
  async createSession(name: string, ttlSec: number, behavior: 'release' | 'delete'): Promise<{ id: string; ttlSec: number }> {
    for (let attempt = 0; ; attempt++) {
      const ttl = Math.max(ttlSec, this.ttlMinSec);
      try {
        const { body } = await this.send<{ ID?: string }>(`create session ${name}`, (c, o) =>
          c.session.create({ name, ttl: `${ttl}s`, behavior, lockdelay: '0s', ...o } as never),
        );
        const id = body?.ID;
        if (typeof id !== 'string' || id === '') {
          throw new StoreUnavailableError(`Consul created session ${name} without an ID`);
        }
        return { id, ttlSec: ttl };
      } catch (err) {
        const min = attempt === 0 ? ttlMinFromRefusal(err) : undefined;
        if (min === undefined) {
          throw err;
        }
        this.ttlMinSec = Math.max(this.ttlMinSec, min);
      }
    }
  }

  /**
   * Renews `id` (`PUT /v1/session/renew/<id>`).
   * @returns the TTL in seconds Consul says it applies, or undefined when Consul no longer knows
   *   the session (404: it was invalidated).
   */
  async renewSession(id: string, limitMs: number): Promise<number | undefined> {
    try {
      const { body } = await this.send<Array<{ TTL?: string }>>(`renew session ${id}`, (c, o) => c.session.renew({ id, ...o, timeout: limitMs } as never), limitMs);
      const ttl = Array.isArray(body) ? body[0]?.TTL : undefined;
      const sec = typeof ttl === 'string' ? parseGoSeconds(ttl) : undefined;
      return sec ?? 1;
    } catch (err) {
      if (err instanceof StoreUnavailableError && (err.cause as { response?: PapiResponse } | undefined)?.response?.statusCode === 404) {
        return undefined;
      }
      throw err;
    }
  }

  /** Destroys `id` (`PUT /v1/session/destroy/<id>`): its locks are released or deleted per its behavior. */
  async destroySession(id: string): Promise<void> {
    await this.send(`destroy session ${id}`, (c, o) => c.session.destroy({ id, ...o } as never));
  }
}

/** Seconds in a Go duration such as `10s`, `1m0s` or `1h0m0s`; undefined if it does not parse. */
function parseGoSeconds(d: string): number | undefined {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(d.trim());
  if (m === null || d.trim() === '') {
    return undefined;
  }
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

/** The minimum TTL (s) in Consul's "Invalid Session TTL '…', must be between [10s=24h0m0s]" refusal. */
function ttlMinFromRefusal(err: unknown): number | undefined {
  const cause = (err as { cause?: { response?: PapiResponse; message?: string } }).cause;
  const body = cause?.response?.body;
  const text = `${typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('utf8') : ''} ${cause?.message ?? ''}`;
  const m = /Invalid Session TTL[^[]*\[([0-9hms.]+)=/i.exec(text);
  const sec = m?.[1] === undefined ? undefined : parseGoSeconds(m[1]);
  return sec === undefined ? (/Invalid Session TTL/i.test(text) ? CONSUL_DEFAULT_TTL_MIN_SEC : undefined) : Math.ceil(sec);
}
