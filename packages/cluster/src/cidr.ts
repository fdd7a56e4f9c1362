/**
 * CIDR address ranges as pg_hba.conf accepts them in its address field (`10.0.0.0/8`,
 * `fd00::/64`): the spec's `suAllowedCIDRs` is checked with it, and the keeper writes each range
 * into pg_hba.conf as it was given.
 */
import { isIPv4, isIPv6 } from 'node:net';

/**
 * Whether `text` is an IPv4 address with a mask length 0–32 or an IPv6 address with a mask length
 * 0–128, written `address/length` with nothing around it. Host bits may be set (PostgreSQL masks
 * them itself); a bare address, a host name or a zone id (`fe80::1%eth0/64`) is not a CIDR here.
 *
 * @example isCidr('10.0.0.0/8') === true; isCidr('10.0.0.1') === false; isCidr('::1/129') === false
 * @see https://www.postgresql.org/docs/current/auth-pg-hba-conf.html (the `address` field)
 */
export function isCidr(text: string): boolean {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text);
  if (m === null) {
    return false;
  }
  const address = m[1] ?? '';
  const length = Number(m[2]);
  if (isIPv4(address)) {
    return length <= 32;
  }
  return isIPv6(address) && !address.includes('%') && length <= 128;
}
