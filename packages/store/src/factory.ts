/** Builds the store a program's `--store-backend` flag names. */
import { ConfigError } from '@stolon-ts/cluster';
import { EtcdStore } from './etcd.js';
import type { Store } from './store.js';

/** Options of {@link createStore}, mirroring the common `--store-*` flags. */
export interface CreateStoreOptions {
  /** `--store-backend`; only `etcdv3` is implemented. */
  readonly backend: 'etcdv3' | (string & {});
  /** `--store-endpoints`, e.g. `['http://127.0.0.1:2379']`. */
  readonly endpoints: readonly string[];
  /** `--cluster-name`. */
  readonly clusterName: string;
  /** `--store-prefix`. @default 'stolon/cluster' */
  readonly prefix?: string;
  /** `--store-timeout` in ms, per request. @default 5000 */
  readonly timeoutMs?: number;
}

/**
 * Creates the store client for `opts.backend`.
 * @throws ConfigError (`field: 'store-backend'`) for any backend other than `etcdv3`
 *   (kubernetes and consul are not available yet), and (`field: 'store-endpoints'`) when no
 *   endpoint is given.
 */
export function createStore(opts: CreateStoreOptions): Store {
  switch (opts.backend) {
    case 'etcdv3':
      return new EtcdStore({
        endpoints: opts.endpoints,
        clusterName: opts.clusterName,
        ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
      });
    default:
      throw new ConfigError(
        `--store-backend: "${opts.backend}" is not supported; use etcdv3 (kubernetes and consul are not available yet)`,
        { field: 'store-backend' },
      );
  }
}
