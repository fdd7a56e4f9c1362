/** stolon-sentinel flags (Stolon's names; env prefix STSENTINEL). */
import { COMMON_FLAGS, type CommonConfig, type FlagTable } from '@stolon-ts/common';

export interface SentinelFlags extends CommonConfig {
  initialClusterSpec: string | undefined;
  /** host:port of the status endpoint; undefined or "": none. */
  metricsListenAddress: string | undefined;
}

export const SENTINEL_FLAGS: FlagTable<SentinelFlags> = {
  ...COMMON_FLAGS,
  initialClusterSpec: {
    name: 'initial-cluster-spec',
    description: 'a file with the cluster spec to create the cluster with when none exists',
    type: 'string',
  },
  metricsListenAddress: {
    name: 'metrics-listen-address',
    description:
      'host:port of the HTTP status endpoint (e.g. 127.0.0.1:8080): GET /healthz (200 while the sentinel loop runs) and ' +
      'GET /readyz (200 while its passes read the store, leader or not; the body says which); no metrics yet. Unset: no endpoint',
    type: 'string',
  },
};
