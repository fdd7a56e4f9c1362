/**
 * The sentinel-leader election loop shared by the store backends. {@link LeaderElection} is the
 * `Election` handed to callers and owns everything that does not depend on the backend: the
 * reported state and its change notifications, the loop (first attempt on a later tick, sleeps
 * that watch events, lease updates and resign/stop cut short, the on-time report of a lost
 * leadership), the watch it keeps open, resign/abandon with stop-once semantics, and
 * {@link OpenElections}, a store's record of its running elections. A backend supplies only its
 * own steps through {@link ElectionBackend}: one acquire-or-renew attempt, the validity of the
 * leadership it holds, what to do after a failed attempt, release and abandon, and a watch.
 *
 * Safety rule: a candidate reports itself leader only while `leaderValidUntil()` lies ahead, and
 * each backend makes that moment come before its lease can expire for others (etcd and
 * Kubernetes: 3/4 of the TTL after the last confirmed renewal was sent).
 * @internal
 */
import type { Election, StoreWatch } from './store.js';
import { LeadershipNotifier, monotonicMs } from './util.js';

/** What one {@link ElectionBackend.tryAcquireOrRenew} attempt found. @internal */
export interface ElectionAttempt {
  /**
   * `true`: this candidate leads now, until `leaderValidUntil()`. `false`: it does not.
   * `undefined`: inconclusive (e.g. a renewal that lost a write race): the reported state stays
   * as it is, and a leadership ends anyway once its validity has passed.
   */
  readonly leader: boolean | undefined;
  /** Ms until the next attempt; the loop wakes earlier on watch events, `wake()` and stop. */
  readonly nextMs: number;
}

/** What the loop shows its backend during an attempt. @internal */
export interface ElectionLoop {
  /** True once resign or abandon was called, also while an attempt is in flight. */
  stopped(): boolean;
  /** Whether leadership is currently reported (the last state onChange listeners were given). */
  leading(): boolean;
  /** Ends the loop's current sleep now (e.g. a lease was renewed or lost); no effect otherwise. */
  wake(): void;
}

/**
 * The backend-specific steps of a candidacy for the sentinel leader lease, driven by
 * {@link LeaderElection}. A backend holds a lease (etcd lease, Kubernetes Lease, Consul session)
 * and a claim on the leader key or object; the loop only ever asks it to act and reports what it
 * says. Only the loop calls these methods, one attempt at a time; `release` or `abandon` may come
 * while an attempt is in flight.
 * @internal
 */
export interface ElectionBackend {
  /**
   * When the loop opens its watch (and re-opens one that ended or could not be opened):
   * `'before-attempts'`: before every attempt, the first one included, so that every read of
   * the candidates is covered; `'before-sleeps'`: after every attempt (failed ones included),
   * before the loop sleeps, so that the candidate's own first write is already part of what the
   * watch starts from and wakes nobody.
   */
  readonly openWatch: 'before-attempts' | 'before-sleeps';
  /**
   * `true`: while leading, a timer reports the loss (onChange(false)) the moment
   * `leaderValidUntil()` has passed, even while an attempt is in flight. `false`: the loss is
   * reported by the next attempt, which the backend then schedules (`nextMs`) for that moment.
   * `isLeader()` checks the validity itself either way.
   */
  readonly stepDownTimer: boolean;
  /**
   * One attempt: acquire the leadership or renew it, or learn who holds it. Checks
   * `loop.stopped()` between its requests and sends no more once it is true: the loop then ends
   * without reporting the result, and `release` gives up whatever the attempt took.
   * @returns whether this candidate leads now and when to attempt next.
   * @throws anything on failure (the backend's own errors, e.g. StoreUnavailableError); the
   *   loop then calls {@link ElectionBackend.recover}.
   */
  tryAcquireOrRenew(loop: ElectionLoop): Promise<ElectionAttempt>;
  /**
   * Until when (monotonic ms, as `performance.now()`) this candidate may act as leader, by the
   * last renewal the backend confirmed; -Infinity when it holds nothing. Read live by
   * `isLeader()`, no I/O, never throws. It must lie before the earliest moment another
   * candidate could take over.
   */
  leaderValidUntil(): number;
  /**
   * Called after an attempt threw, once the loop has reported the loss if the failure ended
   * the leadership (it does exactly when `leaderValidUntil()` has passed, so a backend that
   * gives its lease up on failure makes that return -Infinity before rethrowing). Finishes
   * what the failed attempt started (e.g. giving a lease up) and says how long to pause.
   * @param leading whether leadership is still reported.
   * @returns ms until the next attempt. Never throws.
   */
  recover(leading: boolean, loop: ElectionLoop): Promise<number>;
  /**
   * Gives the leadership up for good (resign), best effort within the store timeout. Called once,
   * right after the loop was stopped; `loopEnded` resolves when the attempt in flight (if any)
   * has ended, or after the store timeout. Never throws.
   */
  release(loopEnded: Promise<void>): Promise<void>;
  /** Stops whatever the backend runs on its own (e.g. keepalives) without releasing anything. */
  abandon(): void;
  /**
   * Opens a watch on the election that calls `wake` when it may have changed. When the watch
   * ends by itself the backend calls `ended` (then never closes it); the loop opens a new one
   * at its next occasion (see `openWatch`).
   * @throws (rejects) when it cannot be opened; the loop retries at its next occasion.
   */
  watch(wake: () => void, ended: () => void): Promise<StoreWatch>;
}

/**
 * The `Election` of one candidate: a loop of {@link ElectionBackend} attempts.
 *
 * The loop starts on a later tick (`campaign()` resolves before any leadership is reported).
 * After each attempt it reports what the backend found and sleeps `nextMs` (at least 1 ms); a
 * watch event, a backend `wake()` or a stop ends the sleep early (a wake-up while an attempt is
 * in flight is dropped; the attempt after `nextMs` covers it). After a failed attempt,
 * leadership is kept only while `leaderValidUntil()` lies ahead, and the loop pauses for what
 * the backend's `recover` says. Stopping (resign or abandon) happens once: leadership is
 * reported lost at once and the loop ends after the attempt in flight, without reporting it.
 * @internal
 */
export class LeaderElection implements Election {
  private readonly notifier = new LeadershipNotifier();
  private stopped = false;
  private wakeUp: (() => void) | undefined;
  private stepDownTimer: NodeJS.Timeout | undefined;
  private watch: StoreWatch | undefined;
  private watchPending = false;
  private readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly loop: ElectionLoop;

  /**
   * @param backend the backend's steps (one candidacy; not shared between elections).
   * @param timeoutMs the store's request timeout in ms: how long resign waits for an attempt in
   *   flight.
   * @param onStop called once, synchronously, when resign or abandon stops the election.
   */
  constructor(
    /** The backend's steps; a store reads its own backend's leader claim for guarded writes. */
    readonly backend: ElectionBackend,
    private readonly timeoutMs: number,
    private readonly onStop: (e: LeaderElection) => void,
  ) {
    this.done = new Promise((r) => {
      this.resolveDone = r;
    });
    this.loop = {
      stopped: () => this.stopped,
      leading: () => this.notifier.leader,
      wake: () => this.wake(),
    };
  }

  /** Starts the loop on a later tick. Call once. */
  start(): void {
    setImmediate(() => {
      void this.run().finally(() => this.resolveDone());
    });
  }

  /** @inheritDoc */
  isLeader(): boolean {
    return this.notifier.leader && !this.stopped && monotonicMs() < this.backend.leaderValidUntil();
  }

  /** @inheritDoc */
  onChange(listener: (leader: boolean) => void): void {
    this.notifier.on(listener);
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, Math.max(1, ms));
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Opens the backend's watch unless one is open or being opened (best effort). */
  private ensureWatch(): void {
    if (this.watch !== undefined || this.watchPending || this.stopped) {
      return;
    }
    this.watchPending = true;
    let opened: StoreWatch | undefined;
    let ended = false;
    this.backend
      .watch(
        () => this.wake(),
        () => {
          ended = true;
          if (opened !== undefined && this.watch === opened) {
            this.watch = undefined;
          }
          this.wake();
        },
      )
      .then(
        (w) => {
          this.watchPending = false;
          opened = w;
          if (ended) {
            return; // ended on its own already: nothing to close, the next occasion opens another
          }
          if (this.stopped) {
            void w.close().catch(() => undefined);
          } else {
            this.watch = w;
          }
        },
        () => {
          this.watchPending = false; // retried at the next occasion; the loop's timers cover meanwhile
        },
      );
  }

  private leading(): void {
    this.notifier.set(true);
    clearTimeout(this.stepDownTimer);
    if (!this.backend.stepDownTimer) {
      return;
    }
    // Report the loss on time even if the loop is stuck in a request.
    this.stepDownTimer = setTimeout(
      () => {
        if (monotonicMs() >= this.backend.leaderValidUntil()) {
          this.notifier.set(false);
        }
      },
      Math.max(0, this.backend.leaderValidUntil() - monotonicMs()) + 1,
    );
  }

  private following(): void {
    clearTimeout(this.stepDownTimer);
    this.notifier.set(false);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.backend.openWatch === 'before-attempts') {
        this.ensureWatch();
      }
      let next: number;
      try {
        const attempt = await this.backend.tryAcquireOrRenew(this.loop);
        if (this.stopped) {
          break;
        }
        if (attempt.leader === true) {
          this.leading();
        } else if (attempt.leader === false) {
          this.following();
        }
        next = attempt.nextMs;
      } catch {
        // The backend decides through the validity whether a failure ends the leadership.
        if (this.notifier.leader && monotonicMs() >= this.backend.leaderValidUntil()) {
          this.following();
        }
        next = await this.backend.recover(this.notifier.leader, this.loop);
      }
      if (!this.stopped) {
        if (this.backend.openWatch === 'before-sleeps') {
          this.ensureWatch();
        }
        await this.sleep(next);
      }
    }
  }

  /** Marks the election stopped, reports the loss, ends the sleep and closes the watch. */
  private stop(): void {
    this.stopped = true;
    clearTimeout(this.stepDownTimer);
    this.notifier.set(false);
    this.wake();
    const w = this.watch;
    this.watch = undefined;
    void w?.close().catch(() => undefined);
    this.onStop(this);
  }

  /**
   * @inheritDoc
   * Stops the loop and lets the backend release the leadership (`ElectionBackend.release`),
   * waiting for an attempt in flight at most the store timeout. Best effort: what cannot be
   * released expires with its lease. A second call waits for the loop to end. Never throws.
   */
  async resign(): Promise<void> {
    if (this.stopped) {
      await this.done;
      return;
    }
    this.stop();
    let timer: NodeJS.Timeout | undefined;
    const loopEnded = Promise.race([
      this.done,
      new Promise<void>((r) => {
        timer = setTimeout(r, this.timeoutMs);
      }),
    ]).then(() => clearTimeout(timer));
    try {
      await Promise.all([this.backend.release(loopEnded), loopEnded]);
    } catch {
      // release never throws; see the docstring.
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops without releasing (as a crash would): what the backend holds expires by its TTL. */
  abandon(): void {
    if (!this.stopped) {
      this.stop();
      this.backend.abandon();
    }
  }
}

/**
 * A store's running elections: `campaign` starts one here, `close` resigns them all and the
 * crash hook abandons them all. An election leaves the set when it stops.
 * @internal
 */
export class OpenElections {
  private readonly open = new Set<LeaderElection>();

  /**
   * Starts a {@link LeaderElection} on `backend` (its first attempt comes on a later tick).
   * @param timeoutMs the store's request timeout in ms (see {@link LeaderElection}).
   */
  start(backend: ElectionBackend, timeoutMs: number): Election {
    const e = new LeaderElection(backend, timeoutMs, (x) => this.open.delete(x));
    this.open.add(e);
    e.start();
    return e;
  }

  /** Resigns every running election, in parallel; resolves when all have. Never rejects. */
  resignAll(): Promise<void> {
    return Promise.all([...this.open].map((e) => e.resign())).then(() => undefined);
  }

  /** Abandons every running election (see {@link LeaderElection.abandon}). */
  abandonAll(): void {
    for (const e of [...this.open]) {
      e.abandon();
    }
  }
}
