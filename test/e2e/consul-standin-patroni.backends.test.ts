/**
 * An independent check of the harness's Consul stand-in (test/harness/src/consul-standin.ts):
 * Patroni 3.0.2 (Debian's `patroni`, whose Consul DCS is built on python-consul) runs a 2-node
 * PostgreSQL 15 cluster with the stand-in as its DCS, ACLs on (Patroni sends the token as
 * `X-Consul-Token`), and fails over when its leader is killed (SIGKILL of the leader's Patroni and
 * its postmaster). Where Patroni and the stand-in disagree, the stand-in is wrong.
 *
 * Timings: Patroni ttl 10 s, loop_wait 2 s, retry_timeout 4 s; Patroni asks Consul for a session
 * TTL of ttl / 2 = 5 s, so the stand-in runs with `session_ttl_min` 5 s (Consul's default is
 * 10 s; it is a server setting). The dead leader's session is invalidated TTL × 2 = 10 s after its
 * last renewal, which deletes the leader key (Patroni's sessions have behavior `delete`), and the
 * replica, blocked on the leader key, takes over. Then the killed node comes back as a replica and
 * a switchover (Patroni's REST API) moves the leader key back with a delete-cas and an acquire.
 * Needs root (PostgreSQL runs as the `postgres` OS user) and Patroni 3.0.2 (scripts/setup.sh
 * installs it). About 60 s.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir, startConsulStandin, type ConsulStandin } from '@stolon-ts/harness';
import { patroniUnavailableReason, startPatroniEnv, type PatroniEnv } from '../bench/src/patroni.js';

const TOKEN = 'patroni-consul-token';
/** Patroni's `scope` in test/bench/src/patroni.ts; its keys live under `service/<scope>/`. */
const PREFIX = 'service/bench/';

describe('Patroni 3.0.2 with the Consul stand-in as its DCS', () => {
  let consul: ConsulStandin | undefined;
  let env: PatroniEnv | undefined;
  let dir: string | undefined;

  beforeAll(async () => {
    const why = await patroniUnavailableReason(false);
    if (why !== undefined) {
      throw new Error(`cannot run Patroni here: ${why}`);
    }
    consul = await startConsulStandin({ aclToken: TOKEN, sessionTtlMin: '5s' });
    dir = await makeTempDir('stolon-consul-patroni-e2e-');
    env = await startPatroniEnv({
      dir,
      timings: { ttl: 10, loopWait: 2, retryTimeout: 4 },
      haproxy: null,
      consul: { host: `127.0.0.1:${consul.port}`, token: TOKEN },
      startTimeoutMs: 60_000,
    });
  }, 90_000);

  afterAll(async () => {
    await env?.stop();
    await consul?.close();
    if (dir !== undefined) {
      await removeDir(dir);
    }
  }, 60_000);

  it('bootstraps: one leader holding the leader key with its session, both members registered', () => {
    const c = consul!;
    const leader = c.getKey(`${PREFIX}leader`);
    expect(leader?.value.toString()).toBe('patroni0');
    expect(leader?.session).toBeDefined();
    expect(c.sessionIds()).toContain(leader?.session);
    for (const m of ['patroni0', 'patroni1']) {
      const member = c.getKey(`${PREFIX}members/${m}`);
      expect(member?.session, `${m} registered with a session`).toBeDefined();
      expect(JSON.parse(member!.value.toString()) as Record<string, unknown>).toHaveProperty('role');
    }
    expect(c.getKey(`${PREFIX}initialize`)?.value.toString()).toMatch(/^\d+$/);
    const log = c.requestLog();
    // Patroni's requests, all carrying the token (anonymous or unknown ones would have been refused).
    expect(log.some((l) => l.startsWith('PUT /v1/session/create'))).toBe(true);
    expect(log.some((l) => l.startsWith('PUT /v1/session/renew/'))).toBe(true);
    expect(log.some((l) => /^PUT \/v1\/kv\/service\/bench\/leader\?acquire=/.test(l))).toBe(true);
    expect(log.some((l) => /^GET \/v1\/kv\/service\/bench\/leader\?(.*&)?index=\d+/.test(l))).toBe(true);
    expect(env!.logs()).not.toMatch(/ACL not found|Permission denied|Invalid Session TTL|Traceback/);
  });

  it('fails over when the leader is killed, once the stand-in has invalidated its session', async () => {
    const c = consul!;
    const e = env!;
    const old = await e.leaderIndex();
    expect(old).toBeGreaterThanOrEqual(0);
    const oldName = `patroni${old}`;
    const oldSession = c.getKey(`${PREFIX}leader`)?.session;
    expect(c.getKey(`${PREFIX}leader`)?.value.toString()).toBe(oldName);
    const t0 = Date.now();
    await e.killNode(old);
    let sessionGoneAt = 0;
    let promotedAt = 0;
    while (Date.now() - t0 < 45_000 && promotedAt === 0) {
      if (sessionGoneAt === 0 && !c.sessionIds().includes(oldSession ?? '')) {
        sessionGoneAt = Date.now();
      }
      if ((await e.leaderIndex()) === 1 - old) {
        promotedAt = Date.now();
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const logTail = e.logs().split('\n').slice(-60).join('\n');
    expect(promotedAt, `no new leader within 45 s; logs:\n${logTail}`).toBeGreaterThan(0);
    expect(sessionGoneAt, 'the dead leader session was invalidated').toBeGreaterThan(0);
    // The dead session was renewed about one loop (2 s, more on a busy machine) before the kill
    // and lives TTL × 2 = 10 s past its last renewal (8.3 s after the kill when tried): a stand-in
    // expiring at TTL × 1 would have let go of it within 5 s.
    expect(sessionGoneAt - t0).toBeGreaterThan(5_500);
    expect(sessionGoneAt - t0).toBeLessThan(12_500);
    expect(promotedAt).toBeGreaterThanOrEqual(sessionGoneAt - 250);
    const leader = c.getKey(`${PREFIX}leader`);
    expect(leader?.value.toString()).toBe(`patroni${1 - old}`);
    expect(leader?.session).not.toBe(oldSession);
    // behavior delete: the dead node's member key went with its session
    expect(c.getKey(`${PREFIX}members/${oldName}`)).toBeUndefined();
    expect(e.logs()).not.toMatch(/ACL not found|Permission denied|Invalid Session TTL/);
  }, 60_000);

  it('takes the killed node back as a replica, and a switchover hands the leader key back to it', async () => {
    const c = consul!;
    const e = env!;
    const leaderNow = await e.leaderIndex();
    const back = 1 - leaderNow;
    await e.startNode(back);
    expect(await e.waitHealthy(40_000), `patroni${back} did not rejoin; logs:\n${e.logs().split('\n').slice(-40).join('\n')}`).not.toBeNull();
    expect(c.getKey(`${PREFIX}members/patroni${back}`)?.session).toBeDefined();
    const logBefore = c.requestLog().length;
    const res = await fetch(`http://127.0.0.1:${e.nodes[leaderNow]!.restPort}/switchover`, {
      method: 'POST',
      body: JSON.stringify({ leader: `patroni${leaderNow}`, candidate: `patroni${back}` }),
      signal: AbortSignal.timeout(40_000),
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    const until = Date.now() + 20_000;
    while (Date.now() < until && (await e.leaderIndex()) !== back) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await e.leaderIndex()).toBe(back);
    expect(c.getKey(`${PREFIX}leader`)?.value.toString()).toBe(`patroni${back}`);
    // The old leader gave the key up with a delete-cas, the candidate took it with its session at
    // once (no lock-delay after a delete), through the failover key Patroni writes.
    const during = c.requestLog().slice(logBefore);
    expect(during).toContain(`PUT /v1/kv/${PREFIX}failover`);
    const del = during.findIndex((l) => new RegExp(`^DELETE /v1/kv/${PREFIX}leader\\?cas=\\d+$`).test(l));
    expect(del).toBeGreaterThanOrEqual(0);
    expect(during.slice(del).some((l) => l.startsWith(`PUT /v1/kv/${PREFIX}leader?acquire=`))).toBe(true);
    expect(e.logs()).not.toMatch(/ACL not found|Permission denied|Invalid Session TTL/);
  }, 90_000);
});
