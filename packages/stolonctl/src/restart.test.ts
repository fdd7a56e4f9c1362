/**
 * Unit tier: `stolonctl switchover --at/--cancel` and `stolonctl restart` in-process against the
 * in-memory store, with keepers simulated by a loop that acts on restart requests as the keeper does.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseClusterData, restartRequested, serializeClusterData, type ClusterData } from '@stolon-ts/cluster';
import { aCluster, keeperInfo } from '@stolon-ts/cluster/testing';
import { MemoryBackend, MemoryStore } from '@stolon-ts/store';
import { ExitCode, runRestart, runStatus, runSwitchover, type CommandContext } from './index.js';
import { parseSwitchoverAt } from './switchover.js';

const stores: MemoryStore[] = [];
const timers: NodeJS.Timeout[] = [];
afterEach(async () => {
  timers.splice(0).forEach(clearInterval);
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** Primary k2; standbys k1 and k3; every DB healthy and converged. */
async function setup(): Promise<{ ctx: CommandContext; store: MemoryStore; out: string[]; errs: string[] }> {
  const store = new MemoryStore(new MemoryBackend(), { clusterName: 'c1' });
  stores.push(store);
  const cd = aCluster({ spec: { initMode: 'new' } })
    .initialized()
    .withPrimary('k2', { xLogPos: 100 })
    .withStandby('k1', { follows: 'k2', xLogPos: 100 })
    .withStandby('k3', { follows: 'k2', xLogPos: 100 })
    .routedTo('k2', ['p1'], 2)
    .build();
  await store.putClusterData(serializeClusterData(cd), null);
  const out: string[] = [];
  const errs: string[] = [];
  return { ctx: { store, clusterName: 'c1', out: (t) => out.push(t), err: (l) => errs.push(l) }, store, out, errs };
}

async function stored(store: MemoryStore): Promise<ClusterData> {
  return parseClusterData((await store.getClusterData())!.text);
}

/**
 * Keepers as they answer a restart request: each publishes its DB's applied generation, running,
 * healthy, streaming, and a postmaster start time that changes when it restarts. `ignore`: keepers
 * that never act. Records how many instances were down at once (the most seen).
 */
function simulateKeepers(store: MemoryStore, ignore: readonly string[] = []): { restarts: string[]; maxDown: () => number } {
  const applied: Record<string, number> = {};
  const started: Record<string, number> = {};
  const restarts: string[] = [];
  let maxDown = 0;
  const down = new Set<string>();
  const tick = async (): Promise<void> => {
    const cd = await stored(store);
    for (const db of Object.values(cd.dbs)) {
      const k = db.spec.keeperUID;
      applied[k] ??= db.generation;
      started[k] ??= 1;
      if (down.has(k)) {
        down.delete(k); // back after one tick down
      } else if (restartRequested(db, applied[k]!) && !ignore.includes(k)) {
        applied[k] = db.generation;
        started[k]! += 1;
        restarts.push(k);
        down.add(k);
      }
      const up = !down.has(k);
      const info = keeperInfo(k, cd, { running: up, pgHealthy: up, generation: applied[k]! });
      const st = { ...info.postgresState!, startedAt: new Date(started[k]! * 1000).toISOString(), streaming: up && db.uid !== cd.cluster.status.master };
      await store.setInfo('keepers', k, { ...info, postgresState: st }, 10_000);
    }
    maxDown = Math.max(maxDown, down.size);
  };
  let busy = false;
  timers.push(
    setInterval(() => {
      if (!busy) {
        busy = true;
        void tick().finally(() => (busy = false));
      }
    }, 15),
  );
  return { restarts, maxDown: () => maxDown };
}

describe('switchover --at / --cancel', () => {
  const NOW = Date.parse('2026-12-06T22:00:00.000Z');
  it('records the schedule, shows it in status (table and json), and --cancel removes it', async () => {
    const h = await setup();
    expect(await runSwitchover(h.ctx, { at: '10m', yes: true, now: () => NOW })).toBe(ExitCode.ok);
    expect((await stored(h.store)).cluster.status.switchoverRequest).toMatchObject({ scheduledAt: '2026-12-06T22:10:00.000Z' });
    expect(h.out.join('\n')).toMatch(/switchover scheduled at 2026-12-06T22:10:00.000Z/);
    h.out.length = 0;
    await runStatus(h.ctx, {});
    expect(h.out.join('\n')).toMatch(/Scheduled switchover: at 2026-12-06T22:10:00.000Z to the most up-to-date standby/);
    h.out.length = 0;
    await runStatus(h.ctx, { format: 'json' });
    expect(JSON.parse(h.out.join('\n')).cluster.scheduled_switchover).toMatchObject({ at: '2026-12-06T22:10:00.000Z', target_keeper_uid: null });
    // A second schedule is refused while one waits.
    expect(await runSwitchover(h.ctx, { at: '20m', yes: true, now: () => NOW })).toBe(ExitCode.runtime);
    expect(h.errs.join('\n')).toMatch(/already scheduled at 2026-12-06T22:10:00.000Z; run stolonctl switchover --cancel first/);
    expect(await runSwitchover(h.ctx, { cancel: true })).toBe(ExitCode.ok);
    expect((await stored(h.store)).cluster.status.switchoverRequest).toBeUndefined();
    expect(await runSwitchover(h.ctx, { cancel: true })).toBe(ExitCode.runtime);
    expect(h.errs.at(-1)).toMatch(/nothing to cancel/);
  });

  it.each([
    { at: 'tomorrow', err: /neither an RFC 3339 time/ },
    { at: '2026-12-06T21:00:00Z', err: /not in the future/ },
    { at: '2026-12-06T23:00:00', err: /neither an RFC 3339 time with a time zone/ },
    { at: '200h', err: /more than 168h0m0s ahead/ },
  ])('--at $at is refused (exit 2)', ({ at, err }) => {
    expect(() => parseSwitchoverAt(at, NOW)).toThrow(err);
  });
  it('--at accepts RFC 3339 with an offset and durations', () => {
    expect(parseSwitchoverAt('2026-12-06T23:30:00+01:00', NOW)).toBe(Date.parse('2026-12-06T22:30:00Z'));
    expect(parseSwitchoverAt('1h30m', NOW)).toBe(NOW + 90 * 60_000);
  });
  it('--cancel with --at is a usage error and changes nothing', async () => {
    const h = await setup();
    const before = (await h.store.getClusterData())!.text;
    expect(await runSwitchover(h.ctx, { cancel: true, at: '10m' })).toBe(ExitCode.usage);
    expect((await h.store.getClusterData())!.text).toBe(before);
  });
});

describe('restart', () => {
  it('--keeper on a standby: asks its keeper once and waits until it is back', async () => {
    const h = await setup();
    const sim = simulateKeepers(h.store);
    await new Promise((r) => setTimeout(r, 100));
    expect(await runRestart(h.ctx, { keeper: 'k3', yes: true, pollMs: 20, timeout: '5s' }), h.errs.join('\n')).toBe(ExitCode.ok);
    expect(sim.restarts).toEqual(['k3']);
    const db = Object.values((await stored(h.store)).dbs).find((d) => d.spec.keeperUID === 'k3')!;
    expect(db.spec.restartRequest?.generation).toBe(db.generation);
    expect(h.out.join('\n')).toMatch(/keeper k3 back after/);
  });

  it('--in-place without --keeper: standbys in keeper order, then the primary, one at a time', async () => {
    const h = await setup();
    const sim = simulateKeepers(h.store);
    await new Promise((r) => setTimeout(r, 100));
    expect(await runRestart(h.ctx, { inPlace: true, yes: true, pollMs: 20, timeout: '5s' }), h.errs.join('\n')).toBe(ExitCode.ok);
    expect(sim.restarts).toEqual(['k1', 'k3', 'k2']);
    expect(sim.maxDown()).toBe(1);
  });

  it('stops at the first instance not back within --timeout and leaves the later ones alone', async () => {
    const h = await setup();
    const sim = simulateKeepers(h.store, ['k1']);
    await new Promise((r) => setTimeout(r, 100));
    expect(await runRestart(h.ctx, { inPlace: true, yes: true, pollMs: 20, timeout: '500ms' })).toBe(ExitCode.runtime);
    expect(h.errs.join('\n')).toMatch(/the restart of keeper k1 did not happen within --timeout 500ms \(its keeper has not applied generation \d+ yet.*restart stopped, later instances were not restarted/);
    expect(sim.restarts).toEqual([]);
    const cd = await stored(h.store);
    expect(Object.values(cd.dbs).filter((d) => d.spec.restartRequest !== undefined).map((d) => d.spec.keeperUID)).toEqual(['k1']);
  });

  it('--pending-only with nothing pending restarts nothing', async () => {
    const h = await setup();
    simulateKeepers(h.store);
    await new Promise((r) => setTimeout(r, 100));
    expect(await runRestart(h.ctx, { pendingOnly: true, yes: true })).toBe(ExitCode.ok);
    expect(h.out.join('\n')).toMatch(/nothing to restart/);
  });

  it('without --yes and no terminal: refuses, nothing written', async () => {
    const h = await setup();
    const before = (await h.store.getClusterData())!.text;
    expect(await runRestart(h.ctx, {})).toBe(ExitCode.runtime);
    expect(h.errs.join('\n')).toMatch(/re-run with --yes/);
    expect((await h.store.getClusterData())!.text).toBe(before);
  });
});
