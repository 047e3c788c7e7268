/**
 * A value now, or a promise of it: what the use cases on the hot path answer (authenticate,
 * introspect and the lookups under them), so a call whose rows are all in the token cache is
 * answered in the turn it arrived, with no promise and no microtask (bench/README.md, "Cached path
 * without promises"). Callers `await` either.
 */
export type MaybeAsync<T> = T | Promise<T>;

/** `next(value)`, at once when `value` is one, after it resolves when it is a promise. */
export function andThen<T, R>(value: MaybeAsync<T>, next: (v: T) => MaybeAsync<R>): MaybeAsync<R> {
  return value instanceof Promise ? value.then(next) : next(value);
}
