/**
 * The leader sentinel's check of the keeper and proxy infos it read (`infoIssues`, the
 * `KeeperInfo` / `ProxyInfo` schema; docs/architecture.md#invalid-clusterdata), without checking
 * again what did not change since the last read.
 */
import { infoIssues } from '@stolon-ts/cluster';

/** The problems of every info of one kind, by uid (`infoIssues`; empty: valid). */
export type InfoCheck = (kind: 'keepers' | 'proxies', infos: Readonly<Record<string, object>>) => ReadonlyMap<string, readonly string[]>;

/** An info as JSON without its own top-level `infoUID`; undefined when that marker is not a string. */
function restOf(info: object): string | undefined {
  if (typeof (info as { infoUID?: unknown }).infoUID !== 'string') {
    return undefined;
  }
  return JSON.stringify(info, function (this: unknown, k, v: unknown) {
    return this === info && k === 'infoUID' ? undefined : v;
  });
}

/**
 * `infoIssues` for a whole read, remembering which infos were valid: an info that differs from
 * the one of the same uid found valid by the last read of its kind only in its progress marker
 * (`infoUID`, still a string: all the schema asks of it) is valid without checking the rest
 * again. At rest every keeper and proxy info differs from the last pass's only in its marker, and
 * the schema check was most of the leader's read of the infos.
 * @returns the check; it holds the valid infos of the last read of each kind
 */
export function rememberingInfoCheck(): InfoCheck {
  const valid = { keepers: new Map<string, string>(), proxies: new Map<string, string>() };
  return (kind, infos) => {
    const before = valid[kind];
    const now = new Map<string, string>();
    const out = new Map<string, readonly string[]>();
    for (const [uid, info] of Object.entries(infos)) {
      const rest = restOf(info);
      const problems = rest !== undefined && before.get(uid) === rest ? [] : infoIssues(kind, info);
      if (problems.length === 0 && rest !== undefined) {
        now.set(uid, rest);
      }
      out.set(uid, problems);
    }
    valid[kind] = now;
    return out;
  };
}


