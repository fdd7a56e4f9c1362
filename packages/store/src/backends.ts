/**
 * @stolon-ts/store/backends: the etcd v3, Consul and Kubernetes store classes, for code that builds
 * one directly. Importing this module loads all three client libraries (etcd3 with gRPC and
 * protobuf, consul); programs call `createStore` from `@stolon-ts/store` instead, which imports
 * only the backend the flags name.
 */
export { EtcdStore } from './etcd.js';
export { ConsulStore } from './consul.js';
export { KubernetesStore } from './kubernetes.js';
