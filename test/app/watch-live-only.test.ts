/**
 * A live-only watch (no after_sequence, no snapshot) sends every event that commits after the
 * call started, including one the shared feed read between the watch's "end of the log" read and
 * its joining the feed (the feed's position is then past that end; the gap is replayed from the log).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../../src/app/authenticate.js';
import { watchEvents, type WatchItem } from '../../src/app/watch.js';
import { mintToken } from '../../src/domain/new-token.js';
import { DEFAULT_LIMITS, resolvePolicy } from '../../src/domain/policy.js';
import type { TokenRecord } from '../../src/domain/token.js';
import { ENGINES } from '../support/engines.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe.each(ENGINES)('live-only watch joining a feed that already moved on %s', (engine) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0' }, { engine });
  });
  afterAll(async () => s?.stop());

  async function tokenOf(owner: string): Promise<TokenRecord> {
    const now = Date.now();
    const policy = resolvePolicy({}, DEFAULT_LIMITS);
    const random = (n: number) => new Uint8Array(randomBytes(n));
    const t = mintToken(
      {
        kind: 'service_account',
        ownerId: owner,
        name: 'n',
        description: '',
        scopes: [],
        audiences: [],
        policy,
        expiresAt: now + 3_600_000,
      },
      now,
      random,
      s.rotor.app.keys,
    ).record;
    await s.rotor.store.tokens.insert(t);
    return t;
  }

  async function revoke(t: TokenRecord): Promise<void> {
    await s.rotor.store.transaction(async (tx) => {
      await tx.tokens.revoke(t.id, 'revoked', Date.now());
      await tx.events.append([
        {
          type: 'revoked',
          tokenId: t.id,
          familyId: t.familyId,
          successorId: null,
          actor: 'test',
          peer: null,
          reason: 'revoked',
          occurredAt: Date.now(),
        },
      ]);
    });
  }

  it('an event the feed read before the watch joined is replayed, not lost', async () => {
    // Another watcher keeps the feed reading on every commit.
    const feed = s.rotor.expiry.feed;
    const { token: admin } = await authenticate(s.rotor.app, { authorization: `Bearer ${s.adminSecret}`, peer: null });
    const other = feed.subscribe({ kind: 'owner', ownerId: 'someone-else' }, [], {
      tokenId: admin.id,
      familyId: admin.familyId,
      ownerId: admin.ownerId,
    });
    const token = await tokenOf('live-only');
    const events = s.rotor.store.events;
    const latest = events.latestSequence.bind(events);
    let injected = false;
    // The watch reads the end of the log; before it joins the feed, an event of its selection
    // commits and the feed (woken by the commit) reads past it.
    events.latestSequence = async () => {
      const end = await latest();
      if (!injected) {
        injected = true;
        await revoke(token);
        const deadline = Date.now() + 10_000; // milliseconds normally; a loaded machine may take longer
        while (feed.position <= end && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        expect(feed.position).toBeGreaterThan(end);
      }
      return end;
    };
    try {
      const plan = {
        selection: { kind: 'owner' as const, ownerId: 'live-only' },
        credential: { tokenId: admin.id, familyId: admin.familyId, ownerId: admin.ownerId },
        thresholdsSeconds: [],
        afterSequence: undefined,
        includeSnapshot: false,
      };
      const stream = watchEvents(s.rotor.app, { feed, thresholdsSeconds: [] }, plan);
      // A lost event would leave the stream waiting forever: the timer turns that into a failure.
      const first = await Promise.race([
        stream.next(),
        new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 10_000)),
      ]);
      expect(first).not.toBe('timeout');
      const item = (first as IteratorResult<WatchItem>).value as WatchItem;
      expect(item).toMatchObject({ kind: 'event', event: { type: 'revoked', tokenId: token.id } });
      await stream.return(undefined);
    } finally {
      events.latestSequence = latest;
      other.close();
    }
  });
});
