/**
 * Counts unary calls in flight on both ports, so shutdown can tell calls that must be allowed to
 * finish (unary, up to the grace period) from streams, which it ends itself and must not wait for.
 */
export class CallTracker {
  private unary = 0;
  private waiters: (() => void)[] = [];

  /** Marks a unary call started; the returned function marks it done (call it exactly once). */
  startUnary(): () => void {
    this.unary++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.unary === 0) for (const w of this.waiters.splice(0)) w();
    };
  }

  /** Resolves once no unary call is in flight. */
  unaryDrained(): Promise<void> {
    return this.unary === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}
