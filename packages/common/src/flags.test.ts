import { describe, expect, it } from 'vitest';
import { ConfigError } from '@stolon-ts/cluster';
import { addFlags, baseYargs, pickFlags, type FlagTable, type StolonOnlyFlag } from './flags.js';
import { DAEMON_STOLON_FLAGS } from './stolon-flags.js';

interface T {
  passwordFile: string | undefined;
  backend: string;
  logLevel: string;
  port: number;
}

const TABLE: FlagTable<T> = {
  passwordFile: { name: 'password-file', description: 'p', type: 'string', alias: 'passwordfile' },
  backend: { name: 'backend', description: 'b', type: 'string', default: 'a', choices: ['a'], refusedValues: { old: 'is the old one: use a' } },
  logLevel: { name: 'log-level', description: 'l', type: 'string', default: 'info', choices: ['debug', 'info'] },
  port: { name: 'port', description: 'n', type: 'number', default: 1 },
};

const TOGGLE: StolonOnlyFlag = {
  name: 'toggle',
  type: 'boolean',
  outcome: (v) => (v === true ? { error: 'not here' } : {}),
};
const SECRET: StolonOnlyFlag = { name: 'secret', type: 'string', argvOnly: true, outcome: () => ({ error: 'never on argv' }) };

function parse(args: string[], env: NodeJS.ProcessEnv = {}): { config: T; warnings: string[] } {
  const warnings: string[] = [];
  const argv = addFlags(baseYargs(args, 'x'), TABLE, 'STX', env, { flags: [...DAEMON_STOLON_FLAGS, TOGGLE, SECRET], warnings })
    .fail((msg: string | null, err: Error | null) => {
      throw err ?? new Error(msg ?? '');
    })
    .parseSync() as Record<string, unknown>;
  return { config: pickFlags(argv, TABLE), warnings };
}

function errorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) {
      return err;
    }
    throw err;
  }
  throw new Error('no error');
}

describe('addFlags: Stolon spellings', () => {
  it("an alias works on the command line and as its own variable, with the same meaning", () => {
    expect(parse(['--passwordfile', '/f']).config.passwordFile).toBe('/f');
    expect(parse([], { STX_PASSWORDFILE: '/e' }).config.passwordFile).toBe('/e');
    expect(parse([], { STX_PASSWORD_FILE: '/e', STX_PASSWORDFILE: '/e' }).config.passwordFile).toBe('/e');
    expect(parse(['--password-file', '/f'], { STX_PASSWORDFILE: '/e' }).config.passwordFile).toBe('/f');
  });

  it("boolean variables take Go's spellings (Stolon parses them with strconv.ParseBool)", () => {
    for (const [v, want] of [['True', true], ['T', true], ['1', true], ['FALSE', false], ['f', false], ['0', false]] as const) {
      expect(parse([], { STX_LOG_COLOR: v }).warnings.length, v).toBe(want ? 1 : 0);
    }
    expect(errorOf(() => parse([], { STX_LOG_COLOR: 'yes' })).message).toBe('STX_LOG_COLOR: "yes" is not true or false');
  });

  it("--flag=value of a boolean takes Go's spellings too; anything else is refused, never read as false", () => {
    const t = (v: string) => parse([`--debug=${v}`]).config.logLevel;
    expect(['True', 'T', '1', 'true'].map(t)).toEqual(['debug', 'debug', 'debug', 'debug']);
    expect(['False', 'f', '0', 'false'].map(t)).toEqual(['info', 'info', 'info', 'info']);
    expect(errorOf(() => parse(['--toggle=yes'])).message).toBe('--toggle=yes: not true or false');
  });

  it('both variables of one setting with different values: refused, naming both', () => {
    expect(errorOf(() => parse([], { STX_PASSWORD_FILE: '/a', STX_PASSWORDFILE: '/b' })).message).toBe(
      'STX_PASSWORD_FILE and STX_PASSWORDFILE name the same setting with different values; set only one',
    );
  });

  it('a refused value, from the command line or the environment, gives its own message before the choices check', () => {
    const e = errorOf(() => parse(['--backend', 'old']));
    expect(e.message).toBe('--backend old (or STX_BACKEND) is the old one: use a');
    expect(e.field).toBe('backend');
    expect(errorOf(() => parse([], { STX_BACKEND: 'old' })).message).toMatch(/^--backend old/);
  });

  it('--debug sets the log level and warns; --log-color warns; false values do nothing', () => {
    expect(parse(['--debug'])).toEqual({ config: expect.objectContaining({ logLevel: 'debug' }), warnings: [expect.stringMatching(/^--debug \(or STX_DEBUG\): deprecated/)] });
    expect(parse([], { STX_LOG_COLOR: 'true' }).warnings).toEqual([expect.stringMatching(/^--log-color \(or STX_LOG_COLOR\): ignored/)]);
    expect(parse(['--debug=false', '--log-color=false', '--toggle=false'])).toEqual({ config: expect.objectContaining({ logLevel: 'info' }), warnings: [] });
  });

  it('a refused Stolon flag names itself; an argv-only one ignores its variable (a secret read elsewhere)', () => {
    expect(errorOf(() => parse([], { STX_TOGGLE: '1' })).message).toBe('--toggle (or STX_TOGGLE): not here');
    expect(errorOf(() => parse(['--secret', 'x'])).message).toBe('--secret: never on argv');
    expect(parse([], { STX_SECRET: 'x' }).warnings).toEqual([]);
  });
});
