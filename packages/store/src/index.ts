/**
 * @stolon-ts/store: the store contract (`Store`), the in-memory implementation, and `createStore`
 * for the `--store-*` and `--kube-*` flags, which imports the etcd v3, Consul or Kubernetes
 * implementation the flags choose. Importing this module loads no store client library; the
 * backend classes themselves are in `@stolon-ts/store/backends` (which loads all three).
 */
export type {
  ClusterDataRecord,
  ClusterView,
  Election,
  InfoChange,
  InfoKind,
  InfoTypes,
  Store,
  StoreWatch,
  WatchTopic,
} from './store.js';
export type { EtcdAuthOptions, EtcdStoreOptions, EtcdTlsOptions } from './etcd.js';
export type { ConsulStoreOptions, ConsulTlsOptions } from './consul.js';
export type { KubernetesStoreOptions } from './kubernetes.js';
export {
  resolveKubeConfig,
  type KubeConfigOptions,
  type NamespaceSource,
  type ResolvedKubeConfig,
} from './kube-client.js';
export { PodLabels, type PodLabelsOptions } from './kube-pod.js';
export { MemoryBackend, MemoryStore, type MemoryStoreOptions } from './memory.js';
export { createStore, type CreateStoreOptions } from './factory.js';
export { infoObjectOf } from './util.js';
