/**
 * The cluster spec: `DEFAULT_SPEC`, `validateSpec`, `resolveSpec` and `validateSpecUpdate`,
 * plus the JSON merge patch `stolonctl update --patch` applies. Pure: no I/O.
 * See docs/design.md#the-cluster-spec.
 *
 * Field names, meanings and duration strings are Stolon's (`ClusterSpec` in Stolon's
 * internal/cluster/cluster.go). Our timing defaults are shorter than Stolon's, for a faster
 * failover; every difference is listed in docs/cluster-spec.md.
 */
import { z } from 'zod';
import { formatDurationMs, parseDurationMs } from './duration.js';
import { isCidr } from './cidr.js';
import { SpecValidationError } from './errors.js';
import { restoreTargetOf } from './restore-target.js';
import type { ClusterSpec, PITRConfig, ResolvedSpec } from './types.js';

/**
 * Our defaults, in the stored (JSON) form. Stolon's are in comments where they differ.
 * Every timing here satisfies the rules in `timingRules`.
 */
export const DEFAULT_SPEC = {
  sleepInterval: '1s', // Stolon: 5s. The loops are watch-driven; this is the safety-net period.
  requestTimeout: '2s', // Stolon: 10s.
  convergenceTimeout: '30s',
  initTimeout: '5m',
  syncTimeout: '0s',
  dbWaitReadyTimeout: '60s',
  failInterval: '6s', // Stolon: 20s.
  deadKeeperRemovalInterval: '48h',
  proxyCheckInterval: '1s', // Stolon: 5s.
  proxyTimeout: '4s', // Stolon: 15s.
  switchoverTimeout: '60s', // Ours: Stolon has no switchover.
  switchoverHoldTimeout: '10s', // Ours: see docs/cluster-spec.md for the choice.
  failsafeMode: true, // Ours: Stolon has none (Patroni's failsafe_mode, off by default there).
  maxStandbys: 20,
  maxStandbysPerSender: 3,
  maxStandbyLag: 1024 * 1024, // Stolon: 1024*1204 (a typo for 1 MiB).
  synchronousReplication: false,
  minSynchronousStandbys: 1,
  maxSynchronousStandbys: 1,
  additionalWalSenders: 5,
  additionalMasterReplicationSlots: null,
  usePgrewind: false,
  mergePgParameters: true,
  role: 'master',
  newConfig: {},
  // Stolon: 'all' (superuser and replication from anywhere). Ours: only from the keepers
  // (and the superuser from suAllowedCIDRs); docs/security.md.
  defaultSUReplAccessMode: 'keepers',
  suAllowedCIDRs: [] as string[], // Ours.
  pgParameters: {},
  pgHBA: null,
  automaticPgRestart: false,
  paused: false,
} as const satisfies Omit<Required<ClusterSpec>, 'initMode' | 'pitrConfig' | 'existingConfig' | 'standbyConfig' | 'backup'>;

const duration = z.string().refine((s) => parseDurationMs(s) !== undefined, {
  message: 'must be a duration such as "500ms", "5s", "1m30s" (a Go duration string, not negative)',
});
const u16 = z.number().int().min(0).max(65535);
const slotName = z
  .string()
  .regex(/^[a-z0-9_]+$/, 'must match ^[a-z0-9_]+$')
  .refine((s) => !s.startsWith('stolon_'), 'must not start with "stolon_" (the keeper adds that prefix)');

const archiveRecoverySettings = z.strictObject({ restoreCommand: z.string().optional() });
const noNewline = z.string().refine((v) => !/[\r\n]/.test(v), 'must not contain a newline');

const stanzaName = z.string().regex(/^[A-Za-z0-9_-]+$/, 'must match ^[A-Za-z0-9_-]+$ (a pgBackRest stanza name)');
const repoPath = noNewline.refine((v) => v.startsWith('/'), 'must be an absolute path (starting with "/")');
const backupSchema = z.strictObject({
  repository: z.strictObject({
    path: repoPath,
    s3: z
      .strictObject({
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 of a-z, 0-9, "." and "-")'),
        endpoint: z.string().regex(/^[A-Za-z0-9.-]+(:[0-9]{1,5})?$/, 'must be a host name, optionally with ":port" (no scheme, no path)'),
        region: z.string().regex(/^[a-z0-9-]+$/, 'must be a region name such as "us-east-1"'),
        uriStyle: z.enum(['host', 'path']).optional(),
        verifyTls: z.boolean().optional(),
      })
      .optional(),
  }),
  stanza: stanzaName.optional(),
  retentionFull: z.number().int().min(1).max(9999999).optional(),
  retentionDiff: z.number().int().min(1).max(9999999).optional(),
  compressType: z.enum(['none', 'gz', 'lz4', 'zst', 'bz2']).optional(),
  compressLevel: z.number().int().min(0).max(22).optional(),
  archiveAsync: z.boolean().optional(),
  processMax: z.number().int().min(1).max(999).optional(),
  archiveWarnBytes: z.number().int().min(0).optional(),
});

/** Strict schema of the stored spec: an unknown field is an error naming it. */
const specSchema = z.strictObject({
  sleepInterval: duration.optional(),
  requestTimeout: duration.optional(),
  convergenceTimeout: duration.optional(),
  initTimeout: duration.optional(),
  syncTimeout: duration.optional(),
  dbWaitReadyTimeout: duration.optional(),
  failInterval: duration.optional(),
  deadKeeperRemovalInterval: duration.optional(),
  proxyCheckInterval: duration.optional(),
  proxyTimeout: duration.optional(),
  switchoverTimeout: duration.optional(),
  switchoverHoldTimeout: duration.optional(),
  failsafeMode: z.boolean().optional(),
  maxStandbys: u16.min(1).optional(),
  maxStandbysPerSender: u16.min(1).optional(),
  maxStandbyLag: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  synchronousReplication: z.boolean().optional(),
  minSynchronousStandbys: u16.optional(),
  maxSynchronousStandbys: u16.min(1).optional(),
  additionalWalSenders: u16.optional(),
  additionalMasterReplicationSlots: z.array(slotName).nullable().optional(),
  usePgrewind: z.boolean().optional(),
  initMode: z.enum(['new', 'existing', 'pitr']).optional(),
  mergePgParameters: z.boolean().optional(),
  role: z.enum(['master', 'standby']).optional(),
  newConfig: z
    .strictObject({
      locale: z.string().optional(),
      encoding: z.string().optional(),
      dataChecksums: z.boolean().optional(),
    })
    .optional(),
  pitrConfig: z
    .strictObject({
      dataRestoreCommand: z.string().optional(),
      fromBackup: z.strictObject({ stanza: stanzaName.optional(), set: z.string().regex(/^[0-9A-Za-z_-]+$/, 'must be a backup label such as "20261206-101500F" (from stolonctl backups)').optional() }).optional(),
      archiveRecoverySettings: archiveRecoverySettings.optional(),
      recoveryTargetSettings: z
        .strictObject({
          recoveryTarget: noNewline.optional(),
          recoveryTargetLsn: noNewline.optional(),
          recoveryTargetName: noNewline.optional(),
          recoveryTargetTime: noNewline.optional(),
          recoveryTargetXid: noNewline.optional(),
          recoveryTargetTimeline: noNewline.optional(),
        })
        .optional(),
    })
    .optional(),
  existingConfig: z.strictObject({ keeperUID: z.string().optional() }).optional(),
  standbyConfig: z
    .strictObject({
      standbySettings: z
        .strictObject({
          primaryConninfo: noNewline.optional(),
          primarySlotName: z.string().regex(/^[a-z0-9_]+$/, 'must match ^[a-z0-9_]+$').optional(),
          recoveryMinApplyDelay: noNewline.optional(),
        })
        .optional(),
      archiveRecoverySettings: archiveRecoverySettings.optional(),
    })
    .optional(),
  defaultSUReplAccessMode: z.enum(['all', 'strict', 'keepers']).optional(),
  suAllowedCIDRs: z
    .array(z.string().refine(isCidr, 'must be a CIDR address range such as "10.0.0.0/8" or "fd00::/64" (an address, a slash and a mask length)'))
    .optional(),
  pgParameters: z.record(z.string(), z.string()).nullable().optional(),
  pgHBA: z
    .array(z.string().refine((s) => !/[\r\n]/.test(s), 'must not contain a newline'))
    .nullable()
    .optional(),
  automaticPgRestart: z.boolean().optional(),
  paused: z.boolean().optional(),
  backup: backupSchema.optional(),
});

/**
 * Rules of `pitrConfig.fromBackup` (docs/backup.md, "Restoring"): the WAL comes from the backup
 * repository, so no `archiveRecoverySettings`; the recovery target must be one the keeper can
 * compare with the backups ({@link restoreTargetOf}).
 */
function fromBackupRules(pitr: PITRConfig): string[] {
  const problems: string[] = [];
  if (pitr.archiveRecoverySettings !== undefined) {
    problems.push(
      'pitrConfig.archiveRecoverySettings: not used with pitrConfig.fromBackup (WAL is read from the backup repository with pgbackrest archive-get); remove it',
    );
  }
  const target = restoreTargetOf(pitr.recoveryTargetSettings);
  if ('problem' in target) {
    problems.push(target.problem);
  }
  return problems;
}

function pathOf(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(spec)' : path.map((p) => String(p)).join('.');
}

/**
 * Timing rules checked when a spec is loaded (docs/design.md#timing-rules). Each problem is a
 * sentence naming the fields, values and the rule, and how to fix it. Violations are rejected,
 * never silently adjusted.
 */
function timingRules(r: ResolvedSpec): string[] {
  const problems: string[] = [];
  const f = formatDurationMs;
  if (r.proxyCheckIntervalMs >= r.proxyTimeoutMs) {
    problems.push(
      `proxyCheckInterval: ${f(r.proxyCheckIntervalMs)} must be less than proxyTimeout (${f(r.proxyTimeoutMs)}); ` +
        'a proxy would time out between two checks. Lower proxyCheckInterval or raise proxyTimeout.',
    );
  }
  if (r.sleepIntervalMs + 2 * r.requestTimeoutMs >= r.failIntervalMs) {
    problems.push(
      `failInterval: ${f(r.failIntervalMs)} must be greater than sleepInterval + 2 × requestTimeout ` +
        `(${f(r.sleepIntervalMs)} + 2 × ${f(r.requestTimeoutMs)}); a slow but healthy keeper would be failed. ` +
        'Raise failInterval or lower sleepInterval/requestTimeout.',
    );
  }
  if (r.sleepIntervalMs <= 0) {
    problems.push('sleepInterval: must be greater than 0s.');
  }
  if (r.requestTimeoutMs <= 0) {
    problems.push('requestTimeout: must be greater than 0s.');
  }
  if (r.switchoverTimeoutMs <= 0) {
    problems.push('switchoverTimeout: must be greater than 0s (a switchover that cannot finish must end); e.g. "60s".');
  }
  if (r.maxSynchronousStandbys < r.minSynchronousStandbys) {
    problems.push(
      `maxSynchronousStandbys: ${r.maxSynchronousStandbys} must be at least minSynchronousStandbys (${r.minSynchronousStandbys}).`,
    );
  }
  return problems;
}

/**
 * Validates a stored-form spec (strictly: unknown fields, wrong types, bad durations, the
 * cross-field and timing rules) and returns it typed.
 * @param input anything parsed from JSON
 * @throws SpecValidationError listing every problem as `field: message`; `field` is the first.
 * @see Stolon's `ClusterSpec.Validate` (internal/cluster/cluster.go), whose cross-field rules
 *   are kept
 */
export function validateSpec(input: unknown): ClusterSpec {
  const parsed = specSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => {
      if (i.code === 'unrecognized_keys') {
        const keys = i.keys;
        const base = i.path.length > 0 ? `${pathOf(i.path)}.` : '';
        return `${base}${keys.join(', ')}: unknown field${keys.length > 1 ? 's' : ''}; see docs/cluster-spec.md for the fields a spec may have`;
      }
      return `${pathOf(i.path)}: ${i.message}`;
    });
    const first = parsed.error.issues[0];
    const field =
      first?.code === 'unrecognized_keys'
        ? pathOf([...first.path, first.keys[0] ?? ''])
        : first
          ? pathOf(first.path)
          : '';
    throw new SpecValidationError(issues, { field });
  }
  const spec = parsed.data as ClusterSpec;
  const problems: string[] = [];
  // Cross-field rules of Stolon's ClusterSpec.Validate.
  const role = spec.role ?? 'master';
  if (spec.initMode === undefined) {
    problems.push('initMode: is required; one of "new", "existing", "pitr"');
  } else if (spec.initMode === 'new' && role === 'standby') {
    problems.push('initMode: "new" cannot be used with role "standby"; a standby cluster starts with initMode "pitr" (a copy of the primary cluster)');
  } else if (spec.initMode === 'existing' && !spec.existingConfig?.keeperUID) {
    problems.push('existingConfig.keeperUID: is required with initMode "existing" (the keeper whose data directory becomes the primary)');
  } else if (spec.initMode === 'pitr' && !spec.pitrConfig?.dataRestoreCommand && spec.pitrConfig?.fromBackup === undefined) {
    problems.push(
      'pitrConfig.dataRestoreCommand: is required with initMode "pitr" (a shell command filling %d, e.g. a pg_basebackup or a copy), unless pitrConfig.fromBackup restores from the backup repository',
    );
  } else if (spec.initMode === 'pitr' && spec.pitrConfig?.dataRestoreCommand && spec.pitrConfig.fromBackup !== undefined) {
    problems.push('pitrConfig.fromBackup: cannot be used with pitrConfig.dataRestoreCommand; keep one of the two');
  }
  if (spec.pitrConfig?.fromBackup !== undefined && spec.backup === undefined) {
    problems.push('pitrConfig.fromBackup: needs a backup section (backup.repository is where the backup is read from)');
  }
  if (spec.pitrConfig?.fromBackup !== undefined) {
    problems.push(...fromBackupRules(spec.pitrConfig));
  }
  if (role === 'standby') {
    if (spec.standbyConfig?.standbySettings?.primaryConninfo === undefined) {
      problems.push('standbyConfig.standbySettings.primaryConninfo: is required with role "standby" (how to reach the primary cluster)');
    }
    if (spec.pitrConfig?.recoveryTargetSettings !== undefined) {
      problems.push('pitrConfig.recoveryTargetSettings: cannot be used with role "standby" (a standby cluster keeps following)');
    }
  }
  if (problems.length === 0) {
    problems.push(...timingRules(resolveUnchecked(spec)));
  }
  if (problems.length > 0) {
    throw new SpecValidationError(problems, { field: problems[0]!.split(':')[0]! });
  }
  return spec;
}

function ms(v: string): number {
  // Only called on validated strings.
  return parseDurationMs(v) ?? 0;
}

function resolveUnchecked(spec: ClusterSpec): ResolvedSpec {
  const d = DEFAULT_SPEC;
  return {
    sleepIntervalMs: ms(spec.sleepInterval ?? d.sleepInterval),
    requestTimeoutMs: ms(spec.requestTimeout ?? d.requestTimeout),
    convergenceTimeoutMs: ms(spec.convergenceTimeout ?? d.convergenceTimeout),
    initTimeoutMs: ms(spec.initTimeout ?? d.initTimeout),
    syncTimeoutMs: ms(spec.syncTimeout ?? d.syncTimeout),
    dbWaitReadyTimeoutMs: ms(spec.dbWaitReadyTimeout ?? d.dbWaitReadyTimeout),
    failIntervalMs: ms(spec.failInterval ?? d.failInterval),
    deadKeeperRemovalIntervalMs: ms(spec.deadKeeperRemovalInterval ?? d.deadKeeperRemovalInterval),
    proxyCheckIntervalMs: ms(spec.proxyCheckInterval ?? d.proxyCheckInterval),
    proxyTimeoutMs: ms(spec.proxyTimeout ?? d.proxyTimeout),
    switchoverTimeoutMs: ms(spec.switchoverTimeout ?? d.switchoverTimeout),
    switchoverHoldTimeoutMs: ms(spec.switchoverHoldTimeout ?? d.switchoverHoldTimeout),
    failsafeMode: spec.failsafeMode ?? d.failsafeMode,
    maxStandbys: spec.maxStandbys ?? d.maxStandbys,
    maxStandbysPerSender: spec.maxStandbysPerSender ?? d.maxStandbysPerSender,
    maxStandbyLag: spec.maxStandbyLag ?? d.maxStandbyLag,
    synchronousReplication: spec.synchronousReplication ?? d.synchronousReplication,
    minSynchronousStandbys: spec.minSynchronousStandbys ?? d.minSynchronousStandbys,
    maxSynchronousStandbys: spec.maxSynchronousStandbys ?? d.maxSynchronousStandbys,
    additionalWalSenders: spec.additionalWalSenders ?? d.additionalWalSenders,
    additionalMasterReplicationSlots: spec.additionalMasterReplicationSlots ?? null,
    usePgrewind: spec.usePgrewind ?? d.usePgrewind,
    initMode: spec.initMode ?? 'new',
    mergePgParameters: spec.mergePgParameters ?? d.mergePgParameters,
    role: spec.role ?? d.role,
    newConfig: { ...(spec.newConfig ?? {}) },
    pitrConfig: spec.pitrConfig === undefined ? null : structuredClone(spec.pitrConfig),
    existingConfig: spec.existingConfig === undefined ? null : { ...spec.existingConfig },
    standbyConfig: spec.standbyConfig === undefined ? null : structuredClone(spec.standbyConfig),
    defaultSUReplAccessMode: spec.defaultSUReplAccessMode ?? d.defaultSUReplAccessMode,
    suAllowedCIDRs: [...(spec.suAllowedCIDRs ?? d.suAllowedCIDRs)],
    pgParameters: { ...(spec.pgParameters ?? {}) },
    pgHBA: spec.pgHBA === undefined ? null : spec.pgHBA === null ? null : [...spec.pgHBA],
    automaticPgRestart: spec.automaticPgRestart ?? d.automaticPgRestart,
    paused: spec.paused ?? d.paused,
    backup: spec.backup === undefined ? null : structuredClone(spec.backup),
  };
}

/**
 * Validates `spec` and returns it with every default applied, durations in ms.
 * @throws SpecValidationError as `validateSpec`.
 */
export function resolveSpec(spec: unknown): ResolvedSpec {
  return resolveUnchecked(validateSpec(spec));
}

/**
 * The spec with every default filled in, in stored form (`stolonctl spec --defaults`).
 * @throws SpecValidationError as `validateSpec`.
 */
export function withDefaults(spec: unknown): ClusterSpec {
  const s = validateSpec(spec);
  return { ...structuredClone(DEFAULT_SPEC), ...s } as ClusterSpec;
}

/**
 * Checks that `next` may replace `prev` (Stolon `Cluster.UpdateSpec`): both valid, `initMode`
 * unchanged, role not changed from master to standby.
 * @returns the validated `next`.
 * @throws SpecValidationError naming the field.
 */
export function validateSpecUpdate(prev: ClusterSpec, next: unknown): ClusterSpec {
  const n = validateSpec(next);
  if (prev.initMode !== n.initMode) {
    throw new SpecValidationError(
      [`initMode: cannot be changed after init (was "${prev.initMode}", got "${n.initMode}")`],
      { field: 'initMode' },
    );
  }
  if ((prev.role ?? 'master') === 'master' && n.role === 'standby') {
    throw new SpecValidationError(['role: cannot change from "master" to "standby"'], {
      field: 'role',
    });
  }
  return n;
}

/**
 * RFC 7386 JSON merge patch: objects merge recursively, `null` deletes a key, anything else
 * (arrays included) replaces. Pure; returns a new value.
 * @see https://www.rfc-editor.org/rfc/rfc7386
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    return structuredClone(patch);
  }
  const base: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) {
      delete base[k];
    } else {
      base[k] = mergePatch(base[k], v);
    }
  }
  return base;
}
