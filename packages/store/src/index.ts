/**
 * @stolon-ts/store: the store contract (`Store`), its etcd v3 and in-memory implementations,
 * and `createStore` for the `--store-*` flags.
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
export { EtcdStore, type EtcdStoreOptions } from './etcd.js';
export { MemoryBackend, MemoryStore, type MemoryStoreOptions } from './memory.js';
export { createStore, type CreateStoreOptions } from './factory.js';
