import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { resumableWatch, type OpenWatch } from '../../src/cli/event-stream.js';
import { eventJson, eventLine } from '../../src/cli/expiry-events.js';
import { ExpiryEventType, type ExpiryEvent } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { FakeStream, event } from '../support/fake-agent-server.js';
import { ManualClock } from '../support/manual-clock.js';
import { systemClock, type Clock } from '../../src/cli/retry-policy.js';

/** A clock whose sleeps return at once and are recorded. */
function instantClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return { sleeps, now: () => 0, sleep: async (ms) => void sleeps.push(ms) };
}

/** Scripted calls: each entry is what one WatchExpiry call yields, then how it ends. */
function scripted(calls: { events: ExpiryEvent[]; end?: unknown }[]): { open: OpenWatch; requests: unknown[] } {
  const requests: unknown[] = [];
  const open: OpenWatch = (req) => {
    requests.push(req);
    const call = calls.shift();
    return (async function* () {
      if (!call) throw new ConnectError('no more calls scripted', Code.PermissionDenied);
      yield* call.events;
      if (call.end !== undefined) throw call.end;
    })();
  };
  return { open, requests };
}

async function collect(it: AsyncIterable<ExpiryEvent>): Promise<{ seqs: number[]; error: unknown }> {
  const seqs: number[] = [];
  try {
    for await (const e of it) seqs.push(Number(e.sequence));
  } catch (e) {
    return { seqs, error: e };
  }
  return { seqs, error: undefined };
}

describe('resumableWatch', () => {
  it('reconnects after transient failures and clean ends with after_sequence = the newest sequence, snapshot only on the first call, backoff growing and reset by progress', async () => {
    const clock = instantClock();
    const { open, requests } = scripted([
      {
        events: [
          event(ExpiryEventType.SNAPSHOT, { sequence: 5 }),
          event(ExpiryEventType.EXPIRING_SOON, { sequence: 6 }),
        ],
        end: new ConnectError('premature close', Code.Unavailable),
      },
      { events: [], end: new ConnectError('overflow', Code.ResourceExhausted) },
      { events: [event(ExpiryEventType.ROTATED, { sequence: 9 })] },
      {
        events: [event(ExpiryEventType.HEARTBEAT, { sequence: 12 })],
        end: new ConnectError('bearer token has been revoked', Code.Unauthenticated),
      },
    ]);
    const reconnects: (bigint | undefined)[] = [];
    const result = await collect(
      resumableWatch(
        open,
        { familyId: 'fam_1' },
        {
          clock,
          backoff: { baseMs: 100, maxMs: 1000, random: () => 0.999 },
          signal: new AbortController().signal,
          includeSnapshot: true,
          onReconnect: (_e, _d, after) => reconnects.push(after),
        },
      ),
    );
    expect(result.seqs).toEqual([5, 6, 9, 12]);
    expect(result.error).toBeInstanceOf(ConnectError);
    expect((result.error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(requests).toEqual([
      { familyId: 'fam_1', includeSnapshot: true },
      { familyId: 'fam_1', includeSnapshot: false, afterSequence: 6n },
      { familyId: 'fam_1', includeSnapshot: false, afterSequence: 6n },
      { familyId: 'fam_1', includeSnapshot: false, afterSequence: 9n },
    ]);
    expect(clock.sleeps).toEqual([100, 200, 100]);
    expect(reconnects).toEqual([6n, 6n, 9n]);
  });

  it('keeps asking for the snapshot while no sequence is known, and starts from --after-sequence', async () => {
    const clock = instantClock();
    const { open, requests } = scripted([
      { events: [], end: new ConnectError('refused', Code.Unavailable) },
      { events: [], end: new ConnectError('nope', Code.Unimplemented) },
    ]);
    const r = await collect(
      resumableWatch(
        open,
        {},
        { clock, backoff: { baseMs: 1, maxMs: 1 }, signal: new AbortController().signal, includeSnapshot: true },
      ),
    );
    expect((r.error as ConnectError).code).toBe(Code.Unimplemented);
    expect(requests).toEqual([{ includeSnapshot: true }, { includeSnapshot: true }]);

    const again = scripted([{ events: [], end: new ConnectError('nope', Code.PermissionDenied) }]);
    await collect(
      resumableWatch(
        again.open,
        { tokenIds: ['tok_a'] },
        {
          clock,
          backoff: { baseMs: 1, maxMs: 1 },
          signal: new AbortController().signal,
          includeSnapshot: false,
          afterSequence: 41n,
        },
      ),
    );
    expect(again.requests).toEqual([{ tokenIds: ['tok_a'], includeSnapshot: false, afterSequence: 41n }]);
  });

  it('ends quietly when aborted', async () => {
    const ac = new AbortController();
    const { open } = scripted([
      { events: [event(ExpiryEventType.HEARTBEAT, { sequence: 1 })], end: new ConnectError('x', Code.Canceled) },
    ]);
    const seen: number[] = [];
    for await (const e of resumableWatch(
      open,
      {},
      { clock: instantClock(), backoff: { baseMs: 1, maxMs: 1 }, signal: ac.signal, includeSnapshot: false },
    )) {
      seen.push(Number(e.sequence));
      ac.abort();
    }
    expect(seen).toEqual([1]);
  });
});

describe('resumableWatch idle timeout', () => {
  it('cuts a call that stays silent (no event, no heartbeat) for the idle timeout and resumes it; any event resets the timer', async () => {
    const clock = new ManualClock();
    const streams: FakeStream[] = [];
    const open: OpenWatch = (req, signal) => {
      const s = new FakeStream(req, 'credential', signal);
      streams.push(s);
      return s.events();
    };
    const ac = new AbortController();
    const seen: number[] = [];
    const errors: unknown[] = [];
    const done = (async () => {
      for await (const e of resumableWatch(
        open,
        {},
        {
          clock,
          backoff: { baseMs: 100, maxMs: 100, random: () => 0.999 },
          signal: ac.signal,
          includeSnapshot: false,
          idleTimeoutMs: 1_000,
          onReconnect: (e) => errors.push(e),
        },
      )) {
        seen.push(Number(e.sequence));
      }
    })();
    await clock.advance(500);
    streams[0]!.push(event(ExpiryEventType.HEARTBEAT, { sequence: 3 }));
    await clock.advance(999); // 1,499: silent for 999 ms only
    expect(streams).toHaveLength(1);
    expect(streams[0]!.aborted).toBe(false);
    await clock.advance(1); // 1,500: silent for 1 s
    expect(streams[0]!.aborted).toBe(true);
    expect((errors[0] as ConnectError).code).toBe(Code.DeadlineExceeded);
    await clock.advance(100);
    expect(streams).toHaveLength(2);
    expect(streams[1]!.request).toEqual({ includeSnapshot: false, afterSequence: 3n });
    ac.abort();
    await done;
    expect(seen).toEqual([3]);
  });
});

describe('rotor watch output', () => {
  it('prints JSON lines with snake_case fields and human lines with the set fields only', () => {
    const e = event(ExpiryEventType.EXPIRING_SOON, {
      sequence: 42,
      tokenId: 'tok_a',
      familyId: 'fam_a',
      thresholdMs: 3_600_000,
      state: TokenState.ACTIVE,
    });
    expect(eventJson(e)).toEqual({
      sequence: 42,
      type: 'EXPIRING_SOON',
      token_id: 'tok_a',
      family_id: 'fam_a',
      successor_id: null,
      expires_at: null,
      threshold_seconds: 3600,
      reason: null,
      occurred_at: '1970-01-01T00:00:00.000Z',
      state: 'active',
    });
    expect(eventLine(e)).toBe(
      '1970-01-01T00:00:00.000Z #42 EXPIRING_SOON tok_a family_id=fam_a state=active threshold=3600s',
    );
  });
});

describe('systemClock', () => {
  it('does not fire early for sleeps longer than a Node timer can hold (24.8 days), and ends at once on abort', async () => {
    const ac = new AbortController();
    let fired = false;
    const sleeping = systemClock.sleep(40 * 86_400_000, ac.signal).then(() => (fired = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(fired).toBe(false);
    ac.abort();
    await sleeping;
    expect(fired).toBe(true);
  });
});
