/**
 * A WatchExpiry stream lives as long as its bearer token authenticates. The feed ends it for a
 * revocation it reads after the stream joined (test/expiry/event-feed.test.ts); a revocation that
 * committed between the call's authentication and joining the feed is caught by watchEvents itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../../src/app/authenticate.js';
import { revokeToken } from '../../src/app/revocation.js';
import { createToken } from '../../src/app/token-service.js';
import { watchEvents, type WatchPlan } from '../../src/app/watch.js';
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

  it('a credential revoked before the stream joined the feed ends the stream at once with unauthenticated; a valid one streams', async () => {
    const admin = await authenticate(s.rotor.app, { authorization: `Bearer ${s.adminSecret}`, peer: null });
    const minted = await createToken(s.rotor.app, admin, {
      kind: 'service_account', ownerId: 'cred', name: 'c', description: '', scopes: [], audiences: [], expiresAt: s.clock.now() + 86_400_000, policy: {},
    });
    const plan = (tokenId: string): WatchPlan => ({ selection: { kind: 'owner', ownerId: 'cred' }, credential: { tokenId, familyId: minted.record.familyId }, thresholdsSeconds: [], afterSequence: 0, includeSnapshot: false });
    const runtime = { feed: s.rotor.expiry.feed, thresholdsSeconds: [] };

    // Still valid: the stream replays the creation.
    const ok = watchEvents(s.rotor.app, runtime, plan(minted.record.id));
    expect((await ok.next()).value).toMatchObject({ kind: 'event', event: { type: 'created', tokenId: minted.record.id } });
    await ok.return(undefined);

    // Authenticated earlier, revoked now, and only then the stream starts.
    await revokeToken(s.rotor.app, admin, minted.record.id);
    const late = watchEvents(s.rotor.app, runtime, plan(minted.record.id));
    await expect(late.next()).rejects.toMatchObject({ code: 'unauthenticated', message: 'bearer token is no longer valid' });
    expect(s.rotor.expiry.feed.watchers).toBe(0);
  });
});
