/** createStore: backend selection and its configuration errors. */
import { ConfigError } from '@stolon-ts/cluster';
import { describe, expect, it } from 'vitest';
import { EtcdStore } from './etcd.js';
import { createStore } from './factory.js';

describe('createStore', () => {
  it('builds an EtcdStore for etcdv3 without connecting', async () => {
    const s = createStore({ backend: 'etcdv3', endpoints: ['http://127.0.0.1:1'], clusterName: 'c', timeoutMs: 100 });
    expect(s).toBeInstanceOf(EtcdStore);
    await s.close();
  });

  it.each(['kubernetes', 'consul', 'etcdv2', 'etcd', ''])('rejects backend %j with a ConfigError on store-backend', (backend) => {
    let err: unknown;
    try {
      createStore({ backend, endpoints: ['http://127.0.0.1:2379'], clusterName: 'c' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe('store-backend');
    expect((err as ConfigError).message).toMatch(/kubernetes and consul are not available yet/);
  });

  it('rejects an empty endpoint list with a ConfigError on store-endpoints', () => {
    expect(() => createStore({ backend: 'etcdv3', endpoints: [], clusterName: 'c' })).toThrow(ConfigError);
  });
});
