/**
 * The sentinel loop in-process on the memory store: its clusterdata writes are guarded by its
 * election (`Store.putClusterData` with `leader`), and a write the store refuses because this
 * sentinel no longer leads is dropped, not retried as a conflict.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NotLeaderError, parseClusterData } from '@stolon-ts/cluster';
import { createLogger } from '@stolon-ts/common';
import { waitFor } from '@stolon-ts/harness';
import { MemoryBackend, MemoryStore, type Election, type Store } from '@stolon-ts/store';
import { start, type SentinelHandle } from './sentinel.js';

interface Put {
  readonly expectedRevision: string | null;
  readonly leader: Election | undefined;
}

/** Wraps `inner`: records every putClusterData; `refuse()` true makes it throw NotLeaderError instead. */
function recording(inner: MemoryStore, puts: Put[], refuse: () => boolean): Store {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'putClusterData') {
        return async (text: string, expectedRevision: string | null, leader?: Election) => {
          puts.push({ expectedRevision, leader });
          if (refuse()) {
            throw new NotLeaderError('not the sentinel leader of c1 (any more); clusterdata not written');
          }
          return target.putClusterData(text, expectedRevision, leader);
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const handles: SentinelHandle[] = [];
afterEach(async () => {
  for (const h of handles.splice(0)) {
    await h.stop('test over');
  }
});

describe('sentinel', () => {
  it('guards every clusterdata write with its election; a write refused as not leader is dropped with a warning', { timeout: 15_000 }, async () => {
    const backend = new MemoryBackend();
    const admin = new MemoryStore(backend, { clusterName: 'c1' });
    const puts: Put[] = [];
    let refusing = false;
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger({
      level: 'debug',
      component: 'sentinel',
      uid: 's1',
      cluster: 'c1',
      dest: { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) },
    });
    const store = recording(new MemoryStore(backend, { clusterName: 'c1' }), puts, () => refusing);
    const h = await start({ uid: 's1', initialClusterSpec: { initMode: 'new' }, leaderTtlMs: 1000 }, { store, logger });
    handles.push(h);
    await waitFor(async () => (await admin.getClusterData()) !== null, { timeoutMs: 5000, what: 'the cluster created' });
    expect(puts.length).toBeGreaterThan(0);
    expect(puts.every((p) => p.leader !== undefined && p.leader.isLeader())).toBe(true);

    // A keeper appears: the decision needs a write, which the store refuses.
    refusing = true;
    const before = puts.length;
    const rec = await admin.getClusterData();
    await admin.setInfo(
      'keepers',
      'k1',
      {
        infoUID: 'i1',
        uid: 'k1',
        clusterUID: parseClusterData(rec?.text ?? '').cluster.uid,
        bootUUID: 'b1',
        postgresBinaryVersion: { Maj: 15, Min: 0 },
      },
      5000,
    );
    await waitFor(() => lines.find((l) => l.msg.startsWith('lost the leadership before writing: not the sentinel leader')), {
      timeoutMs: 5000,
      what: 'the refused write logged',
    });
    expect(puts.length).toBeGreaterThan(before);
    expect((await admin.getClusterData())?.revision).toBe(rec?.revision);
    await admin.close();
  });
});
