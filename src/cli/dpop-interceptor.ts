import { Code, ConnectError, type Interceptor, type StreamResponse } from '@connectrpc/connect';
import { createHash, randomBytes } from 'node:crypto';
import { SignJWT } from 'jose';
import type { DpopKey } from './dpop-key.js';

/**
 * A Connect interceptor that proves every call with the client's DPoP key (docs/dpop.md): a fresh
 * proof in the `dpop` header, with `ath` for the token in `authorization`, whose scheme it picks.
 * Callers set `authorization: Bearer <token>` as usual; the interceptor sends a token it knows to
 * be unbound as `Bearer` (with the proof, which asks a rotation for a bound successor) and any
 * other as `DPoP`, and learns from the server's answer which it is. A `use_dpop_nonce` answer is
 * retried once with the nonce it carries, and the nonce is kept for later proofs.
 */
export function dpopInterceptor(key: DpopKey): Interceptor {
  /** Tokens (by SHA-256) the server said are not bound: sent as Bearer. */
  const unbound = new Set<string>();
  let nonce: string | undefined;
  const learnNonce = (e: unknown) => {
    const n = e instanceof ConnectError ? e.metadata.get('dpop-nonce') : null;
    if (n) nonce = n;
  };
  return (next) => async (req) => {
    const secret = /^(?:Bearer|DPoP) +(\S+)$/i.exec(req.header.get('authorization') ?? '')?.[1];
    const ath = secret === undefined ? undefined : sha256(secret);
    const prepare = async () => {
      if (secret !== undefined)
        req.header.set('authorization', `${ath !== undefined && unbound.has(ath) ? 'Bearer' : 'DPoP'} ${secret}`);
      req.header.set('dpop', await proof(key, req.url, ath, nonce));
    };
    await prepare();
    if (req.stream) {
      // A stream's request cannot be sent twice: its failure only teaches the nonce for next time.
      const res: StreamResponse = (await next(req)) as StreamResponse;
      return { ...res, message: nonceLearning(res.message, learnNonce) } as never;
    }
    for (let attempt = 0; ; attempt++) {
      try {
        return await next(req);
      } catch (e) {
        learnNonce(e);
        if (attempt >= 2 || !(e instanceof ConnectError) || e.code !== Code.Unauthenticated) throw e;
        const code = e.metadata.get('rotor-error');
        if (code === 'use_dpop_nonce') {
          await prepare();
          continue;
        }
        if (
          code === 'unauthenticated' &&
          ath !== undefined &&
          !unbound.has(ath) &&
          /not bound to a key/.test(e.rawMessage)
        ) {
          unbound.add(ath);
          await prepare();
          continue;
        }
        throw e;
      }
    }
  };
}

async function* nonceLearning<T>(messages: AsyncIterable<T>, learn: (e: unknown) => void): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (e) {
    learn(e);
    throw e;
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'ascii').digest('base64url');
}

/** An RFC 9449 §4.2 proof for `url` (query and fragment dropped), POST. */
function proof(key: DpopKey, url: string, ath: string | undefined, nonce: string | undefined): Promise<string> {
  const u = new URL(url);
  return new SignJWT({
    htm: 'POST',
    htu: `${u.origin}${u.pathname}`,
    jti: randomBytes(16).toString('base64url'),
    ...(ath !== undefined && { ath }),
    ...(nonce !== undefined && { nonce }),
  })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: key.publicJwk })
    .setIssuedAt()
    .sign(key.privateKey);
}
