/** Unit tests of the chaos checker's pure analysis and of the report (no processes). */
import { describe, expect, it } from 'vitest';
import { resolveSpec } from '@stolon-ts/cluster';
import {
  longestGap,
  lostBytesPastFork,
  missingWrites,
  parseTimelineHistory,
  percentile,
  rowKey,
  serverWindows,
  splitBrainWindows,
  writesAfterDeposition,
} from './checker.js';
import type { CycleResult } from './cycle.js';
import { FAST_PROFILE } from './profiles.js';
import { parseLsn, serverKey, type AckedWrite } from './recorder.js';
import { renderMarkdown, renderText, summarize } from './report.js';

let seq = 0;
/** A write on server `port`/`tl`, inserted at `serverAt` and acknowledged at `ackedAt`. */
function w(port: number, tl: number, serverAt: number, ackedAt: number, kind: 'proxy' | 'direct' = 'proxy', lsn = 0n): AckedWrite {
  seq += 1;
  return {
    writer: kind === 'proxy' ? 'proxy-w0' : `direct-k${port}`,
    kind,
    seq,
    sentAt: serverAt - 1,
    ackedAt,
    serverAt,
    lsn,
    server: { addr: '127.0.0.1', port, timeline: tl, postmasterStart: 'x' },
  };
}

describe('server windows and split brain', () => {
  it('groups writes per server and timeline: [first insert, last ack]', () => {
    const ws = serverWindows([w(1, 1, 100, 105), w(1, 1, 200, 210), w(2, 2, 300, 302), w(1, 3, 400, 401)]);
    expect(ws).toEqual([
      { server: '127.0.0.1:1/tl1', from: 100, to: 210, writes: 2 },
      { server: '127.0.0.1:2/tl2', from: 300, to: 302, writes: 1 },
      { server: '127.0.0.1:1/tl3', from: 400, to: 401, writes: 1 },
    ]);
  });

  it('a clean failover (old primary last ack before the new one first inserts) has no split-brain window', () => {
    expect(splitBrainWindows(serverWindows([w(1, 1, 100, 110), w(1, 1, 500, 510), w(2, 2, 511, 520)]))).toEqual([]);
  });

  it('a deposed primary acknowledging after the new one started writing is a split-brain window of the overlap', () => {
    const sb = splitBrainWindows(serverWindows([w(1, 1, 100, 110), w(2, 2, 500, 505), w(1, 1, 600, 700, 'direct'), w(2, 2, 800, 805)]));
    expect(sb).toEqual([{ a: '127.0.0.1:1/tl1', b: '127.0.0.1:2/tl2', from: 500, to: 700, ms: 200 }]);
  });

  it('writesAfterDeposition: writes of a server seen before `since` acknowledged after a new server first inserted', () => {
    const ws = [w(1, 1, 100, 110), w(1, 1, 1100, 1110, 'direct'), w(2, 2, 1200, 1205), w(1, 1, 1300, 1310, 'direct'), w(2, 2, 1400, 1401)];
    const after = writesAfterDeposition(ws, 1000);
    expect(after.map((x) => x.serverAt)).toEqual([1300]);
    // No new server: nothing is "after deposition" (a crash restart on the same timeline).
    expect(writesAfterDeposition([w(1, 1, 100, 110), w(1, 1, 1100, 1110)], 1000)).toEqual([]);
  });
});

describe('outage', () => {
  const ws = [w(1, 1, 0, 100), w(1, 1, 0, 110), w(2, 2, 0, 2110), w(2, 2, 0, 2120)];
  it('is the longest gap between consecutive acknowledgements in the range', () => {
    expect(longestGap(ws, 0, 2200)).toEqual({ ms: 2000, from: 110, to: 2110 });
  });
  it('includes the tail when writes never resumed', () => {
    expect(longestGap(ws.slice(0, 2), 0, 5000)).toEqual({ ms: 4890, from: 110, to: 5000 });
  });
  it('is the whole range with no write in it', () => {
    expect(longestGap([], 10, 50)).toEqual({ ms: 40, from: 10, to: 50 });
  });
});

describe('loss', () => {
  it('missingWrites lists acknowledged writes whose row is absent', () => {
    const a = w(1, 1, 1, 2);
    const b = w(1, 1, 3, 4);
    expect(missingWrites([a, b], new Set([rowKey(a.writer, a.seq)]))).toEqual([b]);
  });

  it('parses a timeline history file and measures lost WAL past the fork', () => {
    const h = parseTimelineHistory('1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tno recovery target specified\n');
    expect(h).toEqual([
      { timeline: 1, switchpoint: 0x3000060n },
      { timeline: 2, switchpoint: 0x5000000n },
    ]);
    expect(lostBytesPastFork([w(1, 1, 0, 0, 'proxy', 0x3000100n), w(1, 1, 0, 0, 'proxy', 0x3000080n)], h)).toBe(0xa0n);
    // A timeline that is not an ancestor of the final one tells nothing.
    expect(lostBytesPastFork([w(1, 7, 0, 0, 'proxy', 0x9n)], h)).toBeUndefined();
  });

  it('parseLsn and serverKey', () => {
    expect(parseLsn('1/2A')).toBe((1n << 32n) + 0x2an);
    expect(serverKey({ addr: '10.0.0.2', port: 5, timeline: 3, postmasterStart: '' })).toBe('10.0.0.2:5/tl3');
  });

  it('percentile is nearest-rank', () => {
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBe(10);
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('report', () => {
  const cycle = (fault: CycleResult['fault'], outage: number, healthy: number | null, extra: Partial<CycleResult> = {}): CycleResult => ({
    fault,
    cycle: 0,
    detail: '',
    primaryBefore: 'keeper0',
    primaryAfter: 'keeper1',
    injectedAt: 0,
    recoveredAt: outage,
    faultEndedAt: 0,
    healthyAt: healthy,
    timeToHealthyMs: healthy,
    unhealthyReason: '',
    outage: { ms: outage, from: 0, to: outage },
    proxyAcks: 10,
    directAcks: 0,
    lost: [],
    lostBytesPastFork: null,
    proxySplitBrain: [],
    anySplitBrain: [],
    deposedDirectWrites: [],
    phases: { declaredFailed: 4000, promoted: 5000 },
    ...extra,
  });

  it('summarizes per fault in FAULT_NAMES order and renders text and markdown', () => {
    const s = summarize([
      cycle('killProxy', 100, 500, { phases: null }),
      cycle('killPrimaryNode', 6000, 9000),
      cycle('killPrimaryNode', 8000, null),
      cycle('killPrimaryNode', 7000, 8000, {
        anySplitBrain: [{ a: 'x', b: 'y', from: 0, to: 50, ms: 50 }],
        deposedDirectWrites: [w(1, 1, 0, 1, 'direct')],
      }),
    ]);
    expect(s.map((x) => x.fault)).toEqual(['killPrimaryNode', 'killProxy']);
    expect(s[0]).toMatchObject({
      cycles: 3,
      outageP50: 7000,
      outageP95: 8000,
      outageMax: 8000,
      lost: 0,
      anySplitBrainCycles: 1,
      anySplitBrainMaxMs: 50,
      deposedDirectWrites: 1,
      healthyP50: 8000,
      healthyMax: 9000,
      failedCycles: 1,
      phases: { declaredFailed: 4000, promoted: 5000 },
    });
    expect(renderText(s)).toMatch(/killPrimaryNode\s+3\s+7000\s+8000\s+8000\s+0\s+0\s+1 \(max 50 ms, 1 writes\)/);
    expect(renderMarkdown(s)).toContain('| killProxy | 1 | 100 | 100 | 100 | 0 | 0 | 0 | 500 | 500 | 0 |');
  });
});

describe('the fast profile', () => {
  it('passes spec validation and is faster than the defaults on every timing it sets', () => {
    const fast = resolveSpec({ initMode: 'new', ...FAST_PROFILE });
    const def = resolveSpec({ initMode: 'new' });
    expect(fast.failIntervalMs).toBe(3000);
    for (const k of ['sleepIntervalMs', 'requestTimeoutMs', 'failIntervalMs', 'proxyCheckIntervalMs', 'proxyTimeoutMs'] as const) {
      expect(fast[k]).toBeLessThan(def[k]);
    }
  });
});
