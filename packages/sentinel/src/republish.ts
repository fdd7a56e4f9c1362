/**
 * The sentinel's republish wait (docs/architecture.md, "Store outages: failsafe mode"): after this
 * sentinel could not read the store for longer than failInterval, and at the start of each of its
 * terms as leader, it decides nothing until every keeper it last saw healthy and every enabled
 * proxy has published its info again, or failInterval has passed.
 *
 * Why: infos whose leases expired during a store outage make the first passes after it fail the
 * primary: absent at once, or still there at the first read and revoked a moment later (etcd
 * revokes the leases that expired while it was frozen a moment after it runs again). A sentinel
 * that only observed during the outage and takes over after it has the same stale view, and so
 * has any sentinel starting a term: the infos it reads first say nothing about who is alive now.
 * The wait ends as soon as everybody has published again, which takes a pass or two (about one
 * sleepInterval); only a member that really died makes it last failInterval, no longer than the
 * new term's empty memory already makes a stalled info wait.
 */
import { resolveSpec, type ClusterData, type ResolvedSpec } from '@stolon-ts/cluster';

/** Progress markers (`infoUID`) of infos by uid; `kind/uid` keys. */
type Markers = ReadonlyMap<string, string>;

type Infos = Readonly<Record<string, { infoUID: string }>>;

function markersOf(keeperInfos: Infos, proxyInfos: Infos): Markers {
  return new Map([
    ...Object.entries(keeperInfos).map(([uid, i]): [string, string] => [`keeper/${uid}`, i.infoUID]),
    ...Object.entries(proxyInfos).map(([uid, i]): [string, string] => [`proxy/${uid}`, i.infoUID]),
  ]);
}

/**
 * The keepers last seen healthy and the enabled proxies that have not published again since the
 * wait's first leader pass: their info is absent, or still carries the progress marker it had then
 * (`atStart`). Such an info may be one the store has not yet deleted although its lease expired
 * during an outage, so its presence proves nothing; only a new marker does.
 */
function notRepublished(cd: ClusterData, keeperInfos: Infos, proxyInfos: Infos, atStart: Markers): string[] {
  const stale = (key: string, info: { infoUID: string } | undefined): boolean => info === undefined || atStart.get(key) === info.infoUID;
  return [
    ...Object.values(cd.keepers)
      .filter((k) => k.status.healthy && stale(`keeper/${k.uid}`, keeperInfos[k.uid]))
      .map((k) => `keeper ${k.uid}`),
    ...cd.proxy.spec.enabledProxies.filter((p) => stale(`proxy/${p}`, proxyInfos[p])).map((p) => `proxy ${p}`),
  ];
}

/** One sentinel's republish wait; every time is monotonic ms. */
export class RepublishWait {
  /** When this sentinel last read clusterdata (undefined: never). */
  lastReadAt: number | undefined;
  /** The wait's length and the outage threshold: failInterval of the last spec read (the default until then). */
  private graceMs = resolveSpec({ initMode: 'new' }).failIntervalMs;
  /** Since when the current wait runs, and why; undefined: none. */
  private since: number | undefined;
  private why = '';
  /** The markers at the wait's first leader pass (see notRepublished). */
  private markers: Markers | undefined;
  /** Set when this sentinel becomes the leader, cleared by its first pass as leader. */
  private termStarting = false;

  /** This sentinel has become the leader: its first pass as leader starts a wait. */
  newTerm(): void {
    this.termStarting = true;
  }

  /** The spec just read (leader or observer): failInterval sets the wait and the outage threshold. */
  setSpec(spec: ResolvedSpec): void {
    this.graceMs = spec.failIntervalMs;
  }

  /**
   * A clusterdata read at `at`, by a leader or an observer. More than failInterval since the last
   * one opens a new wait, also over one still open (its markers are of the earlier return); a wait
   * older than failInterval is over, whether this sentinel led meanwhile or only observed, so it
   * is never carried into a later outage or term, where its stale start would end that wait at once.
   */
  read(at: number): void {
    if (this.lastReadAt !== undefined && at - this.lastReadAt > this.graceMs) {
      this.open(at, 'the store was unreachable to this sentinel');
    } else if (this.since !== undefined && at - this.since >= this.graceMs) {
      this.since = undefined;
      this.markers = undefined;
    }
    this.lastReadAt = at;
  }

  /**
   * The leader's check before it decides, on the clusterdata and infos read at `at`.
   * @returns the sentence to log while the wait goes on; undefined when the leader may decide
   */
  check(cd: ClusterData, keeperInfos: Infos, proxyInfos: Infos, at: number): string | undefined {
    if (this.termStarting) {
      this.termStarting = false;
      if (this.since === undefined) {
        this.open(at, 'this sentinel has just become the leader');
      } else {
        // A wait opened by an outage goes on; its markers are taken from this first leader pass.
        this.markers = undefined;
      }
    }
    if (this.since === undefined) {
      return undefined;
    }
    this.markers ??= markersOf(keeperInfos, proxyInfos);
    const missing = notRepublished(cd, keeperInfos, proxyInfos, this.markers);
    if (missing.length > 0 && at - this.since < this.graceMs) {
      return `${this.why}: waiting up to ${this.graceMs} ms for ${missing.join(', ')} to publish their infos again before judging anyone lost`;
    }
    this.since = undefined;
    this.markers = undefined;
    return undefined;
  }

  private open(at: number, why: string): void {
    this.since = at;
    this.why = why;
    this.markers = undefined;
  }
}
