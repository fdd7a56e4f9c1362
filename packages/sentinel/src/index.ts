/** @stolon-ts/sentinel: the sentinel daemon. */
export { start, type SentinelConfig, type SentinelDeps, type SentinelHandle, type SentinelState } from './sentinel.js';
export { SENTINEL_FLAGS, type SentinelFlags } from './flags.js';
export { sentinelChecks, sentinelLiveness, sentinelReadiness, type SentinelHealthSnapshot } from './health.js';
