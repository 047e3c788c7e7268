import { Code } from '@connectrpc/connect';
import type { Logger } from '../app/logger-port.js';
import { TokenState } from '../gen/rotor/v1/token_pb.js';
import {
  AGENT_EXIT,
  AgentExit,
  describeError,
  finalError,
  judgeEvent,
  notActive,
  type AgentResult,
  type AgentToken,
  type Trigger,
} from './agent-verdicts.js';
import { resumableWatch, type OpenWatch } from './event-stream.js';
import { connectCode, isTransient, retryDelay, type Backoff, type Clock } from './retry-policy.js';
import {
  clearPending,
  newIdempotencyKey,
  pendingPath,
  readPending,
  readTokenFile,
  secretFingerprint,
  writeFileAtomic,
  writePending,
  type PendingRotation,
} from './token-file.js';

export { AGENT_EXIT, AgentExit, type AgentResult, type AgentToken } from './agent-verdicts.js';

/** The server as the agent uses it; `src/cli/agent-command.ts` implements it over Connect, tests fake it. */
export interface AgentApi {
  /** The token `secret` authenticates as. */
  describe(secret: string): Promise<AgentToken>;
  /** RotateToken of the caller's own token with an idempotency key. */
  rotate(secret: string, idempotencyKey: string): Promise<{ token: AgentToken; secret: string }>;
  /** WatchExpiry of the caller's own token, authenticated with `secret`. */
  watch(secret: string): OpenWatch;
}

export interface AgentOptions {
  tokenFile: string;
  /** Written to the token file when it does not exist yet (ROTOR_TOKEN); the file wins when it exists. */
  initialToken?: string;
  /** Rotate once this fraction of the lifetime (created_at → expires_at) has passed. */
  fraction: number;
  /** How long the server replays a rotation for the same idempotency key (ROTOR_RETRY_WINDOW_SECONDS). */
  retryWindowMs: number;
  /** Without a working WatchExpiry stream, how often the token is looked up to notice a revocation. */
  pollMs: number;
  /** Reconnect WatchExpiry when nothing (not even a heartbeat) arrived for this long; undefined: never. */
  idleTimeoutMs?: number;
  backoff: Backoff;
  api: AgentApi;
  clock: Clock;
  log: Logger & { debug?(m: string, f?: Record<string, unknown>): void };
  /** Ends the run (exit code 0); a started rotation stays pending and is finished by the next run. */
  signal: AbortSignal;
  /** Runs after each successful write of the token file; failures are logged, never fatal. */
  hook?: (token: AgentToken) => Promise<void>;
  newKey?: () => string;
  /** The --actor-token-file the api reads the workload JWT of a bound token from; named in messages only. */
  actorTokenFile?: string;
}

class Stopped extends Error {}

/**
 * `rotor agent`: keeps the token in a file fresh (docs/agent.md). A loop of: finish any pending
 * rotation; look the token up; wait until the lifetime fraction passes or WatchExpiry says
 * EXPIRING_SOON (or that the token or family is gone); persist a pending rotation with a fresh
 * idempotency key; rotate, retrying with the SAME key while the server is unreachable; write the
 * successor atomically; forget the pending record; run the hook. The secret is never logged.
 */
export async function runAgent(opts: AgentOptions): Promise<AgentResult> {
  return new Agent(opts).run();
}

class Agent {
  private lastSequence: bigint | undefined;
  private streamAvailable = true;
  /** The token whose wait was last logged (a poll does not log again). */
  private announced: string | undefined;
  private readonly newKey: () => string;

  constructor(private readonly o: AgentOptions) {
    this.newKey = o.newKey ?? newIdempotencyKey;
  }

  async run(): Promise<AgentResult> {
    try {
      let secret = await this.initialSecret();
      for (;;) {
        if (this.o.signal.aborted) throw new Stopped();
        const pending = await readPending(this.o.tokenFile);
        if (pending && pending.tokenSha256 === secretFingerprint(secret)) {
          this.o.log.info('finishing a pending rotation', { started_at: new Date(pending.startedAt).toISOString() });
          secret = await this.finishRotation(secret, pending);
          continue;
        }
        if (pending) {
          this.o.log.info('discarding a pending rotation of a token no longer in the file', {
            started_at: new Date(pending.startedAt).toISOString(),
          });
          await clearPending(this.o.tokenFile);
        }
        const token = await this.describe(secret);
        if (token.state !== TokenState.ACTIVE) throw notActive(token, this.o.tokenFile);
        const trigger = await this.waitForTrigger(secret, token);
        if (trigger.kind === 'stop') throw new Stopped();
        if (trigger.kind === 'exit') throw trigger.exit;
        if (trigger.kind === 'recheck') continue;
        this.o.log.info('rotating', { token_id: token.id, family_id: token.familyId, why: trigger.why });
        const p: PendingRotation = {
          idempotencyKey: this.newKey(),
          tokenSha256: secretFingerprint(secret),
          startedAt: this.o.clock.now(),
        };
        await writePending(this.o.tokenFile, p);
        secret = await this.finishRotation(secret, p);
      }
    } catch (e) {
      if (e instanceof Stopped) {
        if (await this.pendingExists())
          this.o.log.info('stopped with a rotation in progress: it stays pending and the next run finishes it', {
            pending_file: pendingPath(this.o.tokenFile),
          });
        return { code: AGENT_EXIT.stopped, message: 'stopped' };
      }
      const result =
        e instanceof AgentExit
          ? { code: e.code, message: e.message }
          : { code: AGENT_EXIT.error, message: e instanceof Error ? e.message : String(e) };
      return { code: result.code, message: result.message + (await this.settlePending(result.code)) };
    }
  }

  private async pendingExists(): Promise<boolean> {
    try {
      return (await readPending(this.o.tokenFile)) !== undefined;
    } catch {
      return true; // a malformed record is there too
    }
  }

  /**
   * On a failing exit, never leaves F.pending unexplained: after exit 3 the token in F is dead, so
   * its pending rotation can never be finished and is removed; otherwise what it is and what
   * happens to it is added to the message (the next run with the same token retries it).
   */
  private async settlePending(code: number): Promise<string> {
    if (!(await this.pendingExists())) return '';
    const file = pendingPath(this.o.tokenFile);
    if (code === AGENT_EXIT.revoked) {
      try {
        await clearPending(this.o.tokenFile);
        return ` (removed ${file}: the rotation it recorded can no longer be finished)`;
      } catch (e) {
        return ` (could not remove ${file}: ${e instanceof Error ? e.message : String(e)}; remove it before putting a new token into ${this.o.tokenFile})`;
      }
    }
    return ` (${file} is kept: it records a rotation that may have reached the server; a restart with the same token in ${this.o.tokenFile} retries it with the same idempotency key, and it is discarded once another token is put into ${this.o.tokenFile})`;
  }

  /**
   * A final refusal of RotateToken under the pending key. When the token is still ACTIVE no
   * rotation happened under that key (a committed one would have made it ROTATED), so the
   * pending record is removed; otherwise it stays for settlePending to explain.
   */
  private async refused(secret: string, e: unknown): Promise<Error> {
    const verdict = finalError(this.o.tokenFile, e, 'rotating the token', this.o.actorTokenFile);
    let state: TokenState | undefined;
    try {
      state = (await this.o.api.describe(secret)).state;
    } catch {
      state = undefined;
    }
    if (state === TokenState.ACTIVE) {
      await clearPending(this.o.tokenFile);
      if (verdict instanceof AgentExit)
        return new AgentExit(
          verdict.code,
          `${verdict.message}; the token in ${this.o.tokenFile} was not rotated and is still active`,
        );
    }
    return verdict;
  }

  private async initialSecret(): Promise<string> {
    const inFile = await readTokenFile(this.o.tokenFile);
    if (inFile !== undefined) return inFile;
    if (!this.o.initialToken) {
      throw new AgentExit(
        AGENT_EXIT.usage,
        `${this.o.tokenFile} does not exist and ROTOR_TOKEN is not set: give the agent its first token in one of them`,
      );
    }
    // Check it first, so a mistyped ROTOR_TOKEN never ends up in the file (which would then win).
    const token = await this.describe(this.o.initialToken);
    await writeFileAtomic(this.o.tokenFile, `${this.o.initialToken}\n`);
    this.o.log.info('wrote the initial token from ROTOR_TOKEN', { file: this.o.tokenFile, token_id: token.id });
    await this.runHook(token);
    return this.o.initialToken;
  }

  /** Looks the token up, retrying while the server is unreachable. */
  private async describe(secret: string): Promise<AgentToken> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.o.api.describe(secret);
      } catch (e) {
        if (!isTransient(e)) throw finalError(this.o.tokenFile, e, 'looking up the token');
        await this.pause(attempt, 'server unreachable while looking up the token', e);
      }
    }
  }

  /**
   * Calls RotateToken with the pending key until it answers. A retry with the same key returns
   * the same successor even when the first call went through and only its response was lost —
   * but only within the server's retry window. Past it, the key is retried only when the token
   * is provably still active (so no rotation happened); otherwise retrying would be reuse and
   * revoke the family, so the agent stops and says so.
   */
  private async finishRotation(secret: string, pending: PendingRotation): Promise<string> {
    let p = pending;
    for (let attempt = 0; ; attempt++) {
      if (this.o.signal.aborted) throw new Stopped();
      if (this.o.clock.now() - p.startedAt > this.o.retryWindowMs) {
        let state: TokenState | undefined;
        try {
          state = (await this.o.api.describe(secret)).state;
        } catch (e) {
          if (isTransient(e)) {
            await this.pause(attempt, 'server unreachable while checking an old pending rotation', e);
            continue;
          }
          if (connectCode(e) !== Code.Unauthenticated)
            throw finalError(this.o.tokenFile, e, 'checking an old pending rotation');
        }
        if (state !== TokenState.ACTIVE) {
          throw new AgentExit(
            AGENT_EXIT.rotatedElsewhere,
            `a rotation started at ${new Date(p.startedAt).toISOString()} may have completed, and the server's retry window has passed: retrying now would count as reuse and revoke the family, so the agent stops. Find the successor (rotor token list --family …) and put a fresh token into ${this.o.tokenFile}, then remove ${this.o.tokenFile}.pending`,
          );
        }
        p = { idempotencyKey: this.newKey(), tokenSha256: p.tokenSha256, startedAt: this.o.clock.now() };
        await writePending(this.o.tokenFile, p);
        this.o.log.info('the token is still active: restarting the old pending rotation with a new idempotency key');
      }
      let rotated: { token: AgentToken; secret: string };
      try {
        rotated = await this.o.api.rotate(secret, p.idempotencyKey);
      } catch (e) {
        if (!isTransient(e)) throw await this.refused(secret, e);
        await this.pause(attempt, 'rotation failed; retrying with the same idempotency key', e);
        continue;
      }
      await writeFileAtomic(this.o.tokenFile, `${rotated.secret}\n`);
      await clearPending(this.o.tokenFile);
      this.o.log.info('rotated; wrote the successor', {
        token_id: rotated.token.id,
        family_id: rotated.token.familyId,
        expires_at: new Date(rotated.token.expiresAt).toISOString(),
        file: this.o.tokenFile,
      });
      await this.runHook(rotated.token);
      return rotated.secret;
    }
  }

  /** Waits for the lifetime fraction to pass or for a stream event that decides. */
  private async waitForTrigger(secret: string, token: AgentToken): Promise<Trigger> {
    // A stop that came while the pending record was read or the token looked up: the abort
    // listener added below would never fire on a signal that is already aborted, and the wait
    // would last until the rotation is due. From here to that listener nothing is awaited.
    if (this.o.signal.aborted) return { kind: 'stop' };
    const lifetime = token.expiresAt - token.createdAt;
    const rotateAt = token.createdAt + lifetime * this.o.fraction;
    const now = this.o.clock.now();
    if (now >= rotateAt)
      return { kind: 'rotate', why: `${Math.round(this.o.fraction * 100)} % of the lifetime has passed` };
    if (this.announced !== token.id)
      this.o.log.info('waiting', {
        token_id: token.id,
        rotate_at: new Date(rotateAt).toISOString(),
        expires_at: new Date(token.expiresAt).toISOString(),
      });

    this.announced = token.id;
    const ac = new AbortController();
    const stop = () => ac.abort();
    this.o.signal.addEventListener('abort', stop, { once: true });
    let settle!: (t: Trigger) => void;
    const decided = new Promise<Trigger>((resolve) => (settle = resolve));
    void this.o.clock.sleep(rotateAt - now, ac.signal).then(() => {
      if (this.o.signal.aborted) return settle({ kind: 'stop' });
      // Never trust a timer alone: one that fired early would rotate again and again.
      settle(
        this.o.clock.now() >= rotateAt
          ? { kind: 'rotate', why: `${Math.round(this.o.fraction * 100)} % of the lifetime has passed` }
          : { kind: 'recheck' },
      );
    });
    // Without the stream, a lookup every pollMs notices a revocation before the rotation is due.
    if (!this.streamAvailable && rotateAt - now > this.o.pollMs)
      void this.o.clock.sleep(this.o.pollMs, ac.signal).then(() => settle({ kind: 'recheck' }));
    const watching = this.streamAvailable ? this.watchEvents(secret, token, ac.signal, settle) : Promise.resolve();
    const trigger = await decided;
    ac.abort();
    this.o.signal.removeEventListener('abort', stop);
    await watching;
    return trigger;
  }

  private async watchEvents(
    secret: string,
    token: AgentToken,
    signal: AbortSignal,
    settle: (t: Trigger) => void,
  ): Promise<void> {
    const events = resumableWatch(
      this.o.api.watch(secret),
      {},
      {
        clock: this.o.clock,
        backoff: this.o.backoff,
        signal,
        includeSnapshot: true,
        ...(this.o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: this.o.idleTimeoutMs }),
        ...(this.lastSequence === undefined ? {} : { afterSequence: this.lastSequence }),
        onReconnect: (error, delayMs, after) =>
          this.o.log.warn('watch interrupted; reconnecting', {
            error: describeError(error),
            delay_ms: delayMs,
            after_sequence: after?.toString(),
          }),
      },
    );
    try {
      for await (const event of events) {
        if (this.lastSequence === undefined || event.sequence > this.lastSequence) this.lastSequence = event.sequence;
        const t = judgeEvent(event, token, this.o.tokenFile);
        if (t) return settle(t);
      }
    } catch (e) {
      const code = connectCode(e);
      if (code === Code.Unauthenticated) return settle({ kind: 'recheck' });
      // Retention deleted events after the last sequence seen: watch again from a snapshot.
      if (code === Code.OutOfRange) this.lastSequence = undefined;
      if (code === Code.Unimplemented) {
        this.streamAvailable = false;
        this.o.log.info(
          'the server has no WatchExpiry; rotating on the lifetime fraction, looking the token up every poll interval',
        );
      } else {
        this.o.log.warn('watch failed; looking the token up again after the poll interval', {
          error: describeError(e),
        });
      }
      await this.o.clock.sleep(this.o.pollMs, signal);
      if (!signal.aborted) settle({ kind: 'recheck' });
    }
  }

  private async pause(attempt: number, message: string, error: unknown): Promise<void> {
    const delay = retryDelay(this.o.backoff, attempt, error);
    this.o.log.warn(message, { error: describeError(error), retry_in_ms: delay });
    await this.o.clock.sleep(delay, this.o.signal);
    if (this.o.signal.aborted) throw new Stopped();
  }

  private async runHook(token: AgentToken): Promise<void> {
    if (!this.o.hook) return;
    try {
      await this.o.hook(token);
    } catch (e) {
      this.o.log.warn('the --exec hook failed; the token file was written anyway', {
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }
}
