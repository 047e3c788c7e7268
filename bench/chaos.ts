/**
 * Chaos run: three `rotor serve` replicas on one scratch PostgreSQL database, each reaching it
 * through its own TCP proxy, under concurrent clients (grpc-js and Connect) that rotate with
 * idempotency keys, reuse old secrets, revoke and introspect; WatchExpiry watchers that resume by
 * `after_sequence` on another replica; two `rotor agent` processes keeping short-lived tokens
 * fresh. Faults at seeded random times: SIGKILL + restart of a replica, cut + restore of one or
 * every database proxy. At the end every answer is checked against the final rows and the event
 * log (see `check` below). Exit code 0 when every check held, 1 otherwise.
 *
 *   npm run chaos -- --seconds 300 [--seed N] [--clients N] [--watchers N]
 *
 * The seed decides the clients' choices and the fault schedule (not the machine's timing, so a
 * replay is close, not identical). Uses ROTOR_TEST_DATABASE_URL / BENCH_POSTGRES_URL (bench/postgres.ts).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Code } from '@connectrpc/connect';
import knexFactory from 'knex';
import { ExpiryEventType, type ExpiryEvent } from '../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../src/gen/rotor/v1/token_pb.js';
import { connectApi, grpcApi, newKey, RpcFailure, type Api, type WatchStream } from '../test/support/rotor-api.js';
import { FaultProxy } from '../test/support/fault-proxy.js';
import { startTcpProxy, hostPortOf, type TcpProxy } from '../test/support/tcp-proxy.js';
import { BENCH_POSTGRES_URL, createScratchDatabase } from './postgres.js';
import { CLI, freePort } from './server.js';

export interface ChaosOptions {
  seconds: number;
  seed: number;
  clients: number;
  watchers: number;
  /** Lifetime of the agents' tokens: short, so they rotate during the run. */
  agentLifetimeSeconds: number;
  log: (line: string) => void;
}

export interface ChaosSummary {
  seed: number;
  ops: Record<string, number>;
  kills: number;
  restarts: number;
  cuts: number;
  lostAnswers: number;
  watcherResumes: number;
  eventsChecked: number;
  agentRotations: number;
  failures: string[];
}

/** mulberry32: small, fast, seedable. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Codes after which the outcome is unknown and the same request (same key) is sent again. */
const TRANSPORT = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Unknown,
  Code.Internal,
  Code.Canceled,
  Code.Aborted,
  Code.ResourceExhausted,
]);

class CallTimeout extends Error {}

/** The call, or CallTimeout after `ms` (a cut database can hold a request longer than we wait). */
async function bounded<T>(p: Promise<T>, ms = 8000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => {}); // a late failure after the timeout is not unhandled
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new CallTimeout('call timed out')), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A transport-level failure: the outcome is unknown. */
function isTransport(e: unknown): boolean {
  if (e instanceof CallTimeout) return true;
  if (e instanceof RpcFailure) return TRANSPORT.has(e.code);
  return true; // socket errors and the like
}

function describeError(e: unknown): string {
  if (e instanceof RpcFailure) return `${Code[e.code]} ${e.rawMessage}`;
  return e instanceof Error ? e.message : String(e);
}

interface Replica {
  slot: number;
  grpcPort: number;
  httpPort: number;
  dataDir: string;
  proxy: TcpProxy;
  /** In front of the HTTP port, for the Connect clients: can lose the answer of a committed rotation. */
  http: FaultProxy;
  child?: ChildProcess;
  out: string;
}

function startReplicaProcess(r: Replica, env: Record<string, string>): Promise<void> {
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      ...process.env,
      ...env,
      ROTOR_DATA_DIR: r.dataDir,
      ROTOR_GRPC_PORT: String(r.grpcPort),
      ROTOR_HTTP_PORT: String(r.httpPort),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  r.child = child;
  r.out = '';
  const keep = (d: Buffer) => {
    r.out = (r.out + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`replica ${r.slot} did not start:\n${r.out}`));
    }, 30_000);
    const check = () => {
      if (!r.out.includes('"rotor listening"')) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('exit', onExit);
      resolve();
    };
    const onExit = () => {
      clearTimeout(timer);
      reject(new Error(`replica ${r.slot} exited while starting:\n${r.out.slice(-4000)}`));
    };
    child.stdout!.on('data', check);
    child.once('exit', onExit);
  });
}

function alive(r: Replica): boolean {
  return r.child !== undefined && r.child.exitCode === null && r.child.signalCode === null;
}

async function killReplica(r: Replica): Promise<void> {
  const child = r.child;
  if (!child || !alive(r)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

/** Starts the replica, retrying while its fixed ports are still held or the database is unreachable. */
async function restartReplica(r: Replica, env: Record<string, string>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await startReplicaProcess(r, env);
      return;
    } catch (e) {
      if (i >= 20) throw e;
      await sleep(500);
    }
  }
}

/** A TCP forwarder with a stable port that sends each new connection to a random live replica's HTTP port. */
async function startBalancer(
  replicas: Replica[],
  rand: () => number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const live = replicas.filter(alive);
    const pick = live.length > 0 ? live[Math.floor(rand() * live.length)]! : replicas[0]!;
    const upstream = netConnect(pick.httpPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

interface Family {
  familyId: string;
  headId: string;
  secret: string;
  /** A reuse or revocation was attempted on it: a later "revoked" answer is explained. */
  tainted: boolean;
}

interface Rotation {
  from: string;
  to: string;
  familyId: string;
  key: string;
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosSummary> {
  const { log } = opts;
  const rand = prng(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const summary: ChaosSummary = {
    seed: opts.seed,
    ops: {},
    kills: 0,
    restarts: 0,
    cuts: 0,
    lostAnswers: 0,
    watcherResumes: 0,
    eventsChecked: 0,
    agentRotations: 0,
    failures: [],
  };
  const count = (k: string) => {
    summary.ops[k] = (summary.ops[k] ?? 0) + 1;
  };
  const fail = (msg: string) => {
    summary.failures.push(msg);
    log(`FAILURE: ${msg}`);
  };

  const db = await createScratchDatabase(BENCH_POSTGRES_URL, 'rotor_chaos');
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(join(tmpdir(), 'rotor-chaos-'));
    dirs.push(d);
    return d;
  };
  const baseEnv = {
    ROTOR_SECRET: randomBytes(32).toString('base64url'),
    ROTOR_LOG_LEVEL: 'info',
    ROTOR_WATCH_HEARTBEAT_SECONDS: '2',
    // The brakes off: the chaos clients reuse revoked secrets and rotate families far more often
    // than the default limits allow from one address (docs/limits.md); the run checks rotation.
    ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: '0',
    ROTOR_RATE_LIMIT_MINTS_PER_OWNER: '0',
    ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY: '0',
  };
  const replicas: Replica[] = [];
  const agents: { child: ChildProcess; file: string; familyId: string; out: string }[] = [];
  const balancers: { close(): Promise<void> }[] = [];
  const apis: Api[] = [];
  const knex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 2 } });
  try {
    for (let slot = 0; slot < 3; slot++) {
      const proxy = await startTcpProxy(hostPortOf(db.url));
      const httpPort = await freePort();
      const http = new FaultProxy(httpPort);
      await http.start();
      replicas.push({ slot, grpcPort: await freePort(), httpPort, dataDir: tmp(), proxy, http, out: '' });
    }
    const envOf = (r: Replica) => ({ ...baseEnv, ROTOR_DATABASE_URL: r.proxy.rewrite(db.url) });
    await Promise.all(replicas.map((r) => restartReplica(r, envOf(r))));
    const boot = await runCli(['bootstrap', '--owner', 'ops'], {
      ...baseEnv,
      ROTOR_DATABASE_URL: db.url,
      ROTOR_DATA_DIR: tmp(),
    });
    if (boot.code !== 0) throw new Error(`rotor bootstrap failed: ${boot.stderr}`);
    const admin = boot.stdout.trim();

    // One grpc-js and one Connect client per replica slot (ports are fixed across restarts).
    const clientsOf = replicas.map((r) => {
      const a = { grpcAddress: `127.0.0.1:${r.grpcPort}`, httpUrl: `http://127.0.0.1:${r.http.port}` };
      const g = grpcApi(a);
      const c = connectApi(a);
      apis.push(g, c);
      return { grpc: g, connect: c };
    });
    const anyApi = () => {
      const c = pick(clientsOf);
      return rand() < 0.5 ? c.grpc : c.connect;
    };
    /** Retries a call (on random replicas) until it answers definitively or `until` passes. */
    async function definitive<T>(f: (api: Api) => Promise<T>, until: number): Promise<T> {
      for (;;) {
        try {
          return await bounded(f(anyApi()));
        } catch (e) {
          if (!isTransport(e) || Date.now() > until) throw e;
          await sleep(100 + rand() * 300);
        }
      }
    }

    const started = Date.now();
    const deadline = started + opts.seconds * 1000;
    const day = () => ({ seconds: BigInt(Math.floor(Date.now() / 1000) + 86_400), nanos: 0 });

    // Agents: short-lived tokens, each agent reaching a random live replica through its own balancer.
    for (let i = 0; i < 2; i++) {
      const res = await definitive(
        (api) =>
          api.createToken(
            {
              kind: TokenKind.SERVICE_ACCOUNT,
              ownerId: `chaos-agent-${i}`,
              name: `agent-${i}`,
              scopes: ['rotor:rotate'],
              expiresAt: { seconds: BigInt(Math.floor(Date.now() / 1000) + opts.agentLifetimeSeconds), nanos: 0 },
            },
            admin,
          ),
        Date.now() + 30_000,
      );
      const bal = await startBalancer(replicas, rand);
      balancers.push(bal);
      const file = join(tmp(), 'token');
      const child = spawn(
        process.execPath,
        [
          CLI,
          'agent',
          '--token-file',
          file,
          '--server',
          `http://127.0.0.1:${bal.port}`,
          '--max-backoff',
          '2s',
          '--poll-interval',
          '5s',
          '--idle-timeout',
          '10s',
        ],
        { env: { ...process.env, ROTOR_TOKEN: res.secret }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const agent = { child, file, familyId: res.token!.familyId, out: '' };
      const keep = (d: Buffer) => {
        agent.out = (agent.out + d.toString()).slice(-20_000);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      agents.push(agent);
    }

    const rotations: Rotation[] = [];
    /** Every successor id an answer carried for an idempotency key, and the family it was for. */
    const answersByKey = new Map<string, { familyId: string; from: string; ids: Set<string> }>();
    const testRevoked = new Set<string>();

    async function newFamily(worker: number): Promise<Family | undefined> {
      try {
        const res = await definitive(
          (api) =>
            api.createToken(
              {
                kind: TokenKind.SERVICE_ACCOUNT,
                ownerId: `chaos-client-${worker}`,
                name: 'chaos',
                scopes: ['rotor:rotate'],
                expiresAt: day(),
              },
              admin,
            ),
          deadline + 30_000,
        );
        count('create:ok');
        return { familyId: res.token!.familyId, headId: res.token!.id, secret: res.secret, tainted: false };
      } catch (e) {
        count(`create:${isTransport(e) ? 'gave-up' : 'error'}`);
        if (!isTransport(e)) fail(`CreateToken failed: ${describeError(e)}`);
        return undefined;
      }
    }

    async function worker(w: number): Promise<void> {
      const wire = w % 2 === 0 ? 'grpc' : 'connect';
      const apiOf = () => pick(clientsOf)[wire];
      let fam: Family | undefined;
      const old: { secret: string; familyId: string }[] = [];
      while (Date.now() < deadline) {
        if (!fam) {
          fam = await newFamily(w);
          if (!fam) continue;
        }
        const roll = rand();
        if (roll < 0.7) {
          // Rotate by secret with a fresh key; after a transport failure, the same key again.
          const key = newKey();
          const entry = { familyId: fam.familyId, from: fam.headId, ids: new Set<string>() };
          answersByKey.set(key, entry);
          let attempts = 0;
          for (;;) {
            attempts++;
            try {
              const res: { token?: { id: string; familyId: string }; secret: string } = await bounded(
                apiOf().rotateToken({ idempotencyKey: key }, fam.secret),
              );
              const to: string = res.token!.id;
              entry.ids.add(to);
              if (res.token!.familyId !== fam.familyId)
                fail(`rotation of ${fam.headId} answered ${to} of another family`);
              rotations.push({ from: fam.headId, to, familyId: fam.familyId, key });
              old.push({ secret: fam.secret, familyId: fam.familyId });
              fam = { ...fam, headId: to, secret: res.secret };
              count(attempts > 1 ? 'rotate:ok-after-retry' : 'rotate:ok');
              break;
            } catch (e) {
              if (isTransport(e) && Date.now() < deadline + 30_000) {
                count('rotate:transport-retry');
                await sleep(100 + rand() * 400);
                continue;
              }
              if (isTransport(e)) {
                count('rotate:gave-up');
                fam = undefined;
                break;
              }
              const revoked =
                e instanceof RpcFailure && (e.code === Code.PermissionDenied || e.code === Code.Unauthenticated);
              if (revoked && fam.tainted) {
                count('rotate:family-revoked-by-test');
                fam = undefined;
                break;
              }
              count('rotate:unexpected');
              fail(`rotation of ${fam.headId} (key attempt ${attempts}, ${wire}): ${describeError(e)}`);
              fam = undefined;
              break;
            }
          }
        } else if (roll < 0.85) {
          try {
            const res = await bounded(apiOf().introspectToken({ token: fam.secret }, admin));
            if (!res.active || res.tokenId !== fam.headId) {
              if (fam.tainted) count('introspect:revoked-by-test');
              else fail(`introspect of head ${fam.headId}: active=${res.active} token_id=${res.tokenId}`);
              if (!res.active) fam = undefined;
            } else count('introspect:active');
          } catch (e) {
            count(isTransport(e) ? 'introspect:transport' : 'introspect:error');
            if (!isTransport(e)) fail(`introspect: ${describeError(e)}`);
          }
        } else if (roll < 0.93) {
          const prior = old.filter((o) => o.familyId === fam!.familyId);
          if (prior.length === 0) continue;
          // An old secret presented again: already rotated (inside the grace) or reuse (family revoked).
          fam.tainted = true;
          try {
            await bounded(apiOf().rotateToken({ idempotencyKey: newKey() }, pick(prior).secret));
            count('reuse:ok');
            fail(`an old secret of family ${fam.familyId} rotated again`);
          } catch (e) {
            if (isTransport(e)) count('reuse:transport');
            else if (e instanceof RpcFailure && e.code === Code.FailedPrecondition) count('reuse:already-rotated');
            else if (e instanceof RpcFailure && (e.code === Code.PermissionDenied || e.code === Code.Unauthenticated)) {
              count('reuse:family-revoked');
              testRevoked.add(fam.familyId);
              fam = undefined;
            } else {
              count('reuse:unexpected');
              fail(`reuse of an old secret: ${describeError(e)}`);
            }
          }
        } else {
          fam.tainted = true;
          testRevoked.add(fam.familyId);
          const family = rand() < 0.5;
          try {
            if (family)
              await definitive((api) => api.revokeFamily({ familyId: fam!.familyId }, admin), deadline + 30_000);
            else await definitive((api) => api.revokeToken({ id: fam!.headId }, admin), deadline + 30_000);
            count(family ? 'revoke-family:ok' : 'revoke-token:ok');
          } catch (e) {
            count(family ? 'revoke-family:error' : 'revoke-token:error');
            if (!isTransport(e)) log(`revoke: ${describeError(e)}`);
          }
          fam = undefined;
        }
        await sleep(rand() * 50);
      }
    }

    // Watchers: one per selected client owner, resuming on another replica by after_sequence.
    interface Watcher {
      owner: string;
      seen: bigint[];
      last: bigint;
      stream?: WatchStream;
      stop: boolean;
    }
    const watchers: Watcher[] = Array.from({ length: Math.min(opts.watchers, opts.clients) }, (_, i) => ({
      owner: `chaos-client-${i}`,
      seen: [],
      last: 0n,
      stop: false,
    }));
    const isLogEvent = (e: ExpiryEvent) => e.sequence > 0n && e.type !== ExpiryEventType.HEARTBEAT;
    async function watch(wt: Watcher): Promise<void> {
      let opened = 0;
      while (!wt.stop) {
        const api = anyApi();
        const s = api.watchExpiry({ ownerId: wt.owner, afterSequence: wt.last }, admin);
        wt.stream = s;
        if (opened++ > 0) summary.watcherResumes++;
        let consumed = 0;
        const drain = () => {
          for (; consumed < s.received.length; consumed++) {
            const e = s.received[consumed]!;
            if (!isLogEvent(e)) continue;
            if (e.sequence <= wt.last)
              fail(`watcher ${wt.owner}: sequence ${e.sequence} after ${wt.last} (repeat or out of order)`);
            wt.seen.push(e.sequence);
            if (e.sequence > wt.last) wt.last = e.sequence;
          }
        };
        const timer = setInterval(drain, 100);
        const end = await s.ended;
        clearInterval(timer);
        drain();
        if (end && !isTransport(end) && !wt.stop) log(`watcher ${wt.owner} ended: ${describeError(end)}`);
        if (!wt.stop) await sleep(200 + rand() * 300);
      }
    }

    // Faults, one at a time, at seeded random moments.
    async function faults(): Promise<void> {
      while (Date.now() < deadline - 2000) {
        await sleep(1000 + rand() * 3000);
        if (Date.now() >= deadline - 2000) break;
        const r = pick(replicas);
        const kind = rand();
        if (kind < 0.25) {
          // The next Connect RotateToken answer through this replica's HTTP proxy is lost after the commit.
          log(`fault: lose the next RotateToken answer of replica ${r.slot}`);
          void r.http.loseNextResponse('RotateToken', async () => {
            summary.lostAnswers++;
          });
        } else if (kind < 0.6) {
          log(`fault: SIGKILL replica ${r.slot}`);
          await killReplica(r);
          summary.kills++;
          await sleep(300 + rand() * 1500);
          await restartReplica(r, envOf(r));
          summary.restarts++;
        } else {
          const all = rand() < 0.25;
          const cut = all ? replicas : [r];
          log(`fault: cut database proxy of ${all ? 'every replica' : `replica ${r.slot}`}`);
          for (const x of cut) x.proxy.cut();
          summary.cuts++;
          await sleep(300 + rand() * 2500);
          for (const x of cut) x.proxy.restore();
        }
      }
    }

    const watching = watchers.map((wt) => watch(wt));
    await Promise.all([...Array.from({ length: opts.clients }, (_, w) => worker(w)), faults()]);
    log('load and faults done; checking');
    for (const r of replicas) if (!alive(r)) await restartReplica(r, envOf(r));

    // Watchers catch up with the log, then stop.
    const selectionOf = async (owner: string): Promise<bigint[]> => {
      const rows = (await knex('token_events as e')
        .join('tokens as t', 't.id', 'e.token_id')
        .where('t.owner_id', owner)
        .orderBy('e.sequence')
        .select('e.sequence')) as { sequence: string | number }[];
      return rows.map((x) => BigInt(x.sequence));
    };
    for (const wt of watchers) {
      const expected = await selectionOf(wt.owner);
      const max = expected.at(-1) ?? 0n;
      const until = Date.now() + 60_000;
      while (wt.last < max && Date.now() < until) await sleep(200);
      wt.stop = true;
      wt.stream?.cancel();
    }
    await Promise.all(watching);
    for (const wt of watchers) {
      const expected = await selectionOf(wt.owner);
      const got = wt.seen.join(',');
      if (got !== expected.join(',')) {
        const missing = expected.filter((s) => !wt.seen.includes(s));
        const extra = wt.seen.filter((s) => !expected.includes(s));
        fail(
          `watcher ${wt.owner}: saw ${wt.seen.length} events, log has ${expected.length}; missing [${missing.slice(0, 10).join(',')}] extra [${extra.slice(0, 10).join(',')}]`,
        );
      }
      summary.eventsChecked += expected.length;
    }

    // Agents: the token in each file is active.
    for (const [i, a] of agents.entries()) {
      const until = Date.now() + 60_000;
      let ok = false;
      let last = '';
      while (!ok && Date.now() < until) {
        try {
          const secret = (await readFile(a.file, 'utf8')).trim();
          const res = await bounded(anyApi().introspectToken({ token: secret }, admin));
          ok = res.active;
          last = `active=${res.active} token_id=${res.tokenId}`;
        } catch (e) {
          last = describeError(e);
        }
        if (!ok) await sleep(500);
      }
      if (!ok) fail(`agent ${i}: its token file holds no active token (${last})\n${a.out.slice(-3000)}`);
      const n = (await knex('token_events').where({ family_id: a.familyId, type: 'rotated' }).count({ n: '*' })) as {
        n: string | number;
      }[];
      summary.agentRotations += Number(n[0]!.n);
    }

    // Family invariants over the final rows.
    const now = Date.now();
    const tokens = (await knex('tokens').select(
      'id',
      'family_id',
      'previous_id',
      'successor_id',
      'revoked_at',
      'revoke_reason',
      'expires_at',
    )) as {
      id: string;
      family_id: string;
      previous_id: string | null;
      successor_id: string | null;
      revoked_at: string | number | null;
      revoke_reason: string | null;
      expires_at: string | number;
    }[];
    const byId = new Map(tokens.map((t) => [t.id, t]));
    const families = new Map<string, typeof tokens>();
    for (const t of tokens) families.set(t.family_id, [...(families.get(t.family_id) ?? []), t]);
    const isActive = (t: (typeof tokens)[number]) =>
      t.revoked_at === null && t.successor_id === null && Number(t.expires_at) > now;
    for (const [fid, members] of families) {
      const active = members.filter(isActive);
      if (active.length > 1) fail(`family ${fid} has ${active.length} active tokens`);
      const revoked = members.some((t) => t.revoke_reason === 'family_revoked' || t.revoke_reason === 'reuse_detected');
      if (revoked && active.length > 0) fail(`revoked family ${fid} has an active member ${active[0]!.id}`);
      if (revoked && agents.some((a) => a.familyId === fid)) fail(`an agent's family ${fid} was revoked`);
      for (const t of members) {
        if (t.successor_id === null) continue;
        const s = byId.get(t.successor_id);
        if (!s) fail(`successor ${t.successor_id} of ${t.id} does not exist`);
        else if (s.family_id !== fid || s.previous_id !== t.id)
          fail(`successor ${s.id} of ${t.id}: family ${s.family_id}, previous ${s.previous_id}`);
      }
    }

    // Every client answer is explained by the final rows and the log.
    const rotatedEvents = new Set(
      (
        (await knex('token_events').where({ type: 'rotated' }).select('token_id', 'successor_id')) as {
          token_id: string;
          successor_id: string | null;
        }[]
      ).map((e) => `${e.token_id}>${e.successor_id}`),
    );
    for (const [key, a] of answersByKey) {
      if (a.ids.size > 1)
        fail(`key ${key.slice(0, 6)}… got ${a.ids.size} different successors: ${[...a.ids].join(', ')}`);
      for (const id of a.ids) {
        const t = byId.get(id);
        if (!t) fail(`successor ${id} answered for ${a.from} does not exist`);
        else if (t.family_id !== a.familyId) fail(`successor ${id} is in family ${t.family_id}, not ${a.familyId}`);
        else if (t.previous_id !== a.from) fail(`successor ${id} follows ${t.previous_id}, not ${a.from}`);
      }
    }
    for (const r of rotations) {
      if (!rotatedEvents.has(`${r.from}>${r.to}`)) fail(`rotation ${r.from} → ${r.to} answered OK is not in the log`);
      if (byId.get(r.from)?.successor_id !== r.to)
        fail(`rotation ${r.from} → ${r.to}: row says ${byId.get(r.from)?.successor_id}`);
    }
    summary.ops['checked:rotations'] = rotations.length;
    // Retries that found their rotation committed (the answer was lost) and got it again.
    const replayed = (await knex('token_events').where({ type: 'replayed' }).count({ n: '*' })) as {
      n: string | number;
    }[];
    summary.ops['log:replayed'] = Number(replayed[0]!.n);
    summary.ops['checked:families'] = families.size;
    return summary;
  } catch (e) {
    fail(`run aborted: ${e instanceof Error ? e.stack : String(e)}`);
    for (const r of replicas) if (r.out) log(`replica ${r.slot} output tail:\n${r.out.slice(-2000)}`);
    return summary;
  } finally {
    for (const a of agents) a.child.kill('SIGTERM');
    await Promise.all(agents.map((a) => (a.child.exitCode === null ? new Promise((r) => a.child.once('exit', r)) : 0)));
    for (const a of apis) a.close();
    for (const b of balancers) await b.close();
    for (const r of replicas) await killReplica(r);
    for (const r of replicas) await r.proxy.close();
    for (const r of replicas) await r.http.stop();
    await knex.destroy();
    await db.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

export function formatSummary(s: ChaosSummary): string {
  const ops = Object.entries(s.ops)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `  ${k}: ${v}`)
    .join('\n');
  return [
    `chaos summary (seed ${s.seed})`,
    ops,
    `  faults: ${s.kills} kills (${s.restarts} restarts), ${s.cuts} database cuts, ${s.lostAnswers} lost answers`,
    `  watchers: ${s.watcherResumes} resumes, ${s.eventsChecked} events checked`,
    `  agents: ${s.agentRotations} rotations`,
    s.failures.length === 0 ? 'all checks held' : `${s.failures.length} FAILURES (replay with --seed ${s.seed})`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      seed: { type: 'string' },
      clients: { type: 'string', default: '6' },
      watchers: { type: 'string', default: '3' },
      'agent-lifetime': { type: 'string', default: '24' },
    },
  });
  const seed = values.seed === undefined ? randomBytes(4).readUInt32BE() : Number(values.seed);
  const num = (name: string, v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got "${v}"`);
    return n;
  };
  console.log(`chaos: seed ${seed} (replay with --seed ${seed})`);
  const summary = await runChaos({
    seconds: num('seconds', values.seconds!),
    seed: num('seed', String(seed)),
    clients: num('clients', values.clients!),
    watchers: num('watchers', values.watchers!),
    agentLifetimeSeconds: num('agent-lifetime', values['agent-lifetime']!),
    log: (l) => console.log(`[${new Date().toISOString()}] ${l}`),
  });
  console.log(formatSummary(summary));
  process.exitCode = summary.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
