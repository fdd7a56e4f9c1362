/**
 * @stolon-ts/proxy: the fail-closed TCP proxy that routes clients to the current primary
 * (`start`), its pure target decision (`resolveTarget`) and its flag table (`PROXY_FLAGS`).
 */
export { start, type ProxyConfig, type ProxyDeps, type ProxyHandle, type ProxyState } from './proxy.js';
export {
  describeTarget,
  formatAddress,
  resolveTarget,
  sameTarget,
  type ProxyTarget,
  type TargetDecision,
} from './target.js';
export { PROXY_ENV_PREFIX, PROXY_FLAGS, PROXY_PROGRAM, parseProxyArgs, type ProxyFlagConfig } from './flags.js';
