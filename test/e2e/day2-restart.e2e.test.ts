/**
 * Day-2 operations on one 3-keeper cluster: `stolonctl restart --pending-only` after a
 * restart-only parameter change (standbys first, one at a time, then the primary by switchover;
 * never two instances down; the new value live everywhere; no acknowledged write lost), a
 * scheduled switchover that fires at its time and a cancelled one that does not, and
 * `stolonctl switchover` returning as soon as writes through the proxy resume.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { e2eCluster, query, waitFor } from '@stolon-ts/harness';
import { proxyRowWriter, waitConvergedInStatus } from './switchover-common.js';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, { tmpPrefix: 'stolon-day2-restart-e2e-', keepers: 3, clusterName: 'd2r' });

/**
 * The postmaster start time of keeper i's PostgreSQL; `down` when it refuses (connection refused,
 * or PostgreSQL says it is starting up or shutting down: SQLSTATE 57P03, 57P01); null when the
 * answer is unknown (a timeout on this busy machine is not a restart).
 */
async function startTime(i: number): Promise<string | null> {
  try {
    const r = await query<{ t: string }>({ ...e2e.cluster.directClientConfig(i), connectionTimeoutMillis: 3000 }, 'select pg_postmaster_start_time()::text as t');
    return r[0]?.t ?? null;
  } catch (err) {
    const e = err as { code?: string };
    return e.code === 'ECONNREFUSED' || e.code === '57P03' || e.code === '57P01' ? 'down' : null;
  }
}

interface Sample {
  readonly at: number;
  readonly started: readonly (string | null)[];
}

/** Samples every keeper's postmaster start time every 100 ms until `stop()`. */
async function sampleStarts(stop: () => boolean, out: Sample[]): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!stop() && Date.now() < deadline) {
    out.push({ at: Date.now(), started: await Promise.all([0, 1, 2].map(startTime)) });
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function statusJson(): Promise<{ keepers: { uid: string; role: string | null; pendingRestart: string[] }[]; cluster: { scheduled_switchover: { at: string } | null; master_keeper_uid: string | null } }> {
  const st = await e2e.cluster.stolonctl(['status', '--format', 'json']);
  expect(st.code, st.stderr).toBe(0);
  return JSON.parse(st.stdout);
}

async function switchoverEvents(): Promise<{ kind: string; result?: string; cause: string; phases: { declaredFailed: string; proxiesRouted?: string } }[]> {
  const ev = await e2e.cluster.stolonctl(['events', '--format', 'json']);
  expect(ev.code, ev.stderr).toBe(0);
  const parsed = JSON.parse(ev.stdout) as { history?: unknown[] } | unknown[];
  const list = (Array.isArray(parsed) ? parsed : (parsed.history ?? [])) as { kind: string; result?: string; cause: string; phases: { declaredFailed: string } }[];
  return list.filter((e) => e.kind === 'switchover');
}

describe('day-2 operations', () => {
  it('restart --pending-only: standbys one at a time, then the primary by switchover; new value everywhere; no write lost', async () => {
    const c = e2e.cluster;
    await query(c.proxyClientConfig(0), 'create table w (id int primary key)');
    await waitConvergedInStatus(c, 3, 60_000);
    const primaryBefore = await c.primaryIndex();
    const uids = c.keepers.map((k) => k.uid);
    const patch = await c.stolonctl(['update', '--patch', JSON.stringify({ pgParameters: { max_connections: '123' } })]);
    expect(patch.code, patch.stderr).toBe(0);
    await waitFor(async () => ((await statusJson()).keepers.every((k) => k.pendingRestart.includes('max_connections')) ? true : undefined), {
      timeoutMs: 60_000,
      what: 'every keeper to report max_connections pending restart',
    });
    const before = await Promise.all([0, 1, 2].map(startTime));
    expect(before.every((t) => t !== null && t !== 'down')).toBe(true);

    const acked: { id: number; at: number }[] = [];
    const samples: Sample[] = [];
    let stop = false;
    const writer = proxyRowWriter(c, () => stop, acked, { maxMs: 120_000 });
    const sampler = sampleStarts(() => stop, samples);
    await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });
    const r = await c.stolonctl(['restart', '--pending-only', '--yes']);
    const afterRestart = Date.now();
    await waitFor(() => (acked.some((a) => a.at > afterRestart + 500) ? true : undefined), { timeoutMs: 30_000, what: 'writes after the restart' });
    stop = true;
    await Promise.all([writer, sampler]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    process.stdout.write(`${r.stdout}\n`);

    // Order: the two standbys first, then the primary by switchover.
    const standbyUids = uids.filter((_, i) => i !== primaryBefore);
    const restarted = [...r.stdout.matchAll(/restarting PostgreSQL of keeper (\S+)/g)].map((m) => m[1]);
    expect(restarted.sort()).toEqual([...standbyUids].sort());
    expect(r.stdout).toMatch(new RegExp(`switching over from the primary \\(keeper ${uids[primaryBefore]}\\)`));
    expect(r.stdout.indexOf('switching over')).toBeGreaterThan(r.stdout.lastIndexOf('restarting PostgreSQL'));
    expect(await c.primaryIndex()).not.toBe(primaryBefore);

    // Every node restarted exactly once (one new start time each), never two down at once.
    const after = await Promise.all([0, 1, 2].map(startTime));
    for (let i = 0; i < 3; i++) {
      expect(after[i], `keeper ${i} restarted`).not.toBe(before[i]);
      const seen = new Set(samples.map((s) => s.started[i]).filter((t) => t !== null && t !== 'down'));
      expect([...seen].sort(), `keeper ${i}: one restart`).toEqual([before[i], after[i]].sort());
    }
    const maxDown = Math.max(...samples.map((s) => s.started.filter((t) => t === 'down').length));
    process.stdout.write(`rolling restart: ${samples.length} samples, at most ${maxDown} instance(s) down at once\n`);
    expect(maxDown).toBeLessThanOrEqual(1);
    expect(maxDown).toBe(1);

    // The new value is live everywhere; nothing acknowledged was lost.
    for (let i = 0; i < 3; i++) {
      const v = await query<{ max_connections: string }>(c.directClientConfig(i), 'show max_connections');
      expect(v[0]?.max_connections).toBe('123');
    }
    const ids = new Set((await query<{ id: number }>(c.proxyClientConfig(0), 'select id from w')).map((x) => x.id));
    expect(acked.filter((a) => !ids.has(a.id))).toEqual([]);
  }, 240_000);

  it('a scheduled switchover fires at its time; a cancelled one does not', async () => {
    const c = e2e.cluster;
    await waitConvergedInStatus(c, 3, 60_000);
    const before = await c.primaryIndex();
    const seen = (await switchoverEvents()).length;
    // 10 s ahead: stolonctl itself takes 1-6 s to start on a busy machine, and the primary is
    // sampled while the switchover waits for its time.
    const s = await c.stolonctl(['switchover', '--at', '10s', '--yes']);
    expect(s.code, s.stderr).toBe(0);
    const at = (await statusJson()).cluster.scheduled_switchover?.at;
    expect(at).toBeDefined();
    // Not before its time: the primary stays until then (sampled up to 300 ms before it).
    const waiting: number[] = [];
    while (Date.now() < Date.parse(at!) - 300) {
      waiting.push(await c.primaryIndex());
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(waiting.length).toBeGreaterThan(0);
    expect(waiting.every((p) => p === before), `primary while waiting: ${waiting.join(',')}`).toBe(true);
    const ev = await waitFor(
      async () => {
        const list = await switchoverEvents();
        return list.length > seen && list.at(-1)?.result !== undefined ? list.at(-1) : undefined;
      },
      { timeoutMs: 60_000, what: 'the scheduled switchover to run' },
    );
    expect(ev.result).toBe('completed');
    const startedMs = Date.parse(ev.phases.declaredFailed);
    process.stdout.write(`scheduled switchover: due ${at}, started ${ev.phases.declaredFailed} (${startedMs - Date.parse(at!)} ms late)\n`);
    expect(startedMs).toBeGreaterThanOrEqual(Date.parse(at!));
    expect(startedMs - Date.parse(at!)).toBeLessThan(5_000);
    expect(await c.primaryIndex()).not.toBe(before);
    expect((await statusJson()).cluster.scheduled_switchover).toBeNull();

    // Cancelled: nothing happens at its time.
    await waitConvergedInStatus(c, 3, 60_000);
    const primary = await c.primaryIndex();
    const count = (await switchoverEvents()).length;
    expect((await c.stolonctl(['switchover', '--at', '10s', '--yes'])).code).toBe(0);
    const cancel = await c.stolonctl(['switchover', '--cancel']);
    expect(cancel.code, cancel.stderr).toBe(0);
    const scheduledAt = Date.parse(/cancelled the switchover scheduled at (\S+)/.exec(cancel.stdout)?.[1] ?? 'none');
    expect(scheduledAt, cancel.stdout).toBeGreaterThan(0);
    // 5 s past its time: a scheduled switchover that fires starts within 5 s (above).
    await new Promise((r) => setTimeout(r, Math.max(0, scheduledAt - Date.now()) + 5_000));
    expect(await c.primaryIndex()).toBe(primary);
    expect((await switchoverEvents()).length).toBe(count);
  }, 180_000);

  it('switchover returns within 1.5 s of writes through the proxy resuming', async () => {
    const c = e2e.cluster;
    await waitConvergedInStatus(c, 3, 60_000);
    const acked: { id: number; at: number }[] = [];
    let stop = false;
    const w = proxyRowWriter(c, () => stop, acked, { maxMs: 60_000 });
    await waitFor(() => (acked.length >= 20 ? true : undefined), { timeoutMs: 20_000, what: 'the writer to get going' });
    const t0 = Date.now();
    const sw = await c.stolonctl(['switchover', '--yes']);
    const returned = Date.now();
    await new Promise((r) => setTimeout(r, 2_000));
    stop = true;
    await w;
    expect(sw.code, sw.stderr + sw.stdout).toBe(0);
    // Writes resumed at the end of the longest gap between acknowledged writes after t0.
    let gap = 0;
    let resumed = 0;
    for (let i = 1; i < acked.length; i++) {
      if (acked[i]!.at >= t0 && acked[i]!.at - acked[i - 1]!.at > gap) {
        gap = acked[i]!.at - acked[i - 1]!.at;
        resumed = acked[i]!.at;
      }
    }
    process.stdout.write(`switchover: returned ${returned - t0} ms after the call, writes resumed at ${resumed - t0} ms (outage ${gap} ms): ${returned - resumed} ms apart\n`);
    expect(resumed).toBeGreaterThan(0);
    expect(returned - resumed).toBeLessThan(1_500);
  }, 120_000);
});
