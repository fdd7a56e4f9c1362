/**
 * The serial tick loop every daemon uses (STYLE.md rule 10): a pass runs on a timer and on
 * demand (store watch events), never two at once; the next timer is armed only after a pass
 * settles (no setInterval); triggers that arrive during a pass coalesce into one more pass.
 */

export interface SerialLoopOptions {
  /** The pass. Its errors go to `onError`; the loop keeps going. */
  readonly run: () => Promise<void>;
  /** Period of the safety-net pass in ms, re-read before each arming (specs change). */
  readonly intervalMs: () => number;
  readonly onError: (err: unknown) => void;
}

/** A running loop. */
export interface SerialLoop {
  /** Asks for a pass as soon as possible (coalesced). */
  trigger(): void;
  /** Stops the loop; resolves after the pass in progress (if any) settled. */
  stop(): Promise<void>;
}

/** Starts a loop; the first pass runs at once. */
export function startSerialLoop(opts: SerialLoopOptions): SerialLoop {
  let stopped = false;
  let running: Promise<void> | undefined;
  let pending = false;
  let timer: NodeJS.Timeout | undefined;

  const arm = () => {
    if (stopped) {
      return;
    }
    if (timer !== undefined) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = undefined;
      kick();
    }, Math.max(10, opts.intervalMs()));
  };

  const kick = (): void => {
    if (stopped) {
      return;
    }
    if (running !== undefined) {
      pending = true;
      return;
    }
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    running = (async () => {
      try {
        await opts.run();
      } catch (err) {
        opts.onError(err);
      }
    })().finally(() => {
      running = undefined;
      if (pending && !stopped) {
        pending = false;
        setImmediate(kick);
      } else {
        arm();
      }
    });
  };

  setImmediate(kick);
  return {
    trigger: () => kick(),
    stop: async () => {
      stopped = true;
      if (timer !== undefined) {
        clearTimeout(timer);
      }
      await running;
    },
  };
}
