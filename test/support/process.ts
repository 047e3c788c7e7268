import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BRAKES_OFF } from './brakes-off.js';

/** The repository root and the built CLI (`npm test` builds dist/ first). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = `${ROOT}dist/src/cli/main.js`;

/**
 * Runs `rotor …` to completion. `timeoutMs`: kill it after that long (for a command expected to
 * exit, such as a `serve` that must refuse to start, so a regression leaves no server behind).
 */
export function runCli(
  args: string[],
  env: Record<string, string>,
  options: { timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, cwd: ROOT, timeout: options.timeoutMs ?? 0, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** A `rotor serve` child process with its output captured. */
export interface ServeProcess {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  output: () => string;
  stop(): Promise<number | null>;
}

/** Starts `rotor serve` on ephemeral ports and waits for its "rotor listening" line. */
export function startServe(env: Record<string, string>): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    // Without the brakes unless a test sets them (test/support/server.ts, BRAKES_OFF).
    env: { ...process.env, ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0', ...BRAKES_OFF, ...env },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // never leave a half-started server behind
      reject(new Error(`rotor serve did not start:\n${out}`));
    }, 20_000);
    const check = () => {
      const line = out.split('\n').find((l) => l.includes('"rotor listening"'));
      if (!line) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      const { grpc_port, http_port } = JSON.parse(line) as { grpc_port: number; http_port: number };
      resolve({
        child,
        grpcPort: grpc_port,
        httpPort: http_port,
        output: () => out,
        stop: async () => {
          child.kill('SIGTERM');
          return exited;
        },
      });
    };
    child.stdout!.on('data', check);
    child.once('exit', () => reject(new Error(`rotor serve exited:\n${out}`)));
  });
}

/** A long-running `rotor …` child (agent, watch) with its output captured. */
export interface CliProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `rotor …` without waiting for it to finish. */
export function startCli(args: string[], env: Record<string, string>): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Polls `check` every 50 ms until it returns a value other than undefined/false, or fails after `ms`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
