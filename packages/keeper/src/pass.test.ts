import { describe, expect, it } from 'vitest';
import { ClusterDataInvalidError, serializeClusterData } from '@stolon-ts/cluster';
import { aCluster } from '@stolon-ts/cluster/testing';
import { parsedClusterData } from './pass.js';

describe('parsedClusterData', () => {
  it('parses a clusterdata record once: the same revision and text give the same document; a new one is parsed', () => {
    const rt: { cdParsed: Parameters<typeof parsedClusterData>[0]['cdParsed'] } = { cdParsed: undefined };
    const text = serializeClusterData(aCluster().initialized().withPrimary('k1').build());
    const first = parsedClusterData(rt, { text, revision: '7' });
    // The copy of the last read, and a new read of an unchanged document: no parse.
    expect(parsedClusterData(rt, { text, revision: '7' })).toBe(first);
    // A new revision is parsed anew, even with the same text.
    const again = parsedClusterData(rt, { text, revision: '8' });
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
    // An unusable document throws, as parseClusterData does, and leaves the last parse in place.
    expect(() => parsedClusterData(rt, { text: '{', revision: '9' })).toThrow(ClusterDataInvalidError);
    expect(parsedClusterData(rt, { text, revision: '8' })).toBe(again);
  });
});
