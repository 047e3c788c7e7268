/**
 * Counts unary calls in flight on both ports, so shutdown can tell calls that must be allowed to
 * finish (unary, up to the grace period) from streams, which it ends itself and must not wait for.
 */
export class CallTracker {
  private unary = 0;
  private waiters: (() => void)[] = [];

  /** Marks a unary call started; the returned function marks it done (later calls of it do nothing). */
  startUnary(): () => void {
    this.beginUnary();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.endUnary();
    };
  }

  /**
   * The same pair without a closure per call, for a caller whose every path ends the call exactly
   * once (the gRPC port's unary handler, src/api/grpc-server.ts).
   */
  beginUnary(): void {
    this.unary++;
  }

  endUnary(): void {
    if (--this.unary === 0) for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once no unary call is in flight. */
  unaryDrained(): Promise<void> {
    return this.unary === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}
