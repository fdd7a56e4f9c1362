/**
 * Builds the store a program's `--store-backend` flag names. Each backend's module (and its client
 * library: etcd3 with gRPC and protobuf, consul) is imported only when that backend is chosen, so a
 * program pays at start for one store client, not three (see docs/benchmarks.md, `bench:clone`).
 */
import { ConfigError } from '@stolon-ts/cluster';
import type { EtcdAuthOptions, EtcdTlsOptions } from './etcd.js';
import { resolveKubeConfig } from './kube-client.js';
import { checkKubeClusterName } from './kube-objects.js';
import type { Store } from './store.js';

/** Options of {@link createStore}, mirroring the common `--store-*` and `--kube-*` flags. */
export interface CreateStoreOptions {
  /** `--store-backend`: `etcdv3`, `consul` or `kubernetes`. */
  readonly backend: 'etcdv3' | 'consul' | 'kubernetes' | (string & {});
  /** `--store-endpoints`, e.g. `['http://127.0.0.1:2379']` (etcdv3, consul; ignored with kubernetes). */
  readonly endpoints: readonly string[];
  /** `--cluster-name`. */
  readonly clusterName: string;
  /** `--store-prefix` (etcdv3, consul; ignored with kubernetes, as in Stolon). @default 'stolon/cluster' */
  readonly prefix?: string;
  /** `--store-timeout` in ms, per request. @default 5000 */
  readonly timeoutMs?: number;
  /** `--store-ca-file`, `--store-cert-file`, `--store-key`, `--store-skip-tls-verify`, read (etcdv3, consul; ignored with kubernetes). */
  readonly tls?: EtcdTlsOptions;
  /** `--store-user` and its password (etcdv3; ignored with kubernetes). */
  readonly auth?: EtcdAuthOptions;
  /** Consul ACL token read from `--store-token-file` (consul only). */
  readonly token?: string | undefined;
  /** `--kube-resource-kind`: required with kubernetes, and must be `configmap` (as in Stolon). */
  readonly kubeResourceKind?: string | undefined;
  /** `--kubeconfig` (kubernetes). */
  readonly kubeconfig?: string | undefined;
  /** `--kube-context` (kubernetes). */
  readonly kubeContext?: string | undefined;
  /** `--kube-namespace` (kubernetes). */
  readonly kubeNamespace?: string | undefined;
}

/**
 * Creates the store client for `opts.backend`, importing that backend's module (and only that
 * one) first. Nothing is sent to the store until the first call; for kubernetes the kubeconfig (or
 * the pod's service account) is read now.
 * @returns a promise of the store; it rejects, never throws synchronously.
 * @throws ConfigError naming the flag: `store-backend` for any backend other than `etcdv3`,
 *   `consul` and `kubernetes`; `store-endpoints` when etcdv3 or consul has no usable endpoint;
 *   `kube-resource-kind` when kubernetes is chosen without `--kube-resource-kind configmap`;
 *   `cluster-name`, `kubeconfig`, `kube-context` or `kube-namespace` when the kubernetes client
 *   configuration cannot be used (see `resolveKubeConfig`).
 */
export async function createStore(opts: CreateStoreOptions): Promise<Store> {
  switch (opts.backend) {
    case 'etcdv3': {
      const { EtcdStore } = await import('./etcd.js');
      return new EtcdStore({
        endpoints: opts.endpoints,
        clusterName: opts.clusterName,
        ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        ...(opts.tls === undefined ? {} : { tls: opts.tls }),
        ...(opts.auth === undefined ? {} : { auth: opts.auth }),
      });
    }
    case 'consul': {
      const { ConsulStore } = await import('./consul.js');
      return new ConsulStore({
        endpoints: opts.endpoints,
        clusterName: opts.clusterName,
        ...(opts.prefix === undefined ? {} : { prefix: opts.prefix }),
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        ...(opts.tls === undefined ? {} : { tls: opts.tls }),
        token: opts.token,
      });
    }
    case 'kubernetes': {
      const kind = opts.kubeResourceKind ?? '';
      if (kind === '') {
        throw new ConfigError(
          '--kube-resource-kind is required with --store-backend kubernetes: pass --kube-resource-kind configmap (the only kind supported, as in Stolon)',
          { field: 'kube-resource-kind' },
        );
      }
      if (kind !== 'configmap') {
        throw new ConfigError(`--kube-resource-kind: "${kind}" is not supported; use configmap (the only kind supported, as in Stolon)`, {
          field: 'kube-resource-kind',
        });
      }
      checkKubeClusterName(opts.clusterName);
      const kube = resolveKubeConfig({ kubeconfig: opts.kubeconfig, context: opts.kubeContext, namespace: opts.kubeNamespace });
      const { KubernetesStore } = await import('./kubernetes.js');
      return new KubernetesStore({
        clusterName: opts.clusterName,
        kubeConfig: kube.kubeConfig,
        namespace: kube.namespace,
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        ...(opts.tls === undefined ? {} : { tls: opts.tls }),
        ...(opts.auth === undefined ? {} : { auth: opts.auth }),
      });
    }
    default:
      throw new ConfigError(
        `--store-backend: "${opts.backend}" is not supported; use etcdv3, consul or kubernetes`,
        { field: 'store-backend' },
      );
  }
}
