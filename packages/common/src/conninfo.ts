/**
 * Conninfo strings as programs may print or log them: a standby cluster's `primaryConninfo` often
 * carries `password=…`, and status output and logs end up in terminals, tickets and CI logs, so
 * secrets are removed before anything is shown (stolonctl status/promote, keeper log sentences).
 * @see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING
 */

/** Connection keywords whose values are secrets (compared case-insensitively). */
const SECRET_KEYWORDS: ReadonlySet<string> = new Set(['password', 'sslpassword']);

/** What {@link redactConninfo} returns for a conninfo it cannot parse (it might hide a secret). */
export const UNPARSEABLE_CONNINFO = '(not shown: the conninfo cannot be parsed)';

/**
 * The conninfo without its secrets: in keyword/value form every `password=…` and
 * `sslpassword=…` pair is dropped (quoted values included); in URI form
 * (`postgresql://user:secret@host/db?password=…`) the password of the user part and those query
 * parameters are dropped. Everything else is kept as written.
 * @example redactConninfo("host=h user=repl password='a b'") === 'host=h user=repl'
 * @returns the redacted conninfo, or {@link UNPARSEABLE_CONNINFO} when it cannot be parsed, so that
 *   a malformed string never leaks what it holds.
 */
export function redactConninfo(conninfo: string): string {
  const trimmed = conninfo.trim();
  const redacted = /^postgres(?:ql)?:\/\//i.test(trimmed) ? redactUri(trimmed) : redactKeywordValue(trimmed);
  return redacted ?? UNPARSEABLE_CONNINFO;
}

function isSpace(c: string): boolean {
  return c !== '' && /\s/.test(c);
}

/** libpq keyword/value form: `key = value` pairs, values bare or single-quoted with `\` escapes. */
function redactKeywordValue(s: string): string | undefined {
  const kept: string[] = [];
  let i = 0;
  const skipSpace = (): void => {
    while (isSpace(s.charAt(i))) {
      i++;
    }
  };
  for (;;) {
    skipSpace();
    if (i >= s.length) {
      return kept.join(' ');
    }
    const keyStart = i;
    while (i < s.length && s.charAt(i) !== '=' && !isSpace(s.charAt(i))) {
      i++;
    }
    const key = s.slice(keyStart, i);
    skipSpace();
    if (key === '' || s.charAt(i) !== '=') {
      return undefined;
    }
    i++;
    skipSpace();
    const valueStart = i;
    if (s.charAt(i) === "'") {
      i++;
      let closed = false;
      while (i < s.length) {
        const c = s.charAt(i);
        if (c === '\\') {
          i += 2;
        } else if (c === "'") {
          i++;
          closed = true;
          break;
        } else {
          i++;
        }
      }
      if (!closed) {
        return undefined;
      }
    } else {
      while (i < s.length && !isSpace(s.charAt(i))) {
        i += s.charAt(i) === '\\' ? 2 : 1;
      }
    }
    if (!SECRET_KEYWORDS.has(key.toLowerCase())) {
      kept.push(`${key}=${s.slice(valueStart, Math.min(i, s.length))}`);
    }
  }
}

/** URI form: `scheme://[user[:password]@]hosts[/db][?params][#fragment]`. */
function redactUri(s: string): string | undefined {
  const m = /^(postgres(?:ql)?:\/\/)([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/i.exec(s);
  if (m === null) {
    return undefined;
  }
  const [, scheme = '', authority = '', path = '', query, fragment = ''] = m;
  // lastIndexOf: an unencoded '@' inside the password still leaves it on the user side.
  const at = authority.lastIndexOf('@');
  let hosts = authority;
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    hosts = `${colon >= 0 ? userinfo.slice(0, colon) : userinfo}@${authority.slice(at + 1)}`;
  }
  let params = '';
  if (query !== undefined) {
    const keptParams = query
      .slice(1)
      .split('&')
      .filter((p) => p !== '' && !SECRET_KEYWORDS.has(decodeKey(p.split('=')[0] ?? '').toLowerCase()));
    params = keptParams.length > 0 ? `?${keptParams.join('&')}` : '';
  }
  return `${scheme}${hosts}${path}${params}${fragment}`;
}

function decodeKey(k: string): string {
  try {
    return decodeURIComponent(k);
  } catch {
    return k;
  }
}
