import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { HealthService } from '../src/gen/rotor/v1/health_service_pb.js';
import { benchClient } from './grpc.js';

/** The compiled CLI (`dist/src/cli/main.js`), next to this file's `dist/bench/`. */
export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/**
 * A port free right now, chosen below the kernel's ephemeral range. The bench keeps a port fixed
 * across a server's restarts; a port from the ephemeral range (what binding to 0 hands out) can be
 * taken meanwhile as the local end of any outgoing connection on the machine, and then the restart
 * fails with "port in use" for as long as that connection lives. Ports below the range are only
 * ever taken by an explicit bind.
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 10_000;
  if (low - floor < 1000) return anyFreePort();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    if (await bindable(port)) return port;
  }
  return anyFreePort();
}

function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // Not Linux: fall through to the IANA dynamic range.
  }
  return [49152, 65535];
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The environment of every `rotor` command of the bench: the default log level and access log
 * (`info`, on), so the figures include what a deployed server writes; stdout goes to /dev/null.
 */
export function rotorEnv(dataDir: string, grpcPort: number, httpPort: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ROTOR_DATA_DIR: dataDir,
    ROTOR_GRPC_PORT: String(grpcPort),
    ROTOR_HTTP_PORT: String(httpPort),
    ROTOR_LOG_LEVEL: 'info',
    ROTOR_ACCESS_LOG: 'on',
    // The brakes off unless a scenario turns them on (bench/README.md, "Brakes"): the rotation
    // scenarios rotate one family far past the default limit of docs/limits.md.
    ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: '0',
    ROTOR_RATE_LIMIT_MINTS_PER_OWNER: '0',
    ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY: '0',
  };
}

/** `rotor bootstrap --create`: creates the database and the first admin token in the data dir; returns its secret. */
export async function bootstrap(env: NodeJS.ProcessEnv): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'bootstrap', '--create', '--expires-in', '1d'], {
    env,
  });
  const secret = stdout.trim();
  if (!/^\S+$/.test(secret)) throw new Error(`rotor bootstrap printed no secret: ${JSON.stringify(stdout)}`);
  return secret;
}

/** A `rotor serve` child process. */
export interface ServerProcess {
  child: ChildProcess;
  stderr: () => string;
  stop(): Promise<void>;
}

/** Starts `rotor serve` and waits until HealthService/Check answers on the gRPC port. */
export async function startServer(env: NodeJS.ProcessEnv, grpcAddress: string): Promise<ServerProcess> {
  // stdout (the log lines, one access line per call) to /dev/null: the write is paid, nobody reads it.
  const child = spawn(process.execPath, [CLI, 'serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
    process.stderr.write(`[rotor serve] ${b.toString()}`);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
  };
  const health = benchClient(HealthService, grpcAddress);
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`rotor serve exited with ${child.exitCode}: ${err}`);
      try {
        await health.call('check', {});
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`rotor serve did not answer on ${grpcAddress} within 15 s: ${err}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    health.close();
  }
  return { child, stderr: () => err, stop };
}

/** The plain @grpc/grpc-js no-op server (bench/plain-grpc-server.ts), started as `rotor serve` is. */
export async function startPlainServer(env: NodeJS.ProcessEnv, port: number): Promise<ServerProcess> {
  const script = fileURLToPath(new URL('./plain-grpc-server.js', import.meta.url));
  const child = spawn(process.execPath, [script, String(port)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`plain grpc-js server exited with ${code}: ${err}`)));
  });
  return { child, stderr: () => err, stop };
}
