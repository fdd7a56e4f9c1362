/**
 * Keepers as a sentinel test sees them, on a memory store: each publish of the keepers in
 * `publishing` carries a new progress marker, as every keeper pass does.
 */
import { parseClusterData } from '@stolon-ts/cluster';
import { keeperInfo } from '@stolon-ts/cluster/testing';
import { waitFor } from '@stolon-ts/harness';
import type { MemoryStore } from '@stolon-ts/store';

export interface PublishingKeepers {
  /** The keepers that publish; change it to make one stop (its info lives on under its 10 s lease). */
  publishing: string[];
  /** How many publishes ran. */
  readonly n: number;
  /** Reads clusterdata and publishes every keeper of `publishing` with a new marker. */
  publish(): Promise<void>;
}

/** Keepers `uids` publishing through `admin`. */
export function publishingKeepers(admin: MemoryStore, uids: readonly string[]): PublishingKeepers {
  const k = {
    publishing: [...uids],
    n: 0,
    async publish(): Promise<void> {
      const cd = parseClusterData((await admin.getClusterData())?.text ?? '');
      k.n += 1;
      for (const uid of k.publishing) {
        await admin.setInfo('keepers', uid, { ...keeperInfo(uid, cd), infoUID: `${uid}-${k.n}` }, 10_000);
      }
    },
  };
  return k;
}

/**
 * Stops `uid` publishing and waits until clusterdata says its keeper is not healthy.
 * @returns the ms that took
 * @throws Error when it does not within 6 s
 */
export async function msUntilStalledKeeperFailed(admin: MemoryStore, keepers: PublishingKeepers, uid: string): Promise<number> {
  keepers.publishing = keepers.publishing.filter((u) => u !== uid);
  const stoppedAt = performance.now();
  await waitFor(async () => parseClusterData((await admin.getClusterData())?.text ?? '').keepers[uid]?.status.healthy === false, {
    timeoutMs: 6000,
    what: `${uid} failed`,
    intervalMs: 50,
  });
  return performance.now() - stoppedAt;
}
