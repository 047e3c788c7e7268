import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

/**
 * How far `rotor serve` lets V8's old space grow past what a full GC left live before the next
 * full GC (bench/README.md, "Heap growth"):
 * - `percent`: at most (1 + percent/100) × the live heap, instead of V8's own factor of up to 4×,
 *   so a server holding many WatchExpiry streams keeps its RSS near its live heap;
 * - `floorBytes`: but always up to this size, so a small heap (a server answering calls, not
 *   holding streams: about 20 MB live) is not fully collected every few megabytes of promotion.
 *   A full GC marks the whole live heap; at 1.2 × 20 MB it ran about every 10 MB, three to four
 *   times as often as V8's own factor, and cost about a quarter of a call's CPU.
 * `percent` 0 leaves V8's own heuristic alone (the floor then has nothing to do); `floorBytes` 0
 * keeps the fixed percent at every size, as before the floor existed.
 */
export interface HeapGrowthPolicy {
  percent: number;
  floorBytes: number;
}

/** V8's largest growing factor is 4 (300 %): the floor never asks for more. */
export const MAX_HEAP_GROWING_PERCENT = 300;

/** The `--heap-growing-percent` for the next full GC, after one that left `liveBytes` live. */
export function growingPercentFor(liveBytes: number, policy: HeapGrowthPolicy): number {
  if (policy.percent === 0) return 0;
  const toFloor = Math.ceil((policy.floorBytes / Math.max(liveBytes, 1) - 1) * 100);
  return Math.min(MAX_HEAP_GROWING_PERCENT, Math.max(policy.percent, toFloor));
}

/**
 * Applies the policy to this process: sets V8's `--heap-growing-percent` now and, when there is a
 * floor, again after every full GC from the heap it left (V8 reads the flag whenever it computes
 * the next limit, at the end of each full GC). Returns a function that stops following GCs.
 */
export function applyHeapGrowthPolicy(policy: HeapGrowthPolicy): () => void {
  if (policy.percent === 0) return () => {};
  let current = -1;
  const apply = (live: number) => {
    const next = growingPercentFor(live, policy);
    // Only a change of a few points is worth a flag write (the live heap moves a little every GC).
    if (current !== -1 && Math.abs(next - current) < 5) return;
    current = next;
    setFlagsFromString(`--heap-growing-percent=${next}`);
  };
  apply(getHeapStatistics().used_heap_size);
  if (policy.floorBytes === 0) return () => {};
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind !== constants.NODE_PERFORMANCE_GC_MAJOR) continue;
      // Read after the GC, so it also counts what was allocated since: close to the live heap
      // at the rate a server allocates, and never below it.
      apply(getHeapStatistics().used_heap_size);
      return;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
