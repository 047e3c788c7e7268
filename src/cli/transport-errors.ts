import { ConnectError, type Interceptor } from '@connectrpc/connect';

/** Node's codes of a server that cannot be reached at all. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT']);

/** OpenSSL's codes of a certificate the client does not trust (or that names another host). */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The first `code` in an error's cause chain (Connect wraps Node's error). */
function causeCode(e: unknown): string | undefined {
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 5; c = c.cause, depth++) {
    const code = (c as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * Rewrites a failure to reach the server into a message that names the URL and the fix: an
 * unreachable server points at ROTOR_SERVER / --server, an untrusted certificate at
 * NODE_EXTRA_CA_CERTS. The Connect code is kept (UNAVAILABLE stays retryable for the agent and
 * `rotor watch`); answers of the server pass through untouched.
 */
export const explainTransportErrors: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (e) {
    if (!(e instanceof ConnectError) || e.metadata.has('rotor-error')) throw e;
    const code = causeCode(e.cause);
    if (code === undefined) throw e;
    const server = new URL(req.url).origin;
    if (UNREACHABLE.has(code))
      throw new ConnectError(
        `cannot reach the Rotor server at ${server} (${code}); set ROTOR_SERVER or --server`,
        e.code,
        e.metadata,
        undefined,
        e,
      );
    if (UNTRUSTED.has(code))
      throw new ConnectError(
        `the TLS certificate of ${server} is not trusted (${code}: ${e.rawMessage}); if the server uses a private CA, point NODE_EXTRA_CA_CERTS at its PEM file (NODE_EXTRA_CA_CERTS=/path/to/ca.pem rotor …)${code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? ', and use a host name the certificate names in ROTOR_SERVER or --server' : ''}`,
        e.code,
        e.metadata,
        undefined,
        e,
      );
    throw e;
  }
};
