/**
 * The Consul stand-in's own checks: the KV, session, blocking-query and ACL semantics taken from
 * Consul's documentation and source, and the fault modes. python-consul and Patroni check it
 * independently (consul-standin-python.integration.test.ts, test/e2e/consul-standin-patroni.backends.test.ts).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseGoDuration, startConsulStandin, type ConsulStandin } from './consul-standin.js';

interface Answer {
  status: number;
  text: string;
  headers: Headers;
  json: () => unknown;
}

async function call(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers, json: () => JSON.parse(text) as unknown };
}

type KvJson = { Key: string; Value: string | null; Flags: number; CreateIndex: number; ModifyIndex: number; LockIndex: number; Session?: string }[];

const idx = (a: Answer): number => Number(a.headers.get('x-consul-index'));

describe('Consul stand-in: KV', () => {
  let c: ConsulStandin;
  beforeAll(async () => {
    c = await startConsulStandin();
  });
  afterAll(async () => {
    await c.close();
  });

  it('puts and gets a key in Consul\'s shape, with index headers (never 0) and 404 when missing', async () => {
    const missing = await call(c.url, 'GET', '/v1/kv/a/missing');
    expect(missing.status).toBe(404);
    expect(missing.text).toBe('');
    expect(idx(missing)).toBeGreaterThanOrEqual(1);
    expect(missing.headers.get('x-consul-knownleader')).toBe('true');
    expect(missing.headers.get('x-consul-lastcontact')).toBe('0');
    expect((await call(c.url, 'PUT', '/v1/kv/a/one?flags=42', 'hello')).text).toBe('true');
    const got = await call(c.url, 'GET', '/v1/kv/a/one');
    expect(got.status).toBe(200);
    const [e] = got.json() as KvJson;
    expect(e).toEqual({ LockIndex: 0, Key: 'a/one', Flags: 42, Value: Buffer.from('hello').toString('base64'), CreateIndex: e!.ModifyIndex, ModifyIndex: e!.ModifyIndex });
    expect(idx(got)).toBe(e!.ModifyIndex);
    expect(got.headers.get('content-type')).toBe('application/json');
    const raw = await call(c.url, 'GET', '/v1/kv/a/one?raw');
    expect(raw.text).toBe('hello');
    // An empty value is JSON null (Go's nil []byte), as Consul answers.
    await call(c.url, 'PUT', '/v1/kv/a/empty', '');
    expect(((await call(c.url, 'GET', '/v1/kv/a/empty')).json() as KvJson)[0]!.Value).toBeNull();
  });

  it('keeps CreateIndex and raises ModifyIndex on an update; an identical write changes nothing', async () => {
    await call(c.url, 'PUT', '/v1/kv/b/k', 'v1');
    const [first] = (await call(c.url, 'GET', '/v1/kv/b/k')).json() as KvJson;
    await call(c.url, 'PUT', '/v1/kv/b/k', 'v2');
    const [second] = (await call(c.url, 'GET', '/v1/kv/b/k')).json() as KvJson;
    expect(second!.CreateIndex).toBe(first!.CreateIndex);
    expect(second!.ModifyIndex).toBeGreaterThan(first!.ModifyIndex);
    await call(c.url, 'PUT', '/v1/kv/b/k', 'v2');
    const [third] = (await call(c.url, 'GET', '/v1/kv/b/k')).json() as KvJson;
    expect(third!.ModifyIndex).toBe(second!.ModifyIndex);
  });

  it('does check-and-set: cas=0 creates only, cas=<ModifyIndex> replaces, anything else fails', async () => {
    expect((await call(c.url, 'PUT', '/v1/kv/c/k?cas=0', 'x')).text).toBe('true');
    expect((await call(c.url, 'PUT', '/v1/kv/c/k?cas=0', 'y')).text).toBe('false');
    const [e] = (await call(c.url, 'GET', '/v1/kv/c/k')).json() as KvJson;
    expect((await call(c.url, 'PUT', `/v1/kv/c/k?cas=${e!.ModifyIndex + 1000}`, 'y')).text).toBe('false');
    expect((await call(c.url, 'PUT', `/v1/kv/c/k?cas=${e!.ModifyIndex}`, 'y')).text).toBe('true');
    expect(c.getKey('c/k')?.value.toString()).toBe('y');
    // cas on a missing key other than 0 fails
    expect((await call(c.url, 'PUT', '/v1/kv/c/none?cas=5', 'y')).text).toBe('false');
    // delete-cas: a stale index fails, the right one deletes, a missing key answers true (as Consul)
    const [now] = (await call(c.url, 'GET', '/v1/kv/c/k')).json() as KvJson;
    expect((await call(c.url, 'DELETE', `/v1/kv/c/k?cas=${now!.ModifyIndex - 1}`)).text).toBe('false');
    expect((await call(c.url, 'DELETE', `/v1/kv/c/k?cas=${now!.ModifyIndex}`)).text).toBe('true');
    expect(c.getKey('c/k')).toBeUndefined();
    expect((await call(c.url, 'DELETE', '/v1/kv/c/k?cas=12345')).text).toBe('true');
    const bad = await call(c.url, 'PUT', '/v1/kv/c/k?cas=1&acquire=x', 'y');
    expect(bad.status).toBe(400);
    expect(bad.text).toMatch(/^Conflicting flags: acquire=x&cas=1/);
    expect((await call(c.url, 'PUT', '/v1/kv/c/k?cas=abc', 'y')).status).toBe(500);
  });

  it('lists recursively and by keys with a separator; a delete raises the prefix index (tombstone)', async () => {
    for (const k of ['d/x/1', 'd/x/2', 'd/y', 'dz']) {
      await call(c.url, 'PUT', `/v1/kv/${k}`, k);
    }
    const rec = await call(c.url, 'GET', '/v1/kv/d/?recurse');
    expect((rec.json() as KvJson).map((e) => e.Key)).toEqual(['d/x/1', 'd/x/2', 'd/y']);
    expect(idx(rec)).toBe(Math.max(...(rec.json() as KvJson).map((e) => e.ModifyIndex)));
    expect((await call(c.url, 'GET', '/v1/kv/d/?keys')).json()).toEqual(['d/x/1', 'd/x/2', 'd/y']);
    expect((await call(c.url, 'GET', '/v1/kv/d/?keys&separator=/')).json()).toEqual(['d/x/', 'd/y']);
    expect((await call(c.url, 'GET', '/v1/kv/nothing/?recurse')).status).toBe(404);
    expect((await call(c.url, 'GET', '/v1/kv/nothing/?keys')).status).toBe(404);
    const before = idx(rec);
    await call(c.url, 'DELETE', '/v1/kv/d/y');
    const after = await call(c.url, 'GET', '/v1/kv/d/?recurse');
    expect((after.json() as KvJson).map((e) => e.Key)).toEqual(['d/x/1', 'd/x/2']);
    expect(idx(after)).toBeGreaterThan(before);
    expect((await call(c.url, 'DELETE', '/v1/kv/d/?recurse')).text).toBe('true');
    const gone = await call(c.url, 'GET', '/v1/kv/d/?recurse');
    expect(gone.status).toBe(404);
    expect(idx(gone)).toBeGreaterThan(idx(after));
    expect(c.getKey('dz')).toBeDefined();
  });

  it('answers a blocking read when the key changes, and after wait with the same index otherwise', async () => {
    await call(c.url, 'PUT', '/v1/kv/e/k', 'v1');
    const first = await call(c.url, 'GET', '/v1/kv/e/k');
    const t0 = Date.now();
    const timedOut = await call(c.url, 'GET', `/v1/kv/e/k?index=${idx(first)}&wait=300ms`);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(300 + 300 / 16 + 200);
    expect(idx(timedOut)).toBe(idx(first));
    // An unrelated write does not answer a single-key read early.
    const pending = call(c.url, 'GET', `/v1/kv/e/k?index=${idx(first)}&wait=5s`);
    await new Promise((r) => setTimeout(r, 100));
    await call(c.url, 'PUT', '/v1/kv/e/other', 'x');
    let settled = false;
    void pending.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    const t1 = Date.now();
    await call(c.url, 'PUT', '/v1/kv/e/k', 'v2');
    const woke = await pending;
    expect(Date.now() - t1).toBeLessThan(1000);
    expect(idx(woke)).toBeGreaterThan(idx(first));
    expect(Buffer.from((woke.json() as KvJson)[0]!.Value!, 'base64').toString()).toBe('v2');
  });

  it('wakes a blocked recursive read on a delete under the prefix', async () => {
    await call(c.url, 'PUT', '/v1/kv/f/a', '1');
    await call(c.url, 'PUT', '/v1/kv/f/b', '2');
    const list = await call(c.url, 'GET', '/v1/kv/f/?recurse');
    const pending = call(c.url, 'GET', `/v1/kv/f/?recurse&index=${idx(list)}&wait=5s`);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await call(c.url, 'DELETE', '/v1/kv/f/a');
    const woke = await pending;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((woke.json() as KvJson).map((e) => e.Key)).toEqual(['f/b']);
  });

  it('refuses bad blocking parameters as Consul does', async () => {
    expect((await call(c.url, 'GET', '/v1/kv/x?index=abc')).text).toBe('Invalid index');
    expect((await call(c.url, 'GET', '/v1/kv/x?index=1&wait=soon')).text).toBe('Invalid wait time');
    expect((await call(c.url, 'GET', '/v1/kv/')).status).toBe(400);
  });
});

interface SessionJson {
  ID: string;
  Name: string;
  Node: string;
  LockDelay: number;
  Behavior: string;
  TTL: string;
  NodeChecks: string[] | null;
  CreateIndex: number;
}

describe('Consul stand-in: sessions and locks', () => {
  let c: ConsulStandin;
  beforeAll(async () => {
    c = await startConsulStandin({ sessionTtlMin: '1s' });
  });
  afterAll(async () => {
    await c.close();
  });
  const create = async (body: Record<string, unknown>): Promise<string> => {
    const a = await call(c.url, 'PUT', '/v1/session/create', JSON.stringify(body));
    expect(a.status, a.text).toBe(200);
    return (a.json() as { ID: string }).ID;
  };

  it('creates a session with Consul\'s defaults and reads it back', async () => {
    const id = await create({ Name: 'n1' });
    const info = await call(c.url, 'GET', `/v1/session/info/${id}`);
    const [s] = info.json() as SessionJson[];
    expect(s).toMatchObject({ ID: id, Name: 'n1', Node: 'consul-standin', LockDelay: 15e9, Behavior: 'release', TTL: '', NodeChecks: ['serfHealth'] });
    expect(idx(info)).toBeGreaterThanOrEqual(s!.CreateIndex);
    // lower-case keys (python-consul), an explicit empty check list, lock delay in seconds when small
    const id2 = await create({ name: 'n2', checks: [], lockdelay: 5, behavior: 'delete', ttl: '10s' });
    const [s2] = (await call(c.url, 'GET', `/v1/session/info/${id2}`)).json() as SessionJson[];
    expect(s2).toMatchObject({ Name: 'n2', NodeChecks: null, LockDelay: 5e9, Behavior: 'delete', TTL: '10s' });
    expect(((await call(c.url, 'GET', '/v1/session/list')).json() as SessionJson[]).map((x) => x.ID).sort()).toEqual([id, id2].sort());
    expect(((await call(c.url, 'GET', '/v1/session/node/consul-standin')).json() as SessionJson[]).length).toBe(2);
    expect((await call(c.url, 'GET', '/v1/session/info/no-such')).json()).toEqual([]);
    await call(c.url, 'PUT', `/v1/session/destroy/${id}`);
    await call(c.url, 'PUT', `/v1/session/destroy/${id2}`);
  });

  it('refuses bad sessions with Consul\'s messages', async () => {
    const short = await call(c.url, 'PUT', '/v1/session/create', JSON.stringify({ TTL: '500ms' }));
    expect(short.status).toBe(500);
    expect(short.text).toBe("Invalid Session TTL '500000000', must be between [1s=24h0m0s]");
    const long = await call(c.url, 'PUT', '/v1/session/create', JSON.stringify({ TTL: '86401s' }));
    expect(long.text).toMatch(/^Invalid Session TTL '86401000000000'/);
    expect((await call(c.url, 'PUT', '/v1/session/create', JSON.stringify({ Behavior: 'keep' }))).text).toBe("Invalid Behavior setting 'keep'");
    expect((await call(c.url, 'PUT', '/v1/session/create', JSON.stringify({ Checks: ['nope'] }))).text).toBe("Missing check 'nope' registration");
    expect((await call(c.url, 'PUT', '/v1/session/create', JSON.stringify({ Node: 'other' }))).text).toBe('Missing node registration');
    const get = await call(c.url, 'GET', '/v1/session/create');
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('PUT');
    const renew = await call(c.url, 'PUT', '/v1/session/renew/no-such');
    expect(renew.status).toBe(404);
    expect(renew.text).toBe("Session id 'no-such' not found");
    expect((await call(c.url, 'PUT', '/v1/session/destroy/no-such')).text).toBe('true');
  });

  it('acquires and releases locks: LockIndex, Session, holders and invalid sessions', async () => {
    const s1 = await create({ LockDelay: '0s' });
    const s2 = await create({ LockDelay: '0s' });
    expect((await call(c.url, 'PUT', `/v1/kv/lock?acquire=${s1}`, 'one')).text).toBe('true');
    let [e] = (await call(c.url, 'GET', '/v1/kv/lock')).json() as KvJson;
    expect(e).toMatchObject({ LockIndex: 1, Session: s1, Value: Buffer.from('one').toString('base64') });
    expect((await call(c.url, 'PUT', `/v1/kv/lock?acquire=${s2}`, 'two')).text).toBe('false');
    // Re-acquiring by the holder keeps LockIndex and updates the value.
    expect((await call(c.url, 'PUT', `/v1/kv/lock?acquire=${s1}`, 'one-b')).text).toBe('true');
    [e] = (await call(c.url, 'GET', '/v1/kv/lock')).json() as KvJson;
    expect(e).toMatchObject({ LockIndex: 1, Session: s1 });
    expect((await call(c.url, 'PUT', `/v1/kv/lock?release=${s2}`)).text).toBe('false');
    expect((await call(c.url, 'PUT', `/v1/kv/lock?release=${s1}`, 'released')).text).toBe('true');
    [e] = (await call(c.url, 'GET', '/v1/kv/lock')).json() as KvJson;
    expect(e!.Session).toBeUndefined();
    expect(e!.LockIndex).toBe(1);
    // An explicit release starts no lock-delay.
    expect((await call(c.url, 'PUT', `/v1/kv/lock?acquire=${s2}`, 'two')).text).toBe('true');
    [e] = (await call(c.url, 'GET', '/v1/kv/lock')).json() as KvJson;
    expect(e).toMatchObject({ LockIndex: 2, Session: s2 });
    // A plain PUT on a locked key keeps the holder and sets the value; LockIndex comes from the
    // request (0), as `kvsSetTxn` keeps only CreateIndex and Session of the old entry.
    expect((await call(c.url, 'PUT', '/v1/kv/lock', 'plain')).text).toBe('true');
    [e] = (await call(c.url, 'GET', '/v1/kv/lock')).json() as KvJson;
    expect(e).toMatchObject({ LockIndex: 0, Session: s2, Value: Buffer.from('plain').toString('base64') });
    const invalid = await call(c.url, 'PUT', '/v1/kv/lock2?acquire=00000000-0000-0000-0000-00000000dead', 'x');
    expect(invalid.status).toBe(500);
    expect(invalid.text).toBe('invalid session "00000000-0000-0000-0000-00000000dead"');
    await call(c.url, 'PUT', `/v1/session/destroy/${s1}`);
    await call(c.url, 'PUT', `/v1/session/destroy/${s2}`);
  });

  it('on destroy releases the keys of a release session and starts lock-delay against other sessions', async () => {
    const holder = await create({ LockDelay: '700ms' });
    const other = await create({});
    await call(c.url, 'PUT', `/v1/kv/ld?acquire=${holder}`, 'v');
    const [before] = (await call(c.url, 'GET', '/v1/kv/ld')).json() as KvJson;
    const pending = call(c.url, 'GET', `/v1/kv/ld?index=${before!.ModifyIndex}&wait=5s`);
    await new Promise((r) => setTimeout(r, 50));
    await call(c.url, 'PUT', `/v1/session/destroy/${holder}`);
    const [after] = (await pending).json() as KvJson;
    expect(after!.Session).toBeUndefined();
    expect(after!.ModifyIndex).toBeGreaterThan(before!.ModifyIndex);
    expect(Buffer.from(after!.Value!, 'base64').toString()).toBe('v');
    expect((await call(c.url, 'PUT', `/v1/kv/ld?acquire=${other}`, 'w')).text).toBe('false');
    await new Promise((r) => setTimeout(r, 800));
    expect((await call(c.url, 'PUT', `/v1/kv/ld?acquire=${other}`, 'w')).text).toBe('true');
    await call(c.url, 'PUT', `/v1/session/destroy/${other}`);
  });

  it('deletes the keys of a delete session when its TTL runs out (TTL × 2), and renew keeps it alive', async () => {
    const id = await create({ TTL: '1s', Behavior: 'delete', LockDelay: '1ms' });
    await call(c.url, 'PUT', `/v1/kv/eph?acquire=${id}`, 'x');
    const list = await call(c.url, 'GET', '/v1/kv/?recurse');
    const t0 = Date.now();
    // Renewed at 0.9 s and 1.8 s: alive at 2.5 s although more than 2 × TTL after creation.
    for (const at of [900, 1800]) {
      await new Promise((r) => setTimeout(r, at - (Date.now() - t0)));
      const renew = await call(c.url, 'PUT', `/v1/session/renew/${id}`);
      expect(renew.status).toBe(200);
      expect((renew.json() as SessionJson[])[0]!.ID).toBe(id);
    }
    await new Promise((r) => setTimeout(r, 2500 - (Date.now() - t0)));
    expect(c.sessionIds()).toContain(id);
    // Last renewal at 1.8 s: invalidated at 3.8 s, not at 2.8 s (TTL × 1).
    await new Promise((r) => setTimeout(r, 3300 - (Date.now() - t0)));
    expect(c.sessionIds()).toContain(id);
    const woke = await call(c.url, 'GET', `/v1/kv/?recurse&index=${idx(list)}&wait=3s`);
    expect(Date.now() - t0).toBeLessThan(4600);
    expect(c.sessionIds()).not.toContain(id);
    expect(c.getKey('eph')).toBeUndefined();
    expect(idx(woke)).toBeGreaterThan(idx(list));
    expect((await call(c.url, 'PUT', `/v1/session/renew/${id}`)).status).toBe(404);
  }, 10_000);

  it('expireSession invalidates at once, as the TTL timer would', async () => {
    const id = await create({ TTL: '60s' });
    await call(c.url, 'PUT', `/v1/kv/exp?acquire=${id}`, 'x');
    expect(c.expireSession(id)).toBe(true);
    expect(c.getKey('exp')?.session).toBeUndefined();
    expect(c.expireSession(id)).toBe(false);
  });
});

describe('Consul stand-in: ACL', () => {
  let c: ConsulStandin;
  beforeAll(async () => {
    c = await startConsulStandin({ aclToken: 'sekret' });
  });
  afterAll(async () => {
    await c.close();
  });

  it('refuses the anonymous token and unknown tokens, accepts the token in header, query or bearer', async () => {
    const anon = await call(c.url, 'PUT', '/v1/kv/k', 'v');
    expect(anon.status).toBe(403);
    expect(anon.text).toMatch(/^Permission denied: anonymous token lacks permission 'key:write' on "k"/);
    const unknown = await call(c.url, 'GET', '/v1/kv/k', undefined, { 'X-Consul-Token': 'wrong' });
    expect(unknown.status).toBe(403);
    expect(unknown.text).toBe('ACL not found');
    expect((await call(c.url, 'PUT', '/v1/kv/k', 'v', { 'X-Consul-Token': 'sekret' })).text).toBe('true');
    expect((await call(c.url, 'GET', '/v1/kv/k?token=sekret')).status).toBe(200);
    expect((await call(c.url, 'GET', '/v1/kv/k', undefined, { Authorization: 'Bearer sekret' })).status).toBe(200);
    expect((await call(c.url, 'GET', '/v1/kv/k')).status).toBe(403);
    // A denied list is filtered, not refused (FilterDirEnt).
    const list = await call(c.url, 'GET', '/v1/kv/?recurse');
    expect(list.status).toBe(404);
    expect(list.headers.get('x-consul-results-filtered-by-acls')).toBe('true');
    expect((await call(c.url, 'PUT', '/v1/session/create', '{}')).status).toBe(403);
    expect((await call(c.url, 'PUT', '/v1/session/create', '{}', { 'X-Consul-Token': 'sekret' })).status).toBe(200);
    expect((await call(c.url, 'GET', '/v1/status/leader')).status).toBe(200);
  });
});

describe('Consul stand-in: faults', () => {
  let c: ConsulStandin | undefined;
  afterEach(async () => {
    await c?.close();
  });

  it("'refuse' closes the port and reopens it on the same port with the data kept", async () => {
    c = await startConsulStandin();
    await call(c.url, 'PUT', '/v1/kv/k', 'v');
    const blocked = call(c.url, 'GET', `/v1/kv/k?index=${c.index() + 10}&wait=10s`).then(
      () => 'answered',
      () => 'reset',
    );
    await new Promise((r) => setTimeout(r, 50));
    await c.setFault('refuse');
    expect(await blocked).toBe('reset');
    await expect(fetch(`${c.url}/v1/kv/k`)).rejects.toThrow();
    await c.setFault(null);
    const back = await call(c.url, 'GET', '/v1/kv/k?raw');
    expect(back.text).toBe('v');
  });

  it("after 'refuse', restarted: sessions get a full TTL × 2 again and lock-delays are gone", async () => {
    c = await startConsulStandin({ sessionTtlMin: '1s' });
    const create = async (body: Record<string, unknown>): Promise<string> => ((await call(c!.url, 'PUT', '/v1/session/create', JSON.stringify(body))).json() as { ID: string }).ID;
    const ttl = await create({ TTL: '1s' });
    const holder = await create({ LockDelay: '30s' });
    const other = await create({});
    await call(c.url, 'PUT', `/v1/kv/r?acquire=${holder}`, 'x');
    await call(c.url, 'PUT', `/v1/session/destroy/${holder}`);
    expect((await call(c.url, 'PUT', `/v1/kv/r?acquire=${other}`, 'y')).text).toBe('false');
    const t0 = Date.now();
    await c.setFault('refuse');
    await new Promise((r) => setTimeout(r, 1500));
    await c.setFault(null, { restarted: true });
    // created at t0 - ε with TTL 1 s: gone at 2 s without the restart, at 1.5 s + 2 s with it
    await new Promise((r) => setTimeout(r, 2500 - (Date.now() - t0)));
    expect(c.sessionIds()).toContain(ttl);
    expect((await call(c.url, 'PUT', `/v1/kv/r?acquire=${other}`, 'y')).text).toBe('true');
  });

  it("'hang' accepts and never answers, and applies nothing", async () => {
    c = await startConsulStandin();
    await c.setFault('hang');
    const ac = new AbortController();
    const pending = fetch(`${c.url}/v1/kv/h`, { method: 'PUT', body: 'x', signal: ac.signal }).then(
      () => 'answered',
      () => 'aborted',
    );
    await new Promise((r) => setTimeout(r, 300));
    ac.abort();
    expect(await pending).toBe('aborted');
    expect(c.getKey('h')).toBeUndefined();
    expect(c.requestLog()).toContain('PUT /v1/kv/h');
    await c.setFault(null);
    expect((await call(c.url, 'PUT', '/v1/kv/h', 'x')).text).toBe('true');
  });
});

describe('parseGoDuration', () => {
  it('reads Go durations and refuses others', () => {
    expect(parseGoDuration('15s')).toBe(15e9);
    expect(parseGoDuration('15.0s')).toBe(15e9);
    expect(parseGoDuration('1h2m3.5s')).toBe(3723.5e9);
    expect(parseGoDuration('0')).toBe(0);
    expect(parseGoDuration('0.001s')).toBe(1e6);
    expect(() => parseGoDuration('10')).toThrow('time: missing unit in duration "10"');
    expect(() => parseGoDuration('ten')).toThrow('time: invalid duration "ten"');
    expect(() => parseGoDuration('')).toThrow();
  });
});

describe('Consul stand-in: transactions (/v1/txn, KV operations)', () => {
  let c: ConsulStandin;
  beforeAll(async () => {
    c = await startConsulStandin({ sessionTtlMin: '1s' });
  });
  afterAll(async () => {
    await c.close();
  });
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const txn = (ops: unknown[]): Promise<Answer> => call(c.url, 'PUT', '/v1/txn', JSON.stringify(ops));
  const session = async (): Promise<string> => ((await call(c.url, 'PUT', '/v1/session/create', JSON.stringify({ TTL: '30s', LockDelay: '0s' }))).json() as { ID: string }).ID;

  it('applies every op at one index and answers each write with its entry without the value; deletes add no result', async () => {
    await call(c.url, 'PUT', '/v1/kv/t/gone', 'x');
    const ok = await txn([{ KV: { Verb: 'cas', Key: 't/a', Value: b64('1'), Index: 0 } }, { KV: { Verb: 'set', Key: 't/b', Value: b64('2') } }, { KV: { Verb: 'delete', Key: 't/gone' } }]);
    expect(ok.status).toBe(200);
    const body = ok.json() as { Results: Array<{ KV: { Key: string; Value: string | null; ModifyIndex: number } }>; Errors: null };
    expect(body.Errors).toBeNull();
    expect(body.Results.map((r) => r.KV.Key)).toEqual(['t/a', 't/b']);
    expect(body.Results.every((r) => r.KV.Value === null)).toBe(true);
    expect(body.Results[0]!.KV.ModifyIndex).toBe(body.Results[1]!.KV.ModifyIndex);
    expect((await call(c.url, 'GET', '/v1/kv/t/a?raw')).text).toBe('1');
    expect((await call(c.url, 'GET', '/v1/kv/t/gone')).status).toBe(404);
  });

  it('rolls everything back with 409 and the failing op when one check fails', async () => {
    const [a] = (await call(c.url, 'GET', '/v1/kv/t/a')).json() as KvJson;
    const failed = await txn([{ KV: { Verb: 'set', Key: 't/a', Value: b64('changed') } }, { KV: { Verb: 'check-index', Key: 't/b', Index: 1 } }]);
    expect(failed.status).toBe(409);
    const body = failed.json() as { Results: null; Errors: Array<{ OpIndex: number; What: string }> };
    expect(body.Results).toBeNull();
    expect(body.Errors[0]?.OpIndex).toBe(1);
    const [after] = (await call(c.url, 'GET', '/v1/kv/t/a')).json() as KvJson;
    expect(after).toEqual(a);
    const stale = await txn([{ KV: { Verb: 'cas', Key: 't/a', Value: b64('x'), Index: a!.ModifyIndex + 1000 } }]);
    expect(stale.status).toBe(409);
  });

  it('check-session passes only for the lock holder; unlock + lock moves a lock to another session in one step', async () => {
    const s1 = await session();
    const s2 = await session();
    expect((await call(c.url, 'PUT', `/v1/kv/t/lock?acquire=${s1}`, 'v1')).text).toBe('true');
    expect((await txn([{ KV: { Verb: 'check-session', Key: 't/lock', Session: s2 } }])).status).toBe(409);
    expect((await txn([{ KV: { Verb: 'check-session', Key: 't/lock', Session: s1 } }])).status).toBe(200);
    // s2 cannot lock a key s1 holds …
    expect((await txn([{ KV: { Verb: 'lock', Key: 't/lock', Value: b64('v2'), Session: s2 } }])).status).toBe(409);
    const [before] = (await call(c.url, 'GET', '/v1/kv/t/lock')).json() as KvJson;
    // … but unlock with s1 and lock with s2 in one transaction moves it: same entry, new holder.
    const moved = await txn([
      { KV: { Verb: 'unlock', Key: 't/lock', Value: b64('v2'), Session: s1 } },
      { KV: { Verb: 'lock', Key: 't/lock', Value: b64('v2'), Session: s2 } },
    ]);
    expect(moved.status).toBe(200);
    const [after] = (await call(c.url, 'GET', '/v1/kv/t/lock')).json() as KvJson;
    expect(after).toMatchObject({ Session: s2, CreateIndex: before!.CreateIndex, LockIndex: before!.LockIndex + 1, Value: b64('v2') });
  });

  it('refuses what it does not implement, naming it', async () => {
    const node = await txn([{ Node: { Verb: 'get', Node: { Node: 'n' } } }]);
    expect(node.status).toBe(400);
    expect(node.text).toMatch(/KV operations only/);
    const verb = await txn([{ KV: { Verb: 'frobnicate', Key: 'x' } }]);
    expect(verb.status).toBe(400);
    expect(verb.text).toMatch(/unknown KV verb "frobnicate"/);
  });
});
