import { Code, ConnectError } from '@connectrpc/connect';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AGENT_EXIT, runAgent, type AgentOptions, type AgentResult } from '../../src/cli/agent.js';
import { pendingPath, readPending, secretFingerprint, writePending } from '../../src/cli/token-file.js';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { FakeAgentServer, event } from '../support/fake-agent-server.js';
import { ManualClock, flush, until } from '../support/manual-clock.js';

const LIFETIME = 3_000;
/** The manual clock's start. */
const T0 = 1_000_000;

describe('rotor agent (fake server, manual clock)', () => {
  let dir: string;
  let file: string;
  let clock: ManualClock;
  let server: FakeAgentServer;
  let logs: string[];
  let stop: AbortController;
  let keys: number;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'rotor-agent-unit-'));
    file = join(dir, 'token');
    clock = new ManualClock(T0);
    server = new FakeAgentServer(clock, LIFETIME);
    logs = [];
    stop = new AbortController();
    keys = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function start(extra: Partial<AgentOptions> = {}): Promise<AgentResult> {
    const line = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
      logs.push(JSON.stringify({ level, msg, ...fields }));
    return runAgent({
      tokenFile: file,
      fraction: 2 / 3,
      retryWindowMs: 600_000,
      pollMs: 60_000,
      backoff: { baseMs: 100, maxMs: 1_000, random: () => 0.999 },
      api: server,
      clock,
      log: { info: line('info'), warn: line('warn'), error: line('error'), debug: line('debug') },
      signal: stop.signal,
      newKey: () => `test-key-${String(++keys).padStart(12, '0')}`,
      ...extra,
    });
  }

  const fileToken = () => readFileSync(file, 'utf8').trim();
  const mode = (p: string) => statSync(p).mode & 0o777;
  /** No secret and no idempotency key in the log (docs/agent.md, "Secrets"). */
  const noSecretLogged = () => {
    for (const t of server.tokens) expect(logs.join('\n')).not.toContain(t.secret);
    expect(logs.join('\n')).not.toContain('test-key-');
  };

  it('rotates once 2/3 of the lifetime has passed, writes the successor with mode 0600 and rotates it in turn (timer only: no WatchExpiry)', async () => {
    server.watchUnimplemented = true;
    const first = server.issue();
    writeFileSync(file, `${first.secret}\n`, { mode: 0o644 });
    const run = start();
    await until('the agent waits for 2/3 of the lifetime', () => clock.hasTimerAt(T0 + 2_000));
    await clock.advance(1_999);
    expect(server.rotateCalls).toEqual([]);
    expect(logs.join('\n')).toContain('the server has no WatchExpiry');
    await clock.advance(1);
    // The next wait (2/3 of the successor's lifetime) starts only once the successor is written.
    await until('the agent waits for the successor', () => clock.hasTimerAt(T0 + 4_000));
    expect(server.rotateCalls).toHaveLength(1);
    const second = server.tokens[1]!;
    expect(fileToken()).toBe(second.secret);
    expect(mode(file)).toBe(0o600);
    expect(() => statSync(pendingPath(file))).toThrow();
    expect(readdirSync(dir)).toEqual(['token']);
    // The successor (created now, same lifetime) is rotated at 2/3 of its own lifetime.
    await clock.advance(1_999);
    expect(server.rotateCalls).toHaveLength(1);
    await clock.advance(1);
    await until('the second successor is written', () => clock.hasTimerAt(T0 + 6_000));
    expect(server.rotateCalls).toHaveLength(2);
    expect(fileToken()).toBe(server.tokens[2]!.secret);
    stop.abort();
    expect(await run).toEqual({ code: AGENT_EXIT.stopped, message: 'stopped' });
    expect(server.family(first.familyId).map((t) => t.state)).toEqual([
      TokenState.ROTATED,
      TokenState.ROTATED,
      TokenState.ACTIVE,
    ]);
    noSecretLogged();
  });

  it('honours --rotate-at-fraction and rotates at once when that point has already passed', async () => {
    server.watchUnimplemented = true;
    writeFileSync(file, server.issue().secret);
    await clock.advance(2_500); // the agent starts late: 5/6 of the lifetime is gone
    const run = start({ fraction: 0.5 });
    // Rotated at once; the successor (created at +2.5 s, 3 s lifetime) is due at +4 s.
    await until('the agent waits for the successor', () => clock.hasTimerAt(T0 + 4_000));
    expect(server.rotateCalls).toHaveLength(1);
    await clock.advance(1_499);
    expect(server.rotateCalls).toHaveLength(1);
    await clock.advance(1);
    await until('the second rotation', () => server.rotateCalls.length === 2);
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('rotates on EXPIRING_SOON before the fraction, ignoring a threshold as long as the lifetime, and re-watches the successor after the last sequence', async () => {
    const first = server.issue();
    writeFileSync(file, first.secret);
    const run = start();
    await until('the watch', () => server.live !== undefined);
    const s1 = server.live!;
    expect(s1.secret).toBe(first.secret);
    expect(s1.request).toEqual({ includeSnapshot: true });
    s1.push(
      event(ExpiryEventType.SNAPSHOT, {
        sequence: 7,
        tokenId: first.id,
        familyId: first.familyId,
        state: TokenState.ACTIVE,
      }),
    );
    s1.push(event(ExpiryEventType.EXPIRING_SOON, { sequence: 8, tokenId: first.id, thresholdMs: 3_600_000 }));
    await clock.advance(100);
    expect(server.rotateCalls).toEqual([]);
    s1.push(event(ExpiryEventType.HEARTBEAT, { sequence: 11 }));
    s1.push(event(ExpiryEventType.EXPIRING_SOON, { sequence: 12, tokenId: first.id, thresholdMs: 1_000 }));
    await until("the successor's watch", () => server.streams.length === 2);
    expect(server.rotateCalls).toHaveLength(1);
    expect(s1.aborted).toBe(true);
    const successor = server.tokens[1]!;
    expect(fileToken()).toBe(successor.secret);
    const s2 = server.live!;
    expect(s2.secret).toBe(successor.secret);
    expect(s2.request).toEqual({ includeSnapshot: true, afterSequence: 12n });
    stop.abort();
    expect((await run).code).toBe(0);
    noSecretLogged();
  });

  it('reconnects a dropped stream with after_sequence and backoff, without rotating early', async () => {
    const first = server.issue();
    writeFileSync(file, first.secret);
    const run = start();
    await until('the watch', () => server.live !== undefined);
    server.live!.push(event(ExpiryEventType.SNAPSHOT, { sequence: 3, tokenId: first.id, state: TokenState.ACTIVE }));
    await flush();
    server.live!.fail(new ConnectError('premature close', Code.Unavailable));
    await until('the reconnect backoff', () => clock.hasTimerAt(T0 + 100));
    await clock.advance(99);
    expect(server.streams).toHaveLength(1);
    await clock.advance(1);
    await until('the reconnect', () => server.streams.length === 2);
    expect(server.live!.request).toEqual({ includeSnapshot: false, afterSequence: 3n });
    expect(server.rotateCalls).toEqual([]);
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('after OUT_OF_RANGE (retention deleted events after its sequence) watches again from a snapshot, not from that sequence', async () => {
    const first = server.issue();
    writeFileSync(file, first.secret);
    const run = start({ pollMs: 500 });
    await until('the watch', () => server.live !== undefined);
    server.live!.push(event(ExpiryEventType.SNAPSHOT, { sequence: 3, tokenId: first.id, state: TokenState.ACTIVE }));
    await flush();
    server.live!.fail(new ConnectError('events up to sequence 9 were deleted by retention', Code.OutOfRange));
    await until('the look-up after the poll interval', () => clock.hasTimerAt(T0 + 500));
    await clock.advance(500);
    await until('the new watch', () => server.streams.length === 2);
    expect(server.live!.request).toEqual({ includeSnapshot: true });
    expect(server.rotateCalls).toEqual([]);
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('retries a rotation whose response was lost with the SAME idempotency key and backoff, and gets the same successor', async () => {
    server.watchUnimplemented = true;
    const first = server.issue();
    writeFileSync(file, first.secret);
    server.rotateFailuresBefore = [new ConnectError('connect ECONNREFUSED', Code.Unavailable)];
    server.loseResponses = 2;
    const run = start();
    await until('the agent waits for 2/3 of the lifetime', () => clock.hasTimerAt(T0 + 2_000));
    await clock.advance(2_000);
    await until('the first retry is scheduled', () => clock.hasTimerAt(T0 + 2_100));
    expect(server.rotateCalls).toHaveLength(1);
    const pending = await readPending(file);
    expect(pending).toEqual({
      idempotencyKey: 'test-key-000000000001',
      tokenSha256: secretFingerprint(first.secret),
      startedAt: T0 + 2_000,
    });
    expect(mode(pendingPath(file))).toBe(0o600);
    // Backoff doubles: retries 100, 200 and 400 ms apart; the third retry gets the answer.
    for (const at of [T0 + 2_100, T0 + 2_300, T0 + 2_700]) {
      await until(`a retry due at +${at - T0} ms`, () => clock.hasTimerAt(at));
      await clock.advance(at - clock.now());
    }
    // The successor was minted by the first call that got through (+2.1 s): its turn comes at +4.1 s.
    await until("the successor's turn is scheduled", () => clock.hasTimerAt(T0 + 4_100));
    expect(server.rotateCalls).toHaveLength(4);
    expect(new Set(server.rotateCalls.map((c) => c.key))).toEqual(new Set(['test-key-000000000001']));
    expect(server.tokens).toHaveLength(2);
    expect(fileToken()).toBe(server.tokens[1]!.secret);
    expect(await readPending(file)).toBeUndefined();
    stop.abort();
    expect((await run).code).toBe(0);
    expect(server.family(first.familyId).map((t) => t.state)).toEqual([TokenState.ROTATED, TokenState.ACTIVE]);
  });

  it('after a crash mid-rotation, the next run finishes the pending rotation with the persisted key instead of starting a new one', async () => {
    server.watchUnimplemented = true;
    const first = server.issue();
    writeFileSync(file, first.secret);
    server.loseResponses = 1; // the server committed; the agent never heard back
    const crashed = start();
    await until('the agent waits for 2/3 of the lifetime', () => clock.hasTimerAt(T0 + 2_000));
    await clock.advance(2_000);
    await until('the retry is scheduled', () => clock.hasTimerAt(T0 + 2_100));
    stop.abort(); // the agent "dies" while backing off
    expect(await crashed).toEqual({ code: 0, message: 'stopped' });
    expect(fileToken()).toBe(first.secret);
    expect((await readPending(file))?.idempotencyKey).toBe('test-key-000000000001');

    server.reuseGraceMs = 100;
    await clock.advance(500); // past the reuse grace: a new key would now revoke the family
    stop = new AbortController();
    const restarted = start();
    // The successor was minted by the lost call at +2 s: its turn comes at +4 s.
    await until('the successor is written', () => clock.hasTimerAt(T0 + 4_000));
    expect(server.rotateCalls.map((c) => c.key)).toEqual(['test-key-000000000001', 'test-key-000000000001']);
    expect(fileToken()).toBe(server.tokens[1]!.secret);
    expect(server.family(first.familyId).map((t) => t.state)).toEqual([TokenState.ROTATED, TokenState.ACTIVE]);
    stop.abort();
    expect((await restarted).code).toBe(0);
  });

  it('a pending record of an older token (the successor was already written) is discarded', async () => {
    server.watchUnimplemented = true;
    const t = server.issue();
    writeFileSync(file, t.secret);
    await writePending(file, {
      idempotencyKey: 'stale-key-0000000001',
      tokenSha256: secretFingerprint('secret-of-the-predecessor'),
      startedAt: 0,
    });
    const run = start();
    await until('the agent waits', () => clock.hasTimerAt(T0 + 2_000));
    expect(await readPending(file)).toBeUndefined();
    expect(server.rotateCalls).toEqual([]);
    expect(logs.join('\n')).toContain('discarding a pending rotation');
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('past the retry window, a pending key is not replayed when the token is no longer active (it would be reuse): exit 4', async () => {
    const t = server.issue();
    writeFileSync(file, t.secret);
    await writePending(file, {
      idempotencyKey: 'old-key-000000000001',
      tokenSha256: secretFingerprint(t.secret),
      startedAt: clock.now() - 700_000,
    });
    t.state = TokenState.ROTATED;
    const result = await start();
    expect(result.code).toBe(AGENT_EXIT.rotatedElsewhere);
    expect(result.message).toContain("the server's retry window has passed");
    expect(server.rotateCalls).toEqual([]);
  });

  it('past the retry window, a token that is still active gets a fresh key (the first attempt never reached the server)', async () => {
    server.watchUnimplemented = true;
    const t = server.issue();
    writeFileSync(file, t.secret);
    await writePending(file, {
      idempotencyKey: 'old-key-000000000001',
      tokenSha256: secretFingerprint(t.secret),
      startedAt: clock.now() - 700_000,
    });
    const run = start();
    await until('the successor is written', () => clock.hasTimerAt(T0 + 2_000));
    expect(server.rotateCalls.map((c) => c.key)).toEqual(['test-key-000000000001']);
    expect(fileToken()).toBe(server.tokens[1]!.secret);
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('backs off while the server is unreachable at start, then proceeds', async () => {
    server.watchUnimplemented = true;
    server.lifetimeMs = 60_000;
    writeFileSync(file, server.issue().secret);
    server.describeFailures = [0, 1, 2, 3, 4, 5].map(() => new ConnectError('connect ECONNREFUSED', Code.Unavailable));
    const run = start();
    // 100, 200, 400, 800, then capped at 1,000 ms apart.
    for (const at of [100, 300, 700, 1_500, 2_500, 3_500]) {
      await until(`a retry due at +${at} ms`, () => clock.hasTimerAt(T0 + at));
      await clock.advance(T0 + at - clock.now());
    }
    await until('the agent waits', () => server.describeCalls.length === 7 && clock.hasTimerAt(T0 + 40_000));
    expect(logs.filter((l) => l.includes('server unreachable'))).toHaveLength(6);
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('waits as long as a rate-limited answer asks (retry-after, plus up to a tenth), not the shorter backoff', async () => {
    server.watchUnimplemented = true;
    server.lifetimeMs = 60_000;
    writeFileSync(file, server.issue().secret);
    const limited = (seconds: string) =>
      new ConnectError('rate_limited: too many failed authentications', Code.ResourceExhausted, {
        'retry-after': seconds,
      });
    server.describeFailures = [limited('5'), new ConnectError('connect ECONNREFUSED', Code.Unavailable)];
    const run = start();
    // random pinned at 0.999: 5 s × 1.0999 = 5,500 ms, where the backoff alone would be 100 ms.
    await until('the retry is due when retry-after ends', () => clock.hasTimerAt(T0 + 5_500));
    expect(clock.hasTimerAt(T0 + 100)).toBe(false);
    await clock.advance(5_500);
    // An unavailable server after that is the ordinary backoff again (second retry: 200 ms).
    await until('the next retry is the backoff', () => clock.hasTimerAt(T0 + 5_700));
    await clock.advance(200);
    await until(
      'the agent waits for its turn',
      () => server.describeCalls.length === 3 && clock.hasTimerAt(T0 + 40_000),
    );
    expect(logs.filter((l) => l.includes('"retry_in_ms":5500'))).toHaveLength(1);
    stop.abort();
    expect((await run).code).toBe(0);
  });

  it('without WatchExpiry, looks the token up every poll interval and exits 3 once it is revoked', async () => {
    server.watchUnimplemented = true;
    server.lifetimeMs = 600_000;
    const t = server.issue();
    writeFileSync(file, t.secret);
    const run = start();
    await until('the first poll is scheduled', () => clock.hasTimerAt(T0 + 60_000));
    const before = server.describeCalls.length;
    await clock.advance(60_000);
    await until('the second poll is scheduled', () => clock.hasTimerAt(T0 + 120_000));
    expect(server.describeCalls.length).toBe(before + 1);
    t.state = TokenState.REVOKED;
    await clock.advance(59_999);
    expect(server.describeCalls.length).toBe(before + 1);
    await clock.advance(1);
    const result = await run;
    expect(result.code).toBe(AGENT_EXIT.revoked);
    expect(result.message).toBe(
      `the token in ${file} no longer authenticates (bearer token has been revoked): it or its family was revoked, it expired, or it was rotated elsewhere; issue a new token`,
    );
    expect(server.rotateCalls).toEqual([]);
  });

  it('exits 3 with a clear message on FAMILY_REVOKED', async () => {
    const t = server.issue();
    writeFileSync(file, t.secret);
    const run = start();
    await until('the watch', () => server.live !== undefined);
    server.live!.push(
      event(ExpiryEventType.FAMILY_REVOKED, { sequence: 40, tokenId: t.id, familyId: t.familyId, reason: 'revoked' }),
    );
    const result = await run;
    expect(result).toEqual({
      code: AGENT_EXIT.revoked,
      message: `family ${t.familyId} was revoked (revoked): the token in ${file} is dead; issue a new token`,
    });
    expect(server.rotateCalls).toEqual([]);
  });

  it('exits 3 when the rotation answers reuse detected, 4 when it answers already rotated', async () => {
    server.watchUnimplemented = true;
    const a = server.issue();
    writeFileSync(file, a.secret);
    a.state = TokenState.ROTATED; // rotated by someone else, long ago
    Object.assign(a, { successorSecret: 'x', rotatedWithKey: 'someone-elses-key', rotatedAt: clock.now() - 60_000 });
    server.tokens.push({ ...a, id: 'tok_other', secret: 'x', state: TokenState.ACTIVE });
    server.describeFailures = [];
    // describe fails (the token no longer authenticates) → exit 3 before any rotation
    const refused = await start();
    expect(refused.code).toBe(AGENT_EXIT.revoked);
    expect(refused.message).toContain('no longer authenticates');

    // A pending rotation retried with a different key inside the grace → already rotated → exit 4.
    a.rotatedAt = clock.now();
    await writePending(file, {
      idempotencyKey: 'another-key-00000001',
      tokenSha256: secretFingerprint(a.secret),
      startedAt: clock.now(),
    });
    const raced = await start();
    expect(raced.code).toBe(AGENT_EXIT.rotatedElsewhere);
    expect(raced.message).toContain('successor tok_other');
    // Exit 4 keeps F.pending (the key may have reached the server) and says what becomes of it.
    expect(raced.message).toContain(
      `(${file}.pending is kept: it records a rotation that may have reached the server;`,
    );
    expect(existsSync(`${file}.pending`)).toBe(true);

    // The same after the grace: the server revokes the family as reuse → exit 3.
    await clock.advance(20_000);
    await writePending(file, {
      idempotencyKey: 'another-key-00000001',
      tokenSha256: secretFingerprint(a.secret),
      startedAt: clock.now(),
    });
    const reuse = await start();
    expect(reuse).toEqual({
      code: AGENT_EXIT.revoked,
      message: `family revoked: token was already rotated: reuse detected, every token of its family is now revoked (removed ${file}.pending: the rotation it recorded can no longer be finished)`,
    });
    // The family is dead: its pending rotation can never be finished, so it is not left behind.
    expect(existsSync(`${file}.pending`)).toBe(false);
  });

  it('exits 4 when WatchExpiry says another client rotated the token', async () => {
    const t = server.issue();
    writeFileSync(file, t.secret);
    const run = start();
    await until('the watch', () => server.live !== undefined);
    server.live!.push(event(ExpiryEventType.ROTATED, { sequence: 9, tokenId: t.id, successorId: 'tok_elsewhere' }));
    const result = await run;
    expect(result.code).toBe(AGENT_EXIT.rotatedElsewhere);
    expect(result.message).toContain('rotated by another client (successor tok_elsewhere)');
  });

  it('writes ROTOR_TOKEN to an absent file (mode 0600) and runs the hook after every write; a failing hook is not fatal', async () => {
    server.watchUnimplemented = true;
    const t = server.issue();
    const hooked: string[] = [];
    const run = start({
      initialToken: t.secret,
      hook: async (token) => {
        hooked.push(token.id);
        throw new Error('exited with 1');
      },
    });
    await until('the agent waits', () => clock.hasTimerAt(T0 + 2_000));
    expect(fileToken()).toBe(t.secret);
    expect(mode(file)).toBe(0o600);
    await clock.advance(2_000);
    await until('the second hook', () => hooked.length === 2);
    expect(hooked).toEqual([t.id, server.tokens[1]!.id]);
    expect(logs.filter((l) => l.includes('the --exec hook failed'))).toHaveLength(2);
    stop.abort();
    expect((await run).code).toBe(0);
    noSecretLogged();
  });

  it('stops when the stop comes while the token is looked up, before the wait for the rotation begins', async () => {
    writeFileSync(file, server.issue().secret);
    let result: AgentResult | undefined;
    // The stop lands after the check at the top of the loop and before the wait: the wait's abort
    // listener is added to a signal that is already aborted, so it must not be relied on.
    void start({
      api: {
        describe: (secret) => {
          stop.abort();
          return server.describe(secret);
        },
        rotate: (secret, key) => server.rotate(secret, key),
        watch: (secret) => server.watch(secret),
      },
    }).then((r) => (result = r));
    await until('the agent stops or starts waiting', () => result !== undefined || clock.pending > 0);
    expect(result).toEqual({ code: AGENT_EXIT.stopped, message: 'stopped' });
    expect(clock.sleeps).toEqual([]);
    expect(server.streams).toEqual([]);
  });

  it('prefers the file over ROTOR_TOKEN, and exits 2 when neither holds a token', async () => {
    server.watchUnimplemented = true;
    const inFile = server.issue();
    writeFileSync(file, inFile.secret);
    const run = start({ initialToken: server.issue().secret });
    await until('the agent waits', () => clock.hasTimerAt(T0 + 2_000));
    expect(server.describeCalls).toEqual([inFile.secret]);
    stop.abort();
    await run;
    rmSync(file);
    // A ROTOR_TOKEN the server refuses is not written to the absent file.
    const refused = await start({ initialToken: 'secret-unknown' });
    expect(refused.code).toBe(AGENT_EXIT.revoked);
    expect(existsSync(file)).toBe(false);
    expect(await start()).toEqual({
      code: AGENT_EXIT.usage,
      message: `${file} does not exist and ROTOR_TOKEN is not set: give the agent its first token in one of them`,
    });
  });
});
