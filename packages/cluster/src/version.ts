/**
 * The stolon-ts release every program of this repository belongs to: the keepers, sentinels and
 * proxies publish it in their infos, and `stolonctl version` compares them (version skew). The
 * packages are released together, so one constant serves all; version.test.ts checks that it is
 * the `version` of every package.json.
 */
export const STOLON_TS_VERSION = '0.1.0';
