/**
 * A chaos environment in one call, shared by the short form (e2e), the long form
 * (`npm run test:chaos`) and `npm run bench:failover`: an `ip netns` network (one namespace per
 * keeper), an etcd cluster listening on the network's host address, a local stolon cluster in it,
 * a store client, the recorder's tables, and a healthy cluster to start from. `stop()` tears it
 * all down (network included) and never throws.
 */
import { join } from 'node:path';
import { resolveSpec } from '@stolon-ts/cluster';
import { createStore, type Store } from '@stolon-ts/store';
import { startLocalCluster, type LocalCluster } from '../cluster.js';
import { startEtcd, startEtcdCluster, type EtcdHandle } from '../etcd.js';
import { query } from '../sql.js';
import { waitHealthy } from './checker.js';
import type { ChaosTarget } from './faults.js';
import { createChaosNetwork, type ChaosNetwork } from './netns.js';
import { RECORDER_TABLES_SQL } from './recorder.js';

/** Options of {@link startChaosEnv}. */
export interface ChaosEnvOptions {
  /** Directory for the cluster's data and logs (created). */
  readonly dir: string;
  readonly clusterName: string;
  /** Cluster spec (validated by `stolonctl init`). */
  readonly spec: Record<string, unknown>;
  /** @default 3 */
  readonly keepers?: number;
  /** @default 2 */
  readonly sentinels?: number;
  /** @default 2 */
  readonly proxies?: number;
  /** etcd members (1, or 3 for `killEtcdMember`). @default 3 */
  readonly etcdMembers?: number;
  /** Keepers in `ip netns` namespaces (needed by `partitionPrimary`). @default true */
  readonly netns?: boolean;
  /** @default 'info' */
  readonly logLevel?: string;
  /** How long the cluster may take to become healthy, ms. @default 120000 */
  readonly healthyTimeoutMs?: number;
}

/** A running chaos environment. */
export interface ChaosEnv {
  readonly cluster: LocalCluster;
  readonly store: Store;
  readonly etcd: EtcdHandle;
  readonly network: ChaosNetwork | undefined;
  /** What the faults act on (failInterval resolved from the spec). */
  readonly target: ChaosTarget;
  /** Stops everything (writers are the caller's); never throws. */
  stop(): Promise<void>;
}

/**
 * Starts a chaos environment and waits until the cluster is healthy.
 * @throws Error when the network, etcd or the cluster cannot start, or the cluster is not
 *   healthy in time (with the last reason); whatever started is stopped first.
 */
export async function startChaosEnv(opts: ChaosEnvOptions): Promise<ChaosEnv> {
  const failIntervalMs = resolveSpec(opts.spec).failIntervalMs;
  const keepers = opts.keepers ?? 3;
  let network: ChaosNetwork | undefined;
  let etcd: EtcdHandle | undefined;
  let cluster: LocalCluster | undefined;
  let store: Store | undefined;
  const stop = async (): Promise<void> => {
    await store?.close().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    await etcd?.stop().catch(() => undefined);
    await network?.destroy();
  };
  try {
    if (opts.netns ?? true) {
      network = await createChaosNetwork({ nodes: keepers });
    }
    const listenHosts = network === undefined ? [] : [network.hostAddress];
    const members = opts.etcdMembers ?? 3;
    etcd =
      members === 1
        ? await startEtcd({ dataDir: join(opts.dir, 'etcd'), listenHosts })
        : await startEtcdCluster(members, { dataDir: join(opts.dir, 'etcd'), listenHosts });
    cluster = await startLocalCluster({
      dir: opts.dir,
      clusterName: opts.clusterName,
      keepers,
      sentinels: opts.sentinels ?? 2,
      proxies: opts.proxies ?? 2,
      spec: opts.spec,
      etcd,
      ...(network !== undefined ? { network } : {}),
      logLevel: opts.logLevel ?? 'info',
      // Per-process failpoint directories for the faults that need them (keeperPassHang, proxyChecksFail).
      failpoints: true,
      // The member API, so that failsafe mode keeps the primary through the store faults.
      memberApi: true,
    });
    store = await createStore({ backend: 'etcdv3', endpoints: etcd.endpoints, clusterName: opts.clusterName });
    await query(cluster.proxyClientConfig(0), RECORDER_TABLES_SQL);
    const h = await waitHealthy(cluster, store, { timeoutMs: opts.healthyTimeoutMs ?? 120_000 });
    if (h.healthyAt === null) {
      throw new Error(`the cluster did not become healthy: ${h.lastReason}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const c = cluster;
  const s = store;
  const e = etcd;
  return { cluster: c, store: s, etcd: e, network, target: { cluster: c, store: s, failIntervalMs }, stop };
}
