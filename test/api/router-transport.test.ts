import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRoutes, rotorServices } from '../../src/api/services.js';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import type { AppContext } from '../../src/app/context.js';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { loadConfig } from '../../src/runtime/config.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';
import { connectErrorOf } from '../support/errors.js';
import type { KnexStore } from '../../src/store/knex-store.js';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The handlers behind an in-memory Connect transport (no network), on an in-memory SQLite. */
describe('TokenService through createRouterTransport', () => {
  let app: AppContext & { store: KnexStore };
  let admin: string;
  const logs: string[] = [];

  beforeAll(async () => {
    const config = loadConfig({
      ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-mem-')),
      ROTOR_DATABASE_URL: 'sqlite://:memory:',
    });
    app = await createApp(
      config,
      createLogger('debug', (l) => void logs.push(l)),
    );
    admin = (await bootstrapAdmin(app, { ownerId: 'admin', lifetimeSeconds: 3600 })).secret;
  });
  afterAll(async () => app.store.close());

  function clients(token?: string) {
    const auth: Interceptor = (next) => (req) => {
      if (token) req.header.set('authorization', `Bearer ${token}`);
      return next(req);
    };
    const transport = createRouterTransport(connectRoutes(rotorServices(app)), { transport: { interceptors: [auth] } });
    return { tokens: createClient(TokenService, transport), exchange: createClient(TokenExchangeService, transport) };
  }

  it('creates a token and shows the secret once, never in reads', async () => {
    const { tokens } = clients(admin);
    const res = await tokens.createToken({
      kind: TokenKind.GROUP,
      ownerId: 'g1',
      name: 'ci',
      scopes: ['read'],
      expiresAt: timestampFromMs(Date.now() + 60_000),
    });
    expect(res.secret).toMatch(/^rtr_grp_[0-9A-Za-z]{49}$/);
    const got = await tokens.getToken({ id: res.token!.id });
    expect(got.token).toMatchObject({
      state: TokenState.ACTIVE,
      ownerId: 'g1',
      displayPrefix: res.secret.slice(0, 12),
    });
    expect(JSON.stringify(got.token, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))).not.toContain(
      res.secret.slice(12),
    );
  });

  it('lets owners manage only their own tokens and never escalate scopes', async () => {
    const { tokens } = clients(admin);
    const owner = await tokens.createToken({
      kind: TokenKind.PERSONAL,
      ownerId: 'alice',
      name: 'a',
      scopes: ['read'],
      expiresAt: timestampFromMs(Date.now() + 60_000),
    });
    const other = await tokens.createToken({
      kind: TokenKind.PERSONAL,
      ownerId: 'bob',
      name: 'b',
      scopes: ['read'],
      expiresAt: timestampFromMs(Date.now() + 60_000),
    });
    const alice = clients(owner.secret).tokens;
    const err = await alice.getToken({ id: other.token!.id }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({
      code: Code.PermissionDenied,
      rawMessage: 'caller may not access tokens of this owner',
    });
    const escalate = await alice
      .createToken({
        kind: TokenKind.PERSONAL,
        ownerId: 'alice',
        name: 'more',
        scopes: ['read', 'rotor:admin'],
        expiresAt: timestampFromMs(Date.now() + 60_000),
      })
      .catch((e: unknown) => ConnectError.from(e));
    expect(escalate).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'requested scopes exceed the scopes held: rotor:admin',
    });
    const listed = await alice.listTokens({ ownerId: '' });
    expect(listed.tokens.map((t) => t.ownerId)).toEqual(['alice']);
  });

  it('maps an unexpected failure to Internal with a reference and logs the cause only', async () => {
    const broken: AppContext = {
      ...app,
      store: { ...app.store, transaction: () => Promise.reject(new Error('disk on fire')) } as never,
    };
    const transport = createRouterTransport(connectRoutes(rotorServices(broken)), {
      transport: {
        interceptors: [
          (next) => (req) => {
            req.header.set('authorization', `Bearer ${admin}`);
            return next(req);
          },
        ],
      },
    });
    const err = await connectErrorOf(
      createClient(TokenService, transport).createToken({
        kind: TokenKind.GROUP,
        ownerId: 'g',
        name: 'n',
        expiresAt: timestampFromMs(Date.now() + 60_000),
      }),
    );
    expect(err.code).toBe(Code.Internal);
    expect(err.rawMessage).toMatch(/^internal error \(ref [0-9a-f-]{36}\)$/);
    expect(logs.join('')).toContain('disk on fire');
  });

  it('pages through ListTokens with a stable cursor', async () => {
    const { tokens } = clients(admin);
    for (let i = 0; i < 5; i++) {
      await tokens.createToken({
        kind: TokenKind.PROJECT,
        ownerId: 'pager',
        name: `t${i}`,
        expiresAt: timestampFromMs(Date.now() + 60_000),
      });
    }
    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = await tokens.listTokens({ ownerId: 'pager', pageSize: 2, pageToken });
      expect(page.tokens.length).toBeLessThanOrEqual(2);
      seen.push(...page.tokens.map((t) => t.name));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    // Each token exactly once across pages (order within one millisecond follows the random id).
    expect([...seen].sort()).toEqual(['t0', 't1', 't2', 't3', 't4']);
    const bad = await tokens.listTokens({ pageToken: 'garbage' }).catch((e: unknown) => ConnectError.from(e));
    expect(bad).toMatchObject({ code: Code.InvalidArgument, rawMessage: 'page_token is not valid' });
  });
});
