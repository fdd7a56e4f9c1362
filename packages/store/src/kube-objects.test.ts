/** The Kubernetes backend's pure parts: object names, durations, MicroTime, Lease reading, the clock-skew rule. */
import { ConfigError, StolonError } from '@stolon-ts/cluster';
import { describe, expect, it } from 'vitest';
import {
  LeaseObservations,
  checkKubeClusterName,
  clusterDataConfigMapName,
  infoLeaseName,
  leaderLeaseName,
  leaseDurationSeconds,
  microTime,
  readLease,
} from './kube-objects.js';

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

describe('object names', () => {
  it('uses Stolon’s ConfigMap name and a fixed leader Lease name', () => {
    expect(clusterDataConfigMapName('c1')).toBe('stolon-cluster-c1');
    expect(leaderLeaseName('c1')).toBe('stolon-cluster-c1-sentinel-leader');
  });

  it('keeps a uid that is already a DNS-1123 label as it is', () => {
    expect(infoLeaseName('c1', 'keepers', 'keeper0')).toBe('stolon-cluster-c1.keepers.keeper0');
    expect(infoLeaseName('c1', 'proxies', 'a-b-1')).toBe('stolon-cluster-c1.proxies.a-b-1');
  });

  it('sanitises other uids and adds a hash, so distinct uids keep distinct valid names', () => {
    const uids = ['k_1', 'k-1', 'K-1', 'k.1', '___', 'ünï', 'x'.repeat(300), `${'x'.repeat(300)}y`, '-lead'];
    const names = uids.map((u) => infoLeaseName('c1', 'sentinels', u));
    expect(new Set(names).size).toBe(uids.length);
    for (const n of names) {
      expect(n).toMatch(DNS1123_SUBDOMAIN);
      expect(n.length).toBeLessThanOrEqual(253);
      expect(n.startsWith('stolon-cluster-c1.sentinels.')).toBe(true);
    }
    expect(infoLeaseName('c1', 'keepers', 'keeper_0')).toMatch(/^stolon-cluster-c1\.keepers\.keeper-0-[0-9a-f]{10}$/);
    expect(infoLeaseName('c1', 'keepers', '___')).toMatch(/^stolon-cluster-c1\.keepers\.[0-9a-f]{10}$/);
  });

  it('never collides with the leader Lease or across clusters whose names share a prefix', () => {
    expect(infoLeaseName('c1', 'sentinels', 'leader')).not.toBe(leaderLeaseName('c1'));
    // Cluster "a" with uid "keepers-x" vs cluster "a-keepers" with uid "x": the dots keep them apart.
    expect(infoLeaseName('a', 'keepers', 'keepers-x')).not.toBe(infoLeaseName('a-keepers', 'keepers', 'x'));
  });

  it('accepts only cluster names usable in object names and label values', () => {
    for (const ok of ['c', 'stolon-local', 'conf-abc123-42-1', 'a'.repeat(63)]) {
      expect(() => checkKubeClusterName(ok)).not.toThrow();
    }
    for (const bad of ['My_Cluster', 'Upper', 'dot.ted', '-lead', 'trail-', '', 'a'.repeat(64)]) {
      let err: unknown;
      try {
        checkKubeClusterName(bad);
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).field).toBe('cluster-name');
    }
  });
});

describe('durations and times', () => {
  it('leaseDurationSeconds rounds the TTL up to whole seconds, at least 1', () => {
    expect([1, 999, 1000, 1001, 20_000, 20_500].map(leaseDurationSeconds)).toEqual([1, 1, 1, 2, 20, 21]);
  });

  it('microTime writes RFC 3339 UTC with six fractional digits, as the API server does', () => {
    expect(microTime(Date.UTC(2024, 4, 6, 7, 8, 9, 123))).toBe('2024-05-06T07:08:09.123000Z');
  });
});

describe('readLease', () => {
  it('reads holder, duration in ms, times and transitions; absent fields have defaults', () => {
    const l = readLease(
      {
        metadata: { name: 'l', resourceVersion: '7', labels: { a: 'b' } },
        spec: { holderIdentity: 's1', leaseDurationSeconds: 15, renewTime: 't', leaseTransitions: 2 },
      },
      'test',
    );
    expect(l).toMatchObject({ name: 'l', resourceVersion: '7', holder: 's1', durationMs: 15_000, renewTime: 't', transitions: 2, labels: { a: 'b' }, annotations: {} });
    expect(readLease({ metadata: { name: 'l', resourceVersion: '1' } }, 'test')).toMatchObject({ holder: '', durationMs: undefined, transitions: 0 });
  });

  it.each([
    [{ metadata: { name: 'l' } }, 'object without metadata.name or metadata.resourceVersion'],
    ['<html>', 'not a Kubernetes object'],
    [{ metadata: { name: 'l', resourceVersion: '1' }, spec: { leaseDurationSeconds: 1.5 } }, 'spec.leaseDurationSeconds = 1.5, expected a positive integer'],
    [{ metadata: { name: 'l', resourceVersion: '1' }, spec: { holderIdentity: 3 } }, 'spec.holderIdentity = 3, expected a string'],
    [{ metadata: { name: 'l', resourceVersion: '1', annotations: { a: 1 } } }, 'metadata.annotations of l is not a map of strings'],
  ])('refuses %j with STORE_DATA_INVALID saying what is wrong', (obj, msg) => {
    let err: unknown;
    try {
      readLease(obj, 'sentinel leader Lease');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StolonError);
    expect((err as StolonError).code).toBe('STORE_DATA_INVALID');
    expect((err as StolonError).transient).toBe(true);
    expect((err as Error).message).toContain(msg);
    expect((err as Error).message).toMatch(/^sentinel leader Lease: /);
  });
});

describe('LeaseObservations (the clock-skew rule)', () => {
  it('a Lease expires only after this reader saw the same resourceVersion for the whole duration', () => {
    let now = 1000;
    const o = new LeaseObservations(() => now);
    expect(o.expired('l', '1', 2000)).toBe(false); // first sight: trusted for a full duration
    now += 1999;
    expect(o.expired('l', '1', 2000)).toBe(false);
    now += 1;
    expect(o.expired('l', '1', 2000)).toBe(true);
    // A renewal (new resourceVersion) starts the count again from when it is seen.
    expect(o.expired('l', '2', 2000)).toBe(false);
    now += 1500;
    expect(o.expiresAt('l', '2', 2000)).toBe(5000);
    expect(o.expired('l', '2', 2000)).toBe(false);
  });

  it('does not look at renewTime at all, so the writer’s clock cannot make a live Lease look expired', () => {
    // The rule's inputs are names, resourceVersions and the reader's monotonic clock only.
    let now = 0;
    const o = new LeaseObservations(() => now);
    for (let i = 0; i < 10; i++) {
      now += 900; // renewed every 0.9 s with a 1 s duration, whatever renewTime says
      expect(o.expired('l', String(i), 1000)).toBe(false);
    }
  });

  it('forgets deleted Leases and those missing from a full list', () => {
    let now = 0;
    const o = new LeaseObservations(() => now);
    o.observe('p.keepers.a', '1');
    o.observe('p.keepers.b', '1');
    o.observe('p.proxies.c', '1');
    now = 5000;
    o.retainOnly('p.keepers.', new Set(['p.keepers.a']));
    expect(o.expired('p.keepers.a', '1', 1000)).toBe(true);
    expect(o.expired('p.keepers.b', '1', 1000)).toBe(false); // forgotten: a first sight again
    expect(o.expired('p.proxies.c', '1', 1000)).toBe(true); // other prefix untouched
    o.forget('p.proxies.c');
    expect(o.expired('p.proxies.c', '1', 1000)).toBe(false);
  });
});
