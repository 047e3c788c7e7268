import { create } from '@bufbuild/protobuf';
import { durationFromMs, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import type { AgentApi, AgentToken } from '../../src/cli/agent.js';
import type { OpenWatch } from '../../src/cli/event-stream.js';
import { ExpiryEventSchema, type ExpiryEventType, type ExpiryEvent } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import type { ManualClock } from './manual-clock.js';

/** A server-streaming call the test feeds by hand. */
export class FakeStream {
  private items: ExpiryEvent[] = [];
  private error: unknown;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(
    readonly request: { afterSequence?: bigint; includeSnapshot: boolean },
    readonly secret: string,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', () => this.wake?.(), { once: true });
  }

  push(e: ExpiryEvent): void {
    this.items.push(e);
    this.wake?.();
  }

  fail(e: unknown): void {
    this.error = e;
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  get aborted(): boolean {
    return this.signal.aborted;
  }

  async *events(): AsyncGenerator<ExpiryEvent> {
    for (;;) {
      if (this.signal.aborted) throw new ConnectError('aborted', Code.Canceled);
      const item = this.items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.error !== undefined) throw this.error;
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
}

/** An ExpiryEvent with defaults. */
export function event(
  type: ExpiryEventType,
  fields: {
    sequence: number;
    tokenId?: string;
    familyId?: string;
    successorId?: string;
    thresholdMs?: number;
    reason?: string;
    state?: TokenState;
  },
): ExpiryEvent {
  return create(ExpiryEventSchema, {
    sequence: BigInt(fields.sequence),
    type,
    tokenId: fields.tokenId ?? '',
    familyId: fields.familyId ?? '',
    successorId: fields.successorId ?? '',
    reason: fields.reason ?? '',
    state: fields.state ?? TokenState.UNSPECIFIED,
    occurredAt: timestampFromMs(0),
    ...(fields.thresholdMs === undefined ? {} : { threshold: durationFromMs(fields.thresholdMs) }),
  });
}

interface Stored extends AgentToken {
  secret: string;
  successorSecret?: string;
  rotatedWithKey?: string;
  rotatedAt?: number;
}

/**
 * The rotation rules the agent depends on, in memory: the same idempotency key returns the same
 * successor, another key on a rotated token is "already rotated" inside the grace and reuse
 * (the family revoked) after it. Failures are scripted per call.
 */
export class FakeAgentServer implements AgentApi {
  readonly tokens: Stored[] = [];
  readonly rotateCalls: { secret: string; key: string }[] = [];
  readonly describeCalls: string[] = [];
  readonly streams: FakeStream[] = [];
  /** Errors the next rotate calls throw before doing anything. */
  rotateFailuresBefore: ConnectError[] = [];
  /** How many next successful rotations lose their response (committed, then UNAVAILABLE). */
  loseResponses = 0;
  describeFailures: ConnectError[] = [];
  watchUnimplemented = false;
  reuseGraceMs = 10_000;
  private n = 0;

  constructor(
    private readonly clock: ManualClock,
    public lifetimeMs: number,
  ) {}

  /** Creates an active token of a new family now. */
  issue(): Stored {
    const t: Stored = {
      id: `tok_${++this.n}`,
      familyId: `fam_${this.n}`,
      createdAt: this.clock.now(),
      expiresAt: this.clock.now() + this.lifetimeMs,
      state: TokenState.ACTIVE,
      secret: `secret-${this.n}`,
    };
    this.tokens.push(t);
    return t;
  }

  bySecret(secret: string): Stored | undefined {
    return this.tokens.find((t) => t.secret === secret);
  }

  family(familyId: string): Stored[] {
    return this.tokens.filter((t) => t.familyId === familyId);
  }

  private view(t: Stored): AgentToken {
    const state = t.state === TokenState.ACTIVE && this.clock.now() >= t.expiresAt ? TokenState.EXPIRED : t.state;
    return { id: t.id, familyId: t.familyId, createdAt: t.createdAt, expiresAt: t.expiresAt, state };
  }

  describe(secret: string): Promise<AgentToken> {
    this.describeCalls.push(secret);
    const fail = this.describeFailures.shift();
    if (fail) return Promise.reject(fail);
    const t = this.bySecret(secret);
    if (!t || this.view(t).state !== TokenState.ACTIVE)
      return Promise.reject(new ConnectError('bearer token has been revoked', Code.Unauthenticated));
    return Promise.resolve(this.view(t));
  }

  rotate(secret: string, key: string): Promise<{ token: AgentToken; secret: string }> {
    this.rotateCalls.push({ secret, key });
    const fail = this.rotateFailuresBefore.shift();
    if (fail) return Promise.reject(fail);
    const t = this.bySecret(secret);
    if (!t) return Promise.reject(new ConnectError('bearer token is unknown', Code.Unauthenticated));
    if (t.state === TokenState.ROTATED) {
      const successor = this.tokens.find((x) => x.secret === t.successorSecret)!;
      if (key === t.rotatedWithKey) return this.answer({ token: this.view(successor), secret: successor.secret });
      if (this.clock.now() - t.rotatedAt! <= this.reuseGraceMs) {
        const e = new ConnectError(
          `token was already rotated; its successor is ${successor.id}`,
          Code.FailedPrecondition,
        );
        e.metadata.set('rotor-error', 'already_rotated');
        e.metadata.set('rotor-successor-id', successor.id);
        return Promise.reject(e);
      }
      for (const m of this.family(t.familyId)) m.state = TokenState.REVOKED;
      const e = new ConnectError(
        'token was already rotated: reuse detected, every token of its family is now revoked',
        Code.PermissionDenied,
      );
      e.metadata.set('rotor-error', 'reuse_detected');
      return Promise.reject(e);
    }
    if (this.view(t).state !== TokenState.ACTIVE)
      return Promise.reject(new ConnectError('bearer token has been revoked', Code.Unauthenticated));
    const s: Stored = {
      id: `tok_${++this.n}`,
      familyId: t.familyId,
      createdAt: this.clock.now(),
      expiresAt: this.clock.now() + this.lifetimeMs,
      state: TokenState.ACTIVE,
      secret: `secret-${this.n}`,
    };
    this.tokens.push(s);
    Object.assign(t, {
      state: TokenState.ROTATED,
      successorSecret: s.secret,
      rotatedWithKey: key,
      rotatedAt: this.clock.now(),
    });
    return this.answer({ token: this.view(s), secret: s.secret });
  }

  private answer<T>(value: T): Promise<T> {
    if (this.loseResponses > 0) {
      this.loseResponses--;
      return Promise.reject(new ConnectError('read ECONNRESET', Code.Unavailable));
    }
    return Promise.resolve(value);
  }

  watch(secret: string): OpenWatch {
    return (request, signal) => {
      if (this.watchUnimplemented) {
        return (async function* () {
          yield* [];
          throw new ConnectError('HTTP 404', Code.Unimplemented);
        })();
      }
      const s = new FakeStream(request, secret, signal);
      this.streams.push(s);
      return s.events();
    };
  }

  /** The newest stream still open. */
  get live(): FakeStream | undefined {
    return [...this.streams].reverse().find((s) => !s.aborted);
  }
}
