/**
 * @stolon-ts/store: the store contract (`Store`), its etcd v3, Consul, Kubernetes and in-memory
 * implementations, and `createStore` for the `--store-*` and `--kube-*` flags.
 */
export type {
  ClusterDataRecord,
  Election,
  InfoKind,
  InfoTypes,
  Store,
  StoreWatch,
  WatchTopic,
} from './store.js';
export { EtcdStore, type EtcdAuthOptions, type EtcdStoreOptions, type EtcdTlsOptions } from './etcd.js';
export { ConsulStore, type ConsulStoreOptions, type ConsulTlsOptions } from './consul.js';
export { KubernetesStore, type KubernetesStoreOptions } from './kubernetes.js';
export {
  resolveKubeConfig,
  type KubeConfigOptions,
  type NamespaceSource,
  type ResolvedKubeConfig,
} from './kube-client.js';
export { PodLabels, type PodLabelsOptions } from './kube-pod.js';
export { MemoryBackend, MemoryStore, type MemoryStoreOptions } from './memory.js';
export { createStore, type CreateStoreOptions } from './factory.js';
