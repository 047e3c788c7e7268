/**
 * `p`, unless a timer of `ms` fires first (then a rejection saying so).
 *
 * A bound for "answers within the timeout, never hangs" that holds under CPU load: the timer runs
 * on the same event loop as the timeout it checks, so a loaded machine delays both alike, whereas
 * a wall-clock bound (`Date.now() - started < ms`) fails when the loop is merely slow. Node runs
 * due timers in order of expiry and drains microtasks after each, so a timeout shorter than `ms`
 * whose consequences are in-process always wins the race.
 */
export async function beforeTimer<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const sentinel = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`did not settle before a ${ms} ms timer fired (a hang, or a timeout longer than configured)`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, sentinel]);
  } finally {
    clearTimeout(timer);
  }
}
