/** stolon-sentinel flags (Stolon's names; env prefix STSENTINEL). */
import { COMMON_FLAGS, type CommonConfig, type FlagTable } from '@stolon-ts/common';

export interface SentinelFlags extends CommonConfig {
  initialClusterSpec: string | undefined;
}

export const SENTINEL_FLAGS: FlagTable<SentinelFlags> = {
  ...COMMON_FLAGS,
  initialClusterSpec: {
    name: 'initial-cluster-spec',
    description: 'a file with the cluster spec to create the cluster with when none exists',
    type: 'string',
  },
};
