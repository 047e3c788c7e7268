import { createLocalJWKSet, errors, type JSONWebKeySet } from 'jose';
import * as oauth from 'oauth4webapi';
import type { Logger } from '../app/logger-port.js';
import { RotorError } from '../domain/errors.js';
import type { Clock } from '../domain/ports.js';
import { isLoopbackHost, type TrustedIssuer } from './trust-config.js';

type LocalSet = ReturnType<typeof createLocalJWKSet>;

/**
 * The most a discovery document or key set may weigh. Real ones are a few KiB; a larger answer is
 * refused rather than buffered (an issuer, or whoever answers in its name, must not be able to
 * make Rotor hold an unbounded body in memory).
 */
export const MAX_KEY_DOCUMENT_BYTES = 256 * 1024;

/** Too large a discovery document or key set. */
class DocumentTooLarge extends Error {}

/**
 * `fetch`, with the response body read up to MAX_KEY_DOCUMENT_BYTES (a declared or actual larger
 * body is refused) and handed back buffered. Used for discovery (as oauth4webapi's customFetch)
 * and for key sets.
 */
async function boundedFetch(url: string, init: RequestInit): Promise<Response> {
  const res = await fetch(url, init);
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > MAX_KEY_DOCUMENT_BYTES) {
    await res.body?.cancel();
    throw new DocumentTooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_KEY_DOCUMENT_BYTES) {
        await reader.cancel();
        throw new DocumentTooLarge();
      }
      chunks.push(value);
    }
  }
  const body = res.status === 204 || res.status === 304 ? null : Buffer.concat(chunks);
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/** jose's key-resolver shape (`jwtVerify(jwt, getKey)`). */
export type KeyResolver = (header: Parameters<LocalSet>[0], token: Parameters<LocalSet>[1]) => ReturnType<LocalSet>;

/**
 * The public keys of one trusted issuer. Inline keys are fixed. Remote keys (a `jwks_uri`, or
 * one found by OIDC/RFC 8414 discovery through oauth4webapi) are fetched with a timeout, cached
 * for `jwks_cache_seconds`, and refetched on an unknown `kid` at most once per
 * `jwks_cooldown_seconds`. Every fetch is single-flight: concurrent callers share it. A fetch
 * that fails or times out is `unavailable` (UNAVAILABLE / 503 temporarily_unavailable) and is not
 * retried before the cooldown, so a down issuer is not hammered.
 */
export class IssuerKeySet {
  private local: LocalSet | undefined;
  private fetchedAt = -Infinity;
  private lastAttempt = -Infinity;
  private lastError: RotorError | undefined;
  private pending: Promise<void> | undefined;
  private jwksUri: string | undefined;

  constructor(
    private readonly issuer: TrustedIssuer,
    private readonly now: Clock,
    private readonly log: Logger,
  ) {
    if (issuer.keys.kind === 'inline') this.local = createLocalJWKSet(issuer.keys.jwks as JSONWebKeySet);
    if (issuer.keys.kind === 'jwks_uri') this.jwksUri = issuer.keys.uri;
  }

  /** The resolver handed to jose's `jwtVerify`. */
  readonly getKey: KeyResolver = async (header, token) => {
    if (this.issuer.keys.kind === 'inline') return this.local!(header, token);
    const t = this.now();
    const cooldownMs = this.issuer.jwksCooldownSeconds * 1000;
    if (this.local === undefined) {
      if (this.pending) await this.pending;
      else if (this.lastError !== undefined && t - this.lastAttempt < cooldownMs) throw this.lastError;
      else await this.refresh();
    } else if (
      t - this.fetchedAt >= this.issuer.jwksCacheSeconds * 1000 &&
      t - this.lastAttempt >= cooldownMs &&
      !this.pending
    ) {
      // Stale: refresh in the background and keep answering with the keys we have.
      this.refresh().catch(() => undefined);
    }
    try {
      return await this.local!(header, token);
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey)) throw e;
      if (this.pending) await this.pending;
      else if (this.now() - this.lastAttempt < cooldownMs) throw e;
      else await this.refresh();
      return this.local!(header, token);
    }
  };

  private refresh(): Promise<void> {
    if (this.pending) return this.pending;
    this.lastAttempt = this.now();
    this.pending = this.load()
      .then((jwks) => {
        this.local = createLocalJWKSet(jwks);
        this.fetchedAt = this.now();
        this.lastError = undefined;
      })
      .catch((e: unknown) => {
        const err =
          e instanceof RotorError
            ? e
            : new RotorError('unavailable', `keys of issuer ${this.issuer.issuer} are unavailable`);
        this.lastError = err;
        this.log.warn('workload issuer keys unavailable', { issuer: this.issuer.issuer, error: err.message });
        throw err;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  private unavailable(reason: string): RotorError {
    return new RotorError(
      'unavailable',
      `keys of issuer ${this.issuer.issuer} are unavailable: ${reason}; retry later`,
    );
  }

  private allowedUrl(u: URL): boolean {
    return (
      u.protocol === 'https:' ||
      (u.protocol === 'http:' && (this.issuer.allowInsecureHttp || isLoopbackHost(u.hostname)))
    );
  }

  /**
   * A `jwks_uri` named by a discovery document: https, or plain http only where the issuer itself
   * may be reached over http (an https issuer cannot send Rotor to a plain-http loopback port).
   */
  private allowedDiscoveredUrl(u: URL): boolean {
    if (u.protocol === 'https:') return true;
    const issuerUrl = new URL(this.issuer.issuer);
    return u.protocol === 'http:' && issuerUrl.protocol === 'http:' && this.allowedUrl(u);
  }

  /** Finds the jwks_uri once by discovery (oauth4webapi); a failure is retried after the cooldown. */
  private async locate(signal: AbortSignal): Promise<string> {
    if (this.jwksUri !== undefined) return this.jwksUri;
    if (this.issuer.keys.kind !== 'discovery') throw new Error('unreachable: no key source');
    const issuerUrl = new URL(this.issuer.issuer);
    let as: oauth.AuthorizationServer;
    try {
      const res = await oauth.discoveryRequest(issuerUrl, {
        algorithm: this.issuer.keys.algorithm,
        signal,
        [oauth.allowInsecureRequests]: this.allowedUrl(issuerUrl) && issuerUrl.protocol === 'http:',
        [oauth.customFetch]: boundedFetch,
      });
      as = await oauth.processDiscoveryResponse(issuerUrl, res);
    } catch (e) {
      if (e instanceof DocumentTooLarge)
        throw this.unavailable(`the discovery document is larger than ${MAX_KEY_DOCUMENT_BYTES} bytes`);
      throw this.unavailable(
        signal.aborted
          ? `discovery timed out after ${this.issuer.fetchTimeoutMs} ms`
          : `discovery failed (${describe(e)})`,
      );
    }
    if (typeof as.jwks_uri !== 'string') throw this.unavailable('the discovery document names no jwks_uri');
    let uri: URL;
    try {
      uri = new URL(as.jwks_uri);
    } catch {
      throw this.unavailable('the discovery document names an invalid jwks_uri');
    }
    if (!this.allowedDiscoveredUrl(uri)) throw this.unavailable('the discovered jwks_uri is not https');
    this.jwksUri = uri.href;
    return this.jwksUri;
  }

  private async load(): Promise<JSONWebKeySet> {
    const signal = AbortSignal.timeout(this.issuer.fetchTimeoutMs);
    const uri = await this.locate(signal);
    let body: unknown;
    try {
      const res = await boundedFetch(uri, {
        signal,
        headers: { accept: 'application/json, application/jwk-set+json' },
        redirect: 'error',
      });
      if (res.status !== 200) throw this.unavailable(`the JWKS endpoint answered HTTP ${res.status}`);
      body = await res.json();
    } catch (e) {
      if (e instanceof RotorError) throw e;
      if (e instanceof DocumentTooLarge)
        throw this.unavailable(`the JWKS endpoint answered with more than ${MAX_KEY_DOCUMENT_BYTES} bytes`);
      throw this.unavailable(
        signal.aborted
          ? `the JWKS endpoint did not answer within ${this.issuer.fetchTimeoutMs} ms`
          : `the JWKS endpoint could not be fetched (${describe(e)})`,
      );
    }
    if (typeof body !== 'object' || body === null || !Array.isArray((body as { keys?: unknown }).keys)) {
      throw this.unavailable('the JWKS endpoint did not return a JWK set');
    }
    return body as JSONWebKeySet;
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) return (e.cause instanceof Error ? e.cause.message : e.message).slice(0, 200);
  return 'unknown error';
}
