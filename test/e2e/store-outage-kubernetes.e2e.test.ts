/**
 * Store outages with failsafe mode on the Kubernetes store backend (docs/architecture.md, "Store
 * outages: failsafe mode"): the same cluster as store-outage.e2e.test.ts (2 keepers with the
 * member API, 1 sentinel, 1 proxy, default timings: failInterval 6 s, proxyTimeout 4 s), but every
 * program runs with `--store-backend kubernetes` against the harness's Kubernetes API stand-in
 * (there is no real API server on this machine). A writer through the proxy and direct writers to
 * each keeper's PostgreSQL run through each outage (the chaos recorder):
 * (a) the API server hangs for 30 s (connections accepted, requests never answered, watch streams
 *     stalled): writes go on through the proxy and directly (largest gap ≤ 1 s), nothing
 *     acknowledged is lost, the same primary afterwards, no failover;
 * (b) the API server refuses for 30 s (every connection reset, watches included) and comes back
 *     as a restarted one would while another client wrote meanwhile: the resourceVersion moved on
 *     and the watch history is gone, so every watch resuming from its last resourceVersion gets
 *     410 Gone and relists: the same.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  RECORDER_TABLES_SQL,
  Recorder,
  e2eCluster,
  failoverEvents,
  longestGap,
  missingWrites,
  query,
  readPresentWrites,
  waitKeepersConverged,
  type AckedWrite,
  type StandinUnavailableMode,
} from '@stolon-ts/harness';

const e2e = e2eCluster({ beforeAll, afterAll, beforeEach }, {
  tmpPrefix: 'stolon-store-outage-k8s-e2e-',
  store: 'kubernetes',
  keepers: 2,
  proxies: 1,
  clusterName: 'outage-k8s',
  memberApi: true,
  setup: async (c) => {
    await query(c.proxyClientConfig(0), RECORDER_TABLES_SQL);
  },
});

const OUTAGE_MS = 30_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A recorder on fresh tables (each test's writers number their rows from 0 again). */
async function recorder(): Promise<Recorder> {
  const c = e2e.cluster;
  await query(c.proxyClientConfig(0), 'truncate chaos_w, chaos_direct');
  return new Recorder({
    proxies: () => [c.proxyClientConfig(0)],
    direct: () => c.keepers.map((_, i) => c.directClientConfig(i)),
    writers: 1,
    queryTimeoutMs: 3000,
    maxRunMs: 5 * 60_000,
  });
}

/** The largest gap (ms) between acknowledged writes of `kind` from `from` to `to`, with the count. */
function gap(acked: readonly AckedWrite[], kind: 'proxy' | 'direct', from: number, to: number): { ms: number; n: number } {
  const ws = acked.filter((a) => a.kind === kind);
  return { ms: longestGap(ws, from, to).ms, n: ws.filter((a) => a.ackedAt >= from && a.ackedAt <= to).length };
}

/**
 * Makes the stand-in unavailable in `mode` for OUTAGE_MS under the writers (after `refuse`, the
 * resourceVersion moves on and the watch history is forgotten, as in (b)); returns what they saw
 * from the outage's start to 2 s after it ended.
 */
async function outageUnderWriters(mode: Exclude<StandinUnavailableMode, false>): Promise<{ acked: AckedWrite[]; from: number; to: number }> {
  const c = e2e.cluster;
  const rec = await recorder();
  rec.start();
  try {
    await rec.waitForProxyAcks(20, 20_000);
    const from = Date.now();
    c.kubeApi.setUnavailable(mode);
    try {
      await sleep(OUTAGE_MS);
    } finally {
      if (mode === 'refuse') {
        // A write by someone else (any namespace moves the one resourceVersion), then no history.
        c.kubeApi.putObject('configmaps', 'default', { metadata: { name: `written-during-the-outage-${Date.now()}` } });
        c.kubeApi.compactHistory();
      }
      c.kubeApi.setUnavailable(false);
    }
    await sleep(2000);
    const to = Date.now();
    return { acked: [...rec.acked], from, to };
  } finally {
    await rec.stop();
  }
}

async function expectNothingLost(acked: readonly AckedWrite[], primary: number): Promise<void> {
  const c = e2e.cluster;
  const proxyRows = await readPresentWrites(c.directClientConfig(primary), 0, 'chaos_w');
  const directRows = await readPresentWrites(c.directClientConfig(primary), 0, 'chaos_direct');
  expect(missingWrites(acked.filter((a) => a.kind === 'proxy'), proxyRows)).toEqual([]);
  expect(missingWrites(acked.filter((a) => a.kind === 'direct'), directRows)).toEqual([]);
}

/** One outage of the stand-in in `mode`, with every check of the file. */
async function rideOut(mode: Exclude<StandinUnavailableMode, false>): Promise<void> {
  const c = e2e.cluster;
  await waitKeepersConverged(c, 2);
  const p = await c.primaryIndex();
  const events = (await failoverEvents(c)).length;
  const logsBefore = c.keepers.map((k) => k.process.logs().length);
  const r = await outageUnderWriters(mode);
  const viaProxy = gap(r.acked, 'proxy', r.from, r.to);
  const direct = gap(r.acked, 'direct', r.from, r.to);
  process.stdout.write(
    `Kubernetes API stand-in ${mode} for ${OUTAGE_MS / 1000} s: largest gap ${viaProxy.ms} ms through the proxy (${viaProxy.n} writes), ` +
      `${direct.ms} ms direct (${direct.n} writes)\n`,
  );
  expect(viaProxy.ms).toBeLessThanOrEqual(1000);
  expect(direct.ms).toBeLessThanOrEqual(1000);
  await expectNothingLost(r.acked, p);
  expect(await c.primaryIndex()).toBe(p);
  await waitKeepersConverged(c, 2);
  expect((await failoverEvents(c)).length).toBe(events);
  const logsSince = c.keepers.map((k, i) => k.process.logs().slice(logsBefore[i]));
  expect(logsSince[p]).toMatch(/store unreachable, failsafe: primary confirmed by 1\/1 members/);
  for (const l of logsSince) {
    expect(l).not.toMatch(/self-fencing: /);
  }
}

describe('Kubernetes API server outages with failsafe mode (stand-in API server)', () => {
  it('(a) the API server hangs for 30 s: writes continue through the proxy and directly, nothing lost, same primary, no failover', async () => {
    await rideOut('hang');
  });

  it('(b) the API server refuses connections for 30 s and comes back without its watch history: the same', async () => {
    await rideOut('refuse');
  });
});
