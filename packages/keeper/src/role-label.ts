/**
 * The keeper's pod role label (`--kube-pod-name`): on Kubernetes the keeper keeps the label
 * `stolon-ts/role` of its own pod at `primary`, `standby` or `none`, so that a PodDisruptionBudget
 * can protect the primary only and Services can select the primary or the standbys
 * (deploy/base/pdb.yaml, docs/kubernetes.md). Labelling is a side job: it runs in the background,
 * never delays a pass, and its failures (no credentials, no RBAC, API server down) touch neither
 * PostgreSQL nor the HA loop: each distinct reason is logged once, and it is tried again later.
 */
import { errorMessage, type ClusterData } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';

/** The label key. */
export const ROLE_LABEL = 'stolon-ts/role';

/** The label's values: the primary (the writable one, or a standby cluster's leader), a standby of it, or neither. */
export type PodRole = 'primary' | 'standby' | 'none';

/**
 * This keeper's role for the label: `primary` while it runs the primary (`isPrimary`: set once its
 * info is published under its lease), `standby` while clusterdata gives its DB (`dbUid`) the
 * standby role, `none` otherwise (no DB yet, no clusterdata, a DB of another keeper).
 */
export function podRoleOf(isPrimary: boolean, cd: ClusterData | undefined, dbUid: string, keeperUid: string): PodRole {
  if (isPrimary) {
    return 'primary';
  }
  const db = cd === undefined || dbUid === '' ? undefined : cd.dbs[dbUid];
  return db !== undefined && db.spec.keeperUID === keeperUid && db.spec.role === 'standby' ? 'standby' : 'none';
}

/** How long after a failed patch the next is tried, in ms. */
const RETRY_MS = 10_000;

/** What the labeller needs to set the label (`PodLabels.set` of @stolon-ts/store). */
export type SetPodLabels = (labels: Readonly<Record<string, string | null>>) => Promise<void>;

/** Keeps the role label current; one per keeper process. */
export class RoleLabeller {
  /** The value last set successfully; undefined before the first. */
  private applied: PodRole | undefined;
  private inFlight: Promise<void> | undefined;
  /** The last failure's message ('' after a success), to log each reason once. */
  private lastError = '';
  /** Monotonic ms before which no patch is retried after a failure. */
  private retryAt = 0;

  /**
   * @param setLabels sets the pod's labels; undefined when the keeper cannot label (no
   *   configuration: `disabledReason` says why, logged once by the constructor)
   */
  constructor(
    private readonly setLabels: SetPodLabels | undefined,
    private readonly log: Logger,
    disabledReason?: string,
  ) {
    if (setLabels === undefined && disabledReason !== undefined) {
      log.warn({ reason: disabledReason }, `the pod label ${ROLE_LABEL} is not kept: ${disabledReason}`);
    }
  }

  /**
   * Asks for the label to be `role`; returns at once. A patch runs in the background unless the
   * label already is `role`, a patch is in flight (the next call catches up), or the last one
   * failed less than 10 s ago.
   */
  update(role: PodRole): void {
    if (this.setLabels === undefined || role === this.applied || this.inFlight !== undefined || performance.now() < this.retryAt) {
      return;
    }
    const set = this.setLabels;
    this.inFlight = set({ [ROLE_LABEL]: role })
      .then(
        () => {
          this.log.info({ role }, `pod label ${ROLE_LABEL}=${role}${this.lastError !== '' ? ' (labelling works again)' : ''}`);
          this.applied = role;
          this.lastError = '';
        },
        (err: unknown) => {
          const reason = errorMessage(err);
          if (reason !== this.lastError) {
            this.log.warn({ reason, role }, `cannot set the pod label ${ROLE_LABEL}=${role} (PostgreSQL and failover are not affected; tried again every 10 s): ${reason}`);
            this.lastError = reason;
          }
          this.retryAt = performance.now() + RETRY_MS;
        },
      )
      .finally(() => {
        this.inFlight = undefined;
      });
  }

  /**
   * On stop: waits for a patch in flight, then sets `none` (the pod no longer serves a role), each
   * bounded by the client's own timeout; never throws.
   */
  async stop(): Promise<void> {
    await this.inFlight;
    if (this.setLabels === undefined || this.applied === undefined || this.applied === 'none') {
      return;
    }
    await this.setLabels({ [ROLE_LABEL]: 'none' }).then(
      () => this.log.info(`pod label ${ROLE_LABEL}=none`),
      (err: unknown) => this.log.warn({ reason: errorMessage(err) }, `cannot set the pod label ${ROLE_LABEL}=none on stop`),
    );
  }
}
