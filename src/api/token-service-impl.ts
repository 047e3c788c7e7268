import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import { listEvents } from '../app/audit.js';
import { authenticate } from '../app/authenticate.js';
import { andThen } from '../app/maybe-async.js';
import type { AppContext } from '../app/context.js';
import { rotateToken } from '../app/rotation-service.js';
import { tokenTypeOf } from '../app/dpop.js';
import { introspect, type Introspection } from '../app/introspection.js';
import { revokeFamilyWith, revokeTokenWith } from '../app/revocation.js';
import { createToken, getToken, listTokens } from '../app/token-service.js';
import { TokenKind as TokenKindPb } from '../gen/rotor/v1/token_pb.js';
import type { IntrospectTokenResponseSchema, TokenService } from '../gen/rotor/v1/token_service_pb.js';
import { auditEventToPb } from './audit-mapping.js';
import { callMeta } from './call-meta.js';
import {
  kindFromPb,
  kindToPb,
  msFromTimestamp,
  optionalKindFromPb,
  optionalStateFromPb,
  policyFromPb,
  tokenToPb,
} from './token-mapping.js';

/** `rotor.v1.TokenService`: decodes requests, calls the use cases, encodes responses. */
export function tokenServiceImpl(app: AppContext): ServiceImpl<typeof TokenService> {
  return {
    async createToken(req, ctx) {
      const caller = await authenticate(app, callMeta(ctx));
      const minted = await createToken(app, caller, {
        kind: kindFromPb(req.kind),
        ownerId: req.ownerId,
        name: req.name,
        description: req.description,
        scopes: req.scopes,
        audiences: req.audiences,
        expiresAt: msFromTimestamp(req.expiresAt, 'expires_at'),
        policy: policyFromPb(req.policy),
      });
      return { token: tokenToPb(minted.record, app.now()), secret: minted.secret };
    },

    async getToken(req, ctx) {
      const caller = await authenticate(app, callMeta(ctx));
      return { token: tokenToPb(await getToken(app, caller, req.id), app.now()) };
    },

    async listTokens(req, ctx) {
      const caller = await authenticate(app, callMeta(ctx));
      const page = await listTokens(
        app,
        caller,
        {
          ownerId: req.ownerId || undefined,
          kind: optionalKindFromPb(req.kind),
          familyId: req.familyId || undefined,
          state: optionalStateFromPb(req.state),
        },
        req.pageSize,
        req.pageToken,
      );
      const now = app.now();
      return { tokens: page.tokens.map((t) => tokenToPb(t, now)), nextPageToken: page.nextPageToken };
    },

    async rotateToken(req, ctx) {
      const minted = await rotateToken(app, callMeta(ctx), {
        id: req.id,
        idempotencyKey: req.idempotencyKey,
        scopes: req.scopes,
        expiresAt: msFromTimestamp(req.expiresAt, 'expires_at'),
        actorToken: req.actorToken,
        actorTokenType: req.actorTokenType,
      });
      return {
        token: tokenToPb(minted.record, app.now()),
        secret: minted.secret,
        tokenType: tokenTypeOf(minted.record),
      };
    },

    async revokeToken(req, ctx) {
      const caller = await authenticate(app, callMeta(ctx));
      const r = await revokeTokenWith(app, caller, req.id, { cascade: req.cascade, dryRun: req.dryRun });
      return {
        token: tokenToPb(r.token, app.now()),
        cascadeRevokedCount: r.cascadeCount,
        dryRunTokenIds: r.dryRunIds,
        truncated: r.truncated,
      };
    },

    async revokeFamily(req, ctx) {
      const caller = await authenticate(app, callMeta(ctx));
      const r = await revokeFamilyWith(app, caller, req.familyId, { cascade: req.cascade, dryRun: req.dryRun });
      return {
        revokedCount: r.revokedCount,
        cascadeRevokedCount: r.cascadeCount,
        dryRunTokenIds: r.dryRunIds,
        truncated: r.truncated,
      };
    },

    async listEvents(req, ctx) {
      const caller = await authenticate(app, callMeta(ctx));
      const page = await listEvents(app, caller, {
        tokenId: req.tokenId,
        familyId: req.familyId,
        ownerId: req.ownerId,
        types: req.types,
        since: msFromTimestamp(req.since, 'since'),
        until: msFromTimestamp(req.until, 'until'),
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        newestFirst: req.newestFirst,
      });
      return { events: page.events.map(auditEventToPb), nextPageToken: page.nextPageToken };
    },

    // Not async: with the caller and the token in the cache, authenticate and introspect answer at
    // once, and so does this (no promise, no microtask; bench/README.md, "Tenth session").
    introspectToken(req, ctx) {
      return andThen(authenticate(app, callMeta(ctx)), (caller) =>
        andThen(introspect(app, caller, req.token), introspectionResponse),
      );
    },
  };
}

function introspectionResponse(result: Introspection): MessageInitShape<typeof IntrospectTokenResponseSchema> {
  if (!result.active) return { active: false };
  const t = result.token;
  const res = {
    active: true,
    scope: t.scopes.join(' '),
    exp: BigInt(Math.floor(t.expiresAt / 1000)),
    iat: BigInt(Math.floor(t.issuedAt / 1000)),
    sub: t.sub,
    tokenType: t.cnfJkt === undefined ? 'Bearer' : 'DPoP',
    cnfJkt: t.cnfJkt ?? '',
    tokenId: t.tokenId,
    familyId: t.familyId,
    kind: t.kind === undefined ? TokenKindPb.UNSPECIFIED : kindToPb(t.kind),
    ownerId: t.ownerId,
    aud: t.audiences,
    iss: '',
    jti: '',
    clientId: '',
  };
  // Assigned rather than spread into the literal, which would build it field by field at run time.
  if (t.jwt) {
    res.iss = t.jwt.iss;
    res.jti = t.jwt.jti;
    res.clientId = t.jwt.clientId;
  }
  return res;
}
