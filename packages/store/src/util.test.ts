/** Shared store helpers: KeyedSerializer. */
import { describe, expect, it } from 'vitest';
import { KeyedSerializer } from './util.js';

describe('KeyedSerializer', () => {
  it('runs calls for one key one after the other, even past a failure; other keys run alongside', async () => {
    const q = new KeyedSerializer();
    const log: string[] = [];
    let releaseFirst!: () => void;
    const first = q.run('a', async () => {
      log.push('a1 start');
      await new Promise<void>((r) => {
        releaseFirst = r;
      });
      log.push('a1 end');
      throw new Error('a1 failed');
    });
    const second = q.run('a', async () => {
      log.push('a2');
      return 2;
    });
    const other = q.run('b', async () => {
      log.push('b1');
      return 'b';
    });
    expect(await other).toBe('b');
    expect(log).toEqual(['a1 start', 'b1']);
    releaseFirst();
    await expect(first).rejects.toThrow('a1 failed');
    expect(await second).toBe(2);
    expect(log).toEqual(['a1 start', 'b1', 'a1 end', 'a2']);
  });
});
