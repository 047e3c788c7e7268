import { createHmac, sign as cryptoSign, KeyObject, randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose';
import { issuedSecrets } from './server.js';

/**
 * Adds a JWT (whole, and its signature alone) to the secrets every test server's stop() looks for
 * in its log and data directory: no JWT may be logged or stored.
 */
export function rememberJwt(jwt: string): string {
  issuedSecrets.add(jwt);
  const signature = jwt.split('.')[2];
  if (signature !== undefined && signature.length >= 32) issuedSecrets.add(signature);
  return jwt;
}

/**
 * A tiny OIDC-style issuer on loopback made with jose: serves
 * `/.well-known/openid-configuration` and `/jwks`, counts the fetches, can be made to fail
 * (`down`: HTTP 500) or hang (`slow`), and signs JWTs with GitLab-CI-style claims.
 */
export interface TestIssuer {
  issuer: string;
  jwksUri: string;
  /** JWKS fetches served (or answered with an error, or held). */
  jwksFetches: number;
  /** `huge`: the JWKS answer streams 1 MiB without a content-length. */
  mode: 'ok' | 'down' | 'slow' | 'huge';
  /** Kid of the current signing key (ES256). */
  kid: string;
  /** Signs a JWT; `claims` override the defaults, `header` adds header parameters. */
  sign(now: number, claims?: JWTPayload, opts?: SignOptions): Promise<string>;
  /**
   * Signs any header and payload JSON (not checked, not completed) with the current ES256 key, or
   * `alg: "none"`-style headers alike: for fuzzing. `header` and `payload` may be any JSON value.
   */
  signRaw(header: unknown, payload: unknown): string;
  /** Adds a new ES256 key (published from now on) and signs with it. */
  rotateKey(): Promise<void>;
  /** The public JWK set currently published. */
  jwks(): { keys: JWK[] };
  /** PEM of the current public key (for the HS256 key-confusion attack). */
  publicPem(): Promise<string>;
  close(): Promise<void>;
}

export interface SignOptions {
  header?: Record<string, unknown>;
  /** Sign with the issuer's RS256 key instead (published too). */
  rsa?: boolean;
  /** Sign with a key the issuer never published. */
  foreignKey?: { key: CryptoKey; kid: string };
  /** Omit these default claims. */
  omit?: string[];
  typ?: string;
}

interface Key {
  kid: string;
  alg: 'ES256' | 'RS256';
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

async function newKey(alg: 'ES256' | 'RS256'): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`;
  return { kid, alg, privateKey, publicKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** GitLab CI id_token style claims for a pipeline of group/app on main. */
export function gitlabClaims(issuer: string): JWTPayload {
  return {
    iss: issuer,
    sub: 'project_path:group/app:ref_type:branch:ref:main',
    aud: 'rotor',
    namespace_id: '42',
    namespace_path: 'group',
    project_id: '7',
    project_path: 'group/app',
    ref: 'main',
    ref_type: 'branch',
    ref_protected: 'true',
  };
}

export async function startTestIssuer(opts: { typ?: string } = {}): Promise<TestIssuer> {
  const keys: Key[] = [await newKey('ES256')];
  const rsa = await newKey('RS256');
  const held: ServerResponse[] = [];
  let current = keys[0]!;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          issuer: self.issuer,
          jwks_uri: self.jwksUri,
          id_token_signing_alg_values_supported: ['ES256', 'RS256'],
        }),
      );
      return;
    }
    if (path === '/jwks') {
      self.jwksFetches++;
      if (self.mode === 'down') {
        res.writeHead(500).end('down');
        return;
      }
      if (self.mode === 'slow') {
        held.push(res);
        return;
      }
      if (self.mode === 'huge') {
        res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
        res.write('{"keys":[');
        const pad = JSON.stringify({ kty: 'oct', k: 'A'.repeat(16 * 1024) });
        const write = (n: number): void => {
          if (n === 0 || res.destroyed) return void res.end('{}]}');
          res.write(`${pad},`, () => write(n - 1));
        };
        write(64);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
      res.end(JSON.stringify(self.jwks()));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const self: TestIssuer = {
    issuer: base,
    jwksUri: `${base}/jwks`,
    jwksFetches: 0,
    mode: 'ok',
    get kid() {
      return current.kid;
    },
    async sign(now, claims = {}, o = {}) {
      const payload: JWTPayload = {
        ...gitlabClaims(base),
        iat: Math.floor(now / 1000),
        nbf: Math.floor(now / 1000) - 5,
        exp: Math.floor(now / 1000) + 300,
        jti: randomBytes(12).toString('hex'),
        ...claims,
      };
      for (const k of o.omit ?? []) delete payload[k];
      const key = o.foreignKey
        ? { privateKey: o.foreignKey.key, kid: o.foreignKey.kid, alg: 'ES256' }
        : o.rsa
          ? rsa
          : current;
      const typ = o.typ ?? opts.typ;
      return rememberJwt(
        await new SignJWT(payload)
          .setProtectedHeader({ alg: key.alg, kid: key.kid, ...(typ ? { typ } : {}), ...o.header })
          .sign(key.privateKey),
      );
    },
    signRaw(header, payload) {
      const input = `${b64json(header)}.${b64json(payload)}`;
      const signature = cryptoSign('sha256', Buffer.from(input), {
        key: KeyObject.from(current.privateKey),
        dsaEncoding: 'ieee-p1363',
      });
      return rememberJwt(`${input}.${signature.toString('base64url')}`);
    },
    async rotateKey() {
      current = await newKey('ES256');
      keys.push(current);
    },
    jwks: () => ({ keys: [...keys.map((k) => k.jwk), rsa.jwk] }),
    publicPem: () => exportSPKI(current.publicKey),
    async close() {
      for (const r of held) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return self;
}

/** Base64url of a JSON value. */
export function b64json(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

/** An unsecured JWT (`alg: none`, RFC 7519 §6). */
export function unsecuredJwt(payload: JWTPayload): string {
  return `${b64json({ alg: 'none', typ: 'JWT' })}.${b64json(payload)}.`;
}

/** The RS/ES-to-HS key-confusion attack: HS256 keyed with the issuer's public key PEM. */
export function hs256WithKey(header: Record<string, unknown>, payload: JWTPayload, key: string): string {
  const input = `${b64json({ ...header, alg: 'HS256' })}.${b64json(payload)}`;
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
}
