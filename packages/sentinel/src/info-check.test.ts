import { infoIssues } from '@stolon-ts/cluster';
import { describe, expect, it, vi } from 'vitest';
import { rememberingInfoCheck } from './info-check.js';

vi.mock('@stolon-ts/cluster', async (orig) => {
  const real = await orig<typeof import('@stolon-ts/cluster')>();
  return { ...real, infoIssues: vi.fn(real.infoIssues) };
});

const proxy = (infoUID: unknown, Generation: unknown = 3) => ({ infoUID, UID: 'p0', Generation, ProxyTimeout: 4e9 });

describe('rememberingInfoCheck', () => {
  it('checks an info again only when something besides its marker changed, and gives the same answers as infoIssues', () => {
    const check = rememberingInfoCheck();
    const schema = vi.mocked(infoIssues);
    schema.mockClear();
    expect([...check('proxies', { p0: proxy('a') })]).toEqual([['p0', []]]);
    expect(schema).toHaveBeenCalledTimes(1);
    // Only the marker changed: not checked again.
    expect([...check('proxies', { p0: proxy('b') })]).toEqual([['p0', []]]);
    expect(schema).toHaveBeenCalledTimes(1);
    // Something else changed: checked, and the malformed answer is the schema's.
    const bad = check('proxies', { p0: proxy('c', -1) }).get('p0');
    expect(bad).toEqual(infoIssues('proxies', proxy('c', -1)));
    expect(bad?.length).toBeGreaterThan(0);
    // A malformed info is not remembered: the next one like the last valid one is checked again.
    schema.mockClear();
    expect(check('proxies', { p0: proxy('d') }).get('p0')).toEqual([]);
    expect(schema).toHaveBeenCalledTimes(1);
    // A marker that is not a string is always checked (and malformed).
    expect(check('proxies', { p0: proxy(7) }).get('p0')?.length).toBeGreaterThan(0);
    // An info gone from a read is forgotten; kinds are apart.
    check('proxies', { p0: proxy('e') });
    check('proxies', {});
    schema.mockClear();
    check('proxies', { p0: proxy('f') });
    check('keepers', { p0: proxy('g') as never });
    expect(schema).toHaveBeenCalledTimes(2);
  });
});
