#!/usr/bin/env node
/** stolon-sentinel: parses flags, builds the logger and store, runs the sentinel. */
import { readFileSync } from 'node:fs';
import { ConfigError, validateSpec, type ClusterSpec } from '@stolon-ts/cluster';
import {
  DAEMON_STOLON_FLAGS,
  addFlags,
  baseYargs,
  createDaemonMetrics,
  createLogger,
  exitOnConfigError,
  logConfiguration,
  newUid,
  pickFlags,
  runDaemon,
  statusListenOf,
  storeFromConfig,
  type ListenAddress,
} from '@stolon-ts/common';
import { SENTINEL_FLAGS } from './flags.js';
import { sentinelChecks } from './health.js';
import { start } from './sentinel.js';

async function main(): Promise<void> {
  let flags;
  let initialClusterSpec: ClusterSpec | undefined;
  let store;
  let statusListen: ListenAddress | undefined;
  const warnings: string[] = [];
  try {
    const argv = await addFlags(baseYargs(process.argv.slice(2), 'stolon-sentinel'), SENTINEL_FLAGS, 'STSENTINEL', process.env, {
      flags: DAEMON_STOLON_FLAGS,
      warnings,
    }).parseAsync();
    flags = pickFlags(argv as Record<string, unknown>, SENTINEL_FLAGS);
    if (flags.initialClusterSpec !== undefined) {
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(flags.initialClusterSpec, 'utf8'));
      } catch (err) {
        throw new ConfigError(`--initial-cluster-spec: cannot read JSON from ${flags.initialClusterSpec}: ${(err as Error).message}`, {
          field: 'initial-cluster-spec',
        });
      }
      try {
        initialClusterSpec = validateSpec(raw);
      } catch (err) {
        throw new ConfigError(`--initial-cluster-spec: ${(err as Error).message}`, { field: 'initial-cluster-spec' });
      }
    }
    statusListen = statusListenOf(flags.metricsListenAddress, 'metrics-listen-address');
    store = await storeFromConfig(flags, 'STSENTINEL');
  } catch (err) {
    exitOnConfigError(err, 'stolon-sentinel');
  }
  const uid = newUid();
  const logger = createLogger({ level: flags.logLevel, component: 'sentinel', uid, cluster: flags.clusterName });
  logConfiguration(logger, flags, warnings);
  const m = createDaemonMetrics('sentinel', flags.clusterName);
  const handle = await start(
    { uid, ...(initialClusterSpec !== undefined ? { initialClusterSpec } : {}) },
    { store, logger, registry: m.registry },
  );
  await runDaemon(logger, handle, {
    listen: statusListen,
    flag: { name: 'metrics-listen-address', value: flags.metricsListenAddress ?? '' },
    checks: () => ({ ...sentinelChecks(handle.health), metrics: m.source }),
    program: 'stolon-sentinel',
  });
}

await main();
