/** Unit tier: what the programs print or log of a conninfo never contains a password. */
import { describe, expect, it } from 'vitest';
import { UNPARSEABLE_CONNINFO, redactConninfo } from './conninfo.js';

describe('redactConninfo', () => {
  it.each([
    ['keyword/value with password last', 'host=10.0.0.1 port=5432 user=repl password=s3cret', 'host=10.0.0.1 port=5432 user=repl'],
    ['password first', 'password=s3cret host=h', 'host=h'],
    ['spaces around =', 'host = h  password = s3cret user=u', 'host=h user=u'],
    ['a quoted password with spaces and escapes', "host=h password='s3 c\\'ret' user=u", 'host=h user=u'],
    ['an upper-case keyword and sslpassword', 'PASSWORD=s3cret sslpassword=s3cret sslmode=require', 'sslmode=require'],
    ['no password', "host=h application_name='a b'", "host=h application_name='a b'"],
    ['an empty string', '', ''],
    ['a URI with user:password@', 'postgresql://repl:s3cret@10.0.0.1:5432/postgres?sslmode=require', 'postgresql://repl@10.0.0.1:5432/postgres?sslmode=require'],
    ['a URI with an unencoded @ in the password', 'postgres://repl:s3@cret@h/db', 'postgres://repl@h/db'],
    ['a URI with a password parameter', 'postgresql://h1:5432,h2:5432/db?user=repl&password=s3cret&sslmode=require', 'postgresql://h1:5432,h2:5432/db?user=repl&sslmode=require'],
    ['a URI whose only parameter is the password', 'postgresql://h/db?password=s3cret', 'postgresql://h/db'],
  ])('%s', (_, conninfo, expected) => {
    expect(redactConninfo(conninfo)).toBe(expected);
  });

  it.each([
    ['an unterminated quote', "host=h password='s3cret"],
    ['a keyword without =', 'host=h s3cret'],
    ['a missing keyword', '=s3cret'],
  ])('shows nothing of a conninfo it cannot parse: %s', (_, conninfo) => {
    expect(redactConninfo(conninfo)).toBe(UNPARSEABLE_CONNINFO);
  });
});
