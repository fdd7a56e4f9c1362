/** The startup-packet recogniser and the ErrorResponse builder, byte by byte. */
import { describe, expect, it } from 'vitest';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  PROTOCOL_3_0,
  SSL_REQUEST_CODE,
  errorResponse,
  parseStartupPacket,
} from './pgwire.js';

function packet(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(code, 4);
  return Buffer.concat([head, body]);
}

const startup = packet(PROTOCOL_3_0, Buffer.from('user\0postgres\0database\0postgres\0\0'));

describe('parseStartupPacket', () => {
  const cases: Array<[string, Buffer, object]> = [
    ['1. fewer than 4 bytes: incomplete', Buffer.from([0, 0]), { kind: 'incomplete' }],
    ['2. a StartupMessage v3.0', startup, { kind: 'startup', length: startup.length, version: PROTOCOL_3_0 }],
    ['3. a StartupMessage cut short: incomplete', startup.subarray(0, 20), { kind: 'incomplete' }],
    ['4. an SSLRequest', packet(SSL_REQUEST_CODE), { kind: 'ssl', length: 8 }],
    ['5. a GSSENCRequest', packet(GSSENC_REQUEST_CODE), { kind: 'gssenc', length: 8 }],
    ['6. a CancelRequest', packet(CANCEL_REQUEST_CODE, Buffer.alloc(8, 1)), { kind: 'cancel', length: 16 }],
    ['7. a CancelRequest cut short: incomplete', packet(CANCEL_REQUEST_CODE, Buffer.alloc(8, 1)).subarray(0, 12), { kind: 'incomplete' }],
    ['8. protocol 2.0 startup: recognised, version kept', packet(0x20000, Buffer.from('x\0\0')), { kind: 'startup', version: 0x20000 }],
    ['9. length 4 (below 8): invalid as soon as the length is read', Buffer.from([0, 0, 0, 4]), { kind: 'invalid' }],
    ['10. length past 10000: invalid', Buffer.from([0, 1, 0, 0, 0, 3, 0, 0]), { kind: 'invalid' }],
    ['11. HTTP (garbage): invalid', Buffer.from('GET / HTTP/1.1\r\n\r\n'), { kind: 'invalid' }],
    ['12. negative length: invalid', Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), { kind: 'invalid' }],
  ];
  it.each(cases)('%s', (_title, buf, expected) => {
    expect(parseStartupPacket(buf)).toMatchObject(expected);
  });

  it('ignores bytes after the packet (a startup message sent right after an SSLRequest)', () => {
    expect(parseStartupPacket(Buffer.concat([packet(SSL_REQUEST_CODE), startup]))).toEqual({ kind: 'ssl', length: 8 });
  });
});

describe('errorResponse', () => {
  it('builds E, the length, S/V/C/M(/H) NUL-terminated fields and a final NUL', () => {
    const b = errorResponse({ severity: 'FATAL', code: '53300', message: 'too many', hint: 'wait' });
    expect(b.toString('latin1', 0, 1)).toBe('E');
    expect(b.readInt32BE(1)).toBe(b.length - 1);
    expect(b.subarray(5).toString('latin1')).toBe('SFATAL\0VFATAL\0C53300\0Mtoo many\0Hwait\0\0');
  });

  it('encodes the message as UTF-8 and counts bytes, not characters', () => {
    const b = errorResponse({ severity: 'ERROR', code: '53300', message: 'trop de connexions — désolé' });
    expect(b.readInt32BE(1)).toBe(b.length - 1);
    expect(b.subarray(5).toString('utf8')).toContain('Mtrop de connexions — désolé\0');
  });

  it('rejects a malformed SQLSTATE or a NUL in a field', () => {
    expect(() => errorResponse({ severity: 'FATAL', code: '533', message: 'x' })).toThrow(RangeError);
    expect(() => errorResponse({ severity: 'FATAL', code: '53300', message: 'a\0b' })).toThrow(/field M contains a NUL/);
  });
});
