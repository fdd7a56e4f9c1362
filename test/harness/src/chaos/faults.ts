/**
 * Named, reusable faults for the chaos suite (docs/design.md#faults-and-history). Each is a
 * function that takes a {@link ChaosTarget}, injects the fault, and resolves as soon as it is
 * injected with an {@link InjectedFault} whose `heal()` undoes what can be undone (restart what was
 * killed, SIGCONT what was stopped, flush partition rules). Each fault says, in {@link FAULTS},
 * what the cluster is expected to do about it and whether it can run on a given cluster
 * (`unavailable`), so a runner never silently skips one. The list of faults: docs/chaos.md,
 * "The faults".
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveSpec, type ClusterData } from '@stolon-ts/cluster';
import type { Store } from '@stolon-ts/store';
import type { LocalCluster } from '../cluster.js';
import type { EtcdClusterHandle, EtcdHandle } from '../etcd.js';
import { primaryKeeperIndex, readClusterData } from './checker.js';

/** The names of the faults. */
export const FAULT_NAMES = [
  'killPrimaryNode',
  'crashPrimaryPostgres',
  'zombiePrimaryKeeper',
  'partitionPrimary',
  'killLeaderSentinelWithPrimary',
  'killEtcdMember',
  'killProxy',
  'chosenStandbyDiesMidPromotion',
  'oldPrimaryDiesMidSwitchover',
  'keeperPassHang',
  'proxyChecksFail',
  'sigstopKeeperGroup',
  'freezeStore',
  'killStore',
  'freezeStoreAndPartitionPrimary',
] as const;
/**
 * The faults the short form (`test/e2e/chaos.e2e.test.ts`) leaves to the long form
 * (`npm run test:chaos`): each costs a cycle of failInterval or more, and `npm test` time matters.
 */
export const LONG_FORM_ONLY_FAULTS: ReadonlySet<string> = new Set([
  'chosenStandbyDiesMidPromotion',
  'oldPrimaryDiesMidSwitchover',
  'keeperPassHang',
  'proxyChecksFail',
  'sigstopKeeperGroup',
  'freezeStore',
  'killStore',
  'freezeStoreAndPartitionPrimary',
]);
/** One of {@link FAULT_NAMES}. */
export type FaultName = (typeof FAULT_NAMES)[number];

/** What a fault acts on. */
export interface ChaosTarget {
  readonly cluster: LocalCluster;
  /** A store client of the cluster (to read clusterdata and the sentinel leader). */
  readonly store: Store;
  /** The spec's failInterval in ms (the keepers' lease TTL). */
  readonly failIntervalMs: number;
}

/** A fault that has been injected. */
export interface InjectedFault {
  readonly name: FaultName;
  /** Epoch ms right after the fault took effect. */
  readonly injectedAt: number;
  /** Keeper index of the primary when the fault was injected. */
  readonly primaryBefore: number;
  /** What was done, e.g. "SIGKILL keeper1 (pid 123) and its postmaster (pid 456)". */
  readonly detail: string;
  /** The fault must last at least this long after `injectedAt` before `heal()`, ms. */
  readonly minHoldMs: number;
  /**
   * Set when, as injected, no server holding every acknowledged write is left to promote (e.g.
   * the primary and its only synchronous standby both killed): writes must not resume before
   * the heal (a promotion then would lose acknowledged writes, which the cycle checks), so the
   * cycle holds for `minHoldMs`, heals, and only then waits for writes to resume.
   */
  readonly resumeAfterHeal?: boolean;
  /** Undoes the fault where it can (idempotent; a no-op for a crash the keeper handles). */
  heal(): Promise<void>;
}

/** How the cluster is expected to react. */
export type FaultExpectation = 'failover' | 'restart-or-failover' | 'no-failover';

/** Options some faults take. */
export interface FaultOptions {
  /** A number that rotates choices between cycles (which proxy, which etcd member). @default 0 */
  readonly cycle?: number;
}

/** A fault's entry in {@link FAULTS}. */
export interface FaultDef {
  readonly name: FaultName;
  readonly expect: FaultExpectation;
  readonly description: string;
  /** Why it cannot run on this target, or undefined when it can. */
  unavailable(t: ChaosTarget): string | undefined;
  inject(t: ChaosTarget, opts?: FaultOptions): Promise<InjectedFault>;
}

/**
 * The keeper index clusterdata names primary.
 * @throws Error when clusterdata names none (the cluster must be healthy before a fault).
 */
async function currentPrimary(t: ChaosTarget): Promise<number> {
  const p = primaryKeeperIndex(t.cluster, await readClusterData(t.store));
  if (p < 0) {
    throw new Error('no primary in clusterdata: inject faults into a healthy cluster');
  }
  return p;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

/**
 * SIGKILL of the primary's keeper and its postmaster (the node dies). Heal: start the keeper
 * again (same uid, port, data dir), which rejoins as a standby.
 * @throws Error when there is no primary.
 */
export async function killPrimaryNode(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const k = t.cluster.keepers[p]!;
  const pm = await k.postmasterPid();
  await t.cluster.killKeeperNode(p);
  return {
    name: 'killPrimaryNode',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGKILL ${k.uid} (pid ${k.process.pid}) and its postmaster (pid ${pm ?? '?'})`,
    minHoldMs: 0,
    heal: once(() => t.cluster.startKeeper(p)),
  };
}

/**
 * SIGKILL of the primary's postmaster only (its backends exit when they notice); the keeper lives
 * and must restart PostgreSQL or have the sentinel fail over. No heal.
 * @throws Error when there is no primary or its postmaster pid cannot be read.
 */
export async function crashPrimaryPostgres(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const k = t.cluster.keepers[p]!;
  const pm = await k.postmasterPid();
  if (pm === undefined) {
    throw new Error(`crashPrimaryPostgres: no postmaster.pid for ${k.uid}`);
  }
  process.kill(pm, 'SIGKILL');
  return {
    name: 'crashPrimaryPostgres',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGKILL postmaster of ${k.uid} (pid ${pm})`,
    minHoldMs: 0,
    heal: () => Promise.resolve(),
  };
}

/**
 * SIGSTOP of the primary's keeper process (not its PostgreSQL, which keeps running and serving
 * whoever is connected: the "zombie primary") for at least failInterval + 2 s, longer than its
 * lease TTL; heal is SIGCONT. A keeper that fences itself only from its own event loop cannot act
 * while stopped: only a fencer independent of it (as Patroni's watchdog) keeps the zombie from
 * accepting writes.
 * @throws Error when there is no primary.
 */
export async function zombiePrimaryKeeper(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const k = t.cluster.keepers[p]!;
  const proc = k.process;
  proc.pause();
  return {
    name: 'zombiePrimaryKeeper',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGSTOP ${k.uid} (pid ${proc.pid}) for at least ${t.failIntervalMs + 2000} ms (failInterval ${t.failIntervalMs} ms)`,
    minHoldMs: t.failIntervalMs + 2000,
    heal: once(() => {
      proc.resume();
      return Promise.resolve();
    }),
  };
}

function etcdPorts(etcd: EtcdHandle): number[] {
  const members = 'members' in etcd ? (etcd as EtcdClusterHandle).members : [etcd];
  return members.flatMap((m) => [m.clientPort, m.peerPort]);
}

/**
 * Cuts the primary's network namespace (its keeper and PostgreSQL) off from every etcd member and
 * from the other keepers' namespaces; the host (proxies, test clients) still reaches its
 * PostgreSQL. Heal: flush the rules. Needs a cluster started with a chaos network.
 * @throws Error when the cluster has no chaos network or there is no primary.
 */
export async function partitionPrimary(t: ChaosTarget): Promise<InjectedFault> {
  const net = t.cluster.network;
  if (net === undefined) {
    throw new Error('partitionPrimary needs a cluster started with a chaos network (netns: true or network)');
  }
  const p = await currentPrimary(t);
  const ports = etcdPorts(t.cluster.etcd);
  await net.cut(p, { hostTcpPorts: ports });
  return {
    name: 'partitionPrimary',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `cut ${t.cluster.keepers[p]!.uid} (${net.nodes[p]!.address}, netns ${net.nodes[p]!.netns}) from etcd ports ${ports.join(',')} and the other keepers`,
    minHoldMs: t.failIntervalMs + 2000,
    heal: once(() => net.heal(p)),
  };
}

/**
 * SIGKILL of the leader sentinel together with the primary's keeper and postmaster. Heal: start
 * the sentinel (a new uid) and the keeper again.
 * @throws Error when there is no primary, no leader, or the leader is not one of this cluster's
 *   sentinel processes.
 */
export async function killLeaderSentinelWithPrimary(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const leader = await t.store.getLeader();
  if (leader === null) {
    throw new Error('killLeaderSentinelWithPrimary: no leader sentinel');
  }
  const si = t.cluster.sentinels.findIndex((s) => s.running() && s.logs().includes(`"uid":"${leader}"`));
  if (si < 0) {
    throw new Error(`killLeaderSentinelWithPrimary: leader ${leader} is not a running sentinel of this cluster`);
  }
  const s = t.cluster.sentinels[si]!;
  await Promise.all([s.kill(), t.cluster.killKeeperNode(p)]);
  return {
    name: 'killLeaderSentinelWithPrimary',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGKILL leader sentinel ${si} (${leader}) and ${t.cluster.keepers[p]!.uid} with its postmaster`,
    minHoldMs: 0,
    heal: once(async () => {
      await Promise.all([t.cluster.startSentinel(si), t.cluster.startKeeper(p)]);
    }),
  };
}

/**
 * SIGKILL of the etcd raft leader (1 member of 3: the quorum survives, a new raft leader is
 * elected). Heal: restart it on the same ports and data. Needs an etcd cluster of ≥ 3 members.
 * @throws Error when the cluster's etcd has fewer than 3 members or no leader answers.
 */
export async function killEtcdMember(t: ChaosTarget, opts: FaultOptions = {}): Promise<InjectedFault> {
  const etcd = t.cluster.etcd;
  if (!('members' in etcd) || (etcd as EtcdClusterHandle).members.length < 3) {
    throw new Error('killEtcdMember needs an etcd cluster of at least 3 members (startEtcdCluster(3))');
  }
  const ec = etcd as EtcdClusterHandle;
  const p = await currentPrimary(t);
  // Odd cycles kill a follower, even ones the leader: both paths are exercised.
  const leader = await ec.leaderIndex();
  if (leader === undefined) {
    throw new Error('killEtcdMember: no etcd member reports a leader');
  }
  const i = (opts.cycle ?? 0) % 2 === 0 ? leader : (leader + 1) % ec.members.length;
  const m = ec.members[i]!;
  await m.kill();
  return {
    name: 'killEtcdMember',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGKILL etcd member ${i} (${i === leader ? 'raft leader' : 'follower'}, client port ${m.clientPort})`,
    minHoldMs: 5000,
    heal: once(() => m.restart()),
  };
}

/**
 * SIGKILL of one proxy (proxy `cycle mod P`). Heal: start it again on the same port.
 * @throws Error when there is no primary.
 */
export async function killProxy(t: ChaosTarget, opts: FaultOptions = {}): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const i = (opts.cycle ?? 0) % t.cluster.proxies.length;
  const px = t.cluster.proxies[i]!;
  await px.process.kill();
  return {
    name: 'killProxy',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGKILL proxy ${i} (port ${px.port}, pid ${px.process.pid})`,
    minHoldMs: 2000,
    heal: once(() => t.cluster.startProxy(i)),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls clusterdata every 20 ms until `pred` holds.
 * @throws Error naming `what` after `timeoutMs`
 */
async function waitClusterData<T>(t: ChaosTarget, what: string, timeoutMs: number, pred: (cd: ClusterData) => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = pred(await readClusterData(t.store));
      if (v !== undefined) {
        return v;
      }
    } catch (err) {
      last = err;
    }
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : ` (last error: ${(last as Error).message})`}`);
}

/** Activates failpoint `name` with `action` in `dir` (docs/design.md, "Failpoints"), or clears it (undefined). */
async function setFailpoint(dir: string, name: string, action: string | undefined): Promise<void> {
  await (action === undefined ? rm(join(dir, name), { force: true }) : writeFile(join(dir, name), action));
}

const noMemberApi = (t: ChaosTarget): string | undefined =>
  t.cluster.keepers.some((k) => k.memberPort === undefined) ? 'the keepers have no member API (memberApi: true), so failsafe mode cannot act' : undefined;

const noFailpoints = (t: ChaosTarget): string | undefined =>
  t.cluster.keepers.some((k) => k.failpointsDir === undefined) || t.cluster.proxies.some((p) => p.failpointsDir === undefined)
    ? 'the cluster was not started with failpoints (failpoints: true)'
    : undefined;

/**
 * The primary's node killed (keeper and postmaster, SIGKILL); as soon as the sentinel names a new
 * primary in clusterdata (it chose the candidate and asked it to promote), that keeper's node is
 * killed too. The sentinel must notice that its chosen standby died mid-promotion and choose
 * another — unless, under synchronous replication, those two were the primary and its only
 * synchronous standbys: then no server left holds every acknowledged write, nothing may be
 * promoted, and writes resume after the heal (`resumeAfterHeal`). Heal: start both keepers again.
 * Needs 3 keepers.
 * @throws Error when there is no primary or no new primary is named within 3 × failInterval + 10 s.
 */
async function chosenStandbyDiesMidPromotion(t: ChaosTarget): Promise<InjectedFault> {
  const before = await readClusterData(t.store);
  const p = await currentPrimary(t);
  const master = before.dbs[before.cluster.status.master];
  const syncKeepers = before.cluster.spec.synchronousReplication === true ? (master?.spec.synchronousStandbys ?? []).map((u) => before.dbs[u]?.spec.keeperUID) : undefined;
  await t.cluster.killKeeperNode(p);
  // The fault starts with the first kill: the failover event it causes is declared after it.
  const injectedAt = Date.now();
  const q = await waitClusterData(t, 'the sentinel to name a new primary', 3 * t.failIntervalMs + 10_000, (cd) => {
    const i = primaryKeeperIndex(t.cluster, cd);
    return i >= 0 && i !== p ? i : undefined;
  });
  await t.cluster.killKeeperNode(q);
  // Synchronous replication: only a synchronous standby surely holds every acknowledged write.
  const live = new Set([p, q].map((i) => t.cluster.keepers[i]!.uid));
  const noSafeCandidate = syncKeepers !== undefined && syncKeepers.every((k) => k === undefined || live.has(k));
  return {
    name: 'chosenStandbyDiesMidPromotion',
    injectedAt,
    primaryBefore: p,
    detail:
      `SIGKILL ${t.cluster.keepers[p]!.uid} with its postmaster, then ${t.cluster.keepers[q]!.uid} with its postmaster once clusterdata named it the new primary` +
      (noSafeCandidate ? ' (no synchronous standby left: no promotion expected before the heal)' : ''),
    minHoldMs: noSafeCandidate ? t.failIntervalMs * 2 + 2000 : 0,
    ...(noSafeCandidate ? { resumeAfterHeal: true } : {}),
    heal: once(async () => {
      await Promise.all([t.cluster.startKeeper(p), t.cluster.startKeeper(q)]);
    }),
  };
}

/**
 * `stolonctl switchover --yes`, and as soon as the sentinel starts it (clusterdata has a
 * switchover in progress) the old primary's node is killed (keeper and postmaster, SIGKILL): the
 * switchover must end (completed or aborted) and a failover give the cluster a primary. Heal:
 * start the keeper again; wait (≤ 60 s) for the stolonctl process.
 * @throws Error when there is no primary or the switchover does not start within 15 s.
 */
async function oldPrimaryDiesMidSwitchover(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  let said: string | undefined;
  const sw = t.cluster.stolonctl(['switchover', '--yes']).then((r) => {
    said = `stolonctl switchover exited ${r.code}: ${(r.stdout + r.stderr).trim().slice(-600)}`;
  });
  await waitClusterData(t, 'the switchover to start', 15_000, (cd) =>
    cd.cluster.status.failover?.kind === 'switchover' || primaryKeeperIndex(t.cluster, cd) !== p ? true : undefined,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}${said === undefined ? ' (stolonctl switchover still running)' : ` (${said})`}`);
  });
  await t.cluster.killKeeperNode(p);
  return {
    name: 'oldPrimaryDiesMidSwitchover',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `stolonctl switchover, then SIGKILL ${t.cluster.keepers[p]!.uid} with its postmaster as the switchover started`,
    minHoldMs: 0,
    heal: once(async () => {
      await t.cluster.startKeeper(p);
      await Promise.race([sw, sleep(60_000)]);
    }),
  };
}

/**
 * The primary's keeper pass hangs (failpoint `keeperPassHang`: its process, its lease keepalive
 * and its fencer updates go on, so its lease never expires), and its PostgreSQL is then stopped
 * (fast shutdown, SIGINT to the postmaster), which the hung keeper cannot restart or report: the
 * sentinel must tell a keeper that is alive but makes no progress and fail over. Heal: clear the
 * failpoint (the pass resumes; the keeper rejoins as a standby). Needs failpoints.
 * @throws Error when there is no primary or no postmaster pid.
 */
async function keeperPassHang(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const k = t.cluster.keepers[p]!;
  const dir = k.failpointsDir!;
  await setFailpoint(dir, 'keeperPassHang', 'hang');
  // Let a pass reach the failpoint (one sleepInterval; passes also run on every clusterdata change).
  const { sleepIntervalMs } = resolveSpec((await readClusterData(t.store)).cluster.spec);
  await sleep(Math.min(sleepIntervalMs, 5000) + 500);
  const pm = await k.postmasterPid();
  if (pm === undefined) {
    await setFailpoint(dir, 'keeperPassHang', undefined);
    throw new Error(`keeperPassHang: no postmaster.pid for ${k.uid}`);
  }
  process.kill(pm, 'SIGINT');
  return {
    name: 'keeperPassHang',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `failpoint keeperPassHang=hang on ${k.uid}, then SIGINT (fast shutdown) of its postmaster (pid ${pm})`,
    minHoldMs: t.failIntervalMs + 2000,
    heal: once(() => setFailpoint(dir, 'keeperPassHang', undefined)),
  };
}

/**
 * Every check of one proxy (proxy `cycle mod P`) fails (failpoint `proxyCheckFail`: as if it could
 * not reach the store; it publishes nothing), and the primary's node is killed: the failover must
 * complete without waiting forever for that proxy to acknowledge the fence. Heal: clear the
 * failpoint and start the keeper again. Needs failpoints.
 * @throws Error when there is no primary.
 */
async function proxyChecksFail(t: ChaosTarget, opts: FaultOptions = {}): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const i = (opts.cycle ?? 0) % t.cluster.proxies.length;
  const dir = t.cluster.proxies[i]!.failpointsDir!;
  await setFailpoint(dir, 'proxyCheckFail', 'error');
  await t.cluster.killKeeperNode(p);
  return {
    name: 'proxyChecksFail',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `failpoint proxyCheckFail=error on proxy ${i}, then SIGKILL ${t.cluster.keepers[p]!.uid} with its postmaster`,
    minHoldMs: t.failIntervalMs + 2000,
    heal: once(async () => {
      await setFailpoint(dir, 'proxyCheckFail', undefined);
      await t.cluster.startKeeper(p);
    }),
  };
}

/**
 * SIGSTOP of the primary keeper's whole process group (the keeper and what runs in its group;
 * PostgreSQL and the fencer run in sessions of their own) past its lease TTL: the fencer must
 * still fence PostgreSQL before another keeper is promoted. Heal: SIGCONT of the group.
 * @throws Error when there is no primary.
 */
async function sigstopKeeperGroup(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const k = t.cluster.keepers[p]!;
  const proc = k.process;
  proc.pauseGroup();
  return {
    name: 'sigstopKeeperGroup',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGSTOP process group ${proc.pid} of ${k.uid} for at least ${t.failIntervalMs + 2000} ms (failInterval ${t.failIntervalMs} ms)`,
    minHoldMs: t.failIntervalMs + 2000,
    heal: once(() => {
      proc.resumeGroup();
      return Promise.resolve();
    }),
  };
}

/** How long the store faults keep the store away, ms. */
const STORE_OUTAGE_MS = 30_000;

/** Every etcd member of the cluster (one for a single-member etcd). */
function etcdMembers(etcd: EtcdHandle): EtcdHandle[] {
  return 'members' in etcd ? [...(etcd as EtcdClusterHandle).members] : [etcd];
}

/**
 * SIGSTOP of every etcd member for 30 s (a store that hangs: the Kubernetes API server under an
 * upgrade, a stalled disk): with failsafe mode the primary keeps serving, confirmed by the other
 * keepers, and the proxies keep routing to it; nothing is promoted. Heal: SIGCONT.
 * @throws Error when there is no primary.
 */
async function freezeStore(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const members = etcdMembers(t.cluster.etcd);
  for (const m of members) {
    m.process.pause();
  }
  return {
    name: 'freezeStore',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGSTOP of all ${members.length} etcd members for ${STORE_OUTAGE_MS} ms`,
    minHoldMs: STORE_OUTAGE_MS,
    heal: once(() => {
      for (const m of members) {
        m.process.resume();
      }
      return Promise.resolve();
    }),
  };
}

/**
 * SIGKILL of every etcd member (a store that refuses connections); heal: restart them on the same
 * ports and data after 30 s. Expected as for {@link freezeStore}.
 * @throws Error when there is no primary.
 */
async function killStore(t: ChaosTarget): Promise<InjectedFault> {
  const p = await currentPrimary(t);
  const members = etcdMembers(t.cluster.etcd);
  await Promise.all(members.map((m) => m.kill()));
  return {
    name: 'killStore',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGKILL of all ${members.length} etcd members, restarted after ${STORE_OUTAGE_MS} ms`,
    minHoldMs: STORE_OUTAGE_MS,
    heal: once(async () => {
      await Promise.all(members.map((m) => m.restart()));
    }),
  };
}

/**
 * Every etcd member frozen and, at the same time, the primary's namespace cut off from the other
 * keepers (and etcd): no keeper can confirm it, so it must fence itself within its lease deadline as
 * without failsafe mode, and no other keeper may accept writes (nothing can be promoted without the
 * store), so writes resume only after the heal (`resumeAfterHeal`). Held for failInterval + 2 s. Heal:
 * flush the rules and SIGCONT etcd. Needs a chaos network.
 * @throws Error when the cluster has no chaos network or there is no primary.
 */
async function freezeStoreAndPartitionPrimary(t: ChaosTarget): Promise<InjectedFault> {
  const net = t.cluster.network;
  if (net === undefined) {
    throw new Error('freezeStoreAndPartitionPrimary needs a cluster started with a chaos network (netns: true or network)');
  }
  const p = await currentPrimary(t);
  const members = etcdMembers(t.cluster.etcd);
  for (const m of members) {
    m.process.pause();
  }
  await net.cut(p, { hostTcpPorts: etcdPorts(t.cluster.etcd) });
  return {
    name: 'freezeStoreAndPartitionPrimary',
    injectedAt: Date.now(),
    primaryBefore: p,
    detail: `SIGSTOP of all ${members.length} etcd members, and ${t.cluster.keepers[p]!.uid} cut off from the other keepers`,
    minHoldMs: t.failIntervalMs + 2000,
    // Nothing can write until the heal: the primary fences, and nothing is promoted without the store.
    resumeAfterHeal: true,
    heal: once(async () => {
      await net.heal(p);
      for (const m of members) {
        m.process.resume();
      }
    }),
  };
}

/** Every fault with its expectation and availability check, in {@link FAULT_NAMES} order. */
export const FAULTS: Readonly<Record<FaultName, FaultDef>> = {
  killPrimaryNode: {
    name: 'killPrimaryNode',
    expect: 'failover',
    description: "kill -9 of the primary's keeper and postgres",
    unavailable: () => undefined,
    inject: (t) => killPrimaryNode(t),
  },
  crashPrimaryPostgres: {
    name: 'crashPrimaryPostgres',
    expect: 'restart-or-failover',
    description: "kill -9 of the primary's postmaster only (keeper alive)",
    unavailable: () => undefined,
    inject: (t) => crashPrimaryPostgres(t),
  },
  zombiePrimaryKeeper: {
    name: 'zombiePrimaryKeeper',
    expect: 'failover',
    description: "SIGSTOP of the primary's keeper past its lease TTL, then SIGCONT",
    unavailable: () => undefined,
    inject: (t) => zombiePrimaryKeeper(t),
  },
  partitionPrimary: {
    name: 'partitionPrimary',
    expect: 'failover',
    description: "the primary's keeper and postgres cut off from etcd and the other keepers (ip netns), then healed",
    unavailable: (t) => (t.cluster.network === undefined ? 'the cluster was not started in a chaos network (netns)' : undefined),
    inject: (t) => partitionPrimary(t),
  },
  killLeaderSentinelWithPrimary: {
    name: 'killLeaderSentinelWithPrimary',
    expect: 'failover',
    description: "kill -9 of the leader sentinel and the primary's keeper and postgres",
    unavailable: (t) => (t.cluster.sentinels.length < 2 ? 'needs at least 2 sentinels' : undefined),
    inject: (t) => killLeaderSentinelWithPrimary(t),
  },
  killEtcdMember: {
    name: 'killEtcdMember',
    expect: 'no-failover',
    description: 'kill -9 of 1 of 3 etcd members (the raft leader or a follower), then restarted',
    unavailable: (t) =>
      !('members' in t.cluster.etcd) || (t.cluster.etcd as EtcdClusterHandle).members.length < 3
        ? 'needs an etcd cluster of 3 members (startEtcdCluster(3))'
        : undefined,
    inject: (t, o) => killEtcdMember(t, o),
  },
  killProxy: {
    name: 'killProxy',
    expect: 'no-failover',
    description: 'kill -9 of one proxy, then restarted on the same port',
    unavailable: () => undefined,
    inject: (t, o) => killProxy(t, o),
  },
  chosenStandbyDiesMidPromotion: {
    name: 'chosenStandbyDiesMidPromotion',
    expect: 'failover',
    description: "kill -9 of the primary's node, then of the node of the standby the sentinel chose, as it promotes",
    unavailable: (t) => (t.cluster.keepers.length < 3 ? 'needs at least 3 keepers' : undefined),
    inject: (t) => chosenStandbyDiesMidPromotion(t),
  },
  oldPrimaryDiesMidSwitchover: {
    name: 'oldPrimaryDiesMidSwitchover',
    expect: 'failover',
    description: "stolonctl switchover, then kill -9 of the old primary's node as the switchover starts",
    unavailable: (t) => (t.cluster.keepers.length < 2 ? 'needs at least 2 keepers' : undefined),
    inject: (t) => oldPrimaryDiesMidSwitchover(t),
  },
  keeperPassHang: {
    name: 'keeperPassHang',
    expect: 'failover',
    description: "the primary keeper's pass hangs (failpoint; its lease lives on) and its postgres is stopped",
    unavailable: noFailpoints,
    inject: (t) => keeperPassHang(t),
  },
  proxyChecksFail: {
    name: 'proxyChecksFail',
    expect: 'failover',
    description: "every check of one proxy fails (failpoint) while the primary's node is killed",
    unavailable: noFailpoints,
    inject: (t, o) => proxyChecksFail(t, o),
  },
  sigstopKeeperGroup: {
    name: 'sigstopKeeperGroup',
    expect: 'failover',
    description: "SIGSTOP of the primary keeper's whole process group past its lease TTL, then SIGCONT",
    unavailable: () => undefined,
    inject: (t) => sigstopKeeperGroup(t),
  },
  freezeStore: {
    name: 'freezeStore',
    expect: 'no-failover',
    description: 'SIGSTOP of every etcd member for 30 s (failsafe mode keeps the primary), then SIGCONT',
    unavailable: noMemberApi,
    inject: (t) => freezeStore(t),
  },
  killStore: {
    name: 'killStore',
    expect: 'no-failover',
    description: 'kill -9 of every etcd member, restarted 30 s later',
    unavailable: noMemberApi,
    inject: (t) => killStore(t),
  },
  freezeStoreAndPartitionPrimary: {
    name: 'freezeStoreAndPartitionPrimary',
    expect: 'restart-or-failover',
    description: "every etcd member frozen and the primary cut off from the other keepers: it fences itself; then healed",
    unavailable: (t) => noMemberApi(t) ?? (t.cluster.network === undefined ? 'the cluster was not started in a chaos network (netns)' : undefined),
    inject: (t) => freezeStoreAndPartitionPrimary(t),
  },
};
