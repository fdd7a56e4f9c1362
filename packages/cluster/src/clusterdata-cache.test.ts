import { describe, expect, it, vi } from 'vitest';

/** Counts the schema checks parseClusterData and repairClusterData run. */
const checks = vi.hoisted(() => ({ n: 0 }));
vi.mock('./clusterdata-schema.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('./clusterdata-schema.js')>();
  return {
    ...m,
    clusterDataIssues: (raw: unknown) => {
      checks.n += 1;
      return m.clusterDataIssues(raw);
    },
  };
});

const { newClusterData, parseClusterData, repairClusterData, serializeClusterData } = await import('./clusterdata.js');
const { ClusterDataInvalidError } = await import('./errors.js');

const T0 = '2026-01-01T00:00:00Z';

describe('parseClusterData on a document it already checked', () => {
  it('checks the same text once, and still returns a new object each time', () => {
    const text = serializeClusterData(newClusterData({ initMode: 'new' }, 'cache1', T0));
    checks.n = 0;
    const a = parseClusterData(text);
    const b = parseClusterData(text);
    const c = parseClusterData(text);
    expect(checks.n).toBe(1);
    expect(b).toEqual(a);
    expect(b).not.toBe(a);
    // A caller that changes what it got changes nothing for the next reader.
    a.cluster.uid = 'changed';
    expect(c.cluster.uid).toBe('cache1');
    expect(parseClusterData(text).cluster.uid).toBe('cache1');
    // The leader sentinel's read of a document known to be valid repairs nothing and checks nothing.
    const r = repairClusterData(text, {});
    expect(r.dropped).toEqual([]);
    expect(r.cd).toEqual(b);
    expect(checks.n).toBe(1);
  });

  it('checks every other text, and an invalid one every time', () => {
    const one = serializeClusterData(newClusterData({ initMode: 'new' }, 'cache2', T0));
    const other = serializeClusterData(newClusterData({ initMode: 'new' }, 'cache3', T0));
    const bad = one.replace('"phase":"initializing"', '"phase":7');
    checks.n = 0;
    parseClusterData(one);
    parseClusterData(other);
    expect(checks.n).toBe(2);
    expect(() => parseClusterData(bad)).toThrow(ClusterDataInvalidError);
    expect(() => parseClusterData(bad)).toThrow(ClusterDataInvalidError);
    expect(checks.n).toBe(4);
    parseClusterData(one);
    expect(checks.n).toBe(4);
  });

  it('keeps a few documents: the oldest is checked again once more are read', () => {
    const texts = ['c4', 'c5', 'c6', 'c7', 'c8'].map((uid) => serializeClusterData(newClusterData({ initMode: 'new' }, uid, T0)));
    for (const t of texts) {
      parseClusterData(t);
    }
    checks.n = 0;
    parseClusterData(texts[4]!);
    parseClusterData(texts[1]!);
    expect(checks.n).toBe(0);
    parseClusterData(texts[0]!);
    expect(checks.n).toBe(1);
  });
});
