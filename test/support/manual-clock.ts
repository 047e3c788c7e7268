import type { Clock } from '../../src/cli/retry-policy.js';

/**
 * Lets pending promise callbacks and I/O completions run. Real file-system work goes through
 * libuv's thread pool, so this waits a few real milliseconds, not just a turn of the event loop.
 */
export async function flush(rounds = 8): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 2));
}

/**
 * A clock whose time moves only when the test says so. `sleep` registers a timer that fires
 * when `advance` passes its due time (or at once when its signal aborts).
 */
export class ManualClock implements Clock {
  private timers: { at: number; fire: () => void }[] = [];
  /** Every sleep requested, in order (the agent's backoff delays show up here). */
  readonly sleeps: number[] = [];

  constructor(private t = 0) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const timer = {
        at: this.t + Math.max(0, ms),
        fire: () => {
          this.timers = this.timers.filter((x) => x !== timer);
          signal?.removeEventListener('abort', timer.fire);
          resolve();
        },
      };
      this.timers.push(timer);
      signal?.addEventListener('abort', timer.fire, { once: true });
    });
  }

  /** Moves time forward by `ms`, firing due timers in order and letting each one's work run. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await flush();
    for (;;) {
      const next = this.timers.filter((x) => x.at <= target).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.t = next.at;
      next.fire();
      await flush();
    }
    this.t = target;
    await flush();
  }

  /** Fires the earliest pending timer (whatever its due time); false when none is pending. */
  async next(): Promise<boolean> {
    await flush();
    const first = [...this.timers].sort((a, b) => a.at - b.at)[0];
    if (!first) return false;
    await this.advance(first.at - this.t);
    return true;
  }

  /** True when some sleep is due exactly at `at` (the agent reached the wait that ends then). */
  hasTimerAt(at: number): boolean {
    return this.timers.some((t) => t.at === at);
  }

  get pending(): number {
    return this.timers.length;
  }
}

/**
 * Waits (in real time, up to `ms`) until `check` holds: the code under test does real file I/O,
 * so a test waits for the state it needs before moving the manual clock, never for a fixed time.
 */
export async function until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
