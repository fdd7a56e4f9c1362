/** The committed command reference must match what the programs' flag tables render now. */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('docs/commands', () => {
  it('is up to date with the flag tables (regenerate with node scripts/gen-commands-doc.mjs)', () => {
    let out = '';
    let code = 0;
    try {
      out = execFileSync(process.execPath, ['scripts/gen-commands-doc.mjs', '--check'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (err) {
      code = (err as { status?: number }).status ?? 1;
      out = String((err as { stderr?: string }).stderr ?? '');
    }
    expect(out).toBe('');
    expect(code).toBe(0);
  });
});
