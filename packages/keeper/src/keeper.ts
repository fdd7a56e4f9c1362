/**
 * The keeper daemon's handle: `start` wires the runtime (runtime.ts), the background task runner
 * (tasks.ts), the pass loop (pass.ts, on common's pass loop), the fence updates and the crash
 * watch (watchers.ts), and `stop` takes them down in order. How a keeper works: see
 * docs/architecture.md, "Keeper".
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '@stolon-ts/cluster';
import type { Store } from '@stolon-ts/store';
import { startPassLoop, stopOnce } from '@stolon-ts/common';
import { readDbState } from './dbstate.js';
import { drainPrimary } from './drain.js';
import { podRoleOf } from './role-label.js';
import { reportPasses } from './health.js';
import { runPass, skipWatchPass } from './pass.js';
import { KeeperRuntime } from './runtime.js';
import { TaskRunner } from './tasks.js';
import type { KeeperConfig, KeeperDeps, KeeperHandle } from './types.js';
import { startConfirmationRounds, startMemberApi } from './failsafe.js';
import { stopBackupServer } from './backup-server.js';
import { fenceRemainingMs, startCrashWatch, startFenceUpdates, updateFence } from './watchers.js';

/** Retry backoff of a failed background task, in ms (see {@link KeeperConfig.taskRetry}). */
const DEFAULT_TASK_RETRY = { baseMs: 1000, maxMs: 30_000 } as const;

/**
 * The store as the pass loop's watch sees it: every clusterdata watch event, and the watch's
 * start, also mark the keeper's copy of clusterdata stale (`readClusterData` in pass.ts) before
 * the loop hears of it.
 */
function cdWatchStore(rt: KeeperRuntime): Pick<Store, 'watch'> {
  return {
    watch: async (topics, listener) => {
      const w = await rt.store.watch(topics, (topic) => {
        rt.cdStale = true;
        listener(topic);
      });
      rt.cdStale = true;
      return w;
    },
  };
}

/**
 * Starts a keeper: its first pass runs on the next tick; passes run on clusterdata watch events
 * and every sleepInterval.
 * @returns the handle; `done` resolves once `stop` finished
 * @throws StolonError DATA_DIR_INVALID when the data dir cannot be created or its dbstate read
 * @throws ConfigError naming `member-listen-address` when the member API cannot listen
 */
export async function start(config: KeeperConfig, deps: KeeperDeps): Promise<KeeperHandle> {
  // The store client's first request sets its connection up (etcd: ~35 ms of CPU for gRPC's
  // HTTP/2 channel). Sent now and not awaited, it overlaps `postgres -V` below, and the first
  // pass's read finds the connection ready; an unreachable store delays nothing here.
  void deps.store.getClusterData().catch(() => undefined);
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const local = await readDbState(config.dataDir);
  const rt = new KeeperRuntime(config, deps, local, await deps.pg.binaryVersion(), join(config.dataDir, 'postgres'));
  const { log } = rt;
  rt.tasks = new TaskRunner({
    log,
    setActivity: (a) => {
      rt.activity = a;
      if (a?.kind === 'task-failed') {
        deps.status?.errorSeen?.('task');
      }
    },
    onSettled: () => rt.trigger('background task settled'),
    retry: config.taskRetry ?? DEFAULT_TASK_RETRY,
  });
  // The member API first: a port that cannot be bound fails the start before anything runs.
  const member = config.member;
  const memberApi =
    member === undefined
      ? undefined
      : await startMemberApi(rt, member, () => fenceRemainingMs(rt)).catch((err: unknown) => {
          throw new ConfigError(`--member-listen-address: cannot listen on ${member.listen.host}:${member.listen.port}: ${(err as Error).message}`, {
            field: 'member-listen-address',
          });
        });
  const stopRounds = config.member === undefined ? () => undefined : startConfirmationRounds(rt, config.member);
  const stopFenceUpdates = startFenceUpdates(rt);
  const stopCrashWatch = startCrashWatch(rt);
  const passAndLabel = reportPasses(deps.status, () => runPass(rt, () => updateFence(rt)));
  // The role label follows every pass, in the background (role-label.ts).
  const label = (): void => deps.roleLabel?.update(podRoleOf(rt.isPrimary, rt.lastCd, rt.local.uid, config.uid));
  const run = () => passAndLabel().finally(label);
  const loop = startPassLoop({
    log,
    run: async ({ trigger }) => {
      if (trigger !== 'interval' && trigger !== 'clusterdata changed') {
        // A crash, a fence, a task's end, the start…: read clusterdata afresh (readClusterData).
        rt.cdStale = true;
      }
      // The watch's trigger (see startPassLoop); a clusterdata change in WAL positions only needs no pass.
      if (trigger === 'clusterdata changed' && (await skipWatchPass(rt))) {
        return undefined;
      }
      rt.passRequested = false;
      return run();
    },
    intervalMs: () => rt.sleepMs(),
    watch: { store: cdWatchStore(rt), topics: ['clusterdata'] },
  });
  rt.cdWatching = () => loop.watching();
  rt.trigger = (reason) => {
    rt.passRequested = true;
    loop.trigger(reason);
  };
  rt.state = 'running';
  log.info(
    { dataDir: config.dataDir, pgPort: config.pgPort, ...(memberApi !== undefined ? { memberApi: `${memberApi.address.host}:${memberApi.address.port}` } : {}) },
    'keeper started',
  );

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = stopOnce(async (reason) => {
    // A primary first hands its role over (bounded): the passes, the fence updates and the
    // crash watch keep running meanwhile, so the state stays `running` until it ends.
    if (config.shutdownSwitchoverTimeoutMs !== undefined && rt.state === 'running') {
      await drainPrimary(rt, config.shutdownSwitchoverTimeoutMs).catch((err: unknown) => log.warn({ err }, 'switchover before stopping failed'));
    }
    rt.state = 'stopping';
    log.info({ reason }, 'keeper stopping');
    await loop.stop();
    await rt.tasks.idle();
    stopFenceUpdates();
    stopCrashWatch();
    stopRounds();
    await memberApi?.close();
    // Before PostgreSQL is stopped below: a clean stop must not be reported as a fence.
    await deps.fencer?.stop();
    stopBackupServer(rt);
    // A clean stop takes PostgreSQL down too: the keeper owns it, and leaving a primary running
    // without its keeper would leave it unfenced.
    await rt.pg.stop('fast').catch((err: unknown) => log.warn({ err }, 'stopping postgres failed'));
    await deps.roleLabel?.stop();
    await rt.store.deleteInfo('keepers', config.uid).catch(() => undefined);
    await rt.store.close().catch(() => undefined);
    rt.state = 'stopped';
    resolveDone();
  });
  return { ready: Promise.resolve(), done, stop, state: () => rt.state };
}
