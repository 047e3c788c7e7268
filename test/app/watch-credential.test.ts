/**
 * A WatchExpiry stream lives as long as its bearer token authenticates (the feed's rules:
 * test/expiry/event-feed.test.ts). Here, on a real store: a bearer revoked after the call was
 * authorized but before its stream joined the feed ends the stream, after the events it replays.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../../src/app/authenticate.js';
import { revokeToken } from '../../src/app/revocation.js';
import { createToken } from '../../src/app/token-service.js';
import { watchEvents, type WatchItem, type WatchPlan } from '../../src/app/watch.js';
import { ENGINES } from '../support/engines.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe.each(ENGINES)('watchEvents and its credential on %s', (engine) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0' }, { engine });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('a credential revoked before the stream joined the feed ends the stream with unauthenticated after its replay; a valid one streams', async () => {
    const admin = await authenticate(s.rotor.app, { authorization: `Bearer ${s.adminSecret}`, peer: null });
    const minted = await createToken(s.rotor.app, admin, {
      kind: 'service_account',
      ownerId: 'cred',
      name: 'c',
      description: '',
      scopes: [],
      audiences: [],
      expiresAt: s.clock.now() + 86_400_000,
      policy: {},
    });
    const plan = (tokenId: string): WatchPlan => ({
      selection: { kind: 'owner', ownerId: 'cred' },
      credential: { tokenId, familyId: minted.record.familyId, ownerId: minted.record.ownerId },
      thresholdsSeconds: [],
      afterSequence: 0,
      includeSnapshot: false,
    });
    const runtime = { feed: s.rotor.expiry.feed, thresholdsSeconds: [] };

    // Still valid: the stream replays the creation.
    const ok = watchEvents(s.rotor.app, runtime, plan(minted.record.id));
    expect((await ok.next()).value).toMatchObject({
      kind: 'event',
      event: { type: 'created', tokenId: minted.record.id },
    });
    await ok.return(undefined);

    // Authenticated earlier, revoked now, and only then the stream starts.
    await revokeToken(s.rotor.app, admin, minted.record.id);
    const late = watchEvents(s.rotor.app, runtime, plan(minted.record.id));
    const got: string[] = [];
    const end = await (async () => {
      for (;;) {
        let next: IteratorResult<WatchItem>;
        try {
          next = await late.next();
        } catch (e) {
          return e;
        }
        if (next.done) return 'the stream ended without an error';
        got.push(next.value.kind === 'event' ? next.value.event.type : next.value.kind);
      }
    })();
    expect(got).toEqual(['created', 'revoked']);
    expect(end).toMatchObject({
      code: 'unauthenticated',
      message: 'bearer token has been revoked; reconnect with a valid token',
    });
    expect(s.rotor.expiry.feed.watchers).toBe(0);
  });
});
