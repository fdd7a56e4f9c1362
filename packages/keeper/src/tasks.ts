/**
 * The keeper's background task runner: one long action at a time (initdb, pg_basebackup,
 * pg_rewind, a point-in-time restore) runs outside the pass, so passes keep publishing the
 * keeper's info (with the task's progress) while it runs. A task that fails is retried with a
 * capped exponential backoff when the planner asks for the same task again.
 */
import { errorMessage } from '@stolon-ts/cluster';
import type { Logger } from '@stolon-ts/common';
import { taskFailure, type Activity } from './activity.js';

/** Options of {@link TaskRunner}. */
export interface TaskRunnerOptions {
  readonly log: Logger;
  /** Sets the keeper's published activity (the task's progress, its failure, or nothing). */
  readonly setActivity: (a: Activity | undefined) => void;
  /** Called once a task settled, either way (the keeper runs a pass at once). */
  readonly onSettled: () => void;
  /** First retry delay and its cap, in ms. */
  readonly retry: { readonly baseMs: number; readonly maxMs: number };
  /** Monotonic clock in ms. @default performance.now */
  readonly nowMs?: () => number;
}

/** Runs at most one background task and remembers how the last one ended. */
export class TaskRunner {
  readonly #opts: TaskRunnerOptions;
  readonly #now: () => number;
  #current: { readonly name: string; readonly promise: Promise<void> } | undefined;
  #lastError: string | undefined;
  /** The task that failed last, how often in a row, and when it may run again (monotonic ms). */
  #failed: { readonly name: string; readonly count: number; readonly retryAtMs: number } | undefined;

  constructor(opts: TaskRunnerOptions) {
    this.#opts = opts;
    this.#now = opts.nowMs ?? (() => performance.now());
  }

  /** The name of the task in progress, if any. */
  get current(): string | undefined {
    return this.#current?.name;
  }

  /** `<task> failed: <error>` of the last task when it failed; cleared when the next task starts. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /**
   * How long the task `name` must still wait before it is retried, in ms: > 0 only when `name`
   * is the task that failed last and its backoff has not run out.
   */
  retryInMs(name: string): number {
    const f = this.#failed;
    return f === undefined || f.name !== name ? 0 : Math.max(0, f.retryAtMs - this.#now());
  }

  /** How often in a row the task `name` failed (0 when it was not the last failure). */
  failures(name: string): number {
    return this.#failed?.name === name ? this.#failed.count : 0;
  }

  /**
   * Starts `fn` as the background task `name`. `fn` gets a progress callback that replaces the
   * published sentence (e.g. pg_basebackup's bytes).
   * @throws Error when a task is already running (a keeper bug: passes check {@link current} first)
   */
  run(name: string, fn: (progress: (sentence: string) => void) => Promise<void>): void {
    if (this.#current !== undefined) {
      throw new Error(`cannot start ${name}: ${this.#current.name} is still running`);
    }
    const { log, setActivity } = this.#opts;
    this.#lastError = undefined;
    setActivity({ kind: 'task', task: name });
    const promise = (async () => fn((progress) => setActivity({ kind: 'task', task: name, progress })))()
      .then(() => {
        log.info({ task: name }, `${name}: done`);
        this.#failed = undefined;
        setActivity(undefined);
      })
      .catch((err: unknown) => {
        const error = errorMessage(err);
        const count = this.#failed?.name === name ? this.#failed.count + 1 : 1;
        const { baseMs, maxMs } = this.#opts.retry;
        const delayMs = Math.min(maxMs, baseMs * 2 ** (count - 1));
        this.#failed = { name, count, retryAtMs: this.#now() + delayMs };
        this.#lastError = taskFailure(name, error);
        setActivity({ kind: 'task-failed', task: name, error, retryAtMs: this.#failed.retryAtMs });
        log.error({ err, task: name, failures: count, retryInMs: delayMs }, `${this.#lastError} (failure ${count} in a row; retrying in ${delayMs} ms)`);
      })
      .finally(() => {
        this.#current = undefined;
        this.#opts.onSettled();
      });
    this.#current = { name, promise };
  }

  /** Resolves once no task runs (never rejects). */
  async idle(): Promise<void> {
    await this.#current?.promise;
  }
}
