import { describe, expect, it } from 'vitest';
import { configErrorOf } from '@stolon-ts/cluster/testing';
import { EXAMPLE_SECRET_PREFIX, refuseExampleSecret } from './passwords.js';

describe('refuseExampleSecret', () => {
  it('passes a value of the operator’s own, whatever it contains', () => {
    for (const v of ['s3cret', 'a'.repeat(64), 'my-EXAMPLE-replace-me', 'EXAMPLE', 'EXAMPLE-replace', 'example-replace-me-lowercase']) {
      expect(refuseExampleSecret(v, 'pg-su-password-file', '/etc/stolon/secrets/pg-su-password')).toBe(v);
    }
  });

  it('refuses every example value the manifests published, naming the flag, the file and the fix, never the value', () => {
    const examples = [
      ['EXAMPLE-replace-me-superuser-password', 'pg-su-password-file', '/etc/stolon/secrets/pg-su-password'],
      ['EXAMPLE-replace-me-replication-password', 'pg-repl-password-file', '/etc/stolon/secrets/pg-repl-password'],
      ['EXAMPLE-replace-me-member-token-from-openssl-rand-hex-32', 'member-token-file', '/etc/stolon/member/member-token'],
      [`${EXAMPLE_SECRET_PREFIX}`, 'pg-su-password-file', '$STKEEPER_PG_SU_PASSWORD'],
    ] as const;
    for (const [value, flag, from] of examples) {
      const err = configErrorOf(() => refuseExampleSecret(value, flag, from));
      expect(err.field).toBe(flag);
      expect(err.message.startsWith(`--${flag}: ${from} holds an example value`)).toBe(true);
      expect(err.message).toContain('openssl rand');
      expect(err.message).toContain('docs/kubernetes.md, step 3');
      expect(err.message).not.toContain(value.slice(EXAMPLE_SECRET_PREFIX.length + 1) || '\u0000');
    }
  });
});
