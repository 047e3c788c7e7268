import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import * as oauth from 'oauth4webapi';
import { rememberJwt } from './jwt-issuer.js';

/**
 * A real third-party OIDC server on loopback: `oidc-provider` (panva), configured to issue RFC
 * 9068 JWT access tokens (`typ: at+jwt`, ES256) to a CI client through the client-credentials
 * grant with a resource indicator whose audience is `rotor`. Tokens are fetched with
 * oauth4webapi, as a CI job would.
 */
export interface OidcIssuer {
  issuer: string;
  clientId: string;
  /** A fresh JWT access token from the provider's token endpoint. */
  accessToken(): Promise<string>;
  close(): Promise<void>;
}

const CLIENT_ID = 'ci-runner';
const CLIENT_SECRET = 'ci-runner-secret-0123456789abcdef';

export async function startOidcIssuer(): Promise<OidcIssuer> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: 'oidc-provider-es256', alg: 'ES256', use: 'sig' };
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [signingKey] },
    scopes: ['deploy'],
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://rotor.example',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'deploy',
          audience: 'rotor',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  const opts = { [oauth.allowInsecureRequests]: true } as const;
  const issuerUrl = new URL(issuer);
  let as: oauth.AuthorizationServer | undefined;
  const client: oauth.Client = { client_id: CLIENT_ID };
  return {
    issuer,
    clientId: CLIENT_ID,
    async accessToken() {
      as ??= await oauth.processDiscoveryResponse(
        issuerUrl,
        await oauth.discoveryRequest(issuerUrl, { ...opts, algorithm: 'oidc' }),
      );
      const res = await oauth.clientCredentialsGrantRequest(
        as,
        client,
        oauth.ClientSecretBasic(CLIENT_SECRET),
        { scope: 'deploy' },
        opts,
      );
      return rememberJwt((await oauth.processClientCredentialsResponse(as, client, res)).access_token);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
