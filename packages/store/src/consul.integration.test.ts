/**
 * ConsulStore against the Consul stand-in of `@stolon-ts/harness` (no Consul server can be
 * installed on this machine; the stand-in is checked with python3-consul and Patroni in its own
 * tests): the conformance suite, then what is specific to the backend (the keys and sessions it
 * writes, takeover of a crashed predecessor's info, the server's minimum session TTL, the
 * election check inside the clusterdata transaction, ACL tokens, watches across an outage).
 * Nothing here ran against a real Consul.
 */
import { NotLeaderError, StoreUnavailableError } from '@stolon-ts/cluster';
import type { KeeperInfo } from '@stolon-ts/cluster';
import { startConsulStandin, waitFor, type ConsulStandin } from '@stolon-ts/harness';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeStoreConformance } from '../test/conformance.js';
import { ConsulStore } from './consul.js';
import type { Store, WatchTopic } from './store.js';

const PREFIX = 'stolon/cluster';

/** Writes `value` at `key` through the stand-in's HTTP API, as another Consul client would. */
async function rawPut(api: ConsulStandin, key: string, value: string, token?: string): Promise<void> {
  const res = await fetch(`${api.url}/v1/kv/${key}`, { method: 'PUT', body: value, headers: token === undefined ? {} : { 'X-Consul-Token': token } });
  expect(res.status).toBe(200);
}

/** GETs a Consul API path from the stand-in and returns the decoded JSON (null for a 404). */
async function rawGet(api: ConsulStandin, path: string, token?: string): Promise<unknown> {
  const res = await fetch(`${api.url}${path}`, { headers: token === undefined ? {} : { 'X-Consul-Token': token } });
  return res.status === 404 ? null : res.json();
}

describeStoreConformance('consul (stand-in Consul API)', async () => {
  // Consul's own minimum session TTL is 10 s (its session_ttl_min setting); 1 s keeps the suite short.
  const api = await startConsulStandin({ sessionTtlMin: '1s' });
  return {
    store: (clusterName) => new ConsulStore({ endpoints: [api.url], clusterName, timeoutMs: 3000, watchWaitMs: 5000 }),
    writeRawInfo: (clusterName, kind, uid, text) => rawPut(api, `${PREFIX}/${clusterName}/${kind}/info/${uid}`, text),
    crash: async (store) => (store as ConsulStore).abandon(),
    ttlMs: 1000,
    // Consul invalidates a session between TTL and 2×TTL after its last renewal.
    expirySlackMs: 3000,
    cleanup: () => api.close(),
  };
});

const keeperInfo = (uid: string, infoUID = 'i1'): KeeperInfo => ({ infoUID, uid, clusterUID: 'cu1', bootUUID: 'b1', postgresBinaryVersion: { Maj: 15, Min: 0 } });

describe('ConsulStore on the stand-in: what is specific to Consul', () => {
  let api: ConsulStandin;
  let opened: Store[] = [];
  let n = 0;
  const cluster = (): string => `consul-${process.pid}-${++n}`;
  const open = (clusterName: string, opts: { token?: string; timeoutMs?: number; endpoints?: string[] } = {}): ConsulStore => {
    const s = new ConsulStore({ endpoints: opts.endpoints ?? [api.url], clusterName, timeoutMs: opts.timeoutMs ?? 2000, watchWaitMs: 3000, token: opts.token });
    opened.push(s);
    return s;
  };

  beforeAll(async () => {
    api = await startConsulStandin({ sessionTtlMin: '1s' });
  });
  afterEach(async () => {
    await api.setFault(null);
    const stores = opened;
    opened = [];
    await Promise.all(stores.map((s) => s.close()));
  });
  afterAll(async () => {
    await api?.close();
  });

  it('keeps Stolon\'s key layout: infos bound to a delete-behaviour session, clusterdata a plain key', async () => {
    const c = cluster();
    const s = open(c);
    await s.setInfo('keepers', 'k1', keeperInfo('k1'), 2000);
    await s.putClusterData('{"v":1}', null);
    const info = (await rawGet(api, `/v1/kv/${PREFIX}/${c}/keepers/info/k1`)) as Array<{ Session?: string; Value: string }>;
    expect(JSON.parse(Buffer.from(info[0]?.Value ?? '', 'base64').toString())).toEqual(keeperInfo('k1'));
    const sessionId = info[0]?.Session ?? '';
    expect(sessionId).not.toBe('');
    const session = (await rawGet(api, `/v1/session/info/${sessionId}`)) as Array<{ Behavior: string; TTL: string; LockDelay: number }>;
    expect(session[0]).toMatchObject({ Behavior: 'delete', TTL: '2s', LockDelay: 0 });
    const cd = (await rawGet(api, `/v1/kv/${PREFIX}/${c}/clusterdata`)) as Array<{ Session?: string }>;
    expect(cd[0]?.Session).toBeUndefined();
  });

  it('a restarted process takes over the info key its crashed predecessor still holds, at once and without the key ever disappearing', async () => {
    const c = cluster();
    const key = `${PREFIX}/${c}/keepers/info/k1`;
    const first = new ConsulStore({ endpoints: [api.url], clusterName: c, timeoutMs: 2000 });
    await first.setInfo('keepers', 'k1', keeperInfo('k1', 'old'), 20_000);
    const created = api.getKey(key);
    await first.abandon(); // its session lives on for 20–40 s
    const second = open(c);
    await second.setInfo('keepers', 'k1', keeperInfo('k1', 'new'), 20_000);
    expect(await second.listInfos('keepers')).toEqual({ k1: keeperInfo('k1', 'new') });
    // Moved from one session to the other in one transaction: the same entry (a delete and a
    // new create would give a new CreateIndex, and a sentinel reading in between a lost keeper).
    const after = api.getKey(key);
    expect(after?.createIndex).toBe(created?.createIndex);
    expect(after?.session).not.toBe(created?.session);
    expect(api.sessionIds()).not.toContain(created?.session);
  });

  it('raises the session TTL to the server\'s minimum (learnt from Consul\'s refusal) and reports the lease from it', async () => {
    const strict = await startConsulStandin({ sessionTtlMin: '10s' });
    try {
      const s = new ConsulStore({ endpoints: [strict.url], clusterName: cluster(), timeoutMs: 2000 });
      opened.push(s);
      await s.setInfo('proxies', 'p1', { infoUID: 'x', UID: 'p1', Generation: 1, ProxyTimeout: 1 }, 3000);
      const remaining = s.infoLeaseRemainingMs('proxies', 'p1') ?? 0;
      expect(remaining).toBeGreaterThan(9000);
      expect(remaining).toBeLessThanOrEqual(10_000);
    } finally {
      await strict.close();
    }
  });

  it('a leader whose session was invalidated behind its back cannot write clusterdata (check-session in the same transaction)', async () => {
    const c = cluster();
    const s = open(c);
    const e = await s.campaign('s1', 30_000);
    await waitFor(() => e.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
    const rev = await s.putClusterData('{"v":1}', null, e);
    const held = (await rawGet(api, `/v1/kv/${PREFIX}/${c}/sentinel-leader`)) as Array<{ Session: string; Value: string }>;
    expect(Buffer.from(held[0]?.Value ?? '', 'base64').toString()).toBe('s1');
    // An operator (or Consul itself) destroys the session; the election has not noticed yet.
    const destroyed = await fetch(`${api.url}/v1/session/destroy/${held[0]?.Session ?? ''}`, { method: 'PUT' });
    expect(destroyed.status).toBe(200);
    expect(e.isLeader()).toBe(true);
    await expect(s.putClusterData('{"v":2}', rev, e)).rejects.toBeInstanceOf(NotLeaderError);
    expect((await s.getClusterData())?.text).toBe('{"v":1}');
  });

  it('with ACLs on: no token is refused naming --store-token-file; the right token works', async () => {
    const secured = await startConsulStandin({ sessionTtlMin: '1s', aclToken: 'tok-1' });
    try {
      const anon = new ConsulStore({ endpoints: [secured.url], clusterName: cluster(), timeoutMs: 2000 });
      opened.push(anon);
      const err = await anon.getClusterData().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as StoreUnavailableError).field).toBe('store-token-file');
      expect((err as Error).message).toMatch(/no ACL token was given; pass --store-token-file/);
      expect((err as Error).message).not.toContain('tok-1');
      const ok = new ConsulStore({ endpoints: [secured.url], clusterName: cluster(), timeoutMs: 2000, token: 'tok-1' });
      opened.push(ok);
      const rev = await ok.putClusterData('{}', null);
      expect((await ok.getClusterData())?.revision).toBe(rev);
    } finally {
      await secured.close();
    }
  });

  it('a watch keeps working across a hung and a refusing Consul, and reports once after it returns', async () => {
    const c = cluster();
    const s = open(c, { timeoutMs: 1000 });
    const writer = open(c);
    const seen: WatchTopic[] = [];
    const w = await s.watch(['clusterdata'], (t) => seen.push(t));
    const rev = await writer.putClusterData('{"v":1}', null);
    await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'event before the outage' });
    for (const fault of ['hang', 'refuse'] as const) {
      await api.setFault(fault);
      await expect(s.getClusterData()).rejects.toBeInstanceOf(StoreUnavailableError);
      // Longer than a blocking query may take (wait 3 s + jitter + the 1 s timeout), so the
      // watch's own request fails too: a shorter hang is no outage for a long poll in flight.
      await new Promise((r) => setTimeout(r, fault === 'hang' ? 4500 : 1500));
      await api.setFault(null);
      seen.length = 0;
      await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 8000, what: `event after the ${fault} outage` });
    }
    seen.length = 0;
    await writer.putClusterData('{"v":2}', rev);
    await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'event for a write after the outages' });
    await w.close();
  }, 40_000);

  it('moves to the next endpoint when one cannot be reached', async () => {
    const s = open(cluster(), { endpoints: ['http://127.0.0.1:1', api.url] });
    await expect(s.getClusterData()).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(await s.getClusterData()).toBeNull();
  });
});
