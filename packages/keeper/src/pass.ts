/**
 * One keeper pass: observe PostgreSQL, read clusterdata, publish the keeper info, plan one step
 * (plan.ts) and run it (actions.ts). Returns the pass's one sentence for the pass loop to log.
 */
import { ClusterDataInvalidError, parseClusterData, REPORTED_POSITION_KEYS, resolveSpec, type ClusterData } from '@stolon-ts/cluster';
import { failpoint, redactConninfo, type PassResult } from '@stolon-ts/common';
import { describeActivity } from './activity.js';
import { execute, taskName } from './actions.js';
import { promiseHold } from './failsafe.js';
import { checkpointBeforeShutdown, watchFinalWal } from './final-wal.js';
import { refreshPasswords, rotatePasswords } from './passwords.js';
import { planKeeperAction, reloadDue } from './plan.js';
import { maintainStanza } from './stanza.js';
import { maintainBackups } from './backup-run.js';
import type { KeeperRuntime } from './runtime.js';
import type { ClusterDataRecord } from '@stolon-ts/store';
import { awaitFenceTimeForStart } from './watchers.js';

/**
 * How long a clusterdata read stays usable without a watch event, in ms: a timer pass reads the
 * store again once its copy is this old, so a watch that failed without the store client noticing
 * delays what the keeper learns by at most this long.
 */
const CD_REREAD_MS = 5000;

/**
 * The stored clusterdata for a pass: the copy of the last read ({@link KeeperRuntime.cdRead})
 * while the clusterdata watch runs and has reported nothing since that read was sent, the copy is
 * younger than {@link CD_REREAD_MS}, only the timer asked for the pass, and no failover or
 * switchover is in progress (its steps wait for clusterdata changes); otherwise a read from the
 * store. Every clusterdata write (the sentinel's) is a watch event, which marks the copy stale and
 * triggers a pass that reads, so at rest a keeper reads clusterdata once per CD_REREAD_MS
 * instead of every sleepInterval, and reacts to a change as fast as before.
 * @returns the record, null when there is no clusterdata
 * @throws what `Store.getClusterData` throws (the copy is then dropped)
 */
async function readClusterData(rt: KeeperRuntime): Promise<ClusterDataRecord | null> {
  const copy = rt.cdRead;
  if (
    copy !== undefined &&
    !rt.cdStale &&
    rt.cdWatching() &&
    performance.now() - copy.sentAt < CD_REREAD_MS &&
    rt.lastCd?.cluster.status.failover === undefined
  ) {
    return copy.rec;
  }
  rt.cdStale = false;
  rt.cdRead = undefined;
  const sentAt = performance.now();
  try {
    const rec = await rt.store.getClusterData();
    rt.cdRead = { rec, sentAt };
    return rec;
  } catch (err) {
    rt.cdStale = true;
    throw err;
  }
}

/**
 * `rec` parsed, reusing the document of the last parse ({@link KeeperRuntime.cdParsed}) when `rec`
 * carries the same revision and text: at rest most passes use the copy of the last read
 * (`readClusterData`), and parsing and checking the document (and resolving its spec) was about 7% of an idle keeper's CPU in a profile.
 * Nothing in the keeper changes the parsed document, so the same object serves every pass.
 * @throws ClusterDataInvalidError from `parseClusterData`
 */
export function parsedClusterData(rt: Pick<KeeperRuntime, 'cdParsed'>, rec: ClusterDataRecord): ClusterData {
  const last = rt.cdParsed;
  if (last !== undefined && last.revision === rec.revision && last.text === rec.text) {
    return last.cd;
  }
  const cd = parseClusterData(rec.text);
  rt.cdParsed = { revision: rec.revision, text: rec.text, cd };
  return cd;
}

/**
 * Runs one pass.
 * @param afterPublish called after each publish of the pass's first observation (the fence update)
 * @returns the pass sentence
 * @throws store and PostgreSQL errors (the pass loop logs them and runs the next pass)
 */
export async function runPass(rt: KeeperRuntime, afterPublish: () => void): Promise<PassResult> {
  await failpoint('keeperPassHang');
  refreshPasswords(rt);
  const { config } = rt;
  const obs = await rt.observe();
  let cd: ClusterData | undefined;
  try {
    const rec = await readClusterData(rt);
    cd = rec === null ? undefined : parsedClusterData(rt, rec);
  } catch (err) {
    if (!(err instanceof ClusterDataInvalidError)) {
      throw err;
    }
    // Keep publishing (so the sentinel knows this keeper is alive) but do nothing.
    await rt.publish(undefined, obs);
    return { sentence: `clusterdata unusable, doing nothing: ${err.message}`, level: 'warn' };
  }
  let isPrimary = rt.isPrimary;
  if (cd !== undefined) {
    // The same document (parsedClusterData) has the same spec.
    if (cd !== rt.lastCd || rt.spec === undefined) {
      rt.spec = resolveSpec(cd.cluster.spec);
    }
    rt.lastCd = cd;
    const mine = rt.local.uid === '' ? undefined : cd.dbs[rt.local.uid];
    isPrimary = mine !== undefined && mine.spec.keeperUID === config.uid && mine.spec.role === 'master';
  }
  if (!isPrimary) {
    rt.isPrimary = false;
  }
  await rt.publish(cd, obs);
  // Becoming the primary takes effect only now, with the info under this process's lease: the
  // fencer is armed from `isPrimary` every 250 ms, and armed without a lease it fences at once (a
  // restarted keeper's first publish waits for a lease grant; its predecessor's fencer guards
  // PostgreSQL until then).
  rt.isPrimary = isPrimary;
  afterPublish();
  if (cd === undefined) {
    return { sentence: 'no clusterdata: waiting for `stolonctl init`' };
  }
  watchFinalWal(rt);
  checkpointBeforeShutdown(rt, cd, obs.running);
  if (rt.switchoverRequestedAt !== undefined && !isPrimary) {
    // Stopping after handing the primary over (drain.ts): PostgreSQL, shut down for the
    // switchover, is not started again as a standby only to be stopped.
    return { sentence: 'the primary was handed over before this keeper stops: not starting PostgreSQL again' };
  }
  const running = rt.tasks.current;
  if (running === undefined) {
    await rotatePasswords(rt, obs);
  }
  maintainStanza(rt, cd, obs);
  maintainBackups(rt, cd, obs);
  if (running !== undefined) {
    return { sentence: rt.activity !== undefined ? describeActivity(rt.activity, performance.now()) : `${running} in progress` };
  }
  const plannedBoot = rt.bootUuid;
  const action = planKeeperAction(cd, config.uid, plannedBoot, rt.local, {
    initialized: obs.initialized,
    running: obs.running,
    role: obs.role,
    systemId: obs.systemId,
  });
  if (action.kind === 'refuse') {
    rt.activity = { kind: 'refused', reason: action.reason };
    return { sentence: action.reason, level: 'warn' };
  }
  rt.clearActivity('refused');
  const hold = action.kind === 'converge' && action.role === 'master' && (action.promote || !obs.running) ? promiseHold(rt, performance.now()) : undefined;
  if (hold !== undefined) {
    return { sentence: hold, level: 'warn', key: 'failsafe-promise' };
  }
  const startsPrimary = action.kind === 'converge' && action.role === 'master' && !obs.running;
  const leaseHold = startsPrimary ? await awaitFenceTimeForStart(rt, Math.min(1000, rt.sleepMs())) : undefined;
  if (leaseHold !== undefined) {
    return { sentence: leaseHold, level: 'warn', key: 'lease-hold' };
  }
  const lastError = rt.tasks.lastError;
  const reason = action.reason + (lastError !== undefined && action.kind !== 'converge' ? ` (last attempt: ${lastError})` : '');
  const task = taskName(action);
  const waitMs = task === undefined ? 0 : rt.tasks.retryInMs(task);
  if (waitMs > 0) {
    return { sentence: `${reason}; attempt ${rt.tasks.failures(task ?? '') + 1} in ${Math.ceil(waitMs / 1000)} s`, level: 'warn', key: `backoff|${reason}` };
  }
  if (rt.bootUuid !== plannedBoot) {
    // Fenced while this pass waited (the fencer's report arrived meanwhile): the plan was made on
    // clusterdata that may predate the fence; the next pass waits for the sentinel instead.
    return { sentence: 'fenced during this pass: its plan is dropped', level: 'warn' };
  }
  // `stolonctl reload`: converge writes the configuration files again, then PostgreSQL reloads.
  const reload = action.kind === 'converge' ? reloadDue(cd, config.uid, rt.reloadedGeneration) : undefined;
  if (reload !== undefined) {
    rt.appliedConfigKey = '';
  }
  let failed: { err: unknown } | undefined;
  let changed = false;
  try {
    changed = await execute(rt, action, cd, obs);
    if (reload !== undefined) {
      await reloadNow(rt, reload);
      changed = true;
    }
  } catch (err) {
    failed = { err };
  }
  if (failed !== undefined) {
    // Said at once, not at the next pass: the sentinel fails a primary whose start failed
    // (`startError`) without waiting failInterval.
    await rt.observe().then((o) => rt.publish(cd, o)).catch(() => undefined);
    throw failed.err;
  }
  if (changed) {
    // Report the result of the step at once instead of at the next pass. A step that changed
    // nothing (the steady state) is not published twice: every publish is a store write.
    await rt.publish(cd, await rt.observe());
  }
  return {
    sentence:
      action.kind === 'converge' && action.external !== undefined
        ? `${reason} (${redactConninfo(action.external.standbySettings.primaryConninfo ?? '')})`
        : reason,
  };
}

/**
 * How long the keeper lets the postmaster apply a reload (it handles SIGHUP asynchronously)
 * before observing `pg_settings.pending_restart` for its info, ms.
 */
const RELOAD_SETTLE_MS = 500;

/**
 * Acts on `stolonctl reload` generation `generation` after converge rewrote the configuration
 * files: reloads a running PostgreSQL (`pg_ctl reload`, what `pg_reload_conf()` does) and waits
 * {@link RELOAD_SETTLE_MS}; a stopped one reads the files when it starts. Then records the
 * generation, which the next publish acknowledges (`reloadGeneration`).
 * @throws what `pg_ctl reload` throws (the generation is then not acknowledged; the next pass retries)
 */
async function reloadNow(rt: KeeperRuntime, generation: number): Promise<void> {
  if (await rt.pg.isRunning()) {
    await rt.pg.reload();
    await new Promise((r) => setTimeout(r, RELOAD_SETTLE_MS));
    rt.log.info({ reloadGeneration: generation }, `configuration rewritten and PostgreSQL reloaded (stolonctl reload, generation ${generation})`);
  } else {
    rt.log.info({ reloadGeneration: generation }, `configuration rewritten; PostgreSQL is not running and reads it when it starts (stolonctl reload, generation ${generation})`);
  }
  rt.reloadedGeneration = generation;
}

/** What changes with every WAL write: the reported positions, lastHealthyTime, changeTime. */
const REPORTED_KEYS: ReadonlySet<string> = new Set([...REPORTED_POSITION_KEYS, 'lastHealthyTime', 'changeTime']);

/** `cd` as JSON without {@link REPORTED_KEYS}. */
function withoutReportedPositions(cd: ClusterData): string {
  return JSON.stringify(cd, (k, v: unknown) => (REPORTED_KEYS.has(k) ? undefined : v));
}

/**
 * Whether a pass the clusterdata watch asked for can be skipped: this keeper published less than
 * sleepInterval ago, nothing else asked for a pass (`rt.passRequested`), no failover or switchover
 * is in progress (its steps wait for the keepers' reports), and the stored clusterdata
 * differs from the last one it read only in reported WAL positions (`xLogPos`, `replayedXLogPos`),
 * `lastHealthyTime` and `changeTime` — what the sentinel rewrites when keepers report new WAL,
 * and which changes nothing a keeper does. Without this, under a write load every keeper publish
 * (a new WAL position) made the sentinel rewrite clusterdata, which woke every keeper for a pass
 * that published a newer position again, as fast as the store answered. The timer pass (every
 * sleepInterval) still reports positions. Keeps `rt.lastCd` current when it skips.
 * @returns true to skip; false (run the pass) also when the store or the document cannot be read
 */
export async function skipWatchPass(rt: KeeperRuntime): Promise<boolean> {
  const last = rt.lastCd;
  const published = rt.lastPublishSentAt;
  if (
    last === undefined ||
    published === undefined ||
    rt.passRequested ||
    performance.now() - published >= rt.sleepMs() ||
    last.cluster.status.failover !== undefined
  ) {
    return false;
  }
  let cd: ClusterData;
  try {
    const rec = await readClusterData(rt);
    if (rec === null) {
      return false;
    }
    cd = parseClusterData(rec.text);
  } catch {
    return false;
  }
  if (rt.passRequested || withoutReportedPositions(cd) !== withoutReportedPositions(last)) {
    return false;
  }
  rt.lastCd = cd;
  return true;
}
