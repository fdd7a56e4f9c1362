/** Builds the store from the common flags. */
import { ConfigError, parseDurationMs } from '@stolon-ts/cluster';
import { createStore, type Store } from '@stolon-ts/store';
import { parseEndpoints, type CommonConfig } from './flags.js';

/**
 * Checks the common flags and creates the store client they describe (`--store-endpoints` is
 * only parsed for etcdv3: the kubernetes backend ignores it).
 * @throws ConfigError naming the flag (cluster-name, store-backend, store-endpoints, store-timeout,
 *   kube-resource-kind, kubeconfig, kube-context, kube-namespace).
 */
export function storeFromConfig(c: CommonConfig): Store {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(c.clusterName)) {
    throw new ConfigError(
      `--cluster-name: "${c.clusterName}" must be letters, digits, '-', '_' or '.', starting with a letter or digit`,
      { field: 'cluster-name' },
    );
  }
  const timeoutMs = parseDurationMs(c.storeTimeout);
  if (timeoutMs === undefined || timeoutMs <= 0) {
    throw new ConfigError(`--store-timeout: "${c.storeTimeout}" is not a positive duration such as 5s`, {
      field: 'store-timeout',
    });
  }
  return createStore({
    backend: c.storeBackend,
    endpoints: c.storeBackend === 'kubernetes' ? [] : parseEndpoints(c.storeEndpoints),
    clusterName: c.clusterName,
    prefix: c.storePrefix,
    timeoutMs,
    kubeResourceKind: c.kubeResourceKind,
    kubeconfig: c.kubeconfig,
    kubeContext: c.kubeContext,
    kubeNamespace: c.kubeNamespace,
  });
}
