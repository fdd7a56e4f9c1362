/**
 * KubernetesStore against the stand-in API server of `@stolon-ts/harness` (there is no
 * kube-apiserver on this machine): the conformance suite, then what is specific to the backend
 * (the objects it writes, optimistic concurrency on the ConfigMap, watch resumption, 410 relist,
 * expiry seen without a Kubernetes event, leader step-down, error mapping, bad store contents).
 * Nothing here ran against a real API server.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StolonError, StoreConflictError, StoreUnavailableError } from '@stolon-ts/cluster';
import type { KeeperInfo } from '@stolon-ts/cluster';
import { startKubeApiServerStandin, waitFor, writeStandinKubeconfig, type KubeApiServerStandin, type KubeObject } from '@stolon-ts/harness';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describeStoreConformance } from '../test/conformance.js';
import { resolveKubeConfig } from './kube-client.js';
import { infoLeaseName, leaderLeaseName, microTime } from './kube-objects.js';
import { KubernetesStore } from './kubernetes.js';
import type { Store, WatchTopic } from './store.js';

const NS = 'stolon-test';

/** A kubeconfig file for the stand-in, with one context per token, all in namespace NS. */
function writeKubeconfig(dir: string, server: string, tokens: readonly string[]): Promise<string> {
  return writeStandinKubeconfig(join(dir, `kubeconfig-${tokens.join('-')}`), server, { namespace: NS, tokens });
}

function storeFor(kubeconfig: string, clusterName: string, opts: { context?: string; timeoutMs?: number; watchTimeoutSeconds?: number } = {}): KubernetesStore {
  const kc = resolveKubeConfig({ kubeconfig, context: opts.context });
  return new KubernetesStore({
    clusterName,
    kubeConfig: kc.kubeConfig,
    namespace: kc.namespace,
    timeoutMs: opts.timeoutMs ?? 3000,
    ...(opts.watchTimeoutSeconds === undefined ? {} : { watchTimeoutSeconds: opts.watchTimeoutSeconds }),
  });
}

const keeperInfo = (uid: string): KeeperInfo => ({
  infoUID: 'i1',
  uid,
  clusterUID: 'cu1',
  bootUUID: 'b1',
  postgresBinaryVersion: { Maj: 16, Min: 4 },
});

describeStoreConformance('kubernetes (stand-in API server)', async () => {
  const api = await startKubeApiServerStandin({ token: 'conformance', namespaces: [NS] });
  const dir = await mkdtemp(join(tmpdir(), 'stolon-k8s-conf-'));
  const kubeconfig = await writeKubeconfig(dir, api.url, ['conformance']);
  return {
    store: (clusterName) => storeFor(kubeconfig, clusterName),
    writeRawInfo: async (clusterName, kind, uid, text) => {
      api.putObject('leases', NS, {
        metadata: {
          name: infoLeaseName(clusterName, kind, uid),
          labels: { 'stolon-cluster': clusterName, 'stolon-info-kind': kind },
          annotations: { 'stolon-status': text, 'stolon-uid': uid },
        },
        spec: { holderIdentity: uid, leaseDurationSeconds: 3600, renewTime: microTime(Date.now()) },
      });
    },
    crash: async (store) => (store as KubernetesStore).abandon(),
    // Lease durations are whole seconds; 2 s keeps renewals (every 667 ms) clear of event-loop
    // stalls on this shared 2-core machine, where the stand-in runs in the test process.
    ttlMs: 2000,
    expirySlackMs: 3000,
    cleanup: async () => {
      await api.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('KubernetesStore on the stand-in API server', () => {
  let api: KubeApiServerStandin;
  let dir: string;
  let kubeconfig: string;
  let opened: Store[] = [];
  let clusterN = 0;
  const cluster = (): string => `k8s-${process.pid}-${++clusterN}`;
  const open = (name: string, opts: Parameters<typeof storeFor>[2] = {}): KubernetesStore => {
    const s = storeFor(kubeconfig, name, opts);
    opened.push(s);
    return s;
  };

  beforeAll(async () => {
    api = await startKubeApiServerStandin({ bookmarkIntervalMs: 100, namespaces: [NS] });
    dir = await mkdtemp(join(tmpdir(), 'stolon-k8s-'));
    kubeconfig = await writeKubeconfig(dir, api.url, ['a', 'b']);
  });
  afterEach(async () => {
    api.setUnavailable(false);
    api.setInterceptor(undefined);
    const stores = opened;
    opened = [];
    await Promise.all(stores.map((s) => s.close()));
  });
  afterAll(async () => {
    await api?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  describe('objects', () => {
    it('clusterdata is annotation stolon-clusterdata of ConfigMap stolon-cluster-<name>, revision = resourceVersion', async () => {
      const name = cluster();
      const s = open(name);
      const rev = await s.putClusterData('{"v":1}', null);
      const cm = api.getObject('configmaps', NS, `stolon-cluster-${name}`);
      expect(cm?.metadata.annotations?.['stolon-clusterdata']).toBe('{"v":1}');
      expect(cm?.metadata.labels?.['stolon-cluster']).toBe(name);
      expect(cm?.metadata.resourceVersion).toBe(rev);
    });

    it('a CAS replaces the ConfigMap with the expected resourceVersion and keeps what others put on it', async () => {
      const name = cluster();
      const s = open(name);
      const r1 = await s.putClusterData('{"v":1}', null);
      // Someone labels the ConfigMap (kubectl label …): the CAS from r1 must now conflict…
      const cm = api.getObject('configmaps', NS, `stolon-cluster-${name}`) as KubeObject;
      api.putObject('configmaps', NS, { ...cm, metadata: { ...cm.metadata, labels: { ...cm.metadata.labels, team: 'db' } } });
      await expect(s.putClusterData('{"v":2}', r1)).rejects.toBeInstanceOf(StoreConflictError);
      // …and a CAS from the new revision keeps the label.
      const cur = await s.getClusterData();
      const r3 = await s.putClusterData('{"v":3}', cur?.revision ?? '');
      const after = api.getObject('configmaps', NS, `stolon-cluster-${name}`);
      expect(after?.metadata.labels).toEqual({ 'stolon-cluster': name, team: 'db' });
      expect(after?.metadata.resourceVersion).toBe(r3);
      expect(api.requestLog().filter((l) => l.startsWith(`PUT /api/v1/namespaces/${NS}/configmaps/stolon-cluster-${name}`)).length).toBeGreaterThanOrEqual(2);
    });

    it('two stores CAS from the same revision at once: the API server’s 409 makes exactly one win', async () => {
      const name = cluster();
      const a = open(name);
      const b = open(name, { context: 'ctx-b' });
      const r1 = await a.putClusterData('{"v":1}', null);
      await b.getClusterData(); // both now hold the ConfigMap at r1 and send a PUT straight away
      const conflicts: string[] = [];
      api.setInterceptor((r) => {
        if (r.method === 'PUT') {
          conflicts.push(r.path);
        }
        return undefined;
      });
      const results = await Promise.allSettled([a.putClusterData('{"w":"a"}', r1), b.putClusterData('{"w":"b"}', r1)]);
      expect(conflicts).toHaveLength(2); // both reached the server: the server decided
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(results.find((r) => r.status === 'rejected')?.reason).toBeInstanceOf(StoreConflictError);
    });

    it('a ConfigMap without the annotation (created by hand) is adopted by the first create', async () => {
      const name = cluster();
      api.putObject('configmaps', NS, { metadata: { name: `stolon-cluster-${name}`, labels: { app: 'x' } } });
      const s = open(name);
      expect(await s.getClusterData()).toBeNull();
      const rev = await s.putClusterData('{"v":1}', null);
      expect(await s.getClusterData()).toEqual({ text: '{"v":1}', revision: rev });
      expect(api.getObject('configmaps', NS, `stolon-cluster-${name}`)?.metadata.labels?.['app']).toBe('x');
      await expect(s.putClusterData('{"v":2}', null)).rejects.toBeInstanceOf(StoreConflictError);
    });

    it('an info is a Lease named from cluster, kind and uid, with labels, annotations and spec', async () => {
      const name = cluster();
      const s = open(name);
      await s.setInfo('keepers', 'keeper_0', keeperInfo('keeper_0'), 1500);
      const leaseName = infoLeaseName(name, 'keepers', 'keeper_0');
      expect(leaseName).toMatch(new RegExp(`^stolon-cluster-${name}\\.keepers\\.keeper-0-[0-9a-f]{10}$`));
      const lease = api.getObject('leases', NS, leaseName);
      expect(lease?.metadata.labels).toEqual({ 'stolon-cluster': name, 'stolon-info-kind': 'keepers' });
      expect(lease?.metadata.annotations).toEqual({ 'stolon-status': JSON.stringify(keeperInfo('keeper_0')), 'stolon-uid': 'keeper_0' });
      const spec = lease?.['spec'] as Record<string, unknown>;
      expect(spec).toMatchObject({ holderIdentity: 'keeper_0', leaseDurationSeconds: 2, leaseTransitions: 0 });
      expect(String(spec['renewTime'])).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
      // Renewed every TTL/3: the resourceVersion moves without new setInfo calls.
      const rv = lease?.metadata.resourceVersion;
      await waitFor(() => api.getObject('leases', NS, leaseName)?.metadata.resourceVersion !== rv, { timeoutMs: 2000, what: 'a renewal' });
      expect(infoLeaseName(name, 'keepers', 'k1')).toBe(`stolon-cluster-${name}.keepers.k1`);
    });

    it('clock skew: renewTime is never compared with the reader’s clock, only unchanged resourceVersions age', async () => {
      const name = cluster();
      const s = open(name);
      const lease = (uid: string, renewTime: string): KubeObject => ({
        metadata: {
          name: infoLeaseName(name, 'keepers', uid),
          labels: { 'stolon-cluster': name, 'stolon-info-kind': 'keepers' },
          annotations: { 'stolon-status': JSON.stringify(keeperInfo(uid)), 'stolon-uid': uid },
        },
        spec: { holderIdentity: uid, leaseDurationSeconds: 1, renewTime },
      });
      // Writer "behind" has a clock an hour slow and keeps renewing; writer "ahead" has a clock an
      // hour fast and has stopped.
      const hourAgo = microTime(Date.now() - 3_600_000);
      api.putObject('leases', NS, lease('behind', hourAgo));
      api.putObject('leases', NS, lease('ahead', microTime(Date.now() + 3_600_000)));
      expect(Object.keys(await s.listInfos('keepers')).sort()).toEqual(['ahead', 'behind']);
      const renew = setInterval(() => api.putObject('leases', NS, lease('behind', hourAgo)), 250);
      try {
        const t0 = performance.now();
        await waitFor(async () => Object.keys(await s.listInfos('keepers')).join() === 'behind', {
          timeoutMs: 3000,
          what: 'the stopped Lease to expire while the renewed one stays',
          intervalMs: 50,
        });
        expect(performance.now() - t0).toBeGreaterThanOrEqual(900);
        for (let i = 0; i < 8; i++) {
          await new Promise((r) => setTimeout(r, 250));
          expect(Object.keys(await s.listInfos('keepers'))).toEqual(['behind']);
        }
      } finally {
        clearInterval(renew);
      }
    });

    it('infoLeaseRemainingMs: undefined without a Lease, kept up by renewals, runs down while the API server hangs', async () => {
      const name = cluster();
      const s = open(name, { timeoutMs: 500 });
      expect(s.infoLeaseRemainingMs('keepers', 'k1')).toBeUndefined();
      await s.setInfo('keepers', 'k1', keeperInfo('k1'), 1500); // duration 2 s
      const first = s.infoLeaseRemainingMs('keepers', 'k1') ?? 0;
      expect(first).toBeGreaterThan(1500);
      expect(first).toBeLessThanOrEqual(2000);
      await new Promise((r) => setTimeout(r, 1500)); // about elapsed time: renewals every 500 ms
      expect(s.infoLeaseRemainingMs('keepers', 'k1')).toBeGreaterThan(1000);
      api.setUnavailable('hang');
      const t0 = performance.now();
      await waitFor(() => (s.infoLeaseRemainingMs('keepers', 'k1') ?? 1) <= 0, { timeoutMs: 4000, what: 'the remaining time to run out', intervalMs: 20 });
      expect(performance.now() - t0).toBeLessThanOrEqual(2000 + 50);
      api.setUnavailable(false);
      await waitFor(() => (s.infoLeaseRemainingMs('keepers', 'k1') ?? 0) > 1000, { timeoutMs: 4000, what: 'renewals to resume' });
      await s.deleteInfo('keepers', 'k1');
      expect(s.infoLeaseRemainingMs('keepers', 'k1')).toBeUndefined();
    });

    it('leader election: create, leaseTransitions on takeover, holderIdentity cleared on resign', async () => {
      const name = cluster();
      const a = open(name);
      const b = open(name, { context: 'ctx-b' });
      const ea = await a.campaign('sA', 2000);
      await waitFor(() => ea.isLeader(), { timeoutMs: 5000, what: 'sA to lead' });
      const lease = (): Record<string, unknown> => api.getObject('leases', NS, leaderLeaseName(name))?.['spec'] as Record<string, unknown>;
      expect(lease()).toMatchObject({ holderIdentity: 'sA', leaseDurationSeconds: 2, leaseTransitions: 0 });
      const eb = await b.campaign('sB', 2000);
      await ea.resign();
      expect(lease()['holderIdentity']).toBe('');
      await waitFor(() => eb.isLeader(), { timeoutMs: 5000, what: 'sB to lead' });
      expect(lease()).toMatchObject({ holderIdentity: 'sB', leaseTransitions: 1 });
      expect(await a.getLeader()).toBe('sB');
    });
  });

  describe('watch', () => {
    it('resumes from the last BOOKMARK after the server ends the stream: no relist, no listener call', async () => {
      const name = cluster();
      const s = open(name);
      const seen: WatchTopic[] = [];
      await s.watch(['clusterdata'], (t) => seen.push(t));
      const listsBefore = api.requestLog().filter((l) => l.includes('configmaps?') && !l.includes('watch=')).length;
      // Other objects move the global resourceVersion; bookmarks (every 100 ms) carry it to us.
      api.putObject('configmaps', NS, { metadata: { name: `unrelated-${name}` } });
      const target = api.resourceVersion();
      await new Promise((r) => setTimeout(r, 400));
      api.compactHistory();
      expect(api.dropWatches()).toBeGreaterThan(0);
      await waitFor(() => api.requestLog().some((l) => l.includes(`resourceVersion=${target}`) && l.includes('watch=1')), {
        timeoutMs: 3000,
        what: 're-watch from the bookmarked resourceVersion',
      });
      await new Promise((r) => setTimeout(r, 200));
      expect(api.requestLog().filter((l) => l.includes('configmaps?') && !l.includes('watch=')).length).toBe(listsBefore);
      expect(seen).toEqual([]);
      // And it still works.
      await s.putClusterData('{}', null);
      await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 3000, what: 'event after resuming' });
    });

    it('410 Gone after an outage longer than the history: relists, then calls the listener once', async () => {
      const name = cluster();
      const s = open(name);
      const w = open(name);
      await s.putClusterData('{"v":1}', null);
      const seen: WatchTopic[] = [];
      await w.watch(['clusterdata'], (t) => seen.push(t));
      const selector = `fieldSelector=metadata.name%3Dstolon-cluster-${name}`;
      const lists = (): number => api.requestLog().filter((l) => l.includes(selector) && !l.includes('watch=')).length;
      const watches = (): string[] => api.requestLog().filter((l) => l.includes(selector) && l.includes('watch=1'));
      const listsBefore = lists();
      const watchedFrom = /resourceVersion=(\d+)/.exec(watches().at(-1) ?? '')?.[1];
      api.setUnavailable('refuse');
      // Meanwhile clusterdata changes and the server compacts its history past the watch.
      const cm = api.getObject('configmaps', NS, `stolon-cluster-${name}`) as KubeObject;
      api.putObject('configmaps', NS, { ...cm, metadata: { ...cm.metadata, annotations: { 'stolon-clusterdata': '{"v":2}' } } });
      api.compactHistory();
      api.setUnavailable(false);
      await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 5000, what: 'the listener after the relist' });
      // It first tried to resume from where it was (and got 410), then listed again.
      expect(watches().filter((l) => l.includes(`resourceVersion=${watchedFrom ?? '?'}&`)).length).toBeGreaterThanOrEqual(2);
      expect(lists()).toBe(listsBefore + 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(seen).toEqual(['clusterdata']);
      expect((await w.getClusterData())?.text).toBe('{"v":2}');
      // The new watch works.
      seen.length = 0;
      await s.overwriteClusterData('{"v":3}');
      await waitFor(() => seen.includes('clusterdata'), { timeoutMs: 3000, what: 'event on the new watch' });
    });

    it('an info’s expiry reaches watchers although no Kubernetes event happens', async () => {
      const name = cluster();
      const writer = storeFor(kubeconfig, name);
      const reader = open(name);
      const seen: WatchTopic[] = [];
      await reader.watch(['keepers'], (t) => seen.push(t));
      await writer.setInfo('keepers', 'k1', keeperInfo('k1'), 1000);
      await waitFor(() => seen.length > 0, { timeoutMs: 3000, what: 'the ADDED event' });
      const leaseName = infoLeaseName(name, 'keepers', 'k1');
      // No DELETE may succeed: the Lease stays, so no DELETED event can tell the reader.
      api.setInterceptor((r) => (r.method === 'DELETE' ? { code: 503, reason: 'ServiceUnavailable', message: 'deletes blocked by the test' } : undefined));
      await writer.abandon();
      const rvAtCrash = api.getObject('leases', NS, leaseName)?.metadata.resourceVersion;
      seen.length = 0;
      const t0 = performance.now();
      await waitFor(() => seen.includes('keepers'), { timeoutMs: 4000, what: 'the expiry to reach the listener' });
      expect(performance.now() - t0).toBeGreaterThan(300);
      expect(api.getObject('leases', NS, leaseName)?.metadata.resourceVersion).toBe(rvAtCrash);
      expect(await reader.listInfos('keepers')).toEqual({});
      // Once deletes go through, whoever notices deletes it.
      api.setInterceptor(undefined);
      await reader.listInfos('keepers');
      await waitFor(() => api.getObject('leases', NS, leaseName) === undefined, { timeoutMs: 3000, what: 'the expired Lease to be deleted' });
    });

    it('renewals alone wake nobody; a Lease that expired and is renewed after all is reported again', async () => {
      const name = cluster();
      const writer = open(name, { context: 'ctx-b' });
      const reader = open(name);
      const seen: WatchTopic[] = [];
      await reader.watch(['keepers'], (t) => seen.push(t));
      await writer.setInfo('keepers', 'k1', keeperInfo('k1'), 2000);
      await waitFor(() => seen.length > 0, { timeoutMs: 3000, what: 'the ADDED event' });
      const leaseName = infoLeaseName(name, 'keepers', 'k1');
      const rv0 = api.getObject('leases', NS, leaseName)?.metadata.resourceVersion;
      await new Promise((r) => setTimeout(r, 1500));
      expect(api.getObject('leases', NS, leaseName)?.metadata.resourceVersion).not.toBe(rv0); // renewed meanwhile
      expect(seen).toEqual(['keepers']);
      // The writer is cut off (its token is "b") and the reader keeps it from being deleted.
      api.setInterceptor((r) =>
        r.headers['authorization'] === 'Bearer b' || r.method === 'DELETE' ? { code: 503, reason: 'ServiceUnavailable', message: 'cut off' } : undefined,
      );
      seen.length = 0;
      await waitFor(() => seen.length > 0, { timeoutMs: 5000, what: 'the expiry' });
      expect(await reader.listInfos('keepers')).toEqual({});
      // The writer is back (deletes stay blocked, so the Lease is renewed, not re-created): its
      // renewal changes nothing but renewTime, yet readers had seen the info gone.
      seen.length = 0;
      api.setInterceptor((r) => (r.method === 'DELETE' ? { code: 503, reason: 'ServiceUnavailable', message: 'deletes blocked' } : undefined));
      await waitFor(() => seen.length > 0, { timeoutMs: 5000, what: 'the renewal after the expiry' });
      expect(Object.keys(await reader.listInfos('keepers'))).toEqual(['k1']);
    });

    it('after the API server refused connections, the watch comes back with a bounded backoff and calls the listener once', async () => {
      const name = cluster();
      const s = open(name);
      const seen: WatchTopic[] = [];
      await s.watch(['proxies'], (t) => seen.push(t));
      api.setUnavailable('refuse');
      await new Promise((r) => setTimeout(r, 3000));
      const t0 = performance.now();
      api.setUnavailable(false);
      await waitFor(() => seen.includes('proxies'), { timeoutMs: 5000, what: 'the listener after reconnecting' });
      // Backoff is capped at 2 s (±25 %): back within 2.5 s of the server's return, plus slack.
      expect(performance.now() - t0).toBeLessThan(4000);
    });
  });

  describe('election and failures', () => {
    it('the leader steps down before its Lease can expire when the API server stops answering', async () => {
      const name = cluster();
      const s = open(name, { timeoutMs: 1000 });
      const e = await s.campaign('s1', 3000);
      await waitFor(() => e.isLeader(), { timeoutMs: 5000, what: 's1 to lead' });
      const changes: boolean[] = [];
      e.onChange((l) => changes.push(l));
      api.setUnavailable('hang');
      const t0 = performance.now();
      await waitFor(() => !e.isLeader(), { timeoutMs: 5000, what: 's1 to give up leadership', intervalMs: 20 });
      // Lease duration 3 s: leadership ends by 3/4 of it after the last renewal was sent.
      expect(performance.now() - t0).toBeLessThan(3000 * 0.75 + 100);
      await waitFor(() => changes.includes(false), { timeoutMs: 1000, what: 'onChange(false)' });
      api.setUnavailable(false);
      await waitFor(() => e.isLeader(), { timeoutMs: 10_000, what: 's1 to lead again' });
    });

    it('a leader cut off from the API server stops leading before another candidate takes over', async () => {
      const name = cluster();
      const a = open(name, { timeoutMs: 1000 });
      const b = open(name, { context: 'ctx-b', timeoutMs: 1000 });
      const ea = await a.campaign('sA', 2000);
      await waitFor(() => ea.isLeader(), { timeoutMs: 5000, what: 'sA to lead' });
      const eb = await b.campaign('sB', 2000);
      let aStopped = 0;
      let bStarted = 0;
      ea.onChange((l) => {
        if (!l) {
          aStopped = performance.now();
        }
      });
      eb.onChange((l) => {
        if (l) {
          bStarted = performance.now();
        }
      });
      // Only sA's requests fail (its token is "a").
      api.setInterceptor((r) => (r.headers['authorization'] === 'Bearer a' ? { code: 503, reason: 'ServiceUnavailable', message: 'partitioned' } : undefined));
      await waitFor(() => eb.isLeader(), { timeoutMs: 8000, what: 'sB to take over' });
      expect(aStopped).toBeGreaterThan(0);
      expect(bStarted).toBeGreaterThan(aStopped);
      expect(ea.isLeader()).toBe(false);
      expect(await b.getLeader()).toBe('sB');
    });

    it('every call fails with StoreUnavailableError within about timeoutMs when the API server hangs or refuses', async () => {
      const name = cluster();
      const timeoutMs = 800;
      const s = open(name, { timeoutMs });
      const rev = await s.putClusterData('{"v":1}', null);
      for (const mode of ['hang', 'refuse'] as const) {
        api.setUnavailable(mode);
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['getClusterData', () => s.getClusterData()],
          ['putClusterData', () => s.putClusterData('{"v":2}', rev)],
          ['overwriteClusterData', () => s.overwriteClusterData('{"v":3}')],
          ['setInfo', () => s.setInfo('sentinels', 's1', { UID: 's1' }, 20_000)],
          ['listInfos', () => s.listInfos('keepers')],
          ['deleteInfo', () => s.deleteInfo('sentinels', 's1')],
          ['getLeader', () => s.getLeader()],
          ['watch', () => s.watch(['proxies'], () => undefined)],
        ];
        for (const [what, call] of calls) {
          const t0 = performance.now();
          const err = await call().then(
            () => new Error(`${what} succeeded with the API server ${mode}ing`),
            (e: unknown) => e,
          );
          const elapsed = performance.now() - t0;
          expect(err, `${mode} ${what}`).toBeInstanceOf(StoreUnavailableError);
          expect(elapsed, `${mode} ${what} took ${Math.round(elapsed)} ms`).toBeLessThan(timeoutMs + 500);
        }
        api.setUnavailable(false);
      }
      expect((await s.getClusterData())?.text).toBe('{"v":1}');
    });

    it('403 and 401 become StoreUnavailableError saying what to grant or check', async () => {
      const name = cluster();
      const s = open(name);
      api.setInterceptor((r) =>
        r.resource === 'leases' ? { code: 403, reason: 'Forbidden', message: 'leases.coordination.k8s.io is forbidden: User "system:serviceaccount:x:y" cannot list resource "leases"' } : undefined,
      );
      const err = await s.listInfos('keepers').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toMatch(/grant this program's service account that request on .*leases\.coordination\.k8s\.io in namespace stolon-test/);
      const secured = await startKubeApiServerStandin({ token: 'right', namespaces: [NS] });
      try {
        const bad = await writeKubeconfig(dir, secured.url, ['wrong']);
        const s2 = storeFor(bad, name);
        opened.push(s2);
        const err2 = await s2.getClusterData().catch((e: unknown) => e);
        expect(err2).toBeInstanceOf(StoreUnavailableError);
        expect((err2 as Error).message).toMatch(/refused the credentials .*check the kubeconfig user or the service account token/);
      } finally {
        await secured.stop();
      }
    });
  });

  describe('bad store contents', () => {
    it('a leader Lease with a spec field of the wrong type gives STORE_DATA_INVALID naming the Lease and the field', async () => {
      const name = cluster();
      api.putObject('leases', NS, { metadata: { name: leaderLeaseName(name) }, spec: { holderIdentity: 'x', leaseDurationSeconds: 'fifteen' } });
      const s = open(name);
      const err = await s.getLeader().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StolonError);
      expect((err as StolonError).code).toBe('STORE_DATA_INVALID');
      expect((err as Error).message).toContain(`Lease ${leaderLeaseName(name)} has spec.leaseDurationSeconds = "fifteen", expected a positive integer`);
    });

    it('a ConfigMap whose annotations are not strings gives STORE_DATA_INVALID naming it', async () => {
      const name = cluster();
      api.putObject('configmaps', NS, { metadata: { name: `stolon-cluster-${name}`, annotations: { 'stolon-clusterdata': 42 as unknown as string } } });
      const err = await open(name).getClusterData().catch((e: unknown) => e);
      expect((err as StolonError).code).toBe('STORE_DATA_INVALID');
      expect((err as Error).message).toContain(`metadata.annotations of stolon-cluster-${name} is not a map of strings`);
    });

    it('info Leases that cannot be read are reported through onInvalid with the Lease named', async () => {
      const name = cluster();
      const s = open(name);
      await s.setInfo('proxies', 'p1', { infoUID: 'i', UID: 'p1', Generation: 1, ProxyTimeout: 1 }, 20_000);
      const labels = { 'stolon-cluster': name, 'stolon-info-kind': 'proxies' };
      api.putObject('leases', NS, { metadata: { name: `${name}-nostatus`, labels, annotations: { 'stolon-uid': 'p2' } }, spec: { leaseDurationSeconds: 60 } });
      api.putObject('leases', NS, { metadata: { name: `${name}-noduration`, labels, annotations: { 'stolon-uid': 'p3', 'stolon-status': '{}' } }, spec: {} });
      api.putObject('leases', NS, { metadata: { name: `${name}-badspec`, labels }, spec: { leaseTransitions: -1 } });
      const invalid: Record<string, string> = {};
      const infos = await s.listInfos('proxies', (uid, err) => {
        invalid[uid] = err.message;
      });
      expect(Object.keys(infos)).toEqual(['p1']);
      expect(invalid['p2']).toContain(`Lease ${name}-nostatus has no stolon-status annotation`);
      expect(invalid['p3']).toContain(`Lease ${name}-noduration has no spec.leaseDurationSeconds`);
      expect(invalid[`${name}-badspec`]).toContain('spec.leaseTransitions');
    });

    it('a cluster name that cannot be part of object names is refused with a ConfigError naming the flag', () => {
      const kc = resolveKubeConfig({ kubeconfig });
      expect(() => new KubernetesStore({ clusterName: 'My_Cluster', kubeConfig: kc.kubeConfig, namespace: NS })).toThrow(/--cluster-name: "My_Cluster" cannot be used with the kubernetes backend/);
    });
  });
});
