/**
 * The server and helpers shared by the files of test/e2e/rotation-rules/, one file per rule of
 * docs/rotation.md "The rules, in order": a real server, real clients on both ports (plain
 * @grpc/grpc-js on the gRPC port, a Connect client on the HTTP port).
 */
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { afterAll, beforeAll, expect } from 'vitest';
import type { TokenEvent } from '../../../src/domain/token-event.js';
import type { ExchangeTokenRequestSchema } from '../../../src/gen/rotor/v1/token_exchange_service_pb.js';
import {
  TokenKind,
  TokenState,
  type Token,
  type TokenPolicy,
  type WorkloadBinding,
} from '../../../src/gen/rotor/v1/token_pb.js';
import type { RotateTokenRequestSchema } from '../../../src/gen/rotor/v1/token_service_pb.js';
import type { Engine } from '../../support/engines.js';
import { connectApi, grpcApi, type Api, type Req, type Wire } from '../../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../../support/server.js';
import { startTestIssuer, type TestIssuer } from '../../support/jwt-issuer.js';
import { writeTrustConfig } from '../../support/trust.js';

export const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const DAY_MS = 86_400_000;
/** Server defaults (docs/rotation.md rule 3; src/domain/policy.ts DEFAULT_LIMITS). */
export const DEFAULT_GRACE_MS = 10_000;
export const RETRY_WINDOW_MS = 600_000;

export const MSG_ALREADY_ROTATED = (successorId: string) =>
  `token was already rotated; its successor is ${successorId}`;
export const MSG_REUSE = 'token was already rotated: reuse detected, every token of its family is now revoked';
export const MSG_OVERLAP_ENDED = 'bearer token has been rotated and its overlap window has ended';
/** A token of a family revoked for reuse, presented; `at` is the family's revocation (its revoked_at). */
export const MSG_REVOKED_FOR_REUSE = (at: Timestamp | undefined) =>
  `token has been revoked: reuse detected at ${new Date(ms(at)).toISOString()}`;
/** A token of a family revoked by RevokeFamily, presented. */
export const MSG_FAMILY_REVOKED = (at: Timestamp | undefined) =>
  `token has been revoked: its family was revoked at ${new Date(ms(at)).toISOString()}`;

export function ms(ts: Timestamp | undefined): number {
  if (ts === undefined) throw new Error('timestamp is unset');
  return timestampMs(ts);
}

/** A token created by the admin for the tests, with its secret. */
export interface Created {
  token: Token;
  id: string;
  familyId: string;
  secret: string;
}

export interface NewTokenOptions {
  scopes?: string[];
  audiences?: string[];
  lifetimeMs?: number;
  policy?: Partial<
    Record<
      keyof Omit<TokenPolicy, '$typeName' | '$unknown' | 'workloadBinding' | 'retireOnFirstUse' | 'dpopJkt'>,
      bigint
    >
  > & {
    retireOnFirstUse?: boolean;
    workloadBinding?: Omit<WorkloadBinding, '$typeName' | '$unknown'>;
  };
}

/** One file's server on one wire and engine, and the helpers its tests call. */
export interface RotationRulesServer {
  readonly s: TestServer;
  readonly api: Api;
  readonly admin: string;
  /** A GitLab-style CI issuer on loopback, trusted by the server (rule 4). */
  readonly ci: TestIssuer;
  /** A service-account token of owner svc-deployer, created by the admin. */
  newToken(opts?: NewTokenOptions): Promise<Created>;
  selfRotate(secret: string, req?: Req<typeof RotateTokenRequestSchema>): ReturnType<Api['rotateToken']>;
  exchange(subjectToken: string, extra?: Req<typeof ExchangeTokenRequestSchema>): ReturnType<Api['exchangeToken']>;
  get(id: string): Promise<Token>;
  family(familyId: string): Promise<Token[]>;
  events(familyId: string): Promise<TokenEvent[]>;
  activeAsSeenByAdmin(secret: string): Promise<boolean>;
  /** Rule 3 reuse outcome: every member revoked for reuse, and one family_revoked event each. */
  expectFamilyRevokedForReuse(c: Created, secrets: string[], actor: string): Promise<void>;
}

/**
 * Starts the server (trusting a loopback CI issuer) in `beforeAll` and stops it in `afterAll`:
 * call it at the top of the `describe.each` of a rule file, once per wire and engine.
 */
export function rotationRulesServer(wire: Wire, engine: Engine): RotationRulesServer {
  let s: TestServer;
  let api: Api;
  let admin: string;
  let ci: TestIssuer;

  beforeAll(async () => {
    ci = await startTestIssuer();
    const trust = writeTrustConfig({
      issuers: [{ issuer: ci.issuer, discovery: true, audiences: ['rotor'], algorithms: ['ES256'] }],
    });
    s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
    admin = s.adminSecret;
  });
  afterAll(async () => {
    api.close();
    await s.stop();
    await ci.close();
  });

  async function newToken(opts: NewTokenOptions = {}): Promise<Created> {
    const res = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc-deployer',
        name: 'deployer',
        scopes: opts.scopes ?? ['rotor:rotate', 'read', 'write'],
        audiences: opts.audiences ?? [],
        expiresAt: inMs(s.clock.now(), opts.lifetimeMs ?? DAY_MS),
        policy: opts.policy ?? {},
      },
      admin,
    );
    issuedSecrets.add(res.secret);
    const token = res.token!;
    return { token, id: token.id, familyId: token.familyId, secret: res.secret };
  }

  async function selfRotate(secret: string, req: Req<typeof RotateTokenRequestSchema> = {}) {
    const res = await api.rotateToken(req, secret);
    issuedSecrets.add(res.secret);
    return res;
  }

  async function exchange(subjectToken: string, extra: Req<typeof ExchangeTokenRequestSchema> = {}) {
    const res = await api.exchangeToken({ grantType: GRANT, subjectToken, subjectTokenType: ACCESS_TOKEN, ...extra });
    issuedSecrets.add(res.accessToken);
    return res;
  }

  async function get(id: string): Promise<Token> {
    return (await api.getToken({ id }, admin)).token!;
  }

  async function family(familyId: string): Promise<Token[]> {
    return (await api.listTokens({ familyId, pageSize: 100 }, admin)).tokens;
  }

  async function events(familyId: string): Promise<TokenEvent[]> {
    return s.rotor.store.events.list({ familyId }, 100);
  }

  async function activeAsSeenByAdmin(secret: string): Promise<boolean> {
    return (await api.introspectToken({ token: secret }, admin)).active;
  }

  async function expectFamilyRevokedForReuse(c: Created, secrets: string[], actor: string) {
    const members = await family(c.familyId);
    expect(members.length).toBeGreaterThan(0);
    for (const m of members) {
      expect(m.state, `state of ${m.id}`).toBe(TokenState.REVOKED);
      expect(m.revokeReason, `revoke reason of ${m.id}`).toBe('reuse_detected');
    }
    for (const secret of secrets) expect(await activeAsSeenByAdmin(secret)).toBe(false);
    const revokedEvents = (await events(c.familyId)).filter((e) => e.type === 'family_revoked');
    expect(revokedEvents.map((e) => e.tokenId).sort()).toEqual(members.map((m) => m.id).sort());
    for (const e of revokedEvents) {
      expect(e.reason).toBe('reuse_detected');
      expect(e.actor).toBe(actor);
    }
  }

  return {
    get s() {
      return s;
    },
    get api() {
      return api;
    },
    get admin() {
      return admin;
    },
    get ci() {
      return ci;
    },
    newToken,
    selfRotate,
    exchange,
    get,
    family,
    events,
    activeAsSeenByAdmin,
    expectFamilyRevokedForReuse,
  };
}
