/**
 * The plain-iterator stream plumbing (src/api/streams.ts): values mapped in order, the source
 * opened on the first next(), failures passed on, and a stream given up while it was still
 * opening closes its source once that exists (a WatchExpiry subscription must not stay in the feed).
 */
import { describe, expect, it } from 'vitest';
import { mapStream, mapStreamErrors } from '../../src/api/streams.js';

/** A source over `values` that records whether it was returned. */
function source(values: number[], failAt?: number) {
  let i = 0;
  const state = { returned: false, nexts: 0 };
  const it: AsyncIterator<number> = {
    next: async () => {
      state.nexts++;
      if (i === failAt) throw new Error(`failed at ${i}`);
      return i < values.length ? { done: false, value: values[i++]! } : { done: true, value: undefined };
    },
    return: async () => {
      state.returned = true;
      return { done: true, value: undefined };
    },
  };
  return { it, state };
}

describe('mapStream', () => {
  it('opens the source on the first next() and maps every value in order, then ends', async () => {
    const s = source([1, 2, 3]);
    let opened = 0;
    const mapped = mapStream(
      async () => {
        opened++;
        return s.it;
      },
      (v) => `#${v}`,
    );
    expect(opened).toBe(0);
    const got: string[] = [];
    for await (const v of mapped) got.push(v);
    expect(got).toEqual(['#1', '#2', '#3']);
    expect(opened).toBe(1);
  });

  it('passes on a failure of the opening and of the source', async () => {
    await expect(mapStream(() => Promise.reject(new Error('not authenticated')), String).next()).rejects.toThrow(
      'not authenticated',
    );
    const s = source([1, 2], 1);
    const mapped = mapStream(async () => s.it, String);
    expect(await mapped.next()).toEqual({ done: false, value: '1' });
    await expect(mapped.next()).rejects.toThrow('failed at 1');
  });

  it('return() during the opening closes the source once it is open, and nothing is read from it', async () => {
    const s = source([1]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const mapped = mapStream(async () => {
      await gate;
      return s.it;
    }, String);
    const first = mapped.next();
    await mapped.return!(undefined);
    release();
    expect(await first).toEqual({ done: true, value: undefined });
    await new Promise((r) => setImmediate(r));
    expect(s.state).toEqual({ returned: true, nexts: 0 });
    expect(await mapped.next()).toEqual({ done: true, value: undefined });
  });

  it('a failing map fails the stream and returns the source (a consumer does not return() a failed iterator)', async () => {
    const s = source([1, 2]);
    const mapped = mapStream(
      async () => s.it,
      (v) => {
        if (v === 2) throw new Error('cannot map 2');
        return String(v);
      },
    );
    expect(await mapped.next()).toEqual({ done: false, value: '1' });
    await expect(mapped.next()).rejects.toThrow('cannot map 2');
    expect(s.state.returned).toBe(true);
    expect(await mapped.next()).toEqual({ done: true, value: undefined });
  });

  it('return() after the opening returns the source', async () => {
    const s = source([1, 2]);
    const mapped = mapStream(async () => s.it, String);
    await mapped.next();
    expect(await mapped.return!(undefined)).toEqual({ done: true, value: undefined });
    expect(s.state.returned).toBe(true);
  });
});

describe('mapStreamErrors', () => {
  it('maps a failure and leaves values alone', async () => {
    const s = source([1], 1);
    const it = mapStreamErrors(
      { [Symbol.asyncIterator]: () => s.it },
      (e) => new Error(`mapped: ${(e as Error).message}`),
    )[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: 1 });
    await expect(it.next()).rejects.toThrow('mapped: failed at 1');
  });
});
