/**
 * The member API's shared parts: the bearer token every member (keeper, proxy) presents, and the
 * small JSON client the primary's keeper and the proxies call other keepers with. The API serves
 * failsafe mode (docs/architecture.md, "Store outages: failsafe mode"): while the store cannot be
 * reached, the primary keeps its role only while every keeper confirms it over this API, and a
 * proxy keeps routing only while the primary's keeper confirms it still holds the role.
 *
 * The API is never open: every request carries `Authorization: Bearer <token>`, the same token on
 * every member (a file, e.g. a Kubernetes Secret, or an environment variable; never a flag), and a
 * member without a token does not serve it. Compared in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '@stolon-ts/cluster';

/** The shortest token accepted, in characters: 128 bits of hex. */
export const MIN_MEMBER_TOKEN_LENGTH = 32;

/**
 * Reads the member token: from `file` (trailing newline removed) when given, else from the
 * environment variable `envVar`. Returns undefined when neither is set (the member API is then off).
 * @param flag the flag naming the file (e.g. `member-token-file`), for error messages
 * @throws ConfigError naming `flag` when the file cannot be read, or the token is shorter than
 *   {@link MIN_MEMBER_TOKEN_LENGTH} characters or holds whitespace.
 */
export function readMemberToken(file: string | undefined, envVar: string, flag: string, env: NodeJS.ProcessEnv): string | undefined {
  let token: string | undefined;
  let from: string;
  if (file !== undefined && file !== '') {
    try {
      token = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new ConfigError(`--${flag}: cannot read ${file}: ${(err as Error).message}`, { field: flag, cause: err });
    }
    from = file;
  } else {
    token = env[envVar];
    from = envVar;
    if (token === undefined || token === '') {
      return undefined;
    }
  }
  if (token.length < MIN_MEMBER_TOKEN_LENGTH || /\s/.test(token)) {
    throw new ConfigError(
      `--${flag}: the member token in ${from} must be at least ${MIN_MEMBER_TOKEN_LENGTH} characters without whitespace ` +
        '(e.g. the output of `openssl rand -hex 32`), the same on every keeper and proxy',
      { field: flag },
    );
  }
  return token;
}

/**
 * Whether an `Authorization` header carries exactly `Bearer <token>` (constant-time comparison).
 * @param header the request's `authorization` header, if any
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A member API answer: the HTTP status and the parsed JSON body (undefined when not JSON). */
export interface MemberResponse {
  readonly status: number;
  readonly body: unknown;
}

/**
 * One member API call over plain HTTP: `method` on `http://<address><path>` with the bearer token
 * and an optional JSON body, bounded by `timeoutMs`.
 * @param address `host:port` (IPv6 hosts in brackets), as published in the keeper's info
 * @throws Error when the member cannot be reached, the call times out, or the address is invalid
 */
export async function memberRequest(
  address: string,
  path: string,
  opts: { readonly token: string; readonly timeoutMs: number; readonly method?: 'GET' | 'POST'; readonly body?: unknown },
): Promise<MemberResponse> {
  const res = await fetch(`http://${address}${path}`, {
    method: opts.method ?? 'GET',
    headers: {
      authorization: `Bearer ${opts.token}`,
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    signal: AbortSignal.timeout(opts.timeoutMs),
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body };
}

/**
 * What `GET /failsafe/status` answers (served by every keeper, read by `stolonctl status --member-address`
 * when the store cannot be read): this keeper's own view of failsafe mode. Durations in ms, relative to the answer.
 */
export interface MemberFailsafeStatus {
  readonly keeperUID: string;
  /** The cluster of the last clusterdata this keeper read, or of its data directory before that. */
  readonly clusterUID: string | null;
  /** False when this keeper's info lease keepalive is overdue (the store looks unreachable to it). */
  readonly storeReachable: boolean;
  /** The spec's `failsafeMode` as this keeper last read it (null before it read any). */
  readonly failsafeMode: boolean | null;
  /** Whether this keeper runs the primary. */
  readonly primary: boolean;
  /** The primary keeper its last clusterdata names, or null. */
  readonly primaryKeeperUID: string | null;
  /** The last confirmation round (primary only), or null when none ran since the store was last reachable. */
  readonly lastRound: { readonly agoMs: number; readonly confirmed: number; readonly of: number; readonly failures: readonly string[] } | null;
  /** How long PostgreSQL may keep running as the primary before the fencer stops it (primary only), else null. */
  readonly fenceRemainingMs: number | null;
  /** A primary this keeper confirmed and how long it still must not become primary itself, or null. */
  readonly promise: { readonly primaryKeeperUID: string; readonly remainingMs: number } | null;
}
