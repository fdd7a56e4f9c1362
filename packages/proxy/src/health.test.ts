/** Table tests of the proxy's liveness and readiness (the status endpoint's checks), with a fake clock. */
import { describe, expect, it } from 'vitest';
import { proxyChecks, proxyLiveness, proxyReadOnlyReadiness, proxyReadiness, type ProxyHealthSnapshot } from './health.js';

/** A proxy routing to 10.0.0.1:5432 whose last check started at 10 000 ms and settled at 10 050; now 11 000. */
function snap(over: Partial<ProxyHealthSnapshot> = {}): ProxyHealthSnapshot {
  return {
    state: 'routing',
    target: '10.0.0.1:5432',
    roTargets: 1,
    readOnly: true,
    loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 10_050, passes: 3 },
    lastGoodCheckAtMs: 10_000,
    deadlineMs: 25_000,
    proxyTimeoutMs: 15_000,
    checkIntervalMs: 5_000,
    holdMs: 0,
    nowMs: 11_000,
    ...over,
  };
}

interface Case {
  readonly title: string;
  readonly snapshot: ProxyHealthSnapshot;
  readonly ok: boolean;
  readonly reason: RegExp;
}

const liveCases: Case[] = [
  { title: 'loop settled a second ago: alive', snapshot: snap(), ok: true, reason: /^proxy check loop alive: 3 passes, last one settled 950 ms ago$/ },
  {
    title: 'no check for longer than proxyCheckInterval + 10 s: stalled',
    snapshot: snap({ nowMs: 25_051 }),
    ok: false,
    reason: /^proxy check loop stalled: no pass for 15001 ms \(limit 15000 ms\)$/,
  },
  {
    title: 'a check in progress for 2 × proxyTimeout + 10 s: still alive',
    snapshot: snap({ loop: { createdAtMs: 0, passInProgressSinceMs: 11_000, lastSettledAtMs: 10_050, passes: 4 }, nowMs: 51_000 }),
    ok: true,
    reason: /^proxy check loop alive: pass 4 running for 40000 ms$/,
  },
  {
    title: 'a check stuck past 2 × proxyTimeout + 10 s: stalled',
    snapshot: snap({ loop: { createdAtMs: 0, passInProgressSinceMs: 11_000, lastSettledAtMs: 10_050, passes: 4 }, nowMs: 51_001 }),
    ok: false,
    reason: /^proxy check loop stalled: pass 4 running for 40001 ms \(limit 40000 ms\)$/,
  },
  { title: 'store lost (watchdog fired) but the loop turns: alive', snapshot: snap({ state: 'store-lost', deadlineMs: undefined, target: null }), ok: true, reason: /alive/ },
  { title: 'stopping: alive (no restart)', snapshot: snap({ state: 'stopping', nowMs: 1e9 }), ok: true, reason: /^proxy stopping$/ },
];

const readyCases: Case[] = [
  { title: 'routing, fresh check: ready', snapshot: snap(), ok: true, reason: /^routing to the primary at 10\.0\.0\.1:5432; last successful check 1000 ms ago \(proxyTimeout 15000 ms\)$/ },
  { title: 'starting: not ready', snapshot: snap({ state: 'starting', lastGoodCheckAtMs: undefined, deadlineMs: undefined }), ok: false, reason: /^proxy starting$/ },
  { title: 'stopped: not ready', snapshot: snap({ state: 'stopped' }), ok: false, reason: /^proxy stopped$/ },
  { title: 'failed: not ready', snapshot: snap({ state: 'failed' }), ok: false, reason: /^proxy failed$/ },
  { title: 'fenced (no primary): not ready', snapshot: snap({ state: 'fenced', target: null }), ok: false, reason: /^not routing to a primary \(proxy fenced\)/ },
  {
    title: 'store lost within proxyTimeout: still routing, ready',
    snapshot: snap({ state: 'store-lost', nowMs: 24_000, loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 23_000, passes: 6 } }),
    ok: true,
    reason: /^routing to the primary at 10\.0\.0\.1:5432 \(the last check could not reach the store\); last successful check 14000 ms ago/,
  },
  {
    title: 'watchdog fired (no successful check within proxyTimeout): not ready',
    snapshot: snap({ state: 'store-lost', target: null, deadlineMs: undefined, nowMs: 26_000, loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 25_500, passes: 7 } }),
    ok: false,
    reason: /^no successful check for 16000 ms \(the watchdog's limit: proxyTimeout 15000 ms, or earlier when this proxy's info lease could expire\): routing nowhere$/,
  },
  {
    title: 'deadline reached before the watchdog ran: not ready',
    snapshot: snap({ nowMs: 25_000, loop: { createdAtMs: 0, passInProgressSinceMs: 24_000, lastSettledAtMs: 23_000, passes: 6 } }),
    ok: false,
    reason: /^no successful check for 15000 ms/,
  },
  {
    title: 'failsafe mode moved the deadline past proxyTimeout: still routing, ready, and says so',
    snapshot: snap({ deadlineMs: 40_000, nowMs: 30_000, loop: { createdAtMs: 0, passInProgressSinceMs: 29_000, lastSettledAtMs: 28_000, passes: 9 } }),
    ok: true,
    reason: /last successful check 20000 ms ago \(proxyTimeout 15000 ms, kept routing by failsafe mode\)$/,
  },
  {
    title: 'loop stalled: not ready, because not alive',
    snapshot: snap({ nowMs: 25_051, deadlineMs: 40_000 }),
    ok: false,
    reason: /^proxy check loop stalled/,
  },
  { title: 'no successful check yet: not ready', snapshot: snap({ state: 'fenced', lastGoodCheckAtMs: undefined, deadlineMs: undefined }), ok: false, reason: /^no successful check yet$/ },
  {
    title: 'holding new connections in a planned switchover: ready (they will be routed to the new primary)',
    snapshot: snap({ state: 'fenced', target: null, holdMs: 10_000 }),
    ok: true,
    reason: /^holding new connections for a planned switchover \(switchoverHoldTimeout 10000 ms\); last successful check 1000 ms ago/,
  },
  {
    title: 'holding, but the watchdog fired: not ready',
    snapshot: snap({ state: 'store-lost', target: null, holdMs: 10_000, deadlineMs: undefined, nowMs: 26_000, loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 25_500, passes: 7 } }),
    ok: false,
    reason: /^no successful check for 16000 ms/,
  },
];

const roCases: Case[] = [
  { title: 'one read-only target, fresh: ready', snapshot: snap(), ok: true, reason: /^read-only listener routes to 1 target; last successful check 1000 ms ago/ },
  { title: 'fenced (failover) but a standby still served: ready', snapshot: snap({ state: 'fenced', target: null, roTargets: 2 }), ok: true, reason: /routes to 2 targets/ },
  { title: 'no read-only target: not ready', snapshot: snap({ roTargets: 0 }), ok: false, reason: /^no read-only target \(proxy routing\)/ },
  { title: 'no read-only listener: not ready', snapshot: snap({ readOnly: false }), ok: false, reason: /^no read-only listener \(--ro-port 0\)$/ },
  {
    title: 'watchdog fired: not ready',
    snapshot: snap({ state: 'store-lost', roTargets: 0, deadlineMs: undefined, nowMs: 26_000, loop: { createdAtMs: 0, passInProgressSinceMs: undefined, lastSettledAtMs: 25_500, passes: 7 } }),
    ok: false,
    reason: /^no successful check for 16000 ms/,
  },
  { title: 'starting: not ready', snapshot: snap({ state: 'starting' }), ok: false, reason: /^proxy starting$/ },
];

const tables: [string, (s: ProxyHealthSnapshot) => { ok: boolean; reason: string }, Case[]][] = [
  ['proxyLiveness', proxyLiveness, liveCases],
  ['proxyReadiness', proxyReadiness, readyCases],
  ['proxyReadOnlyReadiness', proxyReadOnlyReadiness, roCases],
];

describe.each(tables)('%s', (_name, check, cases) => {
  it.each(cases)('$title', ({ snapshot, ok, reason }) => {
    const r = check(snapshot);
    expect(r.ok).toBe(ok);
    expect(r.reason).toMatch(reason);
  });
});

describe('proxyChecks', () => {
  it('serves /readyz/read-only only with a read-only listener, each check from a fresh snapshot', () => {
    let s = snap();
    const checks = proxyChecks(() => s);
    expect(Object.keys(checks.more ?? {})).toEqual(['/readyz/read-only']);
    expect(checks.readyz().ok).toBe(true);
    s = snap({ state: 'fenced', target: null });
    expect(checks.readyz().ok).toBe(false);
    expect(checks.more?.['/readyz/read-only']?.(new URLSearchParams()).ok).toBe(true);
    expect(checks.healthz().ok).toBe(true);
    expect(proxyChecks(() => snap({ readOnly: false })).more).toBeUndefined();
  });
});
