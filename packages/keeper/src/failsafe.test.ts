/**
 * Failsafe mode's keeper side (failsafe.ts): what a keeper answers a primary that asks it to
 * confirm, the promise that answer makes, what the primary's keeper answers a proxy, and the
 * member API's authentication. The rounds against real keepers are in
 * test/e2e/store-outage.e2e.test.ts.
 */
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { resolveSpec, type ClusterData } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { memberRequest, silentLogger } from '@stolon-ts/common';
import { FAILED_ROUND_RETRY_MS, PROMISE_MARGIN_MS, answerConfirm, answerPrimary, answerStatus, newFailsafeState, promiseHold, startConfirmationRounds, startMemberApi } from './failsafe.js';
import type { KeeperRuntime } from './runtime.js';

const TOKEN = 'a'.repeat(40);
const TTL = 6000;

/** The parts of a runtime failsafe.ts reads, for keeper `uid` that last read `cd`. */
function runtime(uid: string, cd: ClusterData | undefined, opts: { isPrimary?: boolean; localUid?: string; failsafeMode?: boolean } = {}): KeeperRuntime {
  const spec = cd === undefined ? undefined : { ...resolveSpec(cd.cluster.spec), failsafeMode: opts.failsafeMode ?? true };
  return {
    config: { uid },
    lastCd: cd,
    spec,
    failsafe: newFailsafeState(),
    isPrimary: opts.isPrimary ?? false,
    local: { uid: opts.localUid ?? '', generation: 1 },
    infoTtlMs: () => TTL,
    log: silentLogger(),
    // A lease renewed on schedule: the store looks reachable.
    store: { infoLeaseRemainingMs: () => TTL },
  } as unknown as KeeperRuntime;
}

const cd = (): ClusterData => aCluster().initialized().withPrimary('k1').withStandby('k2').withStandby('k3').routedTo('k1', ['p1'], 2).build();
const ask = (c: ClusterData) => ({ clusterUID: c.cluster.uid, primaryKeeperUID: 'k1', primaryDbUID: 'db-k1' });

describe('answerConfirm', () => {
  it('confirms the primary its last clusterdata names, and promises not to become primary for failInterval + margin', () => {
    const c = cd();
    const rt = runtime('k2', c);
    expect(answerConfirm(rt, ask(c), 10_000)).toEqual({ confirm: true, keeperUID: 'k2', reason: 'confirms primary k1 (db db-k1)' });
    expect(rt.failsafe.promise).toEqual({ primaryKeeperUID: 'k1', until: 10_000 + TTL + PROMISE_MARGIN_MS });
    expect(promiseHold(rt, 10_000 + TTL + PROMISE_MARGIN_MS - 1)).toMatch(/confirmed primary k1 .* does not become primary for another 1 ms/);
    expect(promiseHold(rt, 10_000 + TTL + PROMISE_MARGIN_MS)).toBeUndefined();
  });

  it('a later answer extends the promise, an earlier time never shortens it', () => {
    const c = cd();
    const rt = runtime('k2', c);
    answerConfirm(rt, ask(c), 10_000);
    answerConfirm(rt, ask(c), 12_000);
    expect(rt.failsafe.promise?.until).toBe(12_000 + TTL + PROMISE_MARGIN_MS);
    answerConfirm(rt, ask(c), 11_000);
    expect(rt.failsafe.promise?.until).toBe(12_000 + TTL + PROMISE_MARGIN_MS);
  });

  it.each([
    ['another primary in its clusterdata', (c: ClusterData) => ({ ...ask(c), primaryKeeperUID: 'k3', primaryDbUID: 'db-k3' }), /names primary k1 \(db db-k1\)/],
    ['another cluster', (c: ClusterData) => ({ ...ask(c), clusterUID: 'other' }), /belongs to cluster/],
    ['the same keeper uid but another DB', (c: ClusterData) => ({ ...ask(c), primaryDbUID: 'db-old' }), /names primary k1/],
  ])('refuses %s, and promises nothing', (_what, req, reason) => {
    const c = cd();
    const rt = runtime('k2', c);
    const a = answerConfirm(rt, req(c), 10_000);
    expect(a.confirm).toBe(false);
    expect(a.reason).toMatch(reason);
    expect(rt.failsafe.promise).toBeUndefined();
  });

  it('before reading any clusterdata (started while the store is unreachable): confirms, with the promise, only for its own cluster', () => {
    const c = cd();
    const rt = runtime('k2', undefined);
    expect(answerConfirm(rt, ask(c), 1).reason).toMatch(/no clusterdata yet and its data directory is not of this cluster/);
    rt.local = { uid: 'db-k2', generation: 1, clusterUID: c.cluster.uid };
    expect(answerConfirm(rt, ask(c), 1)).toMatchObject({ confirm: true, reason: expect.stringMatching(/has read no clusterdata since it started/) as unknown });
    expect(rt.failsafe.promise?.until).toBe(1 + TTL + PROMISE_MARGIN_MS);
  });

  it('refuses with failsafeMode off, and to itself', () => {
    const c = cd();
    expect(answerConfirm(runtime('k2', c, { failsafeMode: false }), ask(c), 1).reason).toMatch(/failsafeMode is off/);
    expect(answerConfirm(runtime('k1', c), ask(c), 1).reason).toMatch(/does not confirm itself/);
  });
});

describe('answerPrimary (for proxies)', () => {
  it('holds while it runs the primary at that proxy generation with a fence deadline beyond the margin', () => {
    const rt = runtime('k1', cd(), { isPrimary: true, localUid: 'db-k1' });
    expect(answerPrimary(rt, 'db-k1', 2, 5000)).toEqual({ holds: true, remainingMs: 5000 - 1500, reason: 'primary db db-k1 at proxy generation 2' });
    expect(answerPrimary(rt, 'db-k1', 3, 5000).reason).toMatch(/proxy generation is 2 here, not 3/);
    expect(answerPrimary(rt, 'db-k2', 2, 5000).holds).toBe(false);
    expect(answerPrimary(rt, 'db-k1', 2, 1500)).toMatchObject({ holds: false, reason: expect.stringMatching(/about to fence/) as unknown });
    expect(answerPrimary(runtime('k1', cd(), { isPrimary: false, localUid: 'db-k1' }), 'db-k1', 2, 5000).holds).toBe(false);
  });
});

describe('answerStatus (for stolonctl status during an outage)', () => {
  it('the primary in a spell of rounds: the last round, its fence time; a standby: its promise', () => {
    const c = cd();
    const primary = runtime('k1', c, { isPrimary: true, localUid: 'db-k1' });
    (primary as unknown as { store: unknown }).store = { infoLeaseRemainingMs: () => 1000 };
    primary.failsafe.lastRound = { at: 9_700, confirmed: 1, of: 2, failures: ['k3: unreachable at 10.0.0.3:5433 (timeout)'] };
    expect(answerStatus(primary, 4321.4, 10_000)).toEqual({
      keeperUID: 'k1',
      clusterUID: c.cluster.uid,
      storeReachable: false,
      failsafeMode: true,
      primary: true,
      primaryKeeperUID: 'k1',
      lastRound: { agoMs: 300, confirmed: 1, of: 2, failures: ['k3: unreachable at 10.0.0.3:5433 (timeout)'] },
      fenceRemainingMs: 4321,
      promise: null,
    });
    const standby = runtime('k2', c);
    answerConfirm(standby, ask(c), 10_000);
    expect(answerStatus(standby, -Infinity, 11_000)).toMatchObject({
      storeReachable: true,
      primary: false,
      primaryKeeperUID: 'k1',
      lastRound: null,
      fenceRemainingMs: null,
      promise: { primaryKeeperUID: 'k1', remainingMs: TTL + PROMISE_MARGIN_MS - 1000 },
    });
  });
});

describe('member API', () => {
  it('answers only with the bearer token, validates the body, and serves its three endpoints', async () => {
    const c = cd();
    const rt = runtime('k2', c);
    const api = await startMemberApi(rt, { listen: { host: '127.0.0.1', port: 0 }, advertise: 'x', token: TOKEN }, () => 0);
    const addr = `127.0.0.1:${api.address.port}`;
    try {
      const wrong = await memberRequest(addr, '/failsafe/confirm', { token: 'b'.repeat(40), timeoutMs: 2000, method: 'POST', body: ask(c) });
      expect(wrong.status).toBe(401);
      expect(rt.failsafe.promise).toBeUndefined();
      const bad = await memberRequest(addr, '/failsafe/confirm', { token: TOKEN, timeoutMs: 2000, method: 'POST', body: { clusterUID: 1 } });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toMatch(/clusterUID/);
      const ok = await memberRequest(addr, '/failsafe/confirm', { token: TOKEN, timeoutMs: 2000, method: 'POST', body: ask(c) });
      expect(ok).toEqual({ status: 200, body: { confirm: true, keeperUID: 'k2', reason: 'confirms primary k1 (db db-k1)' } });
      const primary = await memberRequest(addr, '/failsafe/primary?db=db-k1&generation=2', { token: TOKEN, timeoutMs: 2000 });
      expect(primary.status).toBe(200);
      expect(primary.body).toMatchObject({ holds: false });
      expect((await memberRequest(addr, '/failsafe/primary?db=db-k1', { token: TOKEN, timeoutMs: 2000 })).status).toBe(400);
      const status = await memberRequest(addr, '/failsafe/status', { token: TOKEN, timeoutMs: 2000 });
      expect(status).toMatchObject({ status: 200, body: { keeperUID: 'k2', primary: false, primaryKeeperUID: 'k1' } });
      expect((await memberRequest(addr, '/failsafe/status', { token: 'x'.repeat(40), timeoutMs: 2000 })).status).toBe(401);
      expect((await memberRequest(addr, '/nope', { token: TOKEN, timeoutMs: 2000 })).status).toBe(404);
    } finally {
      await api.close();
    }
  });
});

describe('confirmation rounds', () => {
  it('come every sleepInterval while confirmed, and FAILED_ROUND_RETRY_MS after a round not every keeper confirmed', async () => {
    // k2's member API: refuses (503) until told to confirm; every request is timed.
    let confirm = false;
    const asked: number[] = [];
    const server = createServer((req, res) => {
      asked.push(performance.now());
      req.resume();
      res.writeHead(confirm ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(confirm ? { confirm: true, keeperUID: 'k2', reason: 'ok' } : { confirm: false, keeperUID: 'k2', reason: 'restarting' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const c = aCluster().initialized().withPrimary('k1').withStandby('k2').routedTo('k1', ['p1'], 2).build();
    c.keepers['k2']!.status.memberAddress = `127.0.0.1:${port}`;
    const rt = runtime('k1', c, { isPrimary: true, localUid: 'db-k1' });
    // The store looks unreachable (the lease keepalive overdue), the keeper runs, sleepInterval 1 s.
    Object.assign(rt, { state: 'running', sleepMs: () => 1000, store: { infoLeaseRemainingMs: () => 1000 } });
    const stop = startConfirmationRounds(rt, { listen: { host: '127.0.0.1', port: 0 }, advertise: '127.0.0.1:0', token: TOKEN });
    try {
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      await sleep(900);
      // Refused: asked again after ~250 ms each time, not after 1 s.
      expect(asked.length).toBeGreaterThanOrEqual(3);
      const gaps = asked.slice(1).map((t, i) => t - asked[i]!);
      expect(Math.max(...gaps)).toBeLessThan(FAILED_ROUND_RETRY_MS + 200);
      expect(rt.failsafe.confirmedUntil).toBe(-Infinity);
      confirm = true;
      await sleep(400);
      const confirmedAt = asked.length;
      expect(rt.failsafe.confirmedUntil).toBeGreaterThan(performance.now());
      // Confirmed: the next round only a sleepInterval after the last.
      await sleep(600);
      expect(asked.length).toBe(confirmedAt);
    } finally {
      stop();
      await new Promise((r) => server.close(r));
    }
  });
});
