#!/usr/bin/env node
/**
 * `stolon-proxy`: parses flags, builds the logger and the store, runs the proxy until
 * SIGINT/SIGTERM or a fatal error (docs/design.md#daemon-handles). Everything else starts at
 * `start` in `proxy.ts`.
 * Exit codes: 0 clean stop, 1 fatal error, 2 configuration error (one line naming the flag).
 * The proxy logs "proxy listening on <addr>:<port>" each time its listener opens (and "proxy
 * listening (read-only) on ..." for the `--ro-port` listener), and "status endpoint on ..." when
 * `--metrics-listen-address` is given (health.ts).
 */
import {
  BUG_SENTENCE,
  createDaemonMetrics,
  createLogger,
  exitOnConfigError,
  logConfiguration,
  newUid,
  readMemberToken,
  runDaemon,
  statusListenOf,
  storeFromConfig,
  type ListenAddress,
} from '@stolon-ts/common';
import type { Store } from '@stolon-ts/store';
import { PROXY_PROGRAM, parseProxyArgs, proxyConfigFromFlags, type ProxyFlagConfig } from './flags.js';
import { proxyChecks } from './health.js';
import { start } from './proxy.js';

async function main(): Promise<void> {
  let config: ProxyFlagConfig;
  let store: Store;
  let memberToken: string | undefined;
  let statusListen: ListenAddress | undefined;
  const warnings: string[] = [];
  try {
    config = parseProxyArgs(process.argv.slice(2), process.env, warnings);
    memberToken = readMemberToken(config.memberTokenFile, 'STPROXY_MEMBER_TOKEN', 'member-token-file', process.env);
    statusListen = statusListenOf(config.metricsListenAddress, 'metrics-listen-address');
    store = await storeFromConfig(config, 'STPROXY');
  } catch (err) {
    exitOnConfigError(err, PROXY_PROGRAM);
  }
  // Random per process start, as in Stolon (a restarted proxy is a new proxy to the sentinel),
  // unless --uid fixes it (a StatefulSet's ordinal: its Lease name is then known to RBAC).
  const uid = config.uid ?? newUid();
  const logger = createLogger({ level: config.logLevel, component: 'proxy', uid, cluster: config.clusterName });
  logConfiguration(logger, config, warnings);
  const m = createDaemonMetrics('proxy', config.clusterName);
  const handle = await start(
    { uid, ...proxyConfigFromFlags(config), ...(memberToken !== undefined ? { memberToken } : {}) },
    { store, logger, registry: m.registry },
  );
  await runDaemon(logger, handle, {
    listen: statusListen,
    flag: { name: 'metrics-listen-address', value: config.metricsListenAddress ?? '' },
    checks: () => ({ ...proxyChecks(handle.health), metrics: m.source }),
    program: PROXY_PROGRAM,
  });
  await store.close().catch((err: unknown) => logger.warn({ err }, 'closing the store client failed'));
}

main().catch((err: unknown) => {
  process.stderr.write(`${PROXY_PROGRAM}: ${BUG_SENTENCE}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
