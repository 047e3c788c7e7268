import type { IncomingMessage, ServerResponse } from 'node:http';
import { authenticate } from '../app/authenticate.js';
import { assertMayReadMetrics } from '../domain/authorization.js';
import type { AccessLog, AccessRecord } from '../api/access-log.js';
import type { AppContext, CallMeta } from '../app/context.js';
import { exchangeToken } from '../app/exchange-service.js';
import { introspect } from '../app/introspection.js';
import { revokeBySecret } from '../app/revocation.js';
import type { ConsoleHandler } from './console-routes.js';
import { httpCallMeta } from './dpop-request.js';
import { readForm } from './form-body.js';
import { sendJson, sendOAuthError } from './oauth-errors.js';
import type { HttpRouteStats } from './metrics.js';
import { wellKnownRoutes } from './well-known-routes.js';

/** A route's handler; `meta` is the call's facts (the access record when the access log is on). */
type Route = (req: IncomingMessage, res: ServerResponse, meta: CallMeta) => Promise<void>;

/** POST /oauth/token: RFC 8693 token exchange with a form body (RFC 6749 §3.2). */
function tokenRoute(app: AppContext): Route {
  return async (req, res, meta) => {
    const form = await readForm(req);
    const r = await exchangeToken(
      app,
      {
        grantType: form.get('grant_type'),
        subjectToken: form.get('subject_token'),
        subjectTokenType: form.get('subject_token_type'),
        actorToken: form.get('actor_token'),
        actorTokenType: form.get('actor_token_type'),
        requestedTokenType: form.get('requested_token_type'),
        scope: form.get('scope'),
        audience: form.getAll('audience'),
        resource: form.getAll('resource'),
        idempotencyKey: form.get('idempotency_key') || (req.headers['idempotency-key'] as string | undefined) || '',
      },
      meta.peer,
      meta.dpop,
    );
    meta.tokenId = r.subjectTokenId;
    sendJson(res, 200, {
      access_token: r.accessToken,
      issued_token_type: r.issuedTokenType,
      token_type: r.tokenType,
      expires_in: r.expiresIn,
      scope: r.scope,
      token_id: r.tokenId,
    });
  };
}

/** POST /oauth/introspect: RFC 7662, caller authenticated with a bearer token. */
function introspectRoute(app: AppContext): Route {
  return async (req, res, meta) => {
    const caller = await authenticate(app, meta);
    const form = await readForm(req);
    const result = await introspect(app, caller, form.get('token'));
    if (!result.active) {
      sendJson(res, 200, { active: false });
      return;
    }
    const t = result.token;
    sendJson(res, 200, {
      active: true,
      scope: t.scopes.join(' '),
      exp: Math.floor(t.expiresAt / 1000),
      iat: Math.floor(t.issuedAt / 1000),
      sub: t.sub,
      aud: t.audiences,
      token_type: t.cnfJkt === undefined ? 'Bearer' : 'DPoP',
      ...(t.cnfJkt !== undefined && { cnf: { jkt: t.cnfJkt } }),
      ...(t.jwt && { iss: t.jwt.iss, jti: t.jwt.jti, client_id: t.jwt.clientId, ...(t.jwt.act && { act: t.jwt.act }) }),
      ...(t.tokenId !== '' && { token_id: t.tokenId, family_id: t.familyId, owner_id: t.ownerId }),
      ...(t.kind !== undefined && { kind: t.kind }),
    });
  };
}

/** POST /oauth/revoke: RFC 7009; the token itself is the authority; 200 even when unknown (§2.2). */
function revokeRoute(app: AppContext): Route {
  return async (req, res, meta) => {
    const form = await readForm(req);
    await revokeBySecret(app, form.get('token'), meta.peer, meta.dpop);
    res.writeHead(200, { 'cache-control': 'no-store', 'content-length': 0 });
    res.end();
  };
}

/** GET /healthz: 200 when the database answers, 503 otherwise. */
function healthRoute(ping: () => Promise<void>): Route {
  return async (_req, res) => {
    try {
      await ping();
      sendJson(res, 200, { status: 'ok' });
    } catch {
      sendJson(res, 503, { status: 'unavailable' });
    }
  };
}

/**
 * GET /metrics: open, or (`ROTOR_METRICS=token`) for a bearer with `rotor:metrics` or
 * `rotor:admin`. A token without the scope is 403 `insufficient_scope` (RFC 6750 §3.1).
 */
function metricsRoute(app: AppContext, metrics: MetricsRoute): Route {
  if (!metrics.requireToken) return metrics.route;
  return async (req, res, meta) => {
    const caller = await authenticate(app, meta);
    assertMayReadMetrics(caller.token);
    await metrics.route(req, res, meta);
  };
}

/**
 * An OAuth route under the failed-authentication brake (docs/limits.md), as the RPCs are in
 * src/api/services.ts: a blocked peer is refused before the route runs, a failure is counted.
 */
function braked(app: AppContext, route: Route): Route {
  const brakes = app.brakes;
  if (!brakes?.on('failed_auth')) return route;
  return async (req, res, meta) => {
    try {
      if (brakes.anyBlocked) brakes.checkPeer(meta.peer);
      await route(req, res, meta);
    } catch (e) {
      throw await brakes.afterFailure(meta.peer, e);
    }
  };
}

/** The non-RPC routes of the HTTP port, by path, with their one allowed method. */
function oauthRoutes(
  app: AppContext,
  ping: () => Promise<void>,
  metrics: MetricsRoute | undefined,
): Map<string, { method: string; route: Route }> {
  return new Map([
    ['/oauth/token', { method: 'POST', route: braked(app, tokenRoute(app)) }],
    ['/oauth/introspect', { method: 'POST', route: braked(app, introspectRoute(app)) }],
    ['/oauth/revoke', { method: 'POST', route: braked(app, revokeRoute(app)) }],
    ['/healthz', { method: 'GET', route: healthRoute(ping) }],
    ...(metrics ? ([['/metrics', { method: 'GET', route: metricsRoute(app, metrics) }]] as const) : []),
    ...wellKnownRoutes(app),
  ]);
}

/** GET /metrics as the composition root mounts it (docs/metrics.md, "Access"). */
export interface MetricsRoute {
  route: Route;
  requireToken: boolean;
}

/** What the composition root adds: GET /metrics (unless turned off), and where requests are counted. */
export interface HttpExtras {
  metrics?: MetricsRoute;
  /** The web console at /console/ and the redirect of / (unless ROTOR_CONSOLE=off). */
  console?: ConsoleHandler;
  stats?: HttpRouteStats;
  /** The access log, when on (ROTOR_ACCESS_LOG). */
  access?: AccessLog;
}

/** Dispatches a request to an OAuth route; errors leave through the one mapping in oauth-errors.ts. */
export function oauthHandler(app: AppContext, ping: () => Promise<void>, extras: HttpExtras = {}) {
  const routes = oauthRoutes(app, ping, extras.metrics);
  const stats = extras.stats;
  return (req: IncomingMessage, res: ServerResponse, rec?: AccessRecord): void => {
    const path = (req.url ?? '/').split('?')[0]!;
    // The console answers its own paths (and /); 'finish' is emitted after end() returns, so it is counted too.
    if (extras.console?.(req, res)) {
      if (stats) res.once('finish', () => stats.finished(path === '/' ? '/' : '/console/', res.statusCode));
      return;
    }
    const entry = routes.get(path);
    // The route, never the path as sent (a client chooses it, and could put anything in it).
    if (rec) rec.target = entry ? path : 'other';
    // Counted by route, and unknown paths as one route: a path is chosen by the client.
    if (stats) res.once('finish', () => stats.finished(entry ? path : 'other', res.statusCode));
    if (!entry) {
      sendJson(res, 404, { error: 'not_found' });
      return;
    }
    if (req.method !== entry.method && !(entry.method === 'GET' && req.method === 'HEAD')) {
      req.resume();
      sendJson(
        res,
        405,
        { error: 'invalid_request', error_description: `use ${entry.method}` },
        { allow: entry.method },
      );
      return;
    }
    entry.route(req, res, httpCallMeta(req, rec)).catch((e: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendOAuthError(res, e, app.log, path);
    });
  };
}
