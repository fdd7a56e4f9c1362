/**
 * Named timing profiles of the cluster spec used by the benchmarks and documented in
 * docs/cluster-spec.md ("Timing profiles"). A profile is a fragment to merge into a spec.
 */

/**
 * The `fast` profile: the shortest timings we recommend. It passes spec validation
 * (failInterval 3s > sleepInterval 0.5s + 2 × requestTimeout 1s; proxyCheckInterval 0.5s <
 * proxyTimeout 2s). A keeper's lease (TTL = failInterval) then expires 3 s after its last renewal,
 * so a keeper (or its machine) that stalls for 3 s is failed over: use it where pauses that long
 * do not happen. etcd grants no lease shorter than about 2 s with its default election timeout.
 */
export const FAST_PROFILE = {
  sleepInterval: '500ms',
  requestTimeout: '1s',
  failInterval: '3s',
  proxyCheckInterval: '500ms',
  proxyTimeout: '2s',
} as const;
