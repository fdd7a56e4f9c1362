/**
 * @stolon-ts/proxy: the fail-closed TCP proxy that routes clients to the current primary
 * (`start`), its pure target decisions (`resolveTarget`, `resolveReadOnlyTargets` for the read-only
 * listener), the bit of the PostgreSQL protocol it speaks to refuse a client (`pgwire`) and its
 * flag table (`PROXY_FLAGS`).
 */
export { start } from './proxy.js';
export {
  DEFAULT_MAX_CONNECTIONS,
  type ListenerKind,
  type ProxyConfig,
  type ProxyDeps,
  type ProxyHandle,
  type ProxyState,
  type ReadOnlyConfig,
} from './types.js';
export {
  describeTarget,
  formatAddress,
  resolveReadOnlyTargets,
  resolveTarget,
  sameTarget,
  sameTargets,
  type ProxyTarget,
  type ReadOnlyDecision,
  type ReadOnlyOptions,
  type TargetDecision,
} from './target.js';
export {
  DEFAULT_RO_MAX_LAG_BYTES,
  PROXY_ENV_PREFIX,
  PROXY_FLAGS,
  PROXY_PROGRAM,
  parseProxyArgs,
  proxyConfigFromFlags,
  type ProxyFlagConfig,
} from './flags.js';
export { proxyChecks, proxyLiveness, proxyReadOnlyReadiness, proxyReadiness, type ProxyHealthSnapshot } from './health.js';
export { errorResponse, parseStartupPacket, type ErrorFields, type StartupPacket } from './pgwire.js';
