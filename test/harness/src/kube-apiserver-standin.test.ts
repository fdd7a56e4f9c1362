/**
 * The Kubernetes API server stand-in's own checks: the API semantics the store backend relies on
 * (resourceVersion, optimistic concurrency, Status errors, selectors, watch with bookmarks and
 * 410 Gone, validation) and the test hooks (unavailability, dropped watches, compaction).
 */
import { readFile, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { createStore } from '@stolon-ts/store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryBool, startKubeApiServerStandin, writeStandinKubeconfig, type KubeApiServerStandin, type KubeObject } from './kube-apiserver-standin.js';
import { makeTempDir, removeDir } from './tmp.js';
import { waitFor } from './wait.js';

const CM = '/api/v1/namespaces/ns1/configmaps';
const LEASES = '/apis/coordination.k8s.io/v1/namespaces/ns1/leases';

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const rvOf = (a: Answer): string => String((a.body['metadata'] as Record<string, unknown>)['resourceVersion']);

const configMap = (name: string, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, labels, annotations },
});

interface WatchEvent {
  type: string;
  object: KubeObject & { code?: number; reason?: string };
}

/** A watch stream: parsed events as they arrive, and whether the server ended it. */
function openWatch(base: string, path: string): { events: WatchEvent[]; ended: () => boolean; status: Promise<number>; close: () => void } {
  const events: WatchEvent[] = [];
  let ended = false;
  let buf = '';
  let resolveStatus!: (n: number) => void;
  const status = new Promise<number>((r) => {
    resolveStatus = r;
  });
  const req = request(`${base}${path}`, (res) => {
    resolveStatus(res.statusCode ?? 0);
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim() !== '') {
          events.push(JSON.parse(line) as WatchEvent);
        }
      }
    });
    res.on('end', () => {
      ended = true;
    });
    res.on('error', () => {
      ended = true;
    });
  });
  req.on('error', () => {
    ended = true;
    resolveStatus(0);
  });
  req.end();
  return { events, ended: () => ended, status, close: () => req.destroy() };
}

describe('Kubernetes API server stand-in', () => {
  let api: KubeApiServerStandin;
  let base: string;
  beforeAll(async () => {
    api = await startKubeApiServerStandin({ bookmarkIntervalMs: 100, historyLimit: 50, namespaces: ['ns1', 'ns2'] });
    base = api.url;
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('creates, gets and lists with a global increasing resourceVersion; AlreadyExists and NotFound are Status objects', async () => {
    const a = await call(base, 'POST', CM, configMap('crud-a', { app: 'x' }));
    expect(a.status).toBe(201);
    expect(a.body['kind']).toBe('ConfigMap');
    const meta = a.body['metadata'] as Record<string, unknown>;
    expect(meta['namespace']).toBe('ns1');
    expect(typeof meta['uid']).toBe('string');
    const b = await call(base, 'POST', CM, configMap('crud-b', { app: 'y' }));
    expect(Number(rvOf(b))).toBeGreaterThan(Number(rvOf(a)));
    expect(api.resourceVersion()).toBe(rvOf(b));

    const dup = await call(base, 'POST', CM, configMap('crud-a'));
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'AlreadyExists', code: 409 });

    const got = await call(base, 'GET', `${CM}/crud-a`);
    expect(got.status).toBe(200);
    expect(rvOf(got)).toBe(rvOf(a));
    const missing = await call(base, 'GET', `${CM}/nope`);
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404, details: { name: 'nope', kind: 'configmaps' } });

    const list = await call(base, 'GET', `${CM}?labelSelector=${encodeURIComponent('app=x')}`);
    expect(list.body['kind']).toBe('ConfigMapList');
    expect(rvOf(list)).toBe(api.resourceVersion());
    expect((list.body['items'] as KubeObject[]).map((o) => o.metadata.name)).toEqual(['crud-a']);
    const byName = await call(base, 'GET', `${CM}?fieldSelector=${encodeURIComponent('metadata.name=crud-b')}`);
    expect((byName.body['items'] as KubeObject[]).map((o) => o.metadata.name)).toEqual(['crud-b']);
    const notX = await call(base, 'GET', `${CM}?labelSelector=${encodeURIComponent('app!=x,app')}`);
    expect((notX.body['items'] as KubeObject[]).map((o) => o.metadata.name)).toEqual(['crud-b']);
    const setBased = await call(base, 'GET', `${CM}?labelSelector=${encodeURIComponent('app in (x)')}`);
    expect(setBased.status).toBe(400);
    const otherNs = await call(base, 'GET', '/api/v1/namespaces/ns2/configmaps');
    expect(otherNs.body['items']).toEqual([]);
  });

  it('replaces only with the current resourceVersion (409 Conflict otherwise), unconditionally without one; no-op replaces keep it', async () => {
    const a = await call(base, 'POST', CM, configMap('put-a', {}, { v: '1' }));
    const rv1 = rvOf(a);
    const ok = await call(base, 'PUT', `${CM}/put-a`, { ...configMap('put-a', {}, { v: '2' }), metadata: { name: 'put-a', annotations: { v: '2' }, resourceVersion: rv1 } });
    expect(ok.status).toBe(200);
    const rv2 = rvOf(ok);
    expect(Number(rv2)).toBeGreaterThan(Number(rv1));
    const stale = await call(base, 'PUT', `${CM}/put-a`, { metadata: { name: 'put-a', annotations: { v: '3' }, resourceVersion: rv1 } });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ kind: 'Status', reason: 'Conflict', code: 409 });
    expect(((await call(base, 'GET', `${CM}/put-a`)).body['metadata'] as KubeObject['metadata']).annotations).toEqual({ v: '2' });

    const same = await call(base, 'PUT', `${CM}/put-a`, { metadata: { name: 'put-a', annotations: { v: '2' }, resourceVersion: rv2 } });
    expect(rvOf(same)).toBe(rv2);
    const uncond = await call(base, 'PUT', `${CM}/put-a`, { metadata: { name: 'put-a', annotations: { v: '4' } } });
    expect(uncond.status).toBe(200);
    expect(Number(rvOf(uncond))).toBeGreaterThan(Number(rv2));

    expect((await call(base, 'PUT', `${CM}/put-missing`, { metadata: { name: 'put-missing' } })).status).toBe(404);
    expect((await call(base, 'PUT', `${CM}/put-a`, { metadata: { name: 'other' } })).status).toBe(400);
    // Only JSON merge patches (what a keeper sends to label its pod) are implemented.
    expect((await call(base, 'PATCH', `${CM}/put-a`, {})).status).toBe(415);
  });

  it('merge-patches a pod put in-process (a keeper labelling its pod): null removes a label, the name stays', async () => {
    const POD = '/api/v1/namespaces/ns/pods';
    api.putObject('pods', 'ns', { metadata: { name: 'p-0', labels: { a: '1', b: '2' } }, spec: { x: 1 } });
    const mp = { 'Content-Type': 'application/merge-patch+json' };
    const patched = await call(base, 'PATCH', `${POD}/p-0`, { metadata: { labels: { b: null, role: 'primary' } } }, mp);
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ kind: 'Pod', metadata: { name: 'p-0', labels: { a: '1', role: 'primary' } }, spec: { x: 1 } });
    expect((patched.body['metadata'] as KubeObject['metadata']).labels).not.toHaveProperty('b');
    expect((await call(base, 'PATCH', `${POD}/p-0`, { metadata: { labels: { role: 'not valid!' } } }, mp)).status).toBe(422);
    expect((await call(base, 'PATCH', `${POD}/p-0`, { metadata: { name: 'other' } }, mp)).status).toBe(422);
    expect((await call(base, 'PATCH', `${POD}/missing`, { metadata: {} }, mp)).status).toBe(404);
  });

  it('deletes with optional preconditions; 404 when missing', async () => {
    const a = await call(base, 'POST', CM, configMap('del-a'));
    const pre = await call(base, 'DELETE', `${CM}/del-a`, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: '1' } });
    expect(pre.status).toBe(409);
    expect(pre.body['reason']).toBe('Conflict');
    const del = await call(base, 'DELETE', `${CM}/del-a`, { preconditions: { resourceVersion: rvOf(a) } });
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ kind: 'Status', status: 'Success' });
    expect((await call(base, 'DELETE', `${CM}/del-a`)).status).toBe(404);
  });

  it('validates names, labels, annotation sizes and Lease fields (422 Invalid); MicroTime must have six fractional digits (400), is normalised to UTC', async () => {
    const badName = await call(base, 'POST', CM, configMap('Bad_Name'));
    expect(badName.status).toBe(422);
    expect(badName.body).toMatchObject({ reason: 'Invalid', code: 422 });
    expect(String(badName.body['message'])).toMatch(/RFC 1123 subdomain/);
    expect((await call(base, 'POST', CM, configMap('badlabel', { k: 'x'.repeat(64) }))).status).toBe(422);
    expect((await call(base, 'POST', CM, configMap('bigann', {}, { a: 'x'.repeat(256 * 1024) }))).status).toBe(422);
    expect((await call(base, 'POST', CM, configMap('badannkey', {}, { 'a/b/c': 'x' }))).status).toBe(422);

    const badLease = await call(base, 'POST', LEASES, { metadata: { name: 'l0' }, spec: { leaseDurationSeconds: 0 } });
    expect(badLease.status).toBe(422);
    // A MicroTime is decoded with Go's time.Parse(RFC3339Micro): a decode error is a 400, not a 422.
    const notTime = await call(base, 'POST', LEASES, { metadata: { name: 'l0' }, spec: { renewTime: 'yesterday' } });
    expect(notTime).toMatchObject({ status: 400, body: { kind: 'Status', status: 'Failure', reason: 'BadRequest', code: 400 } });
    expect(notTime.body['message']).toBe(
      'Lease in version "v1" cannot be handled as a Lease: parsing time "yesterday" as "2006-01-02T15:04:05.000000Z07:00": cannot parse "yesterday" as "2006"',
    );
    for (const [t, rest, as] of [
      ['2024-05-06T07:08:09.123Z', '.123Z', '.000000'],
      ['2024-05-06T07:08:09Z', 'Z', '.000000'],
      ['2024-05-06T07:08:09.123456789Z', '789Z', 'Z07:00'],
      ['2024-05-06T07:08:09.123456', '', 'Z07:00'],
    ] as const) {
      const r = await call(base, 'POST', LEASES, { metadata: { name: 'l0' }, spec: { acquireTime: t } });
      expect(r.status, t).toBe(400);
      expect(r.body['message'], t).toContain(`cannot parse "${rest}" as "${as}"`);
    }
    expect((await call(base, 'POST', LEASES, { metadata: { name: 'l0' }, spec: { renewTime: 1 } })).status).toBe(400);
    const lease = await call(base, 'POST', LEASES, {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'l1' },
      spec: { holderIdentity: 'me', leaseDurationSeconds: 10, renewTime: '2024-05-06T09:08:09.123000+02:00', leaseTransitions: 0 },
    });
    expect(lease.status).toBe(201);
    expect(lease.body['kind']).toBe('Lease');
    expect((lease.body['spec'] as Record<string, unknown>)['renewTime']).toBe('2024-05-06T07:08:09.123000Z');
    const wrongKind = await call(base, 'POST', LEASES, { kind: 'ConfigMap', metadata: { name: 'l2' } });
    expect(wrongKind.status).toBe(400);
  });

  it('watches from a resourceVersion: ordered ADDED/MODIFIED/DELETED for the selector only, bookmarks, timeoutSeconds', async () => {
    const list = await call(base, 'GET', `${LEASES}?labelSelector=w%3D1`);
    const from = rvOf(list);
    const w = openWatch(base, `${LEASES}?watch=1&labelSelector=w%3D1&resourceVersion=${from}&allowWatchBookmarks=true&timeoutSeconds=2`);
    expect(await w.status).toBe(200);
    await call(base, 'POST', LEASES, { metadata: { name: 'w-a', labels: { w: '1' } }, spec: {} });
    await call(base, 'POST', LEASES, { metadata: { name: 'w-other', labels: { w: '2' } }, spec: {} });
    await call(base, 'PUT', `${LEASES}/w-a`, { metadata: { name: 'w-a', labels: { w: '1' }, annotations: { x: 'y' } }, spec: {} });
    // Moving out of the selector is a DELETED for this watch.
    await call(base, 'PUT', `${LEASES}/w-a`, { metadata: { name: 'w-a', labels: { w: '3' } }, spec: {} });
    await waitFor(() => w.events.filter((e) => e.type !== 'BOOKMARK').length >= 3, { timeoutMs: 2000, what: 'three events' });
    const changes = w.events.filter((e) => e.type !== 'BOOKMARK');
    expect(changes.map((e) => [e.type, e.object.metadata.name])).toEqual([
      ['ADDED', 'w-a'],
      ['MODIFIED', 'w-a'],
      ['DELETED', 'w-a'],
    ]);
    expect(changes[0]?.object.kind).toBe('Lease');
    const rvs = changes.map((e) => Number(e.object.metadata.resourceVersion));
    expect([...rvs].sort((x, y) => x - y)).toEqual(rvs);
    // Bookmarks carry the resourceVersion up to which this watch has seen everything.
    const current = api.resourceVersion();
    await waitFor(() => w.events.some((e) => e.type === 'BOOKMARK' && e.object.metadata.resourceVersion === current), {
      timeoutMs: 2000,
      what: 'a BOOKMARK event at the current resourceVersion',
    });
    await waitFor(() => w.ended(), { timeoutMs: 4000, what: 'the stream to end at timeoutSeconds' });
  });

  it('a watch without resourceVersion starts with synthetic ADDED events for current objects', async () => {
    await call(base, 'POST', CM, configMap('syn-a', { syn: '1' }));
    const w = openWatch(base, `${CM}?watch=true&labelSelector=syn%3D1`);
    await waitFor(() => w.events.length >= 1, { timeoutMs: 2000, what: 'synthetic ADDED' });
    expect(w.events[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'syn-a' } } });
    w.close();
  });

  it('answers a watch from a resourceVersion older than the history with an ERROR event carrying Status 410', async () => {
    const small = await startKubeApiServerStandin({ historyLimit: 3, namespaces: ['ns1'] });
    try {
      const first = await call(small.url, 'POST', CM, configMap('h0'));
      for (let i = 1; i <= 4; i++) {
        await call(small.url, 'POST', CM, configMap(`h${i}`));
      }
      const w = openWatch(small.url, `${CM}?watch=1&resourceVersion=${rvOf(first)}`);
      await waitFor(() => w.ended(), { timeoutMs: 2000, what: 'the 410 stream to end' });
      expect(await w.status).toBe(200);
      expect(w.events).toHaveLength(1);
      expect(w.events[0]).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
      // From within the history: replayed.
      const ok = openWatch(small.url, `${CM}?watch=1&resourceVersion=${Number(small.resourceVersion()) - 2}`);
      await waitFor(() => ok.events.length === 2, { timeoutMs: 2000, what: 'two replayed events' });
      ok.close();
      // compactHistory: anything before now is gone.
      small.compactHistory();
      const old = openWatch(small.url, `${CM}?watch=1&resourceVersion=${Number(small.resourceVersion()) - 1}`);
      await waitFor(() => old.ended(), { timeoutMs: 2000, what: 'the stream to end' });
      expect(old.events[0]?.object.code).toBe(410);
      const current = openWatch(small.url, `${CM}?watch=1&resourceVersion=${small.resourceVersion()}`);
      await call(small.url, 'POST', CM, configMap('h5'));
      await waitFor(() => current.events.length === 1, { timeoutMs: 2000, what: 'a live event after compaction' });
      current.close();
    } finally {
      await small.stop();
    }
  });

  it('hooks: refuse resets connections, hang holds requests and watch events, dropWatches ends streams, interceptor and token', async () => {
    const s = await startKubeApiServerStandin({ token: 'sekrit', namespaces: ['ns1'] });
    const auth = { Authorization: 'Bearer sekrit' };
    try {
      expect((await call(s.url, 'GET', CM)).status).toBe(401);
      const w = openWatch(s.url, `${CM}?watch=1&resourceVersion=0`);
      // openWatch has no token: 401 Status, not a stream.
      expect(await w.status).toBe(401);
      expect((await call(s.url, 'POST', CM, configMap('hk'), auth)).status).toBe(201);

      s.setUnavailable('refuse');
      await expect(call(s.url, 'GET', CM, undefined, auth)).rejects.toThrow();
      s.setUnavailable(false);
      expect((await call(s.url, 'GET', CM, undefined, auth)).status).toBe(200);

      s.setInterceptor((r) => (r.method === 'GET' && r.name === 'hk' ? { code: 503, reason: 'ServiceUnavailable', message: 'injected' } : undefined));
      const injected = await call(s.url, 'GET', `${CM}/hk`, undefined, auth);
      expect(injected).toMatchObject({ status: 503, body: { reason: 'ServiceUnavailable', message: 'injected' } });
      s.setInterceptor(undefined);

      s.setUnavailable('hang');
      const ac = new AbortController();
      const t = setTimeout(() => ac.abort(), 300);
      await expect(fetch(`${s.url}${CM}`, { headers: auth, signal: ac.signal })).rejects.toThrow();
      clearTimeout(t);
      s.setUnavailable(false);
      expect(s.dropWatches()).toBe(0);
    } finally {
      await s.stop();
    }
  });

  it('logRequests: each request with its authorization verb, resource, name (a metadata.name field selector names it) and user; off by default', async () => {
    const s = await startKubeApiServerStandin({ token: 'admin-tok', users: { 'k-tok': 'keeper', 'p-tok': 'proxy' }, logRequests: true, namespaces: ['ns1'] });
    const as = (t: string) => ({ Authorization: `Bearer ${t}` });
    try {
      expect((await call(s.url, 'POST', CM, configMap('lg'), as('k-tok'))).status).toBe(201);
      expect((await call(s.url, 'GET', `${CM}/lg`, undefined, as('p-tok'))).status).toBe(200);
      expect((await call(s.url, 'GET', `${CM}?fieldSelector=metadata.name%3Dlg`, undefined, as('admin-tok'))).status).toBe(200);
      expect((await call(s.url, 'GET', `${LEASES}?labelSelector=a%3Db`, undefined, as('k-tok'))).status).toBe(200);
      const w = openWatch(s.url, `${CM}?watch=1&fieldSelector=metadata.name%3D%3Dlg`);
      expect(await w.status).toBe(401);
      expect((await call(s.url, 'PUT', `${CM}/lg`, configMap('lg'), as('p-tok'))).status).toBe(200);
      expect((await call(s.url, 'DELETE', `${CM}/lg`, undefined, as('p-tok'))).status).toBe(200);
      expect((await call(s.url, 'DELETE', CM, undefined, as('wrong'))).status).toBe(401);
      expect(s.requests().map((r) => [r.user, r.verb, r.apiGroup, r.resource, r.namespace, r.name])).toEqual([
        ['keeper', 'create', '', 'configmaps', 'ns1', undefined],
        ['proxy', 'get', '', 'configmaps', 'ns1', 'lg'],
        ['standin-admin', 'list', '', 'configmaps', 'ns1', 'lg'],
        ['keeper', 'list', 'coordination.k8s.io', 'leases', 'ns1', undefined],
        ['anonymous', 'watch', '', 'configmaps', 'ns1', 'lg'],
        ['proxy', 'update', '', 'configmaps', 'ns1', 'lg'],
        ['proxy', 'delete', '', 'configmaps', 'ns1', 'lg'],
        ['anonymous', 'deletecollection', '', 'configmaps', 'ns1', undefined],
      ]);
      expect(s.requests()[3]).toMatchObject({ method: 'GET', path: LEASES, query: 'labelSelector=a%3Db' });
      expect(api.requests()).toEqual([]);
    } finally {
      await s.stop();
    }
  });

  it('hang holds open watch streams’ events and delivers them afterwards; dropWatches ends streams cleanly', async () => {
    const s = await startKubeApiServerStandin();
    try {
      const w = openWatch(s.url, `${CM}?watch=1&resourceVersion=${s.resourceVersion()}`);
      expect(await w.status).toBe(200);
      await waitFor(() => s.watchCount() === 1, { timeoutMs: 1000, what: 'the watch to register' });
      s.setUnavailable('hang');
      s.putObject('configmaps', 'ns1', configMap('held'));
      await new Promise((r) => setTimeout(r, 100));
      expect(w.events).toEqual([]);
      s.setUnavailable(false);
      await waitFor(() => w.events.length === 1, { timeoutMs: 1000, what: 'the held event' });
      expect(s.dropWatches()).toBe(1);
      await waitFor(() => w.ended(), { timeoutMs: 1000, what: 'the stream to end' });
    } finally {
      await s.stop();
    }
  });
});

describe('Kubernetes API server stand-in: what a real API server does that clients notice', () => {
  let api: KubeApiServerStandin;
  beforeAll(async () => {
    api = await startKubeApiServerStandin({ namespaces: ['ns1'], historyLimit: 5, tooLargeResourceVersionWaitMs: 600 });
  });
  afterAll(async () => {
    await api?.stop();
  });

  it('boolean query parameters as apimachinery reads them: anything but absent, 0 and false (any case) is true', async () => {
    expect(queryBool(new URLSearchParams(''), 'watch')).toBe(false);
    for (const v of ['0', 'false', 'False', 'FALSE']) {
      expect(queryBool(new URLSearchParams({ watch: v }), 'watch'), v).toBe(false);
    }
    for (const v of ['1', 'true', 'True', 'yes', '']) {
      expect(queryBool(new URLSearchParams({ watch: v }), 'watch'), v).toBe(true);
    }
    // Over HTTP: Python clients (Patroni) send watch=True; that is a watch stream, not a list.
    await call(api.url, 'POST', CM, configMap('b-a'));
    const w = openWatch(api.url, `${CM}?watch=True&allowWatchBookmarks=True&resourceVersion=${api.resourceVersion()}`);
    expect(await w.status).toBe(200);
    await waitFor(() => api.watchCount() === 1, { timeoutMs: 2000, what: 'the watch=True stream' });
    await waitFor(() => w.events.some((e) => e.type === 'BOOKMARK'), { timeoutMs: 3000, what: 'a bookmark (allowWatchBookmarks=True)' });
    w.close();
    const list = await call(api.url, 'GET', `${CM}?watch=False`);
    expect(list.body['kind']).toBe('ConfigMapList');
  });

  it('namespaces: the four of every cluster plus the configured ones; creating in a missing one is 404 NotFound for the namespace', async () => {
    const nsList = await call(api.url, 'GET', '/api/v1/namespaces');
    expect((nsList.body['items'] as KubeObject[]).map((o) => o.metadata.name)).toEqual(['default', 'kube-node-lease', 'kube-public', 'kube-system', 'ns1']);
    const missing = await call(api.url, 'POST', '/api/v1/namespaces/nope/configmaps', configMap('x'));
    expect(missing).toMatchObject({
      status: 404,
      body: { kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'namespaces "nope" not found', details: { name: 'nope', kind: 'namespaces' }, code: 404 },
    });
    expect((await call(api.url, 'POST', '/apis/coordination.k8s.io/v1/namespaces/nope/leases', { metadata: { name: 'x' } })).status).toBe(404);
    // Reading a missing namespace is an empty list, as on a real server.
    expect((await call(api.url, 'GET', '/api/v1/namespaces/nope/configmaps')).body['items']).toEqual([]);
    const created = await call(api.url, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'nope' } });
    expect(created).toMatchObject({ status: 201, body: { kind: 'Namespace', status: { phase: 'Active' }, metadata: { labels: { 'kubernetes.io/metadata.name': 'nope' } } } });
    expect((created.body['metadata'] as Record<string, unknown>)['namespace']).toBeUndefined();
    expect((await call(api.url, 'POST', '/api/v1/namespaces', { metadata: { name: 'Not_A_Label' } })).status).toBe(422);
    expect((await call(api.url, 'POST', '/api/v1/namespaces/nope/configmaps', configMap('x'))).status).toBe(201);
    api.createNamespace('other');
    expect((await call(api.url, 'GET', '/api/v1/namespaces/other')).status).toBe(200);
    // Deleting a namespace deletes what is in it (at once; a real server does it in the background).
    expect((await call(api.url, 'DELETE', '/api/v1/namespaces/nope')).status).toBe(200);
    expect(api.getObject('configmaps', 'nope', 'x')).toBeUndefined();
    expect((await call(api.url, 'POST', '/api/v1/namespaces/nope/configmaps', configMap('x'))).status).toBe(404);
  });

  it('unknown fields: dropped with a Warning header by default, dropped silently with Ignore, refused (400) with Strict', async () => {
    const res = await fetch(`${api.url}${LEASES}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ metadata: { name: 'u-a', bogusMeta: 1 }, spec: { holderIdentity: 'h', bogusSpec: 2 }, bogusTop: 3 }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('warning')).toBe('299 - "unknown field \\"metadata.bogusMeta\\"", 299 - "unknown field \\"spec.bogusSpec\\"", 299 - "unknown field \\"bogusTop\\""');
    const stored = api.getObject('leases', 'ns1', 'u-a');
    expect(stored?.metadata).not.toHaveProperty('bogusMeta');
    expect(stored).not.toHaveProperty('bogusTop');
    expect(stored?.['spec']).toEqual({ holderIdentity: 'h' });

    const ignored = await fetch(`${api.url}${CM}/b-a?fieldValidation=Ignore`, { method: 'PUT', body: JSON.stringify({ ...configMap('b-a'), extra: 1 }) });
    expect(ignored.status).toBe(200);
    expect(ignored.headers.get('warning')).toBeNull();
    expect(api.getObject('configmaps', 'ns1', 'b-a')).not.toHaveProperty('extra');

    const strict = await call(api.url, 'POST', `${CM}?fieldValidation=Strict`, { ...configMap('u-s'), extra: 1, data: { a: 'b' } });
    expect(strict).toMatchObject({
      status: 400,
      body: { reason: 'BadRequest', message: 'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "extra"' },
    });
    expect(api.getObject('configmaps', 'ns1', 'u-s')).toBeUndefined();
    expect((await call(api.url, 'POST', `${CM}?fieldValidation=Loose`, configMap('u-s'))).status).toBe(422);
    // Not implemented, so refused rather than written.
    expect((await call(api.url, 'POST', `${CM}?dryRun=All`, configMap('u-s'))).status).toBe(400);
    expect(api.getObject('configmaps', 'ns1', 'u-s')).toBeUndefined();
    // A merge patch is checked after merging.
    api.putObject('pods', 'ns1', { metadata: { name: 'p' } });
    const patch = await call(api.url, 'PATCH', `${CM}/b-a?fieldValidation=Strict`, { junk: 1 }, { 'Content-Type': 'application/merge-patch+json' });
    expect(patch.status).toBe(400);
  });

  it('list resourceVersion semantics: NotOlderThan serves the current state, Exact the state then or 410 Expired, too new waits then 504', async () => {
    const a = await call(api.url, 'POST', CM, configMap('rv-a', { rv: '1' }));
    await call(api.url, 'PUT', `${CM}/rv-a`, configMap('rv-a', { rv: '1' }, { v: '2' }));
    const sel = '?labelSelector=rv%3D1';
    const exact = await call(api.url, 'GET', `${CM}${sel}&resourceVersion=${rvOf(a)}&resourceVersionMatch=Exact`);
    expect(exact.status).toBe(200);
    expect(rvOf(exact)).toBe(rvOf(a));
    expect((exact.body['items'] as KubeObject[])[0]?.metadata.annotations).toEqual({});
    const notOlder = await call(api.url, 'GET', `${CM}${sel}&resourceVersion=1`);
    expect(rvOf(notOlder)).toBe(api.resourceVersion());
    expect((notOlder.body['items'] as KubeObject[])[0]?.metadata.annotations).toEqual({ v: '2' });

    for (let i = 0; i < 6; i++) {
      await call(api.url, 'POST', CM, configMap(`rv-fill-${i}`));
    }
    const gone = await call(api.url, 'GET', `${CM}?resourceVersion=${rvOf(a)}&resourceVersionMatch=Exact`);
    expect(gone).toMatchObject({ status: 410, body: { kind: 'Status', reason: 'Expired', code: 410, message: 'The resourceVersion for the provided list is too old.' } });
    expect((await call(api.url, 'GET', `${CM}?resourceVersionMatch=Exact`)).status).toBe(422);

    const ahead = Number(api.resourceVersion()) + 5;
    const t0 = Date.now();
    const tooLarge = await call(api.url, 'GET', `${CM}?resourceVersion=${ahead}`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    expect(tooLarge).toMatchObject({
      status: 504,
      body: {
        reason: 'Timeout',
        code: 504,
        message: `Timeout: Too large resource version: ${ahead}, current: ${api.resourceVersion()}`,
        details: { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }], retryAfterSeconds: 1 },
      },
    });
    // Reached while waiting: answered then.
    const next = Number(api.resourceVersion()) + 1;
    const waiting = call(api.url, 'GET', `${CM}?resourceVersion=${next}`);
    await new Promise((r) => setTimeout(r, 100));
    await call(api.url, 'POST', CM, configMap('rv-late'));
    const late = await waiting;
    expect(late.status).toBe(200);
    expect(Number(rvOf(late))).toBeGreaterThanOrEqual(next);
  });
});

describe('writeStandinKubeconfig', () => {
  // The first kubernetes store loads @kubernetes/client-node: seconds on a loaded 2-core machine.
  it('writes a kubeconfig (mode 0600) the Kubernetes store reads: the server, the first token, the namespace', { timeout: 30_000 }, async () => {
    const dir = await makeTempDir('stolon-standin-kubeconfig-');
    const s = await startKubeApiServerStandin({ token: 'tok-1', namespaces: ['ns-a'] });
    const store = await createStore({
      backend: 'kubernetes',
      endpoints: [],
      clusterName: 'kc1',
      kubeResourceKind: 'configmap',
      kubeconfig: await writeStandinKubeconfig(join(dir, 'kubeconfig'), s.url, { namespace: 'ns-a', tokens: ['tok-1', 'tok-2'] }),
      timeoutMs: 2000,
    });
    try {
      expect(await readFile(join(dir, 'kubeconfig'), 'utf8')).toContain(`server: ${s.url}`);
      expect((await stat(join(dir, 'kubeconfig'))).mode & 0o777).toBe(0o600);
      await store.overwriteClusterData('{"x":1}');
      expect(s.getObject('configmaps', 'ns-a', 'stolon-cluster-kc1')?.metadata.annotations?.['stolon-clusterdata']).toBe('{"x":1}');
    } finally {
      await store.close();
      await s.stop();
      await removeDir(dir);
    }
  });

  it('refuses no tokens, and tokens or namespaces that are not letters, digits and dashes', async () => {
    await expect(writeStandinKubeconfig('/nonexistent/kubeconfig', 'http://127.0.0.1:1', { namespace: 'ns', tokens: [] })).rejects.toThrow(RangeError);
    await expect(writeStandinKubeconfig('/nonexistent/kubeconfig', 'http://127.0.0.1:1', { namespace: 'ns', tokens: ['a: b'] })).rejects.toThrow(
      /"a: b" must be letters, digits and '-' only/,
    );
    await expect(writeStandinKubeconfig('/nonexistent/kubeconfig', 'http://127.0.0.1:1', { namespace: 'a/b', tokens: ['t'] })).rejects.toThrow(RangeError);
  });
});
