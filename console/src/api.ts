import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { ExpiryService } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';

/** The signed-in session: the pasted token lives here, in memory only, and nowhere else. */
export interface Session {
  tokens: Client<typeof TokenService>;
  expiry: Client<typeof ExpiryService>;
  /** Who the token is (IntrospectToken of itself). */
  me: { tokenId: string; ownerId: string; scopes: string[]; admin: boolean };
}

/**
 * Clients of Rotor's own origin (the console is served by the server it talks to) over the Connect
 * protocol, sending the token as `authorization: Bearer`. The token is captured by the
 * interceptor's closure: never written to the URL, storage or the DOM.
 */
export async function signIn(token: string): Promise<Session> {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: window.location.origin, interceptors: [bearer] });
  const tokens = createClient(TokenService, transport);
  const expiry = createClient(ExpiryService, transport);
  const self = await tokens.introspectToken({ token });
  if (!self.active) throw new Error('this token is not active');
  const scopes = self.scope.split(' ').filter((s) => s !== '');
  return {
    tokens,
    expiry,
    me: { tokenId: self.tokenId, ownerId: self.ownerId, scopes, admin: scopes.includes('rotor:admin') },
  };
}

/** An unguessable idempotency key for a rotation (128 random bits or more, base64url). */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
}

/** What the server tells the console (GET /console/settings.json): the expiry thresholds. */
export interface ConsoleSettings {
  expiry_thresholds_seconds: number[];
}

export async function loadSettings(): Promise<ConsoleSettings> {
  const res = await fetch('settings.json', { credentials: 'omit' });
  if (!res.ok) return { expiry_thresholds_seconds: [] };
  return (await res.json()) as ConsoleSettings;
}
