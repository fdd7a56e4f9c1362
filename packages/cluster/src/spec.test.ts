import { describe, expect, it } from 'vitest';
import { deepFreeze } from './testing.js';
import { SpecValidationError } from './errors.js';
import { DEFAULT_SPEC, mergePatch, resolveSpec, validateSpec, validateSpecUpdate, withDefaults } from './spec.js';
import type { ClusterSpec, ResolvedSpec } from './types.js';

/** Runs `fn`, expecting a SpecValidationError, and returns it. */
function specError(fn: () => unknown): SpecValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SpecValidationError);
    return err as SpecValidationError;
  }
  throw new Error('expected a SpecValidationError, nothing was thrown');
}

describe('validateSpec rejects', () => {
  interface Rejected {
    readonly title: string;
    readonly spec: unknown;
    /** `error.field`: the JSON path of the first problem. */
    readonly field: string;
    /** Substrings that must appear in `issues[0]`. */
    readonly issue: readonly string[];
  }
  const cases: readonly Rejected[] = [
    {
      title: 'an unknown top-level field, by name',
      spec: { initMode: 'new', sleepIntervl: '1s' },
      field: 'sleepIntervl',
      issue: ['sleepIntervl: unknown field'],
    },
    {
      title: 'an unknown nested field, by its full path',
      spec: { initMode: 'new', newConfig: { lcoale: 'C' } },
      field: 'newConfig.lcoale',
      issue: ['newConfig.lcoale: unknown field'],
    },
    {
      title: 'a wrong type, naming the path',
      spec: { initMode: 'new', sleepInterval: 5 },
      field: 'sleepInterval',
      issue: ['sleepInterval:', 'expected string'],
    },
    {
      title: 'a suAllowedCIDRs entry that is not a CIDR, naming its index',
      spec: { initMode: 'new', suAllowedCIDRs: ['10.0.0.0/8', '10.1.2.3'] },
      field: 'suAllowedCIDRs.1',
      issue: ['suAllowedCIDRs.1: must be a CIDR address range'],
    },
    {
      title: 'an unknown defaultSUReplAccessMode',
      spec: { initMode: 'new', defaultSUReplAccessMode: 'none' },
      field: 'defaultSUReplAccessMode',
      issue: ['defaultSUReplAccessMode:'],
    },
    {
      title: 'a wrong type inside a map, naming the key',
      spec: { initMode: 'new', pgParameters: { work_mem: 4 } },
      field: 'pgParameters.work_mem',
      issue: ['pgParameters.work_mem:', 'expected string'],
    },
    {
      title: 'a non-integer count',
      spec: { initMode: 'new', maxStandbys: 1.5 },
      field: 'maxStandbys',
      issue: ['maxStandbys:'],
    },
    {
      title: 'maxStandbys 0',
      spec: { initMode: 'new', maxStandbys: 0 },
      field: 'maxStandbys',
      issue: ['maxStandbys:'],
    },
    {
      title: 'a duration without a unit',
      spec: { initMode: 'new', failInterval: '10' },
      field: 'failInterval',
      issue: ['failInterval: must be a duration'],
    },
    {
      title: 'a negative duration',
      spec: { initMode: 'new', proxyTimeout: '-1s' },
      field: 'proxyTimeout',
      issue: ['proxyTimeout: must be a duration', 'not negative'],
    },
    {
      title: 'a slot name with upper case',
      spec: { initMode: 'new', additionalMasterReplicationSlots: ['ok_1', 'Bad'] },
      field: 'additionalMasterReplicationSlots.1',
      issue: ['additionalMasterReplicationSlots.1: must match ^[a-z0-9_]+$'],
    },
    {
      title: 'a slot name with a dash',
      spec: { initMode: 'new', additionalMasterReplicationSlots: ['has-dash'] },
      field: 'additionalMasterReplicationSlots.0',
      issue: ['must match ^[a-z0-9_]+$'],
    },
    {
      title: 'a slot name using the keeper prefix',
      spec: { initMode: 'new', additionalMasterReplicationSlots: ['stolon_x'] },
      field: 'additionalMasterReplicationSlots.0',
      issue: ['must not start with "stolon_"'],
    },
    {
      title: 'a pgHBA line with a newline (it would inject a second rule)',
      spec: { initMode: 'new', pgHBA: ['host all all 10.0.0.0/8 md5', 'host all all 0.0.0.0/0 md5\nhost all all ::/0 trust'] },
      field: 'pgHBA.1',
      issue: ['pgHBA.1: must not contain a newline'],
    },
    {
      title: 'a pgHBA line with a carriage return',
      spec: { initMode: 'new', pgHBA: ['local all all trust\r'] },
      field: 'pgHBA.0',
      issue: ['must not contain a newline'],
    },
    {
      title: 'a missing initMode',
      spec: {},
      field: 'initMode',
      issue: ['initMode: is required', '"new", "existing", "pitr"'],
    },
    {
      title: 'an unknown initMode',
      spec: { initMode: 'clone' },
      field: 'initMode',
      issue: ['initMode:'],
    },
    {
      title: 'initMode existing without the keeper to adopt',
      spec: { initMode: 'existing' },
      field: 'existingConfig.keeperUID',
      issue: ['existingConfig.keeperUID: is required with initMode "existing"'],
    },
    {
      title: 'initMode pitr without a data restore command',
      spec: { initMode: 'pitr', pitrConfig: {} },
      field: 'pitrConfig.dataRestoreCommand',
      issue: ['pitrConfig.dataRestoreCommand: is required with initMode "pitr"'],
    },
    {
      title: 'role standby with initMode new',
      spec: { initMode: 'new', role: 'standby', standbyConfig: { standbySettings: { primaryConninfo: 'host=a' } } },
      field: 'initMode',
      issue: ['initMode: "new" cannot be used with role "standby"'],
    },
    {
      title: 'role standby without the primary cluster connection',
      spec: { initMode: 'pitr', role: 'standby', pitrConfig: { dataRestoreCommand: 'true' } },
      field: 'standbyConfig.standbySettings.primaryConninfo',
      issue: ['standbyConfig.standbySettings.primaryConninfo: is required with role "standby"'],
    },
    {
      title: 'role standby with a recovery target',
      spec: {
        initMode: 'pitr',
        role: 'standby',
        pitrConfig: { dataRestoreCommand: 'true', recoveryTargetSettings: { recoveryTargetLsn: '0/3000000' } },
        standbyConfig: { standbySettings: { primaryConninfo: 'host=a' } },
      },
      field: 'pitrConfig.recoveryTargetSettings',
      issue: ['pitrConfig.recoveryTargetSettings: cannot be used with role "standby"'],
    },
    {
      title: 'an unknown field inside standbyConfig.standbySettings',
      spec: { initMode: 'pitr', role: 'standby', pitrConfig: { dataRestoreCommand: 'true' }, standbyConfig: { standbySettings: { primaryConnInfo: 'x' } } },
      field: 'standbyConfig.standbySettings.primaryConnInfo',
      issue: ['unknown field'],
    },
    {
      title: 'proxyCheckInterval equal to proxyTimeout, naming both fields and values',
      spec: { initMode: 'new', proxyCheckInterval: '4s', proxyTimeout: '4s' },
      field: 'proxyCheckInterval',
      issue: ['proxyCheckInterval: 4s must be less than proxyTimeout (4s)'],
    },
    {
      title: 'proxyCheckInterval above proxyTimeout',
      spec: { initMode: 'new', proxyCheckInterval: '5s', proxyTimeout: '3s' },
      field: 'proxyCheckInterval',
      issue: ['proxyCheckInterval: 5s', 'proxyTimeout (3s)'],
    },
    {
      title: 'failInterval equal to sleepInterval + 2 × requestTimeout',
      spec: { initMode: 'new', sleepInterval: '1s', requestTimeout: '2s', failInterval: '5s' },
      field: 'failInterval',
      issue: ['failInterval: 5s must be greater than sleepInterval + 2 × requestTimeout (1s + 2 × 2s)'],
    },
    {
      title: 'failInterval below the rule after raising requestTimeout only',
      spec: { initMode: 'new', requestTimeout: '10s' },
      field: 'failInterval',
      issue: ['failInterval: 6s', 'requestTimeout'],
    },
    {
      title: 'a decimal failInterval exactly at the limit (no floating-point slack)',
      spec: { initMode: 'new', sleepInterval: '1.01s', requestTimeout: '2s', failInterval: '5.01s' },
      field: 'failInterval',
      issue: ['failInterval: 5.01s'],
    },
    {
      title: 'a zero sleepInterval',
      spec: { initMode: 'new', sleepInterval: '0' },
      field: 'sleepInterval',
      issue: ['sleepInterval: must be greater than 0s'],
    },
    {
      title: 'a zero requestTimeout',
      spec: { initMode: 'new', requestTimeout: '0s' },
      field: 'requestTimeout',
      issue: ['requestTimeout: must be greater than 0s'],
    },
    {
      title: 'a zero switchoverTimeout',
      spec: { initMode: 'new', switchoverTimeout: '0s' },
      field: 'switchoverTimeout',
      issue: ['switchoverTimeout: must be greater than 0s'],
    },
    {
      title: 'maxSynchronousStandbys below minSynchronousStandbys',
      spec: { initMode: 'new', minSynchronousStandbys: 2, maxSynchronousStandbys: 1 },
      field: 'maxSynchronousStandbys',
      issue: ['maxSynchronousStandbys: 1 must be at least minSynchronousStandbys (2)'],
    },
    {
      title: 'null instead of an object',
      spec: null,
      field: '(spec)',
      issue: ['(spec):', 'expected object'],
    },
    {
      title: 'an array instead of an object',
      spec: [],
      field: '(spec)',
      issue: ['(spec):'],
    },
  ];

  it.each(cases)('$title', ({ spec, field, issue }) => {
    const err = specError(() => validateSpec(spec));
    expect(err.code).toBe('SPEC_INVALID');
    expect(err.field).toBe(field);
    for (const s of issue) {
      expect(err.issues[0]).toContain(s);
    }
    expect(err.message).toContain(err.issues[0]);
  });

  it('reports every schema problem at once', () => {
    const err = specError(() => validateSpec({ initMode: 'new', foo: 1, sleepInterval: 5, pgHBA: ['a\nb'] }));
    expect(err.issues.map((i) => i.split(':')[0]).sort()).toEqual(['foo', 'pgHBA.0', 'sleepInterval']);
  });

  it('reports every timing problem at once', () => {
    const err = specError(() =>
      validateSpec({ initMode: 'new', proxyCheckInterval: '9s', failInterval: '2s', minSynchronousStandbys: 3 }),
    );
    expect(err.issues.map((i) => i.split(':')[0])).toEqual(['proxyCheckInterval', 'failInterval', 'maxSynchronousStandbys']);
  });
});

describe('validateSpec accepts', () => {
  it.each<[string, ClusterSpec]>([
    ['the minimal spec', { initMode: 'new' }],
    ['every default spelled out', { ...DEFAULT_SPEC, initMode: 'new' }],
    ['null maps and lists', { initMode: 'new', pgParameters: null, pgHBA: null, additionalMasterReplicationSlots: null }],
    ['good slot names', { initMode: 'new', additionalMasterReplicationSlots: ['slot_1', 'backup'] }],
    ['Stolon\'s open access, and superuser CIDRs (IPv4, IPv6, host bits set)', { initMode: 'new', defaultSUReplAccessMode: 'all', suAllowedCIDRs: ['10.0.0.0/8', 'fd00::/64', '192.168.1.7/24'] }],
    ['failInterval just above the rule', { initMode: 'new', sleepInterval: '1s', requestTimeout: '2s', failInterval: '5001ms' }],
    ['proxyCheckInterval just below proxyTimeout', { initMode: 'new', proxyCheckInterval: '3999ms', proxyTimeout: '4s' }],
    ['min = max synchronous standbys', { initMode: 'new', minSynchronousStandbys: 2, maxSynchronousStandbys: 2 }],
    ['Stolon-style durations', { initMode: 'new', sleepInterval: '5s', requestTimeout: '10s', failInterval: '1m0s', proxyCheckInterval: '5s', proxyTimeout: '15s' }],
  ])('%s', (_title, spec) => {
    expect(validateSpec(deepFreeze(structuredClone(spec)))).toEqual(spec);
  });
});

describe('resolveSpec', () => {
  const defaults: ResolvedSpec = {
    sleepIntervalMs: 1_000,
    requestTimeoutMs: 2_000,
    convergenceTimeoutMs: 30_000,
    initTimeoutMs: 300_000,
    syncTimeoutMs: 0,
    dbWaitReadyTimeoutMs: 60_000,
    failIntervalMs: 6_000,
    deadKeeperRemovalIntervalMs: 172_800_000,
    proxyCheckIntervalMs: 1_000,
    proxyTimeoutMs: 4_000,
    switchoverTimeoutMs: 60_000,
    switchoverHoldTimeoutMs: 10_000,
    failsafeMode: true,
    maxStandbys: 20,
    maxStandbysPerSender: 3,
    maxStandbyLag: 1_048_576,
    synchronousReplication: false,
    minSynchronousStandbys: 1,
    maxSynchronousStandbys: 1,
    additionalWalSenders: 5,
    additionalMasterReplicationSlots: null,
    usePgrewind: false,
    initMode: 'new',
    mergePgParameters: true,
    role: 'master',
    newConfig: {},
    pitrConfig: null,
    existingConfig: null,
    standbyConfig: null,
    defaultSUReplAccessMode: 'keepers',
    suAllowedCIDRs: [],
    pgParameters: {},
    pgHBA: null,
    automaticPgRestart: false,
    paused: false,
    backup: null,
  };

  it('resolves every default, durations in ms', () => {
    expect(resolveSpec({ initMode: 'new' })).toEqual(defaults);
  });

  it('resolves DEFAULT_SPEC to the same values', () => {
    expect(resolveSpec({ ...DEFAULT_SPEC, initMode: 'new' })).toEqual(defaults);
  });

  it('applies overrides and treats null maps as empty', () => {
    expect(
      resolveSpec({ initMode: 'new', failInterval: '1m30s', maxStandbyLag: 0, pgParameters: null, pgHBA: ['local all all trust'] }),
    ).toEqual({ ...defaults, failIntervalMs: 90_000, maxStandbyLag: 0, pgHBA: ['local all all trust'] });
  });

  it('shares no objects with its (frozen) input', () => {
    const spec = deepFreeze<ClusterSpec>({ initMode: 'new', pgParameters: { a: '1' }, pgHBA: ['x'], newConfig: { locale: 'C' } });
    const r = resolveSpec(spec);
    r.pgParameters['b'] = '2';
    r.pgHBA?.push('y');
    r.newConfig.encoding = 'UTF8';
    expect(spec).toEqual({ initMode: 'new', pgParameters: { a: '1' }, pgHBA: ['x'], newConfig: { locale: 'C' } });
  });

  it('throws SpecValidationError for an invalid spec', () => {
    expect(specError(() => resolveSpec({ initMode: 'new', proxyTimeout: '1s' })).field).toBe('proxyCheckInterval');
  });
});

describe('withDefaults', () => {
  it('fills every field, keeping the given ones', () => {
    expect(withDefaults({ initMode: 'new', failInterval: '10s' })).toEqual({ ...DEFAULT_SPEC, initMode: 'new', failInterval: '10s' });
  });

  it('is idempotent and its output is itself a valid spec', () => {
    const once = withDefaults({ initMode: 'new', pgParameters: { a: '1' } });
    expect(withDefaults(once)).toEqual(once);
    expect(validateSpec(once)).toEqual(once);
  });

  it('does not share objects with DEFAULT_SPEC', () => {
    const s = withDefaults({ initMode: 'new' });
    (s.pgParameters as Record<string, string>)['x'] = '1';
    (s.newConfig as Record<string, unknown>)['locale'] = 'C';
    expect(DEFAULT_SPEC.pgParameters).toEqual({});
    expect(DEFAULT_SPEC.newConfig).toEqual({});
  });

  it('throws for an invalid spec', () => {
    expect(specError(() => withDefaults({ initMode: 'new', bogus: true })).field).toBe('bogus');
  });
});

describe('validateSpecUpdate', () => {
  it('accepts a valid update that keeps initMode', () => {
    expect(validateSpecUpdate({ initMode: 'new' }, { initMode: 'new', failInterval: '10s' })).toEqual({
      initMode: 'new',
      failInterval: '10s',
    });
  });

  it('refuses an initMode change, naming old and new', () => {
    const err = specError(() => validateSpecUpdate({ initMode: 'pitr' }, { initMode: 'new' }));
    expect(err.field).toBe('initMode');
    expect(err.issues[0]).toBe('initMode: cannot be changed after init (was "pitr", got "new")');
  });

  it('refuses an invalid new spec before comparing', () => {
    const err = specError(() => validateSpecUpdate({ initMode: 'new' }, { initMode: 'new', proxyTimeout: '1s' }));
    expect(err.field).toBe('proxyCheckInterval');
  });

  it('refuses master → standby', () => {
    const prev: ClusterSpec = { initMode: 'pitr', pitrConfig: { dataRestoreCommand: 'true' } };
    const next = { ...prev, role: 'standby', standbyConfig: { standbySettings: { primaryConninfo: 'host=a' } } };
    expect(specError(() => validateSpecUpdate(prev, next)).field).toBe('role');
  });

  it('allows standby → master (stolonctl promote)', () => {
    const prev: ClusterSpec = {
      initMode: 'pitr',
      role: 'standby',
      pitrConfig: { dataRestoreCommand: 'true' },
      standbyConfig: { standbySettings: { primaryConninfo: 'host=a' } },
    };
    expect(validateSpecUpdate(prev, { ...prev, role: 'master' }).role).toBe('master');
  });
});

describe('mergePatch', () => {
  // RFC 7386 Appendix A, every example.
  it.each<[unknown, unknown, unknown]>([
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ])('RFC 7386: %j patched with %j is %j', (target, patch, result) => {
    expect(mergePatch(deepFreeze(target), deepFreeze(patch))).toEqual(result);
  });

  it('deletes nested keys with null and leaves siblings alone', () => {
    const spec = { initMode: 'new', pgParameters: { work_mem: '4MB', shared_buffers: '128MB' }, newConfig: { locale: 'C' } };
    expect(mergePatch(deepFreeze(spec), { pgParameters: { work_mem: null } })).toEqual({
      initMode: 'new',
      pgParameters: { shared_buffers: '128MB' },
      newConfig: { locale: 'C' },
    });
  });

  it('replaces arrays whole', () => {
    expect(mergePatch({ pgHBA: ['a', 'b', 'c'] }, { pgHBA: ['z'] })).toEqual({ pgHBA: ['z'] });
  });

  it('does not alias the patch in its result', () => {
    const patch = { pgHBA: ['z'], pgParameters: { a: '1' } };
    const out = mergePatch({}, patch) as { pgHBA: string[]; pgParameters: Record<string, string> };
    out.pgHBA.push('y');
    out.pgParameters['b'] = '2';
    expect(patch).toEqual({ pgHBA: ['z'], pgParameters: { a: '1' } });
  });

  it('gives a spec that validateSpecUpdate then judges', () => {
    const prev: ClusterSpec = { initMode: 'new', failInterval: '10s' };
    const next = mergePatch(prev, { failInterval: null, sleepInterval: '2s', requestTimeout: '1s' });
    expect(validateSpecUpdate(prev, next)).toEqual({ initMode: 'new', sleepInterval: '2s', requestTimeout: '1s' });
    expect(specError(() => validateSpecUpdate(prev, mergePatch(prev, { initMode: 'existing', existingConfig: { keeperUID: 'k1' } }))).field).toBe('initMode');
  });
});

describe('synchronous replication', () => {
  it('synchronousReplication true is accepted, with the min/max rule still checked', () => {
    expect(validateSpec({ initMode: 'new', synchronousReplication: true }).synchronousReplication).toBe(true);
    const sync = { initMode: 'new', synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 2 } as const;
    expect(resolveSpec(validateSpec(sync))).toMatchObject({ synchronousReplication: true, minSynchronousStandbys: 1, maxSynchronousStandbys: 2 });
    expect(() => validateSpec({ ...sync, minSynchronousStandbys: 3 })).toThrow(/maxSynchronousStandbys: 2 must be at least minSynchronousStandbys \(3\)/);
    expect(validateSpec({ initMode: 'new', synchronousReplication: false }).synchronousReplication).toBe(false);
  });
});
