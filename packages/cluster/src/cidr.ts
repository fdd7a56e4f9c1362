/**
 * CIDR address ranges as pg_hba.conf accepts them in its address field (`10.0.0.0/8`,
 * `fd00::/64`): the spec's `suAllowedCIDRs` is checked with it, and the keeper writes each range
 * into pg_hba.conf as it was given.
 */

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);

/** Dotted-quad IPv4, each part 0–255 without leading zeros. */
function isIPv4(a: string): boolean {
  return IPV4.test(a);
}

/** RFC 4291 text form: eight groups of 1–4 hex digits, one `::` at most, an IPv4 tail allowed. */
function isIPv6(a: string): boolean {
  const halves = a.split('::');
  if (halves.length > 2) {
    return false;
  }
  const groups = halves.map((h) => (h === '' ? [] : h.split(':')));
  const all = groups.flat();
  const last = all[all.length - 1];
  let count = all.length;
  if (last !== undefined && last.includes('.')) {
    if (!isIPv4(last)) {
      return false;
    }
    all.pop();
    count += 1;
  }
  if (!all.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g))) {
    return false;
  }
  return halves.length === 2 ? count <= 7 : count === 8;
}

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
  return isIPv6(address) && length <= 128;
}
