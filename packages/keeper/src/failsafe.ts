/**
 * Failsafe mode, the keeper's side (docs/architecture.md, "Store outages: failsafe mode"; the
 * idea is Patroni's `failsafe_mode`). Three parts:
 *
 * - **The member API** (`--member-listen-address`, bearer token from `--member-token-file` or
 *   `STKEEPER_MEMBER_TOKEN`; never served without a token): `POST /failsafe/confirm` from the
 *   primary's keeper, `GET /failsafe/primary` from the proxies, `GET /failsafe/status` from
 *   `stolonctl status --member-address` (this keeper's view, for an operator during an outage).
 * - **Confirmation rounds** on the primary's keeper while the store is unreachable (its info lease
 *   keepalive is overdue): every sleepInterval it asks every other keeper named in the last
 *   clusterdata it read. When all confirm, the fencer's deadline moves to the round's start +
 *   failInterval, exactly as a lease renewal sent then would move it; otherwise it is not moved
 *   and the primary fences itself when its lease could expire, as without failsafe mode.
 * - **The promise**: a keeper that confirms a primary promises not to become primary itself for
 *   failInterval + {@link PROMISE_MARGIN_MS} after answering, whatever clusterdata it reads then. The
 *   primary fences at the latest failInterval − the fence margin after the start of its last fully
 *   confirmed round, which precedes every answer of that round; so no keeper can be writable while
 *   a primary it confirmed still is. A keeper confirms only the primary its own last clusterdata
 *   names, so once the sentinel (with the store) names another, the rounds fail and the old
 *   primary fences.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';
import type { FailsafeEpisode } from '@stolon-ts/cluster';
import { bearerMatches, listenHttp, memberRequest, type ListenAddress, type MemberFailsafeStatus, type StatusServer } from '@stolon-ts/common';
import { fenceMarginMs } from './fencer.js';
import type { KeeperRuntime } from './runtime.js';

/** Added to failInterval for a confirming keeper's promise, in ms (timer lateness, clock rates). */
export const PROMISE_MARGIN_MS = 500;
/** How long one confirmation request may take, in ms (bounded further by sleepInterval). */
const CONFIRM_TIMEOUT_MS = 1000;
/**
 * After a round that not every keeper confirmed, the next one comes this soon, in ms (at most
 * sleepInterval), as a failed lease renewal is retried: the fence deadline is running out, and a
 * keeper that was restarting may answer a moment later.
 */
export const FAILED_ROUND_RETRY_MS = 250;
/** Largest request body accepted, in bytes. */
const MAX_BODY_BYTES = 4096;

/** The member API settings of a keeper. */
export interface MemberApiConfig {
  readonly listen: ListenAddress;
  /** `host:port` other keepers and proxies use; published in the keeper info. */
  readonly advertise: string;
  /** The shared bearer token; never logged. */
  readonly token: string;
}

/** What failsafe mode remembers between rounds and requests (monotonic ms). */
export interface FailsafeState {
  /** The fencer may keep PostgreSQL running until then on the strength of confirmations. */
  confirmedUntil: number;
  /** The last round: when it started, how many of how many keepers confirmed, who did not and why. */
  lastRound: { readonly at: number; readonly confirmed: number; readonly of: number; readonly failures: readonly string[] } | undefined;
  /** Whether the rounds are confirming (for logging the changes only). */
  confirming: boolean | undefined;
  /** A primary this keeper confirmed: it must not become primary itself before `until`. */
  promise: { readonly primaryKeeperUID: string; readonly until: number } | undefined;
  /** The spell of rounds running now (opened by the first round, closed when the store answers again). */
  spell: Omit<FailsafeEpisode, 'until'> | undefined;
  /** The last closed spell, published in the keeper info until the process ends (the sentinel records it). */
  lastEpisode: FailsafeEpisode | undefined;
}

export function newFailsafeState(): FailsafeState {
  return { confirmedUntil: -Infinity, lastRound: undefined, confirming: undefined, promise: undefined, spell: undefined, lastEpisode: undefined };
}

/** Notes a fence in the spell running now, if any (called when the fencer reports it fenced). */
export function noteFenced(fs: FailsafeState): void {
  if (fs.spell !== undefined) {
    fs.spell.fenced = true;
  }
}

const confirmRequest = z.strictObject({
  clusterUID: z.string().min(1),
  primaryKeeperUID: z.string().min(1),
  primaryDbUID: z.string().min(1),
});

/** The answer to a confirmation request. */
interface ConfirmAnswer {
  readonly confirm: boolean;
  readonly keeperUID: string;
  readonly reason: string;
}

/**
 * Answers a primary's confirmation request from this keeper's last clusterdata: yes only when
 * failsafe mode is on, the cluster is the same, and that clusterdata names the asking keeper's DB
 * as the primary (and not this keeper); or, before this keeper process read any clusterdata, when
 * its data directory belongs to the cluster. A yes records the promise (see the module header).
 */
export function answerConfirm(rt: KeeperRuntime, req: z.infer<typeof confirmRequest>, now: number): ConfirmAnswer {
  const uid = rt.config.uid;
  const no = (reason: string): ConfirmAnswer => ({ confirm: false, keeperUID: uid, reason });
  const cd = rt.lastCd;
  if (cd === undefined) {
    // Started while the store is unreachable: it follows no one yet, but it cannot become primary
    // without reading clusterdata, and it promises not to for failInterval after that.
    if (rt.local.clusterUID === undefined || rt.local.clusterUID !== req.clusterUID) {
      return no('this keeper has read no clusterdata yet and its data directory is not of this cluster');
    }
    promise(rt, req.primaryKeeperUID, now);
    return { confirm: true, keeperUID: uid, reason: `confirms primary ${req.primaryKeeperUID}: has read no clusterdata since it started` };
  }
  if (cd.cluster.uid !== req.clusterUID) {
    return no(`this keeper belongs to cluster ${cd.cluster.uid}, not ${req.clusterUID}`);
  }
  if (rt.spec?.failsafeMode !== true) {
    return no('failsafeMode is off in the cluster spec this keeper read last');
  }
  const master = cd.dbs[cd.cluster.status.master];
  if (master === undefined || master.uid !== req.primaryDbUID || master.spec.keeperUID !== req.primaryKeeperUID) {
    return no(`the last clusterdata this keeper read names primary ${master === undefined ? 'none' : `${master.spec.keeperUID} (db ${master.uid})`}`);
  }
  if (req.primaryKeeperUID === uid) {
    return no('a keeper does not confirm itself');
  }
  promise(rt, req.primaryKeeperUID, now);
  return { confirm: true, keeperUID: uid, reason: `confirms primary ${req.primaryKeeperUID} (db ${req.primaryDbUID})` };
}

/** Records (or extends) the promise not to become primary for failInterval + margin from `now`. */
function promise(rt: KeeperRuntime, primaryKeeperUID: string, now: number): void {
  const until = now + rt.infoTtlMs() + PROMISE_MARGIN_MS;
  const prev = rt.failsafe.promise;
  rt.failsafe.promise = { primaryKeeperUID, until: prev === undefined ? until : Math.max(prev.until, until) };
}

/**
 * Why this keeper must not become primary now: it confirmed another primary whose promise still
 * runs; undefined when free.
 */
export function promiseHold(rt: KeeperRuntime, now: number): string | undefined {
  const p = rt.failsafe.promise;
  if (p === undefined || now >= p.until) {
    return undefined;
  }
  return (
    `failsafe: this keeper confirmed primary ${p.primaryKeeperUID} while the store was unreachable and does not become primary ` +
    `for another ${Math.ceil(p.until - now)} ms (until that primary must have fenced itself)`
  );
}

/** The answer to a proxy asking whether this keeper still holds the primary role for `dbUid` at `generation`. */
interface PrimaryAnswer {
  readonly holds: boolean;
  /** How long the answer stays true at least, ms (0 when `holds` is false). */
  readonly remainingMs: number;
  readonly reason: string;
}

/**
 * Answers a proxy: yes while this keeper runs the primary of `dbUid`, its last clusterdata has proxy
 * generation `generation`, failsafe mode is on, and its fence deadline (`fenceRemainingMs`, from the
 * lease or from confirmations) is at least the fence margin away.
 */
export function answerPrimary(rt: KeeperRuntime, dbUid: string, generation: number, fenceRemainingMs: number): PrimaryAnswer {
  const no = (reason: string): PrimaryAnswer => ({ holds: false, remainingMs: 0, reason });
  if (rt.spec?.failsafeMode !== true) {
    return no('failsafeMode is off');
  }
  if (!rt.isPrimary || rt.local.uid !== dbUid) {
    return no(`this keeper does not run the primary db ${dbUid}`);
  }
  const gen = rt.lastCd?.proxy.generation;
  if (gen !== generation) {
    return no(`proxy generation is ${gen ?? 'unknown'} here, not ${generation}`);
  }
  const remainingMs = Math.floor(fenceRemainingMs - fenceMarginMs(rt.infoTtlMs()));
  if (remainingMs <= 0) {
    return no('the primary is about to fence itself (no lease and no confirmed failsafe round)');
  }
  return { holds: true, remainingMs, reason: `primary db ${dbUid} at proxy generation ${generation}` };
}

/** What `GET /failsafe/status` answers: {@link MemberFailsafeStatus} (common/member.ts). */
export type FailsafeStatusAnswer = MemberFailsafeStatus;

/** Builds the `GET /failsafe/status` answer from this keeper's runtime (`now`: monotonic ms). */
export function answerStatus(rt: KeeperRuntime, fenceRemainingMs: number, now: number): FailsafeStatusAnswer {
  const cd = rt.lastCd;
  const master = cd === undefined ? undefined : cd.dbs[cd.cluster.status.master];
  const fs = rt.failsafe;
  const reachable = !storeLooksUnreachable(rt);
  return {
    keeperUID: rt.config.uid,
    clusterUID: cd?.cluster.uid ?? rt.local.clusterUID ?? null,
    storeReachable: reachable,
    failsafeMode: rt.spec === undefined ? null : rt.spec.failsafeMode,
    primary: rt.isPrimary,
    primaryKeeperUID: master?.spec.keeperUID ?? null,
    lastRound:
      fs.lastRound === undefined || reachable
        ? null
        : { agoMs: Math.round(now - fs.lastRound.at), confirmed: fs.lastRound.confirmed, of: fs.lastRound.of, failures: fs.lastRound.failures },
    fenceRemainingMs: rt.isPrimary && Number.isFinite(fenceRemainingMs) ? Math.max(0, Math.round(fenceRemainingMs)) : null,
    promise:
      fs.promise === undefined || now >= fs.promise.until ? null : { primaryKeeperUID: fs.promise.primaryKeeperUID, remainingMs: Math.round(fs.promise.until - now) },
  };
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      throw new Error(`request body larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
}

async function handleMember(rt: KeeperRuntime, token: string, fenceRemainingMs: () => number, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (!bearerMatches(req.headers.authorization, token)) {
    sendJson(res, 401, { error: 'missing or wrong bearer token (the member token is the same on every keeper and proxy)' });
    return;
  }
  const url = new URL(req.url ?? '/', 'http://member');
  if (url.pathname === '/failsafe/confirm' && req.method === 'POST') {
    let parsed;
    try {
      parsed = confirmRequest.safeParse(await readBody(req));
    } catch (err) {
      sendJson(res, 400, { error: `invalid JSON body: ${(err as Error).message}` });
      return;
    }
    if (!parsed.success) {
      sendJson(res, 400, { error: `invalid confirmation request: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}` });
      return;
    }
    sendJson(res, 200, answerConfirm(rt, parsed.data, performance.now()));
    return;
  }
  if (url.pathname === '/failsafe/primary' && req.method === 'GET') {
    const db = url.searchParams.get('db') ?? '';
    const generation = Number(url.searchParams.get('generation') ?? 'missing');
    if (db === '' || !Number.isSafeInteger(generation) || generation < 0) {
      sendJson(res, 400, { error: 'query parameters db (a DB uid) and generation (a non-negative integer) are required' });
      return;
    }
    sendJson(res, 200, answerPrimary(rt, db, generation, fenceRemainingMs()));
    return;
  }
  if (url.pathname === '/failsafe/status' && req.method === 'GET') {
    sendJson(res, 200, answerStatus(rt, fenceRemainingMs(), performance.now()));
    return;
  }
  sendJson(res, 404, {
    error: `no such endpoint ${req.method ?? '?'} ${url.pathname}: POST /failsafe/confirm, GET /failsafe/primary or GET /failsafe/status`,
  });
}

/** A running member API (the same handle as the status endpoint's). */
type MemberApi = StatusServer;

/**
 * Starts the member API and resolves once it listens.
 * @param fenceRemainingMs this keeper's fence deadline, ms from now (watchers.ts)
 * @throws Error the listen error (e.g. EADDRINUSE); the caller names its flag
 */
export function startMemberApi(rt: KeeperRuntime, cfg: MemberApiConfig, fenceRemainingMs: () => number): Promise<MemberApi> {
  const server: Server = createServer((req, res) => {
    handleMember(rt, cfg.token, fenceRemainingMs, req, res).catch((err: unknown) => {
      rt.log.warn({ err }, 'member API request failed');
      if (!res.headersSent) {
        sendJson(res, 500, { error: 'internal error' });
      }
    });
  });
  server.requestTimeout = 5000;
  server.headersTimeout = 5000;
  server.keepAliveTimeout = 5000;
  return listenHttp(server, cfg.listen, 'all');
}

/**
 * Whether the store looks unreachable to this keeper: its info lease keepalive, sent every TTL/3,
 * is more than 500 ms overdue, or there is no lease.
 */
function storeLooksUnreachable(rt: KeeperRuntime): boolean {
  const lease = rt.store.infoLeaseRemainingMs('keepers', rt.config.uid);
  return lease === undefined || lease < (rt.infoTtlMs() * 2) / 3 - 500;
}

/**
 * One confirmation round: asks every other keeper of the last clusterdata, in parallel; when all
 * confirm, moves `confirmedUntil` to the round's start + failInterval. Logs when the outcome changes.
 * @returns whether every keeper confirmed; undefined when there was no clusterdata to ask from
 */
async function confirmationRound(rt: KeeperRuntime, cfg: MemberApiConfig): Promise<boolean | undefined> {
  const cd = rt.lastCd;
  if (cd === undefined) {
    return undefined;
  }
  const startedAt = performance.now();
  const others = Object.values(cd.keepers).filter((k) => k.uid !== rt.config.uid);
  const timeoutMs = Math.min(CONFIRM_TIMEOUT_MS, rt.sleepMs());
  const body = { clusterUID: cd.cluster.uid, primaryKeeperUID: rt.config.uid, primaryDbUID: rt.local.uid };
  const failures = (
    await Promise.all(
      others.map(async (k): Promise<string | undefined> => {
        const addr = k.status.memberAddress;
        if (addr === undefined || addr === '') {
          return `${k.uid}: publishes no member address (no --member-listen-address)`;
        }
        try {
          const r = await memberRequest(addr, '/failsafe/confirm', { token: cfg.token, timeoutMs, method: 'POST', body });
          const a = r.body as Partial<ConfirmAnswer> | undefined;
          if (r.status !== 200 || a?.confirm !== true) {
            return `${k.uid}: ${typeof a?.reason === 'string' ? a.reason : `HTTP ${r.status}`}`;
          }
          return undefined;
        } catch (err) {
          return `${k.uid}: unreachable at ${addr} (${(err as Error).message})`;
        }
      }),
    )
  ).filter((f): f is string => f !== undefined);
  const fs = rt.failsafe;
  fs.lastRound = { at: startedAt, confirmed: others.length - failures.length, of: others.length, failures };
  const ok = failures.length === 0;
  fs.spell ??= { keeperUID: rt.config.uid, since: new Date().toISOString(), rounds: 0, confirmedRounds: 0, members: others.length, fenced: false };
  fs.spell.rounds += 1;
  fs.spell.members = others.length;
  if (ok) {
    fs.spell.confirmedRounds += 1;
  } else {
    fs.spell.lastFailure = failures.join('; ');
  }
  if (ok) {
    fs.confirmedUntil = Math.max(fs.confirmedUntil, startedAt + rt.infoTtlMs());
  }
  if (ok !== fs.confirming) {
    fs.confirming = ok;
    if (ok) {
      rt.log.warn({ confirmed: others.length }, `store unreachable, failsafe: primary confirmed by ${others.length}/${others.length} members; keeping the primary role`);
    } else {
      rt.log.warn(
        { confirmed: others.length - failures.length, of: others.length, failures },
        `store unreachable, failsafe: primary confirmed by ${others.length - failures.length}/${others.length} members (${failures.join('; ')}); ` +
          'it fences itself when its lease could expire',
      );
    }
  }
  return ok;
}

/**
 * Runs confirmation rounds every sleepInterval while this keeper runs the primary, failsafe mode is
 * on and the store looks unreachable (one round at a time); after a round that not every keeper
 * confirmed, the next one comes {@link FAILED_ROUND_RETRY_MS} after it ended.
 * @returns a function that stops the timer
 */
export function startConfirmationRounds(rt: KeeperRuntime, cfg: MemberApiConfig): () => void {
  let running = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    timer = setTimeout(tick, rt.sleepMs());
    timer.unref();
    if (running || rt.state !== 'running' || !rt.isPrimary || rt.spec?.failsafeMode !== true || !storeLooksUnreachable(rt)) {
      const fs = rt.failsafe;
      if (!storeLooksUnreachable(rt) && fs.spell !== undefined) {
        fs.lastEpisode = { ...fs.spell, until: new Date().toISOString() };
        fs.spell = undefined;
        fs.confirming = undefined;
        fs.lastRound = undefined;
        rt.log.info(
          { episode: fs.lastEpisode },
          `store reachable again: failsafe confirmation rounds stop (${fs.lastEpisode.confirmedRounds}/${fs.lastEpisode.rounds} rounds confirmed by all ` +
            `${fs.lastEpisode.members} members since ${fs.lastEpisode.since})`,
        );
      }
      return;
    }
    running = true;
    const scheduledAt = performance.now() + rt.sleepMs();
    void confirmationRound(rt, cfg)
      .catch((err: unknown) => {
        rt.log.warn({ err }, 'failsafe confirmation round failed');
        return false;
      })
      .then((ok) => {
        running = false;
        const retryAt = performance.now() + Math.min(FAILED_ROUND_RETRY_MS, rt.sleepMs());
        if (ok === false && !stopped && retryAt < scheduledAt) {
          clearTimeout(timer);
          timer = setTimeout(tick, retryAt - performance.now());
          timer.unref();
        }
      });
  };
  let stopped = false;
  timer = setTimeout(tick, 0);
  timer.unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
