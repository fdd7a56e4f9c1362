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
import { startKubeApiServerStandin, writeStandinKubeconfig, type KubeApiServerStandin, type KubeObject } from './kube-apiserver-standin.js';
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
    api = await startKubeApiServerStandin({ bookmarkIntervalMs: 100, historyLimit: 50 });
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

  it('validates names, labels, annotation sizes and Lease fields (422 Invalid), and normalises MicroTime', async () => {
    const badName = await call(base, 'POST', CM, configMap('Bad_Name'));
    expect(badName.status).toBe(422);
    expect(badName.body).toMatchObject({ reason: 'Invalid', code: 422 });
    expect(String(badName.body['message'])).toMatch(/RFC 1123 subdomain/);
    expect((await call(base, 'POST', CM, configMap('badlabel', { k: 'x'.repeat(64) }))).status).toBe(422);
    expect((await call(base, 'POST', CM, configMap('bigann', {}, { a: 'x'.repeat(256 * 1024) }))).status).toBe(422);
    expect((await call(base, 'POST', CM, configMap('badannkey', {}, { 'a/b/c': 'x' }))).status).toBe(422);

    const badLease = await call(base, 'POST', LEASES, { metadata: { name: 'l0' }, spec: { leaseDurationSeconds: 0 } });
    expect(badLease.status).toBe(422);
    expect((await call(base, 'POST', LEASES, { metadata: { name: 'l0' }, spec: { renewTime: 'yesterday' } })).status).toBe(422);
    const lease = await call(base, 'POST', LEASES, {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'l1' },
      spec: { holderIdentity: 'me', leaseDurationSeconds: 10, renewTime: '2024-05-06T07:08:09.123Z', leaseTransitions: 0 },
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
    const small = await startKubeApiServerStandin({ historyLimit: 3 });
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
    const s = await startKubeApiServerStandin({ token: 'sekrit' });
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
    const s = await startKubeApiServerStandin({ token: 'admin-tok', users: { 'k-tok': 'keeper', 'p-tok': 'proxy' }, logRequests: true });
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

describe('writeStandinKubeconfig', () => {
  it('writes a kubeconfig (mode 0600) the Kubernetes store reads: the server, the first token, the namespace', async () => {
    const dir = await makeTempDir('stolon-standin-kubeconfig-');
    const s = await startKubeApiServerStandin({ token: 'tok-1' });
    const store = createStore({
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
