/**
 * Store outages with failsafe mode on the Kubernetes store backend (docs/architecture.md, "Store
 * outages: failsafe mode"): the same cluster as store-outage.e2e.test.ts (2 keepers with the
 * member API, 1 sentinel, 1 proxy, default timings: failInterval 6 s, proxyTimeout 4 s), but every
 * program runs with `--store-backend kubernetes` against the harness's Kubernetes API stand-in
 * (there is no real API server on this machine). A writer through the proxy and direct writers to
 * each keeper's PostgreSQL run through each outage (the chaos recorder):
 * (a) the API server hangs for 30 s (connections accepted, requests never answered, watch streams
 *     stalled): writes go on through the proxy and directly (largest gap ≤ 1 s), nothing
 *     acknowledged is lost, the same primary afterwards, no failover; meanwhile
 *     `stolonctl status --member-address` says the primary is confirmed by 1/1 members, and after
 *     it `stolonctl events` shows the spell;
 * (b) the API server refuses for 30 s (every connection reset, watches included) and comes back
 *     as a restarted one would while another client wrote meanwhile: the resourceVersion moved on
 *     and the watch history is gone, so every watch resuming from its last resourceVersion gets
 *     410 Gone and relists: the same, status and spell included.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  RECORDER_TABLES_SQL,
  e2eCluster,
  failoverEvents,
  query,
  waitKeepersConverged,
  type AckedWrite,
  type CommandResult,
  type StandinUnavailableMode,
} from '@stolon-ts/harness';
import { expectGapsWithin, expectNothingLost, expectOperatorView, failsafeSpells, outageRecorder, sleep, statusDuringOutage } from './store-outage-common.js';

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

/**
 * Makes the stand-in unavailable in `mode` for OUTAGE_MS under the writers (after `refuse`, the
 * resourceVersion moves on and the watch history is forgotten, as in (b)); returns what they saw
 * from the outage's start to 2 s after it ended, and what `stolonctl status --member-address`
 * printed 10 s into it.
 */
async function outageUnderWriters(
  mode: Exclude<StandinUnavailableMode, false>,
): Promise<{ acked: AckedWrite[]; from: number; to: number; during: CommandResult | undefined }> {
  const c = e2e.cluster;
  const rec = await outageRecorder(c);
  rec.start();
  try {
    await rec.waitForProxyAcks(20, 20_000);
    const from = Date.now();
    let during: CommandResult | undefined;
    c.kubeApi.setUnavailable(mode);
    try {
      await sleep(10_000);
      // What an operator sees meanwhile: the store cannot be read, the keepers say who serves.
      during = await statusDuringOutage(c);
      await sleep(from + OUTAGE_MS - Date.now());
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
    return { acked: [...rec.acked], from, to, during };
  } finally {
    await rec.stop();
  }
}

/** One outage of the stand-in in `mode`, with every check of the file. */
async function rideOut(mode: Exclude<StandinUnavailableMode, false>): Promise<void> {
  const c = e2e.cluster;
  await waitKeepersConverged(c, 2);
  const p = await c.primaryIndex();
  const events = (await failoverEvents(c)).length;
  const spellsBefore = await failsafeSpells(c);
  const logsBefore = c.keepers.map((k) => k.process.logs().length);
  const r = await outageUnderWriters(mode);
  expectGapsWithin(c, r, `Kubernetes API stand-in ${mode} for ${OUTAGE_MS / 1000} s`, 1000);
  await expectNothingLost(c, r.acked, p);
  expect(await c.primaryIndex()).toBe(p);
  await waitKeepersConverged(c, 2);
  expect((await failoverEvents(c)).length).toBe(events);
  const logsSince = c.keepers.map((k, i) => k.process.logs().slice(logsBefore[i]));
  expect(logsSince[p]).toMatch(/store unreachable, failsafe: primary confirmed by 1\/1 members/);
  for (const l of logsSince) {
    expect(l).not.toMatch(/self-fencing: /);
  }
  // A round every sleepInterval (1 s) from about 2.5 s into the 30 s outage.
  const spell = await expectOperatorView(c, p, r.during, { spellsBefore, minRounds: 20 });
  process.stdout.write(`failsafe spell of the ${mode}: ${spell.confirmedRounds}/${spell.rounds} rounds confirmed by all members\n`);
}

describe('Kubernetes API server outages with failsafe mode (stand-in API server)', () => {
  it('(a) the API server hangs for 30 s: writes continue through the proxy and directly, nothing lost, same primary, no failover', async () => {
    await rideOut('hang');
  });

  it('(b) the API server refuses connections for 30 s and comes back without its watch history: the same', async () => {
    await rideOut('refuse');
  });
});
