import type { IncomingMessage, ServerResponse } from 'node:http';
import { DPOP_ALGS } from '../domain/dpop-proof.js';
import type { AppContext } from '../app/context.js';
import { exchangeTokenTypes } from '../app/exchange-service.js';
import { GRANT_TOKEN_EXCHANGE } from '../domain/token-exchange.js';

type Route = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** Path of the JWK Set (RFC 7517 §5), relative to the issuer. */
const JWKS_PATH = '/.well-known/jwks.json';
/** RFC 8414 §3: the metadata path, inserted between the issuer's host and its path. */
const METADATA_PATH = '/.well-known/oauth-authorization-server';

/** How long clients may cache the JWKS and the metadata; well below the key pre-publication lead (≥ 15 min). */
const CACHE_SECONDS = 300;

function sendPublicJson(res: ServerResponse, body: unknown, contentType: string): void {
  const text = JSON.stringify(body);
  res.writeHead(200, {
    'content-type': contentType,
    'cache-control': `public, max-age=${CACHE_SECONDS}`,
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

/**
 * RFC 8414 §2 authorization server metadata. Beyond the registered fields it names the RFC 8693
 * token types the exchange accepts and issues (`token_exchange_subject_token_types_supported`,
 * `token_exchange_requested_token_types_supported`; docs/jwt-access-tokens.md).
 */
function authorizationServerMetadata(app: AppContext): Record<string, unknown> {
  const issuer = app.jwt.issuer;
  const types = exchangeTokenTypes(app);
  return {
    issuer,
    token_endpoint: `${issuer}/oauth/token`,
    introspection_endpoint: `${issuer}/oauth/introspect`,
    revocation_endpoint: `${issuer}/oauth/revoke`,
    jwks_uri: `${issuer}${JWKS_PATH}`,
    grant_types_supported: [GRANT_TOKEN_EXCHANGE],
    response_types_supported: [],
    // The subject token is the credential of a token exchange; RFC 7009 revocation needs only the token.
    token_endpoint_auth_methods_supported: ['none'],
    revocation_endpoint_auth_methods_supported: ['none'],
    token_exchange_subject_token_types_supported: types.subject,
    token_exchange_requested_token_types_supported: types.requested,
    // RFC 9449 §5.1: the algorithms a DPoP proof may use (docs/dpop.md).
    dpop_signing_alg_values_supported: [...DPOP_ALGS],
  };
}

/**
 * The metadata path for an issuer: `/.well-known/oauth-authorization-server` plus the issuer's
 * path, if it has one (RFC 8414 §3.1).
 */
function metadataPathFor(issuer: string): string {
  const path = new URL(issuer).pathname.replace(/\/+$/, '');
  return `${METADATA_PATH}${path}`;
}

/** GET routes of the HTTP port for discovery: the JWKS and the RFC 8414 metadata. */
export function wellKnownRoutes(app: AppContext): [string, { method: string; route: Route }][] {
  const metadata: Route = async (_req, res) =>
    sendPublicJson(res, authorizationServerMetadata(app), 'application/json');
  const jwks: Route = async (_req, res) =>
    sendPublicJson(res, await app.jwt.keyRing.jwks(app.now()), 'application/jwk-set+json');
  const paths = new Set([METADATA_PATH, metadataPathFor(app.jwt.issuer)]);
  return [
    [JWKS_PATH, { method: 'GET', route: jwks }],
    ...[...paths].map((p): [string, { method: string; route: Route }] => [p, { method: 'GET', route: metadata }]),
  ];
}
