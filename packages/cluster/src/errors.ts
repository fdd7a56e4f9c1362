/**
 * The error taxonomy shared by every package: a base class with a stable `code`, structured
 * fields, and a `transient` flag that loops use to decide between "retry at the next tick" and
 * "fail". Never match on message text; match on `code`. See docs/design.md#errors.
 */

/** Stable error codes. Add here, never invent one inline. */
export type StolonErrorCode =
  | 'STORE_CONFLICT'
  | 'STORE_UNAVAILABLE'
  | 'STORE_DATA_INVALID'
  | 'SPEC_INVALID'
  | 'CLUSTERDATA_INVALID'
  | 'CONFIG_INVALID'
  | 'PG_NOT_RUNNING'
  | 'PG_COMMAND_FAILED'
  | 'DATA_DIR_INVALID'
  | 'NOT_LEADER'
  | 'ABORTED'
  | 'INTERNAL';

export interface StolonErrorOptions {
  readonly cause?: unknown;
  /** True when the same call may succeed later (store down, postgres starting). */
  readonly transient?: boolean;
  /** JSON path or flag name of the offending field, for validation errors. */
  readonly field?: string;
  readonly keeperUid?: string;
  /** Store revision involved, for conflicts. */
  readonly revision?: string;
}

/** Base class of every error this project throws on purpose. */
export class StolonError extends Error {
  readonly code: StolonErrorCode;
  readonly transient: boolean;
  readonly field: string | undefined;
  readonly keeperUid: string | undefined;
  readonly revision: string | undefined;

  constructor(code: StolonErrorCode, message: string, opts: StolonErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.transient = opts.transient ?? false;
    this.field = opts.field;
    this.keeperUid = opts.keeperUid;
    this.revision = opts.revision;
  }
}

/** A compare-and-set write lost: the stored revision moved since it was read. Transient. */
export class StoreConflictError extends StolonError {
  constructor(message: string, opts: StolonErrorOptions = {}) {
    super('STORE_CONFLICT', message, { transient: true, ...opts });
  }
}

/**
 * A write that requires the sentinel leadership was refused: the election given is not (any
 * more) the leader, as the store decided atomically with the write where it can (the store
 * contract, `Store.putClusterData`). Not transient: this sentinel must observe, not retry.
 */
export class NotLeaderError extends StolonError {
  constructor(message: string, opts: StolonErrorOptions = {}) {
    super('NOT_LEADER', message, opts);
  }
}

/** The store could not be reached or did not answer within the request timeout. Transient. */
export class StoreUnavailableError extends StolonError {
  constructor(message: string, opts: StolonErrorOptions = {}) {
    super('STORE_UNAVAILABLE', message, { transient: true, ...opts });
  }
}

/** A cluster spec failed validation; `field` holds the JSON path (e.g. `proxyTimeout`). */
export class SpecValidationError extends StolonError {
  /** Every problem found, each `path: message`; `message` joins them. */
  readonly issues: readonly string[];
  constructor(issues: readonly string[], opts: StolonErrorOptions = {}) {
    super('SPEC_INVALID', `invalid cluster spec: ${issues.join('; ')}`, opts);
    this.issues = issues;
  }
}

/** Cluster data read from the store is not usable (format version, JSON, validation). */
export class ClusterDataInvalidError extends StolonError {
  constructor(message: string, opts: StolonErrorOptions = {}) {
    super('CLUSTERDATA_INVALID', message, opts);
  }
}

/** Bad program configuration (flags, environment, files). `field` names the flag. */
export class ConfigError extends StolonError {
  constructor(message: string, opts: StolonErrorOptions = {}) {
    super('CONFIG_INVALID', message, opts);
  }
}

/** True when `err` is a StolonError marked transient. */
export function isTransient(err: unknown): boolean {
  return err instanceof StolonError && err.transient;
}

/** The message of any thrown value, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
