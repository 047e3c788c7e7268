/**
 * The chaos run (bench/chaos.ts), short and with a fixed seed: three replicas on one PostgreSQL
 * database behind per-replica TCP proxies, concurrent rotating/revoking/introspecting clients over
 * grpc-js and Connect, resuming WatchExpiry watchers and two `rotor agent` processes, while
 * replicas are SIGKILLed and restarted and database connections are cut. The run's own checks
 * (family invariants, every answer explained by the final rows and the log, every watcher saw its
 * selection exactly once in order, every agent holds an active token) must all hold. It runs the
 * built script (`npm test` builds dist/ first) as a child process, as `npm run chaos` does.
 */
import { execFile } from 'node:child_process';
import { expect, it } from 'vitest';
import { describeOnPostgres, TEST_POSTGRES_URL } from '../support/engines.js';
import { ROOT } from '../support/process.js';

const SEED = 20261207;

function runChaos(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [`${ROOT}dist/bench/chaos.js`, ...args],
      {
        cwd: ROOT,
        env: { ...process.env, BENCH_POSTGRES_URL: TEST_POSTGRES_URL ?? '' },
        maxBuffer: 64 * 1024 * 1024,
        timeout: 600_000,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** A summary line `  name: N` as a number (0 when absent). */
function countOf(stdout: string, name: string): number {
  const m = new RegExp(`^  ${name}: (\\d+)$`, 'm').exec(stdout);
  return m ? Number(m[1]) : 0;
}

describeOnPostgres('chaos run on postgres', () => {
  it('replica kills and database cuts under load leave every answer, watcher and agent explained by the final state on postgres', async () => {
    const r = await runChaos(['--seconds', '60', '--seed', String(SEED), '--clients', '4', '--watchers', '2']);
    expect(r.stdout).toContain(`chaos: seed ${SEED}`);
    expect(r.stdout + r.stderr).toContain('all checks held');
    expect(r.code).toBe(0);
    // The run did something: rotations checked, faults injected, events compared.
    expect(countOf(r.stdout, 'checked:rotations')).toBeGreaterThan(0);
    const faults = /faults: (\d+) kills \(\d+ restarts\), (\d+) database cuts/.exec(r.stdout);
    expect(faults).not.toBeNull();
    expect(Number(faults![1]) + Number(faults![2])).toBeGreaterThan(0);
    const watched = /watchers: \d+ resumes, (\d+) events checked/.exec(r.stdout);
    expect(Number(watched![1])).toBeGreaterThan(0);
  }, 600_000);
});
