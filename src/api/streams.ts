/**
 * Server-streaming plumbing as plain iterators. An async generator wrapped around another
 * (`for await … yield`) costs several promises and jobs per item; with 10,000 WatchExpiry
 * streams each fan-out pays that 10,000 times (bench/README.md, "Fan-out"). These cost one
 * promise per item.
 */

/**
 * The items of the stream that `open` resolves to, each passed through `map`. `open` runs on the
 * first next() (a handler's checks, then its source); a stream given up before it resolved is
 * closed as soon as it does.
 */
export function mapStream<T, U>(open: () => Promise<AsyncIterator<T>>, map: (value: T) => U): AsyncIterableIterator<U> {
  let source: AsyncIterator<T> | undefined;
  let opening: Promise<AsyncIterator<T>> | undefined;
  let closed = false;
  const step = (r: IteratorResult<T>): IteratorResult<U> => {
    if (r.done) return { done: true, value: undefined };
    try {
      return { done: false, value: map(r.value) };
    } catch (e) {
      // The stream fails here, and its consumer will not return() a failed iterator: close the source.
      closed = true;
      void source?.return?.(undefined).catch(() => undefined);
      throw e;
    }
  };
  const opened = (s: AsyncIterator<T>): AsyncIterator<T> => {
    source = s;
    if (closed) void s.return?.(undefined).catch(() => undefined);
    return s;
  };
  const it: AsyncIterableIterator<U> = {
    [Symbol.asyncIterator]: () => it,
    next: () => {
      if (closed) return Promise.resolve({ done: true, value: undefined });
      if (source) return source.next().then(step);
      opening ??= open().then(opened);
      return opening.then((s) => (closed ? { done: true, value: undefined } : s.next().then(step)));
    },
    return: () => {
      closed = true;
      const done = { done: true as const, value: undefined };
      if (!source?.return) return Promise.resolve(done);
      return source.return(undefined).then(() => done);
    },
  };
  return it;
}

/** How a stream ended, told once to mapStreamErrors' `ended`; `failed` with the mapped error. */
export type StreamEnd = { how: 'done' } | { how: 'returned' } | { how: 'failed'; error: unknown };

/**
 * A stream whose failure is mapped by `map` (connect-errors.ts's one mapping). `ended` hears once
 * how the stream ended: the source finished, it was given up (the client cancelled or went away),
 * or it failed.
 */
export function mapStreamErrors(
  source: AsyncIterable<unknown>,
  map: (e: unknown) => unknown,
  ended: (end: StreamEnd) => void = () => undefined,
): AsyncIterable<unknown> {
  return {
    [Symbol.asyncIterator]() {
      const it = source[Symbol.asyncIterator]();
      let over = false;
      const end = (e: StreamEnd) => {
        if (over) return;
        over = true;
        ended(e);
      };
      const fail = (e: unknown): never => {
        const mapped = map(e);
        end({ how: 'failed', error: mapped });
        throw mapped;
      };
      const step = (r: IteratorResult<unknown>) => {
        if (r.done) end({ how: 'done' });
        return r;
      };
      return {
        // One reaction per item either way: then(step, fail) costs what catch(fail) did.
        next: () => it.next().then(step, fail),
        return: (value?: unknown) => {
          const returned = it.return ? it.return(value).catch(fail) : Promise.resolve({ done: true as const, value });
          end({ how: 'returned' });
          return returned;
        },
      };
    },
  };
}
