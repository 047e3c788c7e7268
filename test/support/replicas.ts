import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scratchDatabase, type ScratchDatabase } from './engines.js';
import { runCli, startServe, type ServeProcess } from './process.js';

/** Several `rotor serve` processes on one scratch PostgreSQL database with one ROTOR_SECRET. */
export interface ReplicaSet {
  db: ScratchDatabase;
  /** The environment every replica (and `rotor` CLI call) of the set uses, without ports. */
  env: Record<string, string>;
  /** Secret of the admin token `rotor bootstrap` created. */
  adminSecret: string;
  replicas: ServeProcess[];
  /** Starts one more replica (or a replacement) with the set's environment, plus `extra`. */
  start(extra?: Record<string, string>): Promise<ServeProcess>;
  stop(): Promise<void>;
}

/** Bootstraps the database with `rotor bootstrap`, then starts `count` replicas. */
export async function startReplicas(count: number, extraEnv: Record<string, string> = {}): Promise<ReplicaSet> {
  const db = await scratchDatabase();
  const dirs: string[] = [];
  const base = {
    ROTOR_DATABASE_URL: db.url,
    ROTOR_SECRET: randomBytes(32).toString('base64url'),
    ROTOR_LOG_LEVEL: 'info',
    ...extraEnv,
  };
  const envFor = () => {
    const dir = mkdtempSync(join(tmpdir(), 'rotor-replica-'));
    dirs.push(dir);
    return { ...base, ROTOR_DATA_DIR: dir };
  };
  const replicas: ServeProcess[] = [];
  const set: ReplicaSet = {
    db,
    env: base,
    adminSecret: '',
    replicas,
    async start(extra = {}) {
      const r = await startServe({ ...envFor(), ...extra });
      replicas.push(r);
      return r;
    },
    async stop() {
      for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) await r.stop();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      await db.drop();
    },
  };
  try {
    // Replicas start together on an empty database, as on a first deploy: the migration lock queues them.
    await Promise.all(Array.from({ length: count }, () => set.start()));
    const boot = await runCli(['bootstrap', '--owner', 'ops'], envFor());
    if (boot.code !== 0) throw new Error(`rotor bootstrap failed: ${boot.stderr}`);
    set.adminSecret = boot.stdout.trim();
  } catch (e) {
    await set.stop();
    throw e;
  }
  return set;
}

/** The gRPC address and HTTP URL of a replica, for test/support/rotor-api.ts. */
export function addressOf(r: ServeProcess): { grpcAddress: string; httpUrl: string } {
  return { grpcAddress: `127.0.0.1:${r.grpcPort}`, httpUrl: `http://127.0.0.1:${r.httpPort}` };
}
