#!/usr/bin/env node
/**
 * `npm run cluster` / `stolon-local`: starts a local HA cluster on loopback (etcd, keepers,
 * sentinels, proxies), prints how to connect, and stops everything on Ctrl-C. With
 * `--store-backend kubernetes` or `consul` the store is a stand-in API server running inside
 * this process (no Kubernetes API server or Consul exists here), whose contents are lost on
 * Ctrl-C; such a cluster needs a new `--dir` every time.
 */
import { existsSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import yargs from 'yargs';
import { DEFAULT_PG_BIN_DIR } from '@stolon-ts/postgres';
import { startLocalCluster } from './cluster.js';
import { stopAll } from './process.js';

const argv = await yargs(process.argv.slice(2))
  .scriptName('stolon-local')
  .strict()
  .option('dir', { type: 'string', default: '.local-cluster', describe: 'directory for data and logs (kept between runs)' })
  .option('cluster-name', { type: 'string', default: 'stolon-local' })
  .option('keepers', { type: 'number', default: 2 })
  .option('sentinels', { type: 'number', default: 1 })
  .option('proxies', { type: 'number', default: 1 })
  .option('proxy-port', { type: 'number', default: 25432, describe: 'port of the first proxy' })
  .option('pg-bin-path', {
    type: 'string',
    describe: `PostgreSQL binaries (default: $PG_BIN, else \`pg_config --bindir\` when it holds postgres, else ${DEFAULT_PG_BIN_DIR})`,
  })
  .option('store-backend', {
    type: 'string',
    choices: ['etcdv3', 'kubernetes', 'consul'],
    default: 'etcdv3',
    describe: 'etcdv3: a real etcd; kubernetes or consul: a stand-in API server in this process (in memory, for trying the backend)',
  })
  .option('log-level', { type: 'string', default: 'info' })
  .check((a) => {
    for (const name of ['keepers', 'sentinels', 'proxies'] as const) {
      if (!Number.isInteger(a[name]) || a[name] < 1) {
        throw new Error(`--${name} ${String(a[name])}: must be a whole number of at least 1 (the local cluster is reached through a proxy, run by sentinels over keepers)`);
      }
    }
    return true;
  })
  .help()
  .parseAsync();

const dir = resolve(argv.dir);
const store = argv['store-backend'] as 'etcdv3' | 'kubernetes' | 'consul';
if (store !== 'etcdv3' && existsSync(dir) && readdirSync(dir).length > 0) {
  process.stderr.write(
    `--store-backend ${store}: ${dir} is not empty; the ${store} stand-in keeps the cluster's store in memory only, so its data directories cannot be reused: pass a new --dir\n`,
  );
  process.exit(2);
}
process.stdout.write(`starting local cluster "${argv['cluster-name']}" in ${dir} (logs: ${dir}/cluster.log)...\n`);
let cluster: Awaited<ReturnType<typeof startLocalCluster>> | undefined;
let stopping = false;
const shutdown = async (sig: string): Promise<void> => {
  if (stopping) {
    return;
  }
  stopping = true;
  process.stdout.write(`\n${sig}: stopping the cluster...\n`);
  // Still starting: stop every process started so far.
  await (cluster === undefined ? stopAll() : cluster.stop());
  process.stdout.write('stopped.\n');
  process.exit(cluster === undefined ? 130 : 0);
};
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
try {
  cluster = await startLocalCluster({
    dir,
    clusterName: argv['cluster-name'],
    store,
    keepers: argv.keepers,
    sentinels: argv.sentinels,
    proxies: argv.proxies,
    proxyPort: argv['proxy-port'],
    memberApi: true,
    ...(argv['pg-bin-path'] !== undefined ? { pgBinPath: argv['pg-bin-path'] } : {}),
    logLevel: argv['log-level'],
  });
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  await stopAll();
  process.exit(1);
}
const flags = cluster.storeFlags().join(' ');
process.stdout.write(
  [
    '',
    `cluster is up (store: ${store === 'etcdv3' ? 'etcd' : `${store} stand-in in this process, in memory`}). Connect through the proxy:`,
    `  PGPASSWORD=$(cat ${cluster.suPasswordFile}) psql "host=127.0.0.1 port=${cluster.proxies[0]?.port} user=postgres dbname=postgres"`,
    'Status:',
    `  npx stolonctl ${flags} status`,
    'Keepers (kill one to watch a failover):',
    ...cluster.keepers.map((k) => `  ${k.uid}: postgres on 127.0.0.1:${k.pgPort}, keeper pid ${k.process.pid}, data ${k.dataDir}, status http://127.0.0.1:${k.statusPort}/readyz`),
    'Proxies and sentinels (status endpoints: /healthz, /readyz):',
    ...cluster.proxies.map((p, i) => `  proxy ${i}: port ${p.port}, status http://127.0.0.1:${p.statusPort}/readyz`),
    ...cluster.sentinelStatusPorts.map((port, i) => `  sentinel ${i}: status http://127.0.0.1:${port}/readyz`),
    '',
    'Ctrl-C stops everything (data stays in the directory).',
    '',
  ].join('\n'),
);

