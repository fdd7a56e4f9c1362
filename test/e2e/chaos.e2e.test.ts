/**
 * The chaos suite's short form, `npm run test:chaos-short` (in `npm run test:all` and CI): one cluster — 3 keepers each in its
 * own `ip netns` namespace, 2 sentinels, 2 proxies, a 3-member etcd, synchronous replication
 * (min = max = 1) so the zero-loss check applies — with 2 writers through the proxies and one
 * direct writer per keeper (see test/harness/src/chaos/recorder.ts), and one cycle of each named
 * fault (test/harness/src/chaos/faults.ts). Each cycle asserts: writes through the proxies resumed,
 * no acknowledged write is missing on the primary, no two servers accepted proxy writes in
 * overlapping windows, and the cluster was healthy again within 30 s after the fault ended. A last
 * test checks every acknowledged write of the whole run on the final primary and prints the
 * per-fault table. The long form is `npm run test:chaos` (docs/chaos.md).
 *
 * Self-fencing: for the zombie primary (SIGSTOP of its keeper) and the partitioned primary, the
 * direct writers show whether the deposed primary still accepted writes after another keeper was
 * promoted. Without the keeper's fencer it does; those assertions are in their own describe block.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FAULT_NAMES,
  LONG_FORM_ONLY_FAULTS,
  RECORDER_TABLES_SQL,
  Recorder,
  createChaosNetwork,
  describeCycle,
  makeTempDir,
  missingWrites,
  netnsUnavailableReason,
  primaryKeeperIndex,
  query,
  readClusterData,
  readPresentWrites,
  removeDir,
  renderText,
  runFaultCycle,
  startEtcdCluster,
  startLocalCluster,
  summarize,
  waitHealthy,
  type ChaosNetwork,
  type ChaosTarget,
  type CycleResult,
  type EtcdClusterHandle,
  type FaultName,
  type LocalCluster,
} from '@stolon-ts/harness';
import { createStore, type Store } from '@stolon-ts/store';

const SPEC = { initMode: 'new', synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 1 };
/** Default spec failInterval (the keepers' lease TTL), ms. */
const FAIL_INTERVAL_MS = 6000;
const HEALTHY_WITHIN_MS = 30_000;

let dir = '';
let network: ChaosNetwork | undefined;
let etcd: EtcdClusterHandle | undefined;
let cluster: LocalCluster | undefined;
let store: Store | undefined;
let recorder: Recorder | undefined;
let failed = false;
const results = new Map<FaultName, CycleResult>();

beforeAll(async () => {
  const why = await netnsUnavailableReason();
  if (why !== undefined) {
    // Not skipped silently (a skipped suite would look like a pass): the partition fault needs
    // ip netns.
    throw new Error(`the chaos suite needs ip netns partitions: ${why}`);
  }
  dir = await makeTempDir('stolon-chaos-e2e-');
  network = await createChaosNetwork({ nodes: 3 });
  etcd = await startEtcdCluster(3, { listenHosts: [network.hostAddress] });
  cluster = await startLocalCluster({
    dir,
    clusterName: 'chaos',
    keepers: 3,
    sentinels: 2,
    proxies: 2,
    spec: SPEC,
    etcd,
    network,
    logLevel: 'debug',
  });
  store = await createStore({ backend: 'etcdv3', endpoints: etcd.endpoints, clusterName: 'chaos' });
  await query(cluster.proxyClientConfig(0), RECORDER_TABLES_SQL);
  const h = await waitHealthy(cluster, store, { timeoutMs: 90_000 });
  if (h.healthyAt === null) {
    throw new Error(`the chaos cluster did not become healthy: ${h.lastReason}`);
  }
  const c = cluster;
  recorder = new Recorder({
    proxies: () => c.proxies.map((_, i) => c.proxyClientConfig(i)),
    direct: () => c.keepers.map((_, i) => c.directClientConfig(i)),
  });
  recorder.start();
}, 180_000);

afterAll(async () => {
  await recorder?.stop();
  if (results.size > 0) {
    process.stdout.write(`chaos e2e (one cycle per fault, synchronous replication):\n${renderText(summarize([...results.values()]))}\n`);
  }
  if (failed && cluster !== undefined) {
    process.stdout.write(`--- component logs (tail) ---\n${cluster.logs().split('\n').slice(-300).join('\n')}\n`);
  }
  await store?.close().catch(() => undefined);
  await cluster?.stop();
  await etcd?.stop();
  await network?.destroy();
  if (failed) {
    process.stdout.write(`chaos e2e failed: data and logs kept in ${dir}\n`);
  } else if (dir !== '') {
    await removeDir(dir);
  }
}, 120_000);

function target(): ChaosTarget {
  if (cluster === undefined || store === undefined) {
    throw new Error('the chaos cluster did not start');
  }
  return { cluster, store, failIntervalMs: FAIL_INTERVAL_MS };
}

describe('chaos, short form: one cycle of each fault under synchronous replication', () => {
  // The long form's extra faults (LONG_FORM_ONLY_FAULTS) run in `npm run test:chaos` only.
  FAULT_NAMES.filter((f) => !LONG_FORM_ONLY_FAULTS.has(f)).forEach((fault, i) => {
    it(`${fault}: writes resume, no acknowledged write lost, no split brain through the proxies, healthy within 30 s`, async () => {
      try {
        if (recorder === undefined) {
          throw new Error('no recorder: the chaos cluster did not start');
        }
        const r = await runFaultCycle(target(), recorder, fault, { cycle: i });
        results.set(fault, r);
        process.stdout.write(`chaos e2e: ${describeCycle(r)}\n`);
        expect(r.error).toBeUndefined();
        expect(r.recoveredAt, 'writes through the proxies resumed within 60 s').not.toBeNull();
        expect(r.lost.map((w) => `${w.writer}/${w.seq}`), 'acknowledged writes missing on the primary').toEqual([]);
        expect(r.proxySplitBrain, 'two servers accepted proxy writes in overlapping windows').toEqual([]);
        expect(r.timeToHealthyMs, `healthy again (last reason: ${r.unhealthyReason})`).not.toBeNull();
        expect(r.timeToHealthyMs!).toBeLessThanOrEqual(HEALTHY_WITHIN_MS);
      } catch (err) {
        failed = true;
        throw err;
      }
    });
  });

  it('the final primary holds every write acknowledged through the proxies during the whole run', async () => {
    try {
      const t = target();
      await recorder?.stop();
      const acked = recorder?.proxyAcks() ?? [];
      expect(acked.length).toBeGreaterThan(0);
      const p = primaryKeeperIndex(t.cluster, await readClusterData(t.store));
      expect(p).toBeGreaterThanOrEqual(0);
      const present = await readPresentWrites(t.cluster.directClientConfig(p));
      const lost = missingWrites(acked, present);
      process.stdout.write(`chaos e2e: ${acked.length} proxy writes acknowledged over the run, ${lost.length} missing on the final primary\n`);
      expect(lost.map((w) => `${w.writer}/${w.seq}`)).toEqual([]);
      expect(t.cluster.logs()).not.toContain('please report this as a bug');
    } catch (err) {
      failed = true;
      throw err;
    }
  });
});

// The keeper fences a primary that lost its lease (docs/architecture.md, "Self-fencing primary").
// Without it both assertions fail: the zombie's PostgreSQL keeps serving direct clients while its
// keeper is stopped, and the partitioned primary keeps serving the clients on its side of the
// partition.
describe('self-fencing', () => {
  for (const fault of ['zombiePrimaryKeeper', 'partitionPrimary'] as const) {
    it(`${fault}: the deposed primary accepted no direct write after another keeper was promoted`, () => {
      const r = results.get(fault);
      expect(r, `the ${fault} cycle ran`).toBeDefined();
      expect(r!.deposedDirectWrites.length, 'direct writes acknowledged by the deposed primary after the promotion').toBe(0);
      expect(r!.anySplitBrain, 'overlapping write windows of two servers, direct writers included').toEqual([]);
    });
  }
});
