/**
 * The little of the PostgreSQL wire protocol the proxy speaks itself: recognising the first
 * packet a client sends (startup, SSL/GSSAPI encryption request, cancel request) and building an
 * ErrorResponse, so that a client refused for being over `--max-connections` gets a proper
 * `FATAL 53300` error instead of a bare close. Everything else is forwarded byte for byte; the
 * proxy never parses traffic of a forwarded connection. Pure (no I/O).
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */

/** Protocol version 3.0 as sent in a StartupMessage (`3 << 16`). */
export const PROTOCOL_3_0 = 196_608;
/** The "protocol version" of an SSLRequest. */
export const SSL_REQUEST_CODE = 80_877_103;
/** The "protocol version" of a GSSENCRequest. */
export const GSSENC_REQUEST_CODE = 80_877_104;
/** The "protocol version" of a CancelRequest. */
export const CANCEL_REQUEST_CODE = 80_877_102;
/**
 * Longest startup packet accepted, in bytes, as PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`
 * (src/include/libpq/pqcomm.h): longer ones are refused as invalid.
 */
export const MAX_STARTUP_PACKET_BYTES = 10_000;

/** What the first bytes of a client connection are. */
export type StartupPacket =
  /** Fewer bytes than the packet needs yet; read more. */
  | { readonly kind: 'incomplete' }
  /** SSLRequest or GSSENCRequest (8 bytes): the server answers one byte, `N` to decline. */
  | { readonly kind: 'ssl' | 'gssenc'; readonly length: 8 }
  /** CancelRequest (16 bytes): the server answers nothing and closes. */
  | { readonly kind: 'cancel'; readonly length: number }
  /** StartupMessage of any protocol version (3.0 is {@link PROTOCOL_3_0}). */
  | { readonly kind: 'startup'; readonly length: number; readonly version: number }
  /** Not a PostgreSQL startup packet (a length out of range); `reason` says why. */
  | { readonly kind: 'invalid'; readonly reason: string };

/**
 * Recognises the packet at the start of `buf`: an Int32 length (counting itself) followed by an
 * Int32 code that is a protocol version or a request code. Bytes after the packet are ignored.
 * Never throws: garbage is `invalid`.
 */
export function parseStartupPacket(buf: Buffer): StartupPacket {
  if (buf.length < 8) {
    // A length below 8 is invalid whatever follows; say so as soon as the 4 length bytes are here.
    if (buf.length >= 4 && buf.readInt32BE(0) < 8) {
      return { kind: 'invalid', reason: `startup packet length ${buf.readInt32BE(0)} is below 8` };
    }
    return { kind: 'incomplete' };
  }
  const length = buf.readInt32BE(0);
  const code = buf.readInt32BE(4);
  if (length < 8 || length > MAX_STARTUP_PACKET_BYTES) {
    return { kind: 'invalid', reason: `startup packet length ${length} is outside 8-${MAX_STARTUP_PACKET_BYTES}` };
  }
  if ((code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) && length === 8) {
    return { kind: code === SSL_REQUEST_CODE ? 'ssl' : 'gssenc', length: 8 };
  }
  if (code === CANCEL_REQUEST_CODE && length === 16) {
    return buf.length < 16 ? { kind: 'incomplete' } : { kind: 'cancel', length: 16 };
  }
  if (buf.length < length) {
    return { kind: 'incomplete' };
  }
  return { kind: 'startup', length, version: code };
}

/** The fields of an ErrorResponse the proxy sends. */
export interface ErrorFields {
  /** `FATAL` for a refused connection. */
  readonly severity: 'ERROR' | 'FATAL';
  /** SQLSTATE, five characters, e.g. `53300` (too_many_connections). */
  readonly code: string;
  /** The primary message, one line. */
  readonly message: string;
  /** Optional hint shown by psql as `HINT:`. */
  readonly hint?: string;
}

/**
 * Builds an ErrorResponse message: `E`, an Int32 length (counting itself), then the fields
 * `S` (localised severity), `V` (severity, PostgreSQL ≥ 9.6), `C` (SQLSTATE), `M`, optionally
 * `H`, each a NUL-terminated string, and a final NUL.
 * @throws RangeError when `code` is not five characters or a text contains a NUL byte.
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html (ErrorResponse)
 * @see https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
export function errorResponse(f: ErrorFields): Buffer {
  if (!/^[0-9A-Z]{5}$/.test(f.code)) {
    throw new RangeError(`SQLSTATE must be five digits or capital letters, got "${f.code}"`);
  }
  const fields: [string, string][] = [
    ['S', f.severity],
    ['V', f.severity],
    ['C', f.code],
    ['M', f.message],
  ];
  if (f.hint !== undefined) {
    fields.push(['H', f.hint]);
  }
  const parts: Buffer[] = [];
  for (const [type, text] of fields) {
    if (text.includes('\0')) {
      throw new RangeError(`error field ${type} contains a NUL byte`);
    }
    parts.push(Buffer.from(type, 'ascii'), Buffer.from(text, 'utf8'), Buffer.alloc(1));
  }
  parts.push(Buffer.alloc(1));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'ascii');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/** The single byte a server sends to decline an SSLRequest or GSSENCRequest. */
export const DECLINE_ENCRYPTION = Buffer.from('N', 'ascii');

/** SQLSTATE `too_many_connections`, as PostgreSQL's own "sorry, too many clients already". */
export const TOO_MANY_CONNECTIONS = '53300';
