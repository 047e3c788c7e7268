import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from '../app/context.js';
import { ExpiryEventType, type ExpiryEvent } from '../gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../gen/rotor/v1/token_pb.js';
import { resumableWatch, type OpenWatch } from './event-stream.js';
import { backoffDelay, connectCode, isTransient, type Backoff, type Clock } from './retry-policy.js';
import { clearPending, newIdempotencyKey, readPending, readTokenFile, secretFingerprint, writeFileAtomic, writePending, type PendingRotation } from './token-file.js';

/** What the agent needs to know about the token it keeps fresh. Times are epoch milliseconds. */
export interface AgentToken {
  id: string;
  familyId: string;
  createdAt: number;
  expiresAt: number;
  state: TokenState;
}

/** The server as the agent uses it; `src/cli/agent-command.ts` implements it over Connect, tests fake it. */
export interface AgentApi {
  /** The token `secret` authenticates as. */
  describe(secret: string): Promise<AgentToken>;
  /** RotateToken of the caller's own token with an idempotency key. */
  rotate(secret: string, idempotencyKey: string): Promise<{ token: AgentToken; secret: string }>;
  /** WatchExpiry of the caller's own token, authenticated with `secret`. */
  watch(secret: string): OpenWatch;
}

/** Exit codes of `rotor agent` (docs/agent.md). */
export const AGENT_EXIT = {
  stopped: 0,
  error: 1,
  usage: 2,
  /** The token or its family was revoked, or the token expired or no longer authenticates. */
  revoked: 3,
  /** Someone else rotated the token (or a rotation may have completed out of reach): the successor's secret is not ours. */
  rotatedElsewhere: 4,
} as const;

/** How a run of the agent ended. */
export interface AgentResult {
  code: number;
  message: string;
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
  backoff: Backoff;
  api: AgentApi;
  clock: Clock;
  log: Logger & { debug?(m: string, f?: Record<string, unknown>): void };
  /** Ends the run (exit code 0); a started rotation stays pending and is finished by the next run. */
  signal: AbortSignal;
  /** Runs after each successful write of the token file; failures are logged, never fatal. */
  hook?: (token: AgentToken | undefined) => Promise<void>;
  newKey?: () => string;
}

class AgentExit extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

class Stopped extends Error {}

type Trigger = { kind: 'rotate'; why: string } | { kind: 'recheck' } | { kind: 'stop' } | { kind: 'exit'; exit: AgentExit };

/**
 * `rotor agent`: keeps the token in a file fresh (issue 4). A loop of: finish any pending
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
          this.o.log.info('discarding a pending rotation of a token no longer in the file', { started_at: new Date(pending.startedAt).toISOString() });
          await clearPending(this.o.tokenFile);
        }
        const token = await this.describe(secret);
        if (token.state !== TokenState.ACTIVE) throw this.notActive(token);
        const trigger = await this.waitForTrigger(secret, token);
        if (trigger.kind === 'stop') throw new Stopped();
        if (trigger.kind === 'exit') throw trigger.exit;
        if (trigger.kind === 'recheck') continue;
        this.o.log.info('rotating', { token_id: token.id, family_id: token.familyId, why: trigger.why });
        const p: PendingRotation = { idempotencyKey: this.newKey(), tokenSha256: secretFingerprint(secret), startedAt: this.o.clock.now() };
        await writePending(this.o.tokenFile, p);
        secret = await this.finishRotation(secret, p);
      }
    } catch (e) {
      if (e instanceof Stopped) return { code: AGENT_EXIT.stopped, message: 'stopped' };
      if (e instanceof AgentExit) return { code: e.code, message: e.message };
      return { code: AGENT_EXIT.error, message: e instanceof Error ? e.message : String(e) };
    }
  }

  private async initialSecret(): Promise<string> {
    const inFile = await readTokenFile(this.o.tokenFile);
    if (inFile !== undefined) return inFile;
    if (!this.o.initialToken) {
      throw new AgentExit(AGENT_EXIT.usage, `${this.o.tokenFile} does not exist and ROTOR_TOKEN is not set: give the agent its first token in one of them`);
    }
    await writeFileAtomic(this.o.tokenFile, this.o.initialToken + '\n');
    this.o.log.info('wrote the initial token from ROTOR_TOKEN', { file: this.o.tokenFile });
    await this.runHook(undefined);
    return this.o.initialToken;
  }

  /** Looks the token up, retrying while the server is unreachable. */
  private async describe(secret: string): Promise<AgentToken> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.o.api.describe(secret);
      } catch (e) {
        if (!isTransient(e)) throw this.finalError(e, 'looking up the token');
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
          if (connectCode(e) !== Code.Unauthenticated) throw this.finalError(e, 'checking an old pending rotation');
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
        if (!isTransient(e)) throw this.finalError(e, 'rotating the token');
        await this.pause(attempt, 'rotation failed; retrying with the same idempotency key', e);
        continue;
      }
      await writeFileAtomic(this.o.tokenFile, rotated.secret + '\n');
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
    const lifetime = token.expiresAt - token.createdAt;
    const rotateAt = token.createdAt + lifetime * this.o.fraction;
    const now = this.o.clock.now();
    if (now >= rotateAt) return { kind: 'rotate', why: `${Math.round(this.o.fraction * 100)} % of the lifetime has passed` };
    if (this.announced !== token.id) this.o.log.info('waiting', { token_id: token.id, rotate_at: new Date(rotateAt).toISOString(), expires_at: new Date(token.expiresAt).toISOString() });

    this.announced = token.id;
    const ac = new AbortController();
    const stop = () => ac.abort();
    this.o.signal.addEventListener('abort', stop, { once: true });
    let settle!: (t: Trigger) => void;
    const decided = new Promise<Trigger>((resolve) => (settle = resolve));
    void this.o.clock.sleep(rotateAt - now, ac.signal).then(() => settle(this.o.signal.aborted ? { kind: 'stop' } : { kind: 'rotate', why: `${Math.round(this.o.fraction * 100)} % of the lifetime has passed` }));
    // Without the stream, a lookup every pollMs notices a revocation before the rotation is due.
    if (!this.streamAvailable && rotateAt - now > this.o.pollMs) void this.o.clock.sleep(this.o.pollMs, ac.signal).then(() => settle({ kind: 'recheck' }));
    const watching = this.streamAvailable ? this.watchEvents(secret, token, ac.signal, settle) : Promise.resolve();
    const trigger = await decided;
    ac.abort();
    this.o.signal.removeEventListener('abort', stop);
    await watching;
    return trigger;
  }

  private async watchEvents(secret: string, token: AgentToken, signal: AbortSignal, settle: (t: Trigger) => void): Promise<void> {
    const events = resumableWatch(this.o.api.watch(secret), {}, {
      clock: this.o.clock,
      backoff: this.o.backoff,
      signal,
      includeSnapshot: true,
      ...(this.lastSequence === undefined ? {} : { afterSequence: this.lastSequence }),
      onReconnect: (error, delayMs, after) => this.o.log.warn('watch interrupted; reconnecting', { error: describeError(error), delay_ms: delayMs, after_sequence: after?.toString() }),
    });
    try {
      for await (const event of events) {
        if (this.lastSequence === undefined || event.sequence > this.lastSequence) this.lastSequence = event.sequence;
        const t = this.judge(event, token);
        if (t) return settle(t);
      }
    } catch (e) {
      const code = connectCode(e);
      if (code === Code.Unauthenticated) return settle({ kind: 'recheck' });
      if (code === Code.Unimplemented) {
        this.streamAvailable = false;
        this.o.log.info('the server has no WatchExpiry; rotating on the lifetime fraction, looking the token up every poll interval');
      } else {
        this.o.log.warn('watch failed; looking the token up again after the poll interval', { error: describeError(e) });
      }
      await this.o.clock.sleep(this.o.pollMs, signal);
      if (!signal.aborted) settle({ kind: 'recheck' });
    }
  }

  /** What one event means for the token being kept fresh; undefined: keep waiting. */
  private judge(e: ExpiryEvent, token: AgentToken): Trigger | undefined {
    if (e.type === ExpiryEventType.FAMILY_REVOKED && (e.familyId === token.familyId || e.tokenId === token.id)) {
      return exit(AGENT_EXIT.revoked, `family ${token.familyId} was revoked${e.reason ? ` (${e.reason})` : ''}: the token in ${this.o.tokenFile} is dead; issue a new token`);
    }
    if (e.tokenId !== token.id) return undefined;
    switch (e.type) {
      case ExpiryEventType.SNAPSHOT:
        return e.state === TokenState.ACTIVE || e.state === TokenState.UNSPECIFIED ? undefined : { kind: 'exit', exit: this.notActive({ ...token, state: e.state }) };
      case ExpiryEventType.EXPIRING_SOON: {
        const thresholdMs = Number(e.threshold?.seconds ?? 0n) * 1000;
        // A threshold as long as the whole lifetime was due at birth, and would be for every
        // successor of the same lifetime too: rotating on it would loop. The fraction covers it.
        if (thresholdMs >= token.expiresAt - token.createdAt) return undefined;
        return { kind: 'rotate', why: `EXPIRING_SOON (threshold ${thresholdMs / 1000} s)` };
      }
      case ExpiryEventType.EXPIRED:
        return exit(AGENT_EXIT.revoked, `token ${token.id} expired before it could be rotated; issue a new token`);
      case ExpiryEventType.REVOKED:
        return exit(AGENT_EXIT.revoked, `token ${token.id} was revoked${e.reason ? ` (${e.reason})` : ''}; issue a new token`);
      case ExpiryEventType.ROTATED:
        return { kind: 'exit', exit: this.rotatedElsewhere(token.id, e.successorId) };
      default:
        return undefined;
    }
  }

  private notActive(token: AgentToken): AgentExit {
    switch (token.state) {
      case TokenState.ROTATED:
        return this.rotatedElsewhere(token.id, '');
      case TokenState.EXPIRED:
        return new AgentExit(AGENT_EXIT.revoked, `token ${token.id} has expired; issue a new token`);
      default:
        return new AgentExit(AGENT_EXIT.revoked, `token ${token.id} was revoked; issue a new token`);
    }
  }

  private rotatedElsewhere(id: string, successorId: string): AgentExit {
    return new AgentExit(
      AGENT_EXIT.rotatedElsewhere,
      `token ${id} was rotated by another client${successorId ? ` (successor ${successorId})` : ''}; only that client received the successor's secret, so this agent cannot continue. Put the current token into ${this.o.tokenFile} and restart`,
    );
  }

  /** A final (non-retryable) server answer as an agent exit with a message for the operator. */
  private finalError(e: unknown, doing: string): Error {
    if (!(e instanceof ConnectError)) return e instanceof Error ? e : new Error(String(e));
    const domain = e.metadata.get('rotor-error');
    if (domain === 'reuse_detected') return new AgentExit(AGENT_EXIT.revoked, `family revoked: ${e.rawMessage}`);
    if (domain === 'already_rotated') return this.rotatedElsewhere('in the file', e.metadata.get('rotor-successor-id') ?? '');
    switch (e.code) {
      case Code.Unauthenticated:
        return new AgentExit(AGENT_EXIT.revoked, `the token in ${this.o.tokenFile} no longer authenticates (${e.rawMessage}): it or its family was revoked, it expired, or it was rotated elsewhere; issue a new token`);
      case Code.FailedPrecondition:
        return new AgentExit(AGENT_EXIT.revoked, `${doing}: ${e.rawMessage}`);
      case Code.PermissionDenied:
        return new AgentExit(AGENT_EXIT.error, `${doing}: ${e.rawMessage} (the token needs the rotor:rotate scope to rotate itself)`);
      default:
        return new AgentExit(AGENT_EXIT.error, `${doing}: ${describeError(e)}`);
    }
  }

  private async pause(attempt: number, message: string, error: unknown): Promise<void> {
    const delay = backoffDelay(this.o.backoff, attempt);
    this.o.log.warn(message, { error: describeError(error), retry_in_ms: delay });
    await this.o.clock.sleep(delay, this.o.signal);
    if (this.o.signal.aborted) throw new Stopped();
  }

  private async runHook(token: AgentToken | undefined): Promise<void> {
    if (!this.o.hook) return;
    try {
      await this.o.hook(token);
    } catch (e) {
      this.o.log.warn('the --exec hook failed; the token file was written anyway', { error: e instanceof Error ? e.message : String(e) });
    }
  }
}

function exit(code: number, message: string): Trigger {
  return { kind: 'exit', exit: new AgentExit(code, message) };
}

/** A short, secret-free description of an error for the log. */
export function describeError(e: unknown): string | undefined {
  if (e === undefined) return undefined;
  if (e instanceof ConnectError) return `${Code[e.code]}: ${e.rawMessage}`;
  return e instanceof Error ? e.message : String(e);
}
