/**
 * The context the parts of the PostgreSQL manager work in: one PGDATA, its server log, the
 * process context that runs the binaries, the socket, and the port last configured. Built once by
 * `PgManager` (pg-manager.ts); a types module, so every part can import it without an import
 * cycle.
 */
import type { Logger } from 'pino';
import type { PeerSsl } from './config.js';
import type { PgExec } from './pg-exec.js';
import type { PgSocket } from './pg-socket.js';

/** What every part of the manager needs, instead of the manager itself. */
export interface PgContext {
  /** Absolute PGDATA. */
  readonly pgData: string;
  /** Server log file (`pg_ctl -l`): `<PGDATA>/../postgres.log`. */
  readonly logFile: string;
  /** The walreceiver's replication password file: `<PGDATA>/../replication.pgpass`, outside PGDATA. */
  readonly replPassfile: string;
  /** The superuser role, which the keeper's OS users map to in pg_ident.conf. */
  readonly suUser: string;
  readonly log: Logger;
  /** Runs the PostgreSQL binaries and creates files as the OS user. */
  readonly exec: PgExec;
  /** The socket directory and the superuser connections over it. */
  readonly socket: PgSocket;
  /**
   * Address and port last written to postgresql.conf (the constructor's until then); updated in
   * place by writeConfig, so the socket always connects to the configured port.
   */
  readonly listen: { address: string; port: number };
  /** How connections to the other keepers verify them (`PgManagerOptions.peerSsl`); absent: `sslmode=prefer`. */
  readonly peerSsl?: PeerSsl;
}
