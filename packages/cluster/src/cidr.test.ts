/** Table test of the CIDR check behind the spec's suAllowedCIDRs. */
import { describe, expect, it } from 'vitest';
import { isCidr } from './cidr.js';

describe('isCidr', () => {
  it.each([
    '10.0.0.0/8',
    '0.0.0.0/0',
    '127.0.0.1/32',
    '192.168.1.7/24',
    '::/0',
    '::1/128',
    'fd00::/64',
    'fe80::1:2:3:4/10',
    '2001:db8:0:0:0:0:0:1/128',
    '::ffff:10.0.0.1/128',
  ])('accepts %j', (cidr) => {
    expect(isCidr(cidr)).toBe(true);
  });

  it.each([
    '10.0.0.1',
    '10.0.0.0/33',
    '256.0.0.0/8',
    '010.0.0.0/8',
    '10.0.0/8',
    '::/129',
    '1::2::3/64',
    '2001:db8:0:0:0:0:0:0:1/128',
    'fe80::1%eth0/64',
    'g::/16',
    'all',
    'samenet',
    'db.example.com/32',
    '10.0.0.0/8 trust',
    ' 10.0.0.0/8',
    '',
  ])('refuses %j', (cidr) => {
    expect(isCidr(cidr)).toBe(false);
  });
});
