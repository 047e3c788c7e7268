import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { growingPercentFor, MAX_HEAP_GROWING_PERCENT } from '../../src/runtime/heap-growth.js';

const MB = 1024 * 1024;
const policy = { percent: 20, floorBytes: 64 * MB };

describe('heap growth after a full GC (src/runtime/heap-growth.ts)', () => {
  it('lets a small heap grow up to the floor, never past V8 largest factor', () => {
    expect(growingPercentFor(32 * MB, policy)).toBe(100);
    expect(growingPercentFor(22 * MB, policy)).toBe(191);
    expect(growingPercentFor(10 * MB, policy)).toBe(MAX_HEAP_GROWING_PERCENT);
    expect(growingPercentFor(0, policy)).toBe(MAX_HEAP_GROWING_PERCENT);
  });

  it('keeps the percent once the live heap nears or passes the floor (a server holding many streams)', () => {
    expect(growingPercentFor(56 * MB, policy)).toBe(20);
    expect(growingPercentFor(64 * MB, policy)).toBe(20);
    expect(growingPercentFor(150 * MB, policy)).toBe(20);
  });

  it('percent 0 is V8 own heuristic and floor 0 the percent at every size', () => {
    expect(growingPercentFor(10 * MB, { percent: 0, floorBytes: 64 * MB })).toBe(0);
    expect(growingPercentFor(10 * MB, { percent: 20, floorBytes: 0 })).toBe(20);
  });

  /** Runs `body` in a child node with the policy applied; returns V8's (old size MB, factor) per full GC. */
  function fullGcs(
    policy: { percent: number; floorBytes: number },
    body: string,
  ): { liveMb: number; factor: number }[] {
    const heapGrowth = resolve('dist/src/runtime/heap-growth.js');
    const script = `
      import { applyHeapGrowthPolicy } from ${JSON.stringify(heapGrowth)};
      applyHeapGrowthPolicy(${JSON.stringify(policy)});
      const tick = () => new Promise((r) => setTimeout(r, 20));
      ${body}
    `;
    const out = execFileSync(
      process.execPath,
      ['--expose-gc', '--trace-gc-verbose', '--input-type=module', '-e', script],
      { encoding: 'utf8', maxBuffer: 64 * MB },
    );
    return [...out.matchAll(/\[HeapController\] Limit: old size: (\d+) KB, new limit: \d+ KB \(([\d.]+)\)/g)].map(
      (m) => ({ liveMb: Number(m[1]) / 1024, factor: Number(m[2]) }),
    );
  }

  // About 20-30 MB kept live, then two full GCs with a turn of the event loop after each.
  const grow = `
    const keep = [];
    for (let i = 0; i < 200000; i++) keep.push({ i, s: 'x'.repeat(40) + i });
    globalThis.gc(); await tick();
    globalThis.gc(); await tick();
    globalThis.gc(); await tick();
    keep.length = 0;
  `;

  it('reaches V8: a fixed percent without a floor is the factor of every full GC', () => {
    const gcs = fullGcs({ percent: 20, floorBytes: 0 }, grow);
    expect(gcs.length).toBeGreaterThanOrEqual(3);
    for (const g of gcs) expect(g.factor).toBe(1.2);
  });

  it('reaches V8: with a floor, each full GC sets the factor for the next from the heap it left', () => {
    const gcs = fullGcs({ percent: 20, floorBytes: 64 * MB }, grow);
    expect(gcs.length).toBeGreaterThanOrEqual(3);
    // The first ran under the start value (a tiny heap: up to V8's largest factor).
    expect(gcs[0]!.factor).toBe(4);
    // Later ones: about 64 MB ÷ the live heap of the GC before (20-30 MB here), not 4 and not 1.2.
    const last = gcs.at(-1)!;
    const before = gcs.at(-2)!;
    expect(before.liveMb).toBeGreaterThan(15);
    expect(last.factor).toBeGreaterThan(1.2);
    expect(Math.abs(last.factor - 64 / before.liveMb)).toBeLessThan(0.2);
  });
});
