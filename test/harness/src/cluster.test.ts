/** startLocalCluster's option checks that need no process: the store backend and the options only etcd can serve. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { startLocalCluster, type LocalClusterOptions } from './cluster.js';
import type { EtcdHandle } from './etcd.js';

describe('startLocalCluster store option', () => {
  const dir = join(tmpdir(), `stolon-cluster-options-${process.pid}`);

  it.each<[string, Partial<LocalClusterOptions>, RegExp]>([
    ['etcd', { etcd: {} as EtcdHandle }, /store: 'kubernetes' cannot be combined with etcd: that option needs an etcd cluster/],
    ['keeperStoreRelays', { keeperStoreRelays: true }, /cannot be combined with keeperStoreRelays:/],
    ['netns', { netns: true }, /cannot be combined with netns:/],
    ['several', { keeperStoreRelays: true, netns: true }, /cannot be combined with keeperStoreRelays, netns: those options need/],
  ])("store: 'kubernetes' with %s is refused before anything starts", async (_, extra, message) => {
    await expect(startLocalCluster({ dir, store: 'kubernetes', ...extra })).rejects.toThrow(message);
    expect(existsSync(dir)).toBe(false);
  });

  it('an unknown store is refused', async () => {
    await expect(startLocalCluster({ dir, store: 'consul' as unknown as 'etcdv3' })).rejects.toThrow(/store must be 'etcdv3' or 'kubernetes', got "consul"/);
    expect(existsSync(dir)).toBe(false);
  });
});
