/**
 * A fake PostgresManager for in-process keeper tests: an in-memory PostgreSQL instance that
 * records every call, can be told to fail or hang a method, and fails the test when the keeper
 * drives it out of order (promote on a stopped instance, a clone into a running one, two
 * mutating calls at once…): each such call is recorded in {@link FakePostgres.violations} and
 * rejects with a plain Error.
 */
import { StolonError } from '@stolon-ts/cluster';
import type {
  BaseBackupOptions,
  ConnTarget,
  PgConfig,
  PgObservation,
  PostgresManager,
  RecoveryConfig,
  RewindResult,
  StandbySettings,
  SyncSlotsOptions,
  ToolResult,
  WriteConfigResult,
} from '@stolon-ts/postgres';

type Method = Exclude<keyof PostgresManager, 'pgData'>;

/** What the fake instance holds. */
export interface FakeInstance {
  initialized: boolean;
  running: boolean;
  role: 'master' | 'standby';
  systemId: string;
  timeline: number;
  xLogPos: number;
  /** application_name → sync_state of connected standbys. */
  replication: Record<string, string>;
  slots: string[];
  /** Role name → the password last set with setRolePassword. */
  rolePasswords: Record<string, string>;
  /** The configuration last written. */
  config: { cfg: PgConfig; recovery: RecoveryConfig | null } | undefined;
  pendingRestart: string[];
}

/** Calls that change the instance; two of them must never run at once. */
const MUTATING: ReadonlySet<Method> = new Set<Method>([
  'init',
  'writeConfig',
  'restoreLastGoodConfig',
  'start',
  'restart',
  'stop',
  'reload',
  'promote',
  'baseBackup',
  'rewind',
  'restoreData',
  'waitRecoveryDone',
  'removeData',
  'syncSlots',
  'setRolePassword',
]);

export class FakePostgres implements PostgresManager {
  readonly pgData = '/fake/pgdata';
  readonly inst: FakeInstance = {
    initialized: false,
    running: false,
    role: 'master',
    systemId: '',
    timeline: 1,
    xLogPos: 0,
    replication: {},
    slots: [],
    rolePasswords: {},
    config: undefined,
    pendingRestart: [],
  };
  /** Every call, in order, by method name. */
  readonly calls: Method[] = [];
  /** Out-of-order calls (the test fails on any). */
  readonly violations: string[] = [];
  /** pgParameters names writeConfig rejects with CONFIG_INVALID. */
  readonly rejectParameters = new Set<string>();
  /** Progress reports baseBackup gives before it finishes (bytes done of 16 MiB). */
  baseBackupSteps = [4, 8, 16].map((m) => m * 1048576);
  /** When set, baseBackup waits for it after its first progress report. */
  baseBackupGate: Promise<void> | undefined;
  /** While true, waitStreamingEnd waits (the standby's WAL receiver streams). */
  streaming = false;
  readonly #failures = new Map<Method, { err: Error; times: number }>();
  readonly #hangs = new Map<Method, { entered: () => void; release: Promise<void> }>();
  #mutating: Method | undefined;

  /** The next `times` calls of `method` reject with `err`. */
  fail(method: Method, err: Error, times = 1): void {
    this.#failures.set(method, { err, times });
  }

  /**
   * The next call of `method` blocks until the returned `release` is called.
   * @returns `entered` resolves once the call is blocked; `release` lets it go on
   */
  hang(method: Method): { entered: Promise<void>; release: () => void } {
    let entered!: () => void;
    let release!: () => void;
    const enteredP = new Promise<void>((r) => (entered = r));
    const releaseP = new Promise<void>((r) => (release = r));
    this.#hangs.set(method, { entered, release: releaseP });
    return { entered: enteredP, release };
  }

  /** How often `method` was called. */
  count(method: Method): number {
    return this.calls.filter((c) => c === method).length;
  }

  async #enter(method: Method, precondition?: string): Promise<() => void> {
    this.calls.push(method);
    if (MUTATING.has(method)) {
      if (this.#mutating !== undefined) {
        this.#violate(`${method} called while ${this.#mutating} is still running`);
      }
      this.#mutating = method;
    }
    const leave = () => {
      if (this.#mutating === method) {
        this.#mutating = undefined;
      }
    };
    try {
      if (precondition !== undefined) {
        this.#violate(`${method}: ${precondition}`);
      }
      const hang = this.#hangs.get(method);
      if (hang !== undefined) {
        this.#hangs.delete(method);
        hang.entered();
        await hang.release;
      }
      const f = this.#failures.get(method);
      if (f !== undefined && f.times > 0) {
        f.times -= 1;
        throw f.err;
      }
      await Promise.resolve();
    } catch (err) {
      leave();
      throw err;
    }
    return leave;
  }

  #violate(what: string): never {
    this.violations.push(what);
    throw new Error(`fake postgres driven out of order: ${what}`);
  }

  async #run<T>(method: Method, precondition: string | undefined, body: () => T | Promise<T>): Promise<T> {
    const leave = await this.#enter(method, precondition);
    try {
      return await body();
    } finally {
      leave();
    }
  }

  binaryVersion(): Promise<{ Maj: number; Min: number }> {
    return Promise.resolve({ Maj: 15, Min: 10 });
  }

  init(): Promise<void> {
    return this.#run('init', this.inst.initialized ? 'PGDATA is not empty' : undefined, () => {
      Object.assign(this.inst, { initialized: true, role: 'master', systemId: '7100000000000000001', timeline: 1, xLogPos: 0x1000000 });
    });
  }

  writeConfig(cfg: PgConfig, recovery: RecoveryConfig | null): Promise<WriteConfigResult> {
    return this.#run('writeConfig', this.inst.initialized ? undefined : 'PGDATA is not initialised', () => {
      const bad = Object.keys(cfg.parameters).find((p) => this.rejectParameters.has(p));
      if (bad !== undefined) {
        throw new StolonError('CONFIG_INVALID', `pgParameters.${bad}: unrecognized configuration parameter "${bad}"; the previous configuration is kept`, {
          field: `pgParameters.${bad}`,
        });
      }
      const changed = JSON.stringify(this.inst.config) !== JSON.stringify({ cfg, recovery });
      this.inst.config = { cfg, recovery };
      return { changed, pendingRestart: [] };
    });
  }

  restoreLastGoodConfig(): Promise<boolean> {
    return this.#run('restoreLastGoodConfig', undefined, () => false);
  }

  start(): Promise<void> {
    const pre = !this.inst.initialized ? 'not initialised' : this.inst.running ? 'already running' : this.inst.config === undefined ? 'no configuration written' : undefined;
    return this.#run('start', pre, () => {
      this.inst.running = true;
      this.inst.role = (this.inst.config?.recovery ?? null) === null ? 'master' : 'standby';
    });
  }

  restart(): Promise<void> {
    return this.#run('restart', this.inst.running ? undefined : 'not running', () => {
      this.inst.pendingRestart = [];
    });
  }

  stop(): Promise<void> {
    return this.#run('stop', undefined, () => {
      this.inst.running = false;
      this.inst.replication = {};
    });
  }

  reload(): Promise<void> {
    return this.#run('reload', this.inst.running ? undefined : 'not running', () => undefined);
  }

  promote(): Promise<void> {
    const pre = !this.inst.running ? 'not running' : this.inst.role !== 'standby' ? 'not a standby' : undefined;
    return this.#run('promote', pre, () => {
      this.inst.role = 'master';
      this.inst.timeline += 1;
    });
  }

  checkpoint(): Promise<void> {
    // Fired in the background: a real one fails harmlessly on a stopped instance.
    return this.#run('checkpoint', undefined, () => undefined);
  }

  /** Streaming "ends" at once unless {@link streaming} is set. */
  async waitStreamingEnd(_timeoutMs: number, wanted: () => boolean): Promise<boolean> {
    this.calls.push('waitStreamingEnd');
    while (this.streaming && wanted()) {
      await new Promise((r) => setTimeout(r, 5));
    }
    return !this.streaming;
  }

  async baseBackup(standby: StandbySettings, opts?: BaseBackupOptions): Promise<void> {
    const pre = this.inst.running ? 'clone into a running instance' : standby.slotName === '' ? 'no slot' : undefined;
    await this.#run('baseBackup', pre, async () => {
      const total = this.baseBackupSteps.at(-1) ?? 0;
      for (const [i, done] of this.baseBackupSteps.entries()) {
        opts?.onProgress?.({ doneBytes: done, totalBytes: total });
        await (i === 0 && this.baseBackupGate !== undefined ? this.baseBackupGate : new Promise((r) => setTimeout(r, 20)));
      }
      Object.assign(this.inst, { initialized: true, role: 'standby', systemId: '7000000000000000001', config: undefined });
    });
  }

  rewind(_source: ConnTarget): Promise<RewindResult> {
    return this.#run('rewind', this.inst.running ? 'rewind of a running instance' : undefined, () => ({
      divergedAt: this.inst.xLogPos,
      divergedTimeline: this.inst.timeline,
      localEnd: this.inst.xLogPos,
      rewound: true,
    }));
  }

  restoreData(): Promise<void> {
    return this.#run('restoreData', this.inst.running ? 'restore into a running instance' : undefined, () => {
      Object.assign(this.inst, { initialized: true, role: 'master', systemId: '7200000000000000001', config: undefined });
    });
  }

  waitRecoveryDone(): Promise<void> {
    return this.#run('waitRecoveryDone', this.inst.running ? undefined : 'not running', () => {
      this.inst.role = 'master';
    });
  }

  removeData(): Promise<void> {
    return this.#run('removeData', this.inst.running ? 'remove the data of a running instance' : undefined, () => {
      Object.assign(this.inst, { initialized: false, systemId: '', config: undefined, slots: [] });
    });
  }

  async observe(): Promise<PgObservation> {
    this.calls.push('observe');
    await Promise.resolve();
    // Not a mutating call (no #enter), but it can hang like any other (a hung disk).
    const hang = this.#hangs.get('observe');
    if (hang !== undefined) {
      this.#hangs.delete('observe');
      hang.entered();
      await hang.release;
    }
    const i = this.inst;
    return {
      initialized: i.initialized,
      running: i.running,
      role: i.running ? i.role : undefined,
      systemId: i.systemId,
      timelineId: i.initialized ? i.timeline : 0,
      xLogPos: i.initialized ? i.xLogPos : 0,
      replication: i.running ? Object.entries(i.replication).map(([applicationName, syncState]) => ({ applicationName, syncState })) : [],
      slots: [...i.slots],
      olderWalFile: '',
      pendingRestart: i.running ? [...i.pendingRestart] : [],
      timelinesHistory: [],
      ...(i.running ? {} : { error: 'postgres is not running' }),
    };
  }

  systemIdentifier(): Promise<string | undefined> {
    return Promise.resolve(this.inst.initialized ? this.inst.systemId : undefined);
  }

  /** Runs at the start of every syncSlots, before it lists the slots (a test's race). */
  beforeSyncSlots: (() => Promise<void>) | undefined;
  /** Every slot syncSlots dropped, in order. */
  readonly droppedSlots: string[] = [];

  syncSlots(wanted: readonly string[], opts: SyncSlotsOptions = {}): Promise<void> {
    return this.#run('syncSlots', this.inst.running ? undefined : 'not running', async () => {
      await this.beforeSyncSlots?.();
      const unwanted = this.inst.slots.filter((s) => !wanted.includes(s));
      const drop = opts.mayDrop === undefined || unwanted.length === 0 ? unwanted : await opts.mayDrop(unwanted).catch(() => []);
      this.droppedSlots.push(...drop);
      this.inst.slots = [...wanted, ...unwanted.filter((s) => !drop.includes(s))];
    });
  }

  /** The passwords last handed over with setPasswords. */
  passwords: { su: string; repl: string } | undefined;

  setPasswords(passwords: { readonly su: string; readonly repl: string }): void {
    this.passwords = { ...passwords };
  }

  setRolePassword(role: string, password: string): Promise<void> {
    const refusal = !this.inst.running ? 'not running' : this.inst.role !== 'master' ? 'read-only standby' : undefined;
    return this.#run('setRolePassword', refusal, () => {
      this.inst.rolePasswords[role] = password;
    });
  }

  isRunning(): Promise<boolean> {
    return Promise.resolve(this.inst.running);
  }

  /** Records the call; the tool "succeeds" with no output. */
  runTool(): Promise<ToolResult> {
    this.calls.push('runTool');
    return Promise.resolve({ code: 0, stdout: '', stderr: '' });
  }
}
