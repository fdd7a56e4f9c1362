/** startLocalCluster's option checks that need no process: the store backend and the options only etcd can serve. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { defaultTestStore, startLocalCluster, type LocalClusterOptions } from './cluster.js';
import type { EtcdHandle } from './etcd.js';

describe('startLocalCluster store option', () => {
  const dir = join(tmpdir(), `stolon-cluster-options-${process.pid}`);

  it.each<[string, 'kubernetes' | 'consul', Partial<LocalClusterOptions>, RegExp]>([
    ['etcd', 'kubernetes', { etcd: {} as EtcdHandle }, /store: 'kubernetes' cannot be combined with etcd: that option needs an etcd cluster/],
    ['netns', 'kubernetes', { netns: true }, /cannot be combined with netns:/],
    ['several', 'consul', { etcd: {} as EtcdHandle, netns: true }, /store: 'consul' cannot be combined with etcd, netns: those options need/],
  ])("a stand-in store with %s is refused before anything starts (%s)", async (_, store, extra, message) => {
    await expect(startLocalCluster({ dir, store, ...extra })).rejects.toThrow(message);
    expect(existsSync(dir)).toBe(false);
  });

  it('an unknown store is refused, from the option and from STOLON_TEST_STORE_BACKEND', async () => {
    await expect(startLocalCluster({ dir, store: 'zookeeper' as unknown as 'etcdv3' })).rejects.toThrow(/store must be one of etcdv3, kubernetes, consul, got "zookeeper"/);
    expect(existsSync(dir)).toBe(false);
    expect(() => defaultTestStore({ STOLON_TEST_STORE_BACKEND: 'etcdv2' })).toThrow(/STOLON_TEST_STORE_BACKEND=etcdv2: use one of etcdv3, kubernetes, consul/);
    expect(defaultTestStore({})).toBe('etcdv3');
    expect(defaultTestStore({ STOLON_TEST_STORE_BACKEND: 'consul' })).toBe('consul');
  });
});
