/**
 * The keeper's runtime: everything a keeper process remembers between passes (its persisted DB
 * state, the last spec, the activity it publishes, the configuration it last applied…) and the
 * dependencies every step uses, in one object that the pass, the actions and the watchers share.
 * Owned by one keeper process; nothing here survives a restart except through `dbstate`.
 */
import { DEFAULT_BACKUP, DEFAULT_SPEC, STOLON_TS_VERSION, backupStanza, parseDurationMs, type ArchiveState, type ClusterData, type DB, type KeeperInfo, type ResolvedSpec } from '@stolon-ts/cluster';
import { newBootUuid, newUid, type Logger } from '@stolon-ts/common';
import type { PgConfig, PgObservation, PostgresManager, RecoveryConfig } from '@stolon-ts/postgres';
import type { ClusterDataRecord, Store } from '@stolon-ts/store';
import { describeActivity, type Activity } from './activity.js';
import { archiveStateFor } from './archiving.js';
import { writeDbState } from './dbstate.js';
import { newFailsafeState, type FailsafeState } from './failsafe.js';
import { reportedHealthy } from './health.js';
import { archivingFor, pgConfigFor, postgresStateFor, refusedFor } from './pgconfig.js';
import { describeRefusedSpecCommands, type SpecCommand } from './spec-commands.js';
import type { BackupState } from './backup-run.js';
import { backupServerInfo, type BackupServerState } from './backup-server.js';
import type { StanzaState } from './stanza.js';
import type { TaskRunner } from './tasks.js';
import type { KeeperConfig, KeeperDeps, KeeperState, PersistedState } from './types.js';

const DEFAULT_SLEEP_MS = parseDurationMs(DEFAULT_SPEC.sleepInterval) ?? 1000;
const DEFAULT_FAIL_MS = parseDurationMs(DEFAULT_SPEC.failInterval) ?? 6000;
const DEFAULT_WAIT_READY_MS = parseDurationMs(DEFAULT_SPEC.dbWaitReadyTimeout) ?? 60_000;

/** A keeper's mutable state and its dependencies. */
export class KeeperRuntime {
  /** The configuration; replaced (never mutated) when a password file changes (passwords.ts). */
  config: KeeperConfig;
  readonly deps: KeeperDeps;
  readonly store: Store;
  readonly pg: PostgresManager;
  readonly log: Logger;
  /** `postgres -V` of the binaries this keeper runs. */
  readonly binaryVersion: { Maj: number; Min: number };
  /** PGDATA: `<dataDir>/postgres`. */
  readonly pgData: string;

  state: KeeperState = 'starting';
  /** What `<dataDir>/dbstate` holds (written through {@link setLocal} only). */
  local: PersistedState;
  /** The spec of the last clusterdata read; undefined before the first. */
  spec: ResolvedSpec | undefined;
  /** The last clusterdata read; failsafe mode answers and asks from it while the store is unreachable. */
  lastCd: ClusterData | undefined;
  /** Failsafe mode's rounds, confirmations and promise (failsafe.ts). */
  readonly failsafe: FailsafeState = newFailsafeState();
  /** What the keeper is busy with or stuck on, published in its info. */
  activity: Activity | undefined;
  /** {@link configKey} of the configuration last written (or rejected); '' forces a rewrite. */
  appliedConfigKey = '';
  /**
   * The recovery settings of the configuration this process last wrote (null: a primary's, none);
   * undefined before its first write. A synchronous standby's promotion keeps them while it
   * writes the primary's synchronous_standby_names first (actions.ts, `configureBeforePromotion`).
   */
  appliedRecovery: RecoveryConfig | null | undefined;
  /**
   * True while this primary (synchronous replication on, started by this keeper after it was
   * found stopped) keeps normal users out with internal-only pg_hba; see `internalOnlyHba`.
   */
  internalOnly = false;
  /**
   * Stolon's needsReload: a changed configuration was written for a running PostgreSQL and its
   * reload has not succeeded yet (a failed reload is retried at the next pass).
   */
  needsReload = false;
  /** pg_basebackup's progress while a resync clones this DB, in bytes; undefined otherwise. */
  resyncProgress: { readonly doneBytes: number; readonly totalBytes: number } | undefined;
  /** True while the last clusterdata read makes this keeper's DB the (writable) primary. */
  isPrimary = false;
  /**
   * When (monotonic ms, `performance.now()`) the last info the store accepted was sent: the
   * sentinel saw this progress marker no earlier, and fails this keeper failInterval after it
   * stops changing (docs/architecture.md, "Alive means making progress").
   */
  lastPublishSentAt: number | undefined;
  /** The last failed start's error while PostgreSQL should run; published so the sentinel acts at once. */
  startError: string | undefined;
  /** The command-bearing spec settings last refused, joined (to log a change once). */
  lastRefusedKey = '';
  /** A backlog warning was logged and the backlog has not gone back below `backup.archiveWarnBytes` since. */
  archiveBacklogWarned = false;
  /** `pgbackrest stanza-create` on this primary (stanza.ts); undefined when not primary or no backup section applied. */
  stanza: StanzaState | undefined;
  /**
   * `stolonctl backup` requests run here and the repository's catalog (backup-run.ts): `'loading'`
   * while `<data-dir>/backup-requests` is read at the first pass, undefined before.
   */
  backups: BackupState | 'loading' | undefined;
  /** The pgBackRest TLS server this process started last (backup-server.ts); undefined before. */
  backupServer: BackupServerState | undefined;
  /**
   * Per role, the password this process last set on its primary, or found when it started
   * (passwords.ts): a file that differs from it was changed while this process ran.
   */
  readonly passwordsSet: { su: string; repl: string };
  /** The last password file read error, to log a change once; '' when the files were read. */
  passwordReadError = '';
  /**
   * RFC 3339 time this process, asked to stop while primary, asked for a switchover first
   * (drain.ts); published as the info's `switchoverRequestedAt`. Undefined otherwise.
   */
  switchoverRequestedAt: string | undefined = undefined;
  /**
   * The last `stolonctl reload` generation (`cluster.status.reloadRequest`) this process acted on,
   * published as the info's `reloadGeneration`; 0 before any (a restarted keeper reloads once).
   */
  reloadedGeneration = 0;
  /**
   * clusterdata as the last read returned it (`readClusterData` in pass.ts) and when (monotonic
   * ms, `performance.now()`) that read was sent; undefined before the first read or after a failed one.
   */
  cdRead: { readonly rec: ClusterDataRecord | null; readonly sentAt: number } | undefined;
  /**
   * True when {@link cdRead} may be out of date: a clusterdata watch event or a (re)established
   * watch since that read was sent, or a pass something other than the timer asked for. Set by
   * `start`'s watch wrapper and pass trigger, cleared by `readClusterData` when it sends a read.
   */
  cdStale = true;
  /** The last clusterdata parsed by a pass, with the revision and text it was parsed from (`parsedClusterData` in pass.ts). */
  cdParsed: { readonly revision: string; readonly text: string; readonly cd: ClusterData } | undefined;
  /** True while the pass loop's clusterdata watch runs (set by `start`). */
  cdWatching: () => boolean = () => false;
  /** Set by `start` once the task runner exists. */
  tasks!: TaskRunner;
  /** Asks the pass loop for a pass now (set by `start`). */
  trigger: (reason: string) => void = () => undefined;
  /**
   * Set by {@link trigger} (a crash, a fence, a task's end…) until the next full pass: a pass the
   * clusterdata watch also asked for must then run in full (`skipWatchPass`).
   */
  passRequested = false;
  /**
   * The boot id published in the keeper info: the process's (`deps.bootUuid`) until its primary is
   * fenced, then a new one ({@link renewBootUuid}). The planner does nothing to PostgreSQL until the
   * sentinel has recorded the current one in clusterdata (Stolon's boot id rule, plan.ts).
   */
  bootUuid: string;

  constructor(config: KeeperConfig, deps: KeeperDeps, local: PersistedState, binaryVersion: { Maj: number; Min: number }, pgData: string) {
    this.config = config;
    this.passwordsSet = { su: config.suPassword, repl: config.replPassword };
    this.deps = deps;
    this.bootUuid = deps.bootUuid;
    this.store = deps.store;
    this.pg = deps.pg;
    this.log = deps.logger;
    this.local = local;
    this.binaryVersion = binaryVersion;
    this.pgData = pgData;
  }

  /** The pass period: the spec's sleepInterval, in ms. */
  sleepMs(): number {
    return this.spec?.sleepIntervalMs ?? DEFAULT_SLEEP_MS;
  }

  /** The TTL of the keeper's info: the spec's failInterval, in ms. */
  infoTtlMs(): number {
    return this.spec?.failIntervalMs ?? DEFAULT_FAIL_MS;
  }

  /** How long to wait for PostgreSQL to start, promote or restart: dbWaitReadyTimeout, in ms. */
  waitReadyMs(): number {
    return this.spec?.dbWaitReadyTimeoutMs ?? DEFAULT_WAIT_READY_MS;
  }

  /**
   * {@link pgConfigFor} plus the server TLS files, read again first: the TLS digest in the
   * configuration changes when the operator's files did, so the keeper rewrites postgresql.conf
   * and reloads PostgreSQL (docs/security.md, "Certificate rotation").
   */
  async pgConfig(cd: ClusterData, db: DB, isPrimary: boolean, internalOnly = false): Promise<PgConfig> {
    const cfg = pgConfigFor(this.config, cd, db, isPrimary, internalOnly);
    const tls = this.deps.tls;
    return tls === undefined ? cfg : { ...cfg, ssl: await tls.refresh(this.log) };
  }

  /** Persists `s` to `<dataDir>/dbstate`, then adopts it. */
  async setLocal(s: PersistedState): Promise<void> {
    await writeDbState(this.config.dataDir, s);
    this.local = s;
  }

  /** Clears the activity if it is of `kind`. */
  clearActivity(kind: Activity['kind']): void {
    if (this.activity?.kind === kind) {
      this.activity = undefined;
    }
  }

  /**
   * The command-bearing settings of this keeper's DB spec it does not apply (`--allow-spec-commands`);
   * logs the refusal (error level) whenever the set changes, and once when it is gone.
   */
  private refusedSpecCommands(cd: ClusterData | undefined): string[] {
    const db = cd === undefined ? undefined : Object.values(cd.dbs).find((d) => d.spec.keeperUID === this.config.uid);
    const refused = db === undefined ? [] : refusedFor(this.config, db, cd?.cluster.spec.backup);
    const key = refused.join(',');
    if (key !== this.lastRefusedKey) {
      if (refused.length > 0) {
        this.log.error({ refusedSpecCommands: refused }, describeRefusedSpecCommands(refused as SpecCommand[], this.config.uid));
      } else {
        this.log.info('no command-bearing setting of the cluster spec is refused any more');
      }
      this.lastRefusedKey = key;
    }
    return refused;
  }

  /**
   * What this keeper publishes of pgBackRest archiving (`postgresState.archive`); undefined when
   * the `backup` section is not applied here. Logs a warning when the WAL waiting to be archived
   * goes above `backup.archiveWarnBytes`, and once when it is back below.
   */
  private archiveState(cd: ClusterData | undefined, obs: PgObservation): ArchiveState | undefined {
    const archiving = archivingFor(this.config, cd);
    if (archiving === undefined) {
      return undefined;
    }
    const stanza = backupStanza(archiving.backup, archiving.local.clusterName);
    const error = this.stanza?.stanza === stanza ? this.stanza.error : undefined;
    const st = archiveStateFor(archiving.backup, stanza, error, obs.running ? obs.archiver : undefined);
    if (st.backlogWarning === true && !this.archiveBacklogWarned) {
      this.log.warn(
        { readyCount: st.readyCount, readyBytes: st.readyBytes, lastFailedWal: st.lastFailedWal },
        `${st.readyCount ?? 0} WAL files (${st.readyBytes ?? 0} bytes) wait to be archived, above backup.archiveWarnBytes ` +
          `(${archiving.backup.archiveWarnBytes ?? DEFAULT_BACKUP.archiveWarnBytes}): pg_wal keeps them until pgBackRest archives them` +
          `${st.failing === true ? `; archiving fails (last failed WAL ${st.lastFailedWal ?? '?'}): check the repository and the PostgreSQL log` : ''}`,
      );
      this.archiveBacklogWarned = true;
    } else if (st.backlogWarning === false && this.archiveBacklogWarned) {
      this.log.info({ readyBytes: st.readyBytes }, 'the WAL waiting to be archived is back below backup.archiveWarnBytes');
      this.archiveBacklogWarned = false;
    }
    return st;
  }

  /** The `backup` (last run), `backups` (catalog) and `backupServer` fields of the info (backup-run.ts, backup-server.ts). */
  private backupInfo(): Pick<KeeperInfo, 'backup' | 'backups' | 'backupServer'> {
    const server = backupServerInfo(this, this.config.pgbackrest?.socketDir ?? '');
    const withServer = server !== undefined ? { backupServer: server } : {};
    const st = this.backups;
    if (st === undefined || st === 'loading') {
      return withServer;
    }
    return { ...(st.ledger.last !== undefined ? { backup: st.ledger.last } : {}), ...(st.catalog !== undefined ? { backups: st.catalog } : {}), ...withServer };
  }

  /** The keeper info for this observation. */
  keeperInfo(cd: ClusterData | undefined, obs: PgObservation): KeeperInfo {
    const { config } = this;
    return {
      infoUID: newUid(),
      uid: config.uid,
      clusterUID: cd?.cluster.uid ?? '',
      bootUUID: this.bootUuid,
      postgresBinaryVersion: this.binaryVersion,
      postgresState: postgresStateFor(
        {
          id: config,
          local: this.local,
          healthy: reportedHealthy(obs, this.tasks.current !== undefined),
          activity: this.activity === undefined ? undefined : describeActivity(this.activity, performance.now()),
          startError: this.startError,
          refusedSpecCommands: this.refusedSpecCommands(cd),
          archive: this.archiveState(cd, obs),
        },
        obs,
      ),
      canBeMaster: config.canBeMaster,
      canBeSynchronousReplica: config.canBeSynchronousReplica,
      priority: config.priority,
      ...(config.member !== undefined ? { memberAddress: config.member.advertise } : {}),
      ...(this.failsafe.lastEpisode !== undefined ? { failsafeEpisode: this.failsafe.lastEpisode } : {}),
      ...(this.switchoverRequestedAt !== undefined ? { switchoverRequestedAt: this.switchoverRequestedAt } : {}),
      ...(this.reloadedGeneration > 0 ? { reloadGeneration: this.reloadedGeneration } : {}),
      version: STOLON_TS_VERSION,
      ...this.backupInfo(),
    };
  }

  /** Observes PostgreSQL (`PostgresManager.observe`, never throws) and tells the status sink, whose checks and metrics read it. */
  async observe(): Promise<PgObservation> {
    const obs = await this.pg.observe();
    this.deps.status?.observed?.(obs);
    return obs;
  }

  /** Publishes the keeper info under its lease (TTL failInterval) and tells the status sink. */
  async publish(cd: ClusterData | undefined, obs: PgObservation): Promise<void> {
    const sentAt = performance.now();
    await this.store.setInfo('keepers', this.config.uid, this.keeperInfo(cd, obs), this.infoTtlMs());
    this.lastPublishSentAt = sentAt;
    const kind = this.activity?.kind;
    this.deps.status?.published({
      cd,
      local: this.local,
      obs,
      task: this.tasks.current,
      bootUuid: this.bootUuid,
      healthy: reportedHealthy(obs, this.tasks.current !== undefined),
      fenced: kind === 'fenced' && !obs.running,
      needsReload: this.needsReload,
      configRejected: kind === 'config-rejected' || kind === 'config-fallback',
      ...(this.resyncProgress !== undefined ? { resync: this.resyncProgress } : {}),
    });
  }

  /**
   * Takes a new boot id, as a new keeper process would: called when this keeper's primary was
   * fenced. Its lease was then not continuous, so the clusterdata it can read may have been written
   * before the fence, naming it primary although a sentinel has since judged it lost (or is about
   * to, on the infos it read before this keeper could publish again). With a new boot id the
   * planner waits until the sentinel has recorded it, in a pass that read this keeper's new info:
   * the primary is started again only on a decision made after that (docs/architecture.md,
   * "Self-fencing primary").
   */
  renewBootUuid(): void {
    this.bootUuid = newBootUuid();
  }
}
