import { readFileSync } from 'node:fs';
/** One scenario's figures, as printed in the JSON result. */
export interface ScenarioResult {
  requests: number;
  seconds: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /**
   * CPU time (user + system) the server process spent per call during the run, in µs (h2load
   * scenarios on Linux): unlike throughput, it hardly moves when other work shares the cores.
   */
  server_cpu_us_per_call?: number;
}

/** CPU time (user + system, ms) process `pid` has used so far; undefined where /proc is not there. */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses): utime is 14th, stime 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/** Nearest-rank percentile of an ascending array (0 < p <= 100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

const round = (n: number, digits: number): number => Number(n.toFixed(digits));

/** Summarises per-request latencies (ms) measured over `seconds` of wall time. */
export function summarize(latenciesMs: readonly number[], seconds: number): ScenarioResult {
  const sorted = Float64Array.from(latenciesMs).sort();
  const arr = Array.from(sorted);
  return {
    requests: latenciesMs.length,
    seconds: round(seconds, 3),
    rps: round(latenciesMs.length / seconds, 1),
    p50_ms: round(percentile(arr, 50), 3),
    p99_ms: round(percentile(arr, 99), 3),
  };
}

/** Runs `work(i)` for i in [0, total) with at most `concurrency` in flight; returns latencies in ms. */
export async function closedLoop(
  total: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
): Promise<{ latenciesMs: number[]; seconds: number }> {
  const latenciesMs = new Array<number>(total);
  let next = 0;
  const start = process.hrtime.bigint();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const t0 = process.hrtime.bigint();
      await work(i);
      latenciesMs[i] = Number(process.hrtime.bigint() - t0) / 1e6;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { latenciesMs, seconds };
}

/** Resident set size (VmRSS, or the peak VmHWM) of a process in MB (Linux /proc), NaN elsewhere. */
export function rssMb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc, clock ticks of 10 ms), NaN elsewhere. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
