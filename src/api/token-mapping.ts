import { create } from '@bufbuild/protobuf';
import { timestampDate, timestampFromMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { RotorError } from '../domain/errors.js';
import type { PolicyRequest } from '../domain/policy.js';
import { tokenState, type TokenRecord, type TokenState } from '../domain/token.js';
import type { TokenKind } from '../domain/token-kind.js';
import {
  TokenKind as PbKind,
  TokenPolicySchema,
  TokenSchema,
  TokenState as PbState,
  WorkloadBindingSchema,
  type Token,
  type TokenPolicy as PbPolicy,
} from '../gen/rotor/v1/token_pb.js';

/** Domain kind names ↔ the proto enum; the CLI prints and parses the same names. */
export const KIND_TO_PB: Readonly<Record<TokenKind, PbKind>> = {
  personal: PbKind.PERSONAL,
  project: PbKind.PROJECT,
  group: PbKind.GROUP,
  service_account: PbKind.SERVICE_ACCOUNT,
};

/** Domain state names ↔ the proto enum. */
export const STATE_TO_PB: Readonly<Record<TokenState, PbState>> = {
  active: PbState.ACTIVE,
  rotated: PbState.ROTATED,
  revoked: PbState.REVOKED,
  expired: PbState.EXPIRED,
};

/** Proto enum → domain kind; UNSPECIFIED or unknown numbers are refused. */
export function kindFromPb(kind: PbKind, field = 'kind'): TokenKind {
  const found = (Object.keys(KIND_TO_PB) as TokenKind[]).find((k) => KIND_TO_PB[k] === kind);
  if (!found)
    throw new RotorError('invalid_argument', `${field} must be one of PERSONAL, PROJECT, GROUP, SERVICE_ACCOUNT`, {
      field,
    });
  return found;
}

/** Optional kind filter: UNSPECIFIED means "any". */
export function optionalKindFromPb(kind: PbKind): TokenKind | undefined {
  return kind === PbKind.UNSPECIFIED ? undefined : kindFromPb(kind);
}

/** Optional state filter: UNSPECIFIED means "any". */
export function optionalStateFromPb(state: PbState): TokenState | undefined {
  if (state === PbState.UNSPECIFIED) return undefined;
  const found = (Object.keys(STATE_TO_PB) as TokenState[]).find((s) => STATE_TO_PB[s] === state);
  if (!found) throw new RotorError('invalid_argument', 'state is not a known token state', { field: 'state' });
  return found;
}

export function kindToPb(kind: TokenKind): PbKind {
  return KIND_TO_PB[kind];
}

/** Latest instant a request may name (year 9999); past it Date arithmetic loses meaning. */
const MAX_TIMESTAMP_SECONDS = 253402300799n;

/** A Timestamp field to epoch milliseconds, refusing out-of-range values. */
export function msFromTimestamp(ts: Timestamp | undefined, field: string): number | undefined {
  if (ts === undefined) return undefined;
  if (ts.seconds < 0n || ts.seconds > MAX_TIMESTAMP_SECONDS || ts.nanos < 0 || ts.nanos > 999_999_999) {
    throw new RotorError('invalid_argument', `${field} is out of range`, { field });
  }
  return timestampDate(ts).getTime();
}

function ts(ms: number | null): Timestamp | undefined {
  return ms === null ? undefined : timestampFromMs(ms);
}

/** Policy knobs of a request; unset fields take the server defaults. */
export function policyFromPb(p: PbPolicy | undefined): PolicyRequest {
  const n = (v: bigint | undefined, name: string) => {
    if (v === undefined) return undefined;
    if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new RotorError('invalid_argument', `policy.${name} is out of range`, { field: `policy.${name}` });
    }
    return Number(v);
  };
  if (!p) return {};
  const request: PolicyRequest = {
    maxLifetimeSeconds: n(p.maxLifetimeSeconds, 'max_lifetime_seconds'),
    defaultLifetimeSeconds: n(p.defaultLifetimeSeconds, 'default_lifetime_seconds'),
    overlapSeconds: n(p.overlapSeconds, 'overlap_seconds'),
    reuseGraceSeconds: n(p.reuseGraceSeconds, 'reuse_grace_seconds'),
  };
  if (p.workloadBinding !== undefined) {
    const b = p.workloadBinding;
    request.workloadBinding = { issuer: b.issuer, subject: b.subject, audience: b.audience, claims: { ...b.claims } };
  }
  if (p.retireOnFirstUse !== undefined) request.retireOnFirstUse = p.retireOnFirstUse;
  if (p.dpopJkt !== '') request.dpopJkt = p.dpopJkt;
  return request;
}

/** Domain record → public `Token` message (never the secret or its digest). */
export function tokenToPb(t: TokenRecord, now: number): Token {
  return create(TokenSchema, {
    id: t.id,
    familyId: t.familyId,
    previousId: t.previousId ?? '',
    successorId: t.successorId ?? '',
    kind: kindToPb(t.kind),
    ownerId: t.ownerId,
    name: t.name,
    description: t.description,
    scopes: t.scopes,
    audiences: t.audiences,
    createdAt: ts(t.createdAt),
    expiresAt: ts(t.expiresAt),
    revokedAt: ts(t.revokedAt),
    rotatedAt: ts(t.rotatedAt),
    lastUsedAt: ts(t.lastUsedAt),
    state: STATE_TO_PB[tokenState(t, now)],
    revokeReason: t.revokeReason ?? '',
    displayPrefix: t.displayPrefix,
    parentId: t.parentId ?? '',
    policy: create(TokenPolicySchema, {
      maxLifetimeSeconds: BigInt(t.policy.maxLifetimeSeconds),
      defaultLifetimeSeconds: BigInt(t.policy.defaultLifetimeSeconds),
      overlapSeconds: BigInt(t.policy.overlapSeconds),
      reuseGraceSeconds: BigInt(t.policy.reuseGraceSeconds),
      workloadBinding:
        t.policy.workloadBinding === undefined ? undefined : create(WorkloadBindingSchema, t.policy.workloadBinding),
      retireOnFirstUse: t.policy.retireOnFirstUse === true ? true : undefined,
      dpopJkt: t.policy.dpopJkt ?? '',
    }),
  });
}
