/**
 * A plausibility check for values that must come from a secure random source (idempotency keys,
 * and any other key a caller or operator supplies). It cannot prove randomness; it refuses the
 * values people type by hand or build from counters, which a guesser tries first. A value drawn
 * from a secure random source passes with overwhelming probability (each check's false-alarm rate
 * on uniform random input is noted beside it).
 */

/**
 * Why `symbols` (characters as code points, or bytes) look hand-made, or undefined when nothing
 * stands out. `symbols` must hold at least 16 values.
 */
export function nonRandomReason(symbols: readonly number[]): string | undefined {
  const n = symbols.length;
  // Few distinct symbols: 22 random base64url characters show about 19, 32 hex digits about 14,
  // 32 random bytes about 30; fewer than 8 (or a quarter of the length) is below 1e-9 for each.
  if (new Set(symbols).size < Math.min(8, Math.ceil(n / 4))) return 'too few distinct characters';
  // A shorter pattern repeated ('abcabcabc…'); for random input, 2^-(bits of n - p symbols).
  if (smallestPeriod(symbols) <= n / 2) return 'it repeats a shorter pattern';
  // Mostly equal or adjacent neighbours ('0123456789…', 'aaab…'): random hex digits have such a
  // pair with probability about 3/16, so more than three quarters of 31 pairs is below 1e-12
  // (more than half was not rare enough: 5 of 300,000 random hex keys).
  let steps = 0;
  for (let i = 1; i < n; i++) if (Math.abs(symbols[i]! - symbols[i - 1]!) <= 1) steps++;
  if (steps * 4 > (n - 1) * 3) return 'most characters follow their neighbour in sequence';
  return undefined;
}

/**
 * The smallest p such that symbols[i] = symbols[i + p] throughout (the length when none is
 * smaller): Knuth-Morris-Pratt's failure function, whose longest proper border gives the period.
 */
export function smallestPeriod(symbols: ArrayLike<number>): number {
  const n = symbols.length;
  const border = new Array<number>(n).fill(0);
  for (let i = 1, k = 0; i < n; i++) {
    while (k > 0 && symbols[i] !== symbols[k]) k = border[k - 1]!;
    if (symbols[i] === symbols[k]) k++;
    border[i] = k;
  }
  return n - (border[n - 1] ?? 0);
}
