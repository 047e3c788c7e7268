import { describe, expect, it } from 'vitest';
import { RotorError } from '../../src/domain/errors.js';
import {
  MAX_RACING_RETRY_KEYS,
  MAX_REFUSED_RETRY_KEYS,
  RETRY_RACE_WINDOW_MS,
  decideRotation,
  type RotationDecision,
  type RotationInput,
  type RotationMode,
} from '../../src/domain/rotation.js';
import { SCOPE_ROTATE } from '../../src/domain/scopes.js';
import { formatSecret, parseSecret } from '../../src/domain/token-secret.js';
import { isUsable, usableUntil, type TokenRecord } from '../../src/domain/token.js';
import type { WorkloadBinding, WorkloadClaims } from '../../src/domain/workload-binding.js';
import {
  DAY,
  HOUR,
  MINUTE,
  NOW,
  SECOND,
  expectRotorError,
  rotatedPair,
  seededRandom,
  testKeys,
  testLimits,
  testPolicy,
  tokenRecord,
} from './fixtures.js';

const keys = testKeys();
const KEY = 'idem-key-AAAAAAAAAAAAAAAA';
const OTHER_KEY = 'idem-key-BBBBBBBBBBBBBBBB';
const KEY_DIGEST = keys.idempotencyDigest(KEY);
const OTHER_KEY_DIGEST = keys.idempotencyDigest(OTHER_KEY);
/** DEFAULT_LIMITS.retryWindowSeconds: 10 minutes. */
const RETRY_WINDOW = 10 * MINUTE;

function input(overrides: Partial<RotationInput> = {}): RotationInput {
  return {
    mode: 'presented',
    current: tokenRecord(),
    successor: undefined,
    idempotencyKeyDigest: undefined,
    scopes: [],
    audiences: [],
    expiresAt: undefined,
    now: NOW,
    receivedAt: NOW,
    refusedRetryKeys: { racing: 0, late: 0 },
    limits: testLimits(),
    ...overrides,
  };
}

/** A rotation request against a predecessor rotated at NOW (with KEY) and its active successor. */
function supersededInput(
  overrides: Partial<RotationInput> = {},
  pairOpts: Parameters<typeof rotatedPair>[0] = {},
): { req: RotationInput; predecessor: TokenRecord; successor: TokenRecord } {
  const { predecessor, successor } = rotatedPair({ rotatedAt: NOW, keyDigest: KEY_DIGEST, ...pairOpts });
  return { req: input({ current: predecessor, successor, ...overrides }), predecessor, successor };
}

/** The decision, or the RotorError code when the rules refuse. */
function outcome(req: RotationInput): RotationDecision['type'] | `error:${string}` {
  try {
    return decideRotation(req).type;
  } catch (e) {
    if (e instanceof RotorError) return `error:${e.code}`;
    throw e;
  }
}

describe('rule 1: parse and checksum the presented token before any lookup', () => {
  const valid = formatSecret('personal', seededRandom('rule-1'));

  it('accepts a well-formed secret, whose digest is then the lookup key', () => {
    expect(parseSecret(valid).secret).toBe(valid);
    expect(keys.secretDigest(parseSecret(valid).secret)).toBe(keys.secretDigest(valid));
  });

  it.each([
    ['empty', '', 'token is empty'],
    ['malformed (unknown prefix)', 'Bearer abc', 'token is malformed'],
    ['malformed (wrong length)', valid.slice(0, -2), 'token is malformed'],
    ['malformed (non-base62)', `${valid.slice(0, -7)}*${valid.slice(-6)}`, 'token is malformed'],
    ['bad checksum', valid.slice(0, -1) + (valid.endsWith('0') ? '1' : '0'), 'token checksum does not match'],
    ['oversized', valid + 'x'.repeat(100), 'token is malformed'],
  ])('refuses %s input with invalid_token, never echoing the input', (_label, presented, message) => {
    const err = expectRotorError(() => parseSecret(presented), 'invalid_token', message);
    if (presented.length > 0) expect(err.message).not.toContain(presented);
    expect(err.message).not.toContain(valid.slice(8, 20));
    expect(JSON.stringify(err.details)).toBe('{}');
  });
});

describe('rule 2: expired or revoked (not by rotation) is refused', () => {
  it('refuses a token at its expiry instant with token_expired', () => {
    const current = tokenRecord({ expiresAt: NOW });
    expectRotorError(() => decideRotation(input({ current })), 'token_expired', 'token has expired');
  });

  it('rotates the same token one millisecond before expiry', () => {
    const current = tokenRecord({ expiresAt: NOW + 1 });
    expect(decideRotation(input({ current })).type).toBe('rotate');
  });

  it.each([
    ['revoked', 'token has been revoked'],
    ['family_revoked', 'token has been revoked: its family was revoked at 2023-11-14T22:13:19.000Z'],
    ['reuse_detected', 'token has been revoked: reuse detected at 2023-11-14T22:13:19.000Z'],
  ] as const)(
    'refuses a token revoked as %s with token_revoked "%s" (the family revocation time)',
    (reason, message) => {
      const current = tokenRecord({ revokedAt: NOW - SECOND, revokeReason: reason });
      const err = expectRotorError(() => decideRotation(input({ current })), 'token_revoked', message);
      expect(err.message).toBe(message);
      // Named by id, the target's state is the problem, not the caller's credential.
      expectRotorError(
        () => decideRotation(input({ current, mode: 'by_id' })),
        'not_rotatable',
        'has been revoked and cannot be rotated',
      );
    },
  );

  it('refuses an expired token named by id as not_rotatable (FAILED_PRECONDITION), not as a bad credential', () => {
    const current = tokenRecord({ expiresAt: NOW - SECOND });
    expectRotorError(
      () => decideRotation(input({ current, mode: 'by_id' })),
      'not_rotatable',
      'has expired and cannot be rotated',
    );
    expectRotorError(() => decideRotation(input({ current })), 'token_expired', 'token has expired');
  });

  it('reports revocation rather than expiry for a token that is both', () => {
    const current = tokenRecord({ revokedAt: NOW - DAY, revokeReason: 'revoked', expiresAt: NOW - HOUR });
    expectRotorError(() => decideRotation(input({ current })), 'token_revoked', 'revoked');
  });

  it('refuses a revoked token even with a matching idempotency key and an active "successor"', () => {
    const { req } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST });
    const current = { ...req.current, revokeReason: 'family_revoked' as const };
    expectRotorError(() => decideRotation({ ...req, current }), 'token_revoked', 'token has been revoked');
  });

  it('a rotated token whose family was revoked later says when the family was revoked, not when it was rotated', () => {
    const { predecessor } = rotatedPair({ rotatedAt: NOW - HOUR });
    const current = { ...predecessor, revokedAt: NOW - SECOND, revokeReason: 'reuse_detected' as const };
    expect(current.rotatedAt).toBe(NOW - HOUR);
    const err = expectRotorError(() => decideRotation(input({ current })), 'token_revoked', 'reuse detected');
    expect(err.message).toBe(`token has been revoked: reuse detected at ${new Date(NOW - SECOND).toISOString()}`);
  });

  it('sends a rotated token that has since expired to rule 3, not rule 2: presenting it is still reuse', () => {
    // The thief holds the live successor; an expired predecessor presented again must revoke the family.
    const { req, successor } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST });
    const current = { ...req.current, expiresAt: NOW + MINUTE };
    expect(decideRotation({ ...req, current, now: NOW + MINUTE })).toEqual({ type: 'replay', successor });
    expect(decideRotation({ ...req, current, idempotencyKeyDigest: undefined, now: NOW + MINUTE })).toEqual({
      type: 'reuse',
      cause: 'presented_again',
    });
  });
});

describe('rule 3: an already rotated token (replay, reuse grace, reuse)', () => {
  describe('idempotent retry within the retry window', () => {
    it('returns the same successor for the same key digest', () => {
      const { req, successor } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + MINUTE });
      expect(decideRotation(req)).toEqual({ type: 'replay', successor });
    });

    it('replays until the last millisecond of the window', () => {
      const { req, successor } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + RETRY_WINDOW - 1 });
      expect(decideRotation(req)).toEqual({ type: 'replay', successor });
    });

    it('replays for an admin rotating by id as well', () => {
      const { req, successor } = supersededInput({
        mode: 'by_id',
        idempotencyKeyDigest: KEY_DIGEST,
        now: NOW + MINUTE,
      });
      expect(decideRotation(req)).toEqual({ type: 'replay', successor });
    });

    it('prefers replay over the reuse grace answer inside the grace window', () => {
      const { req } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + SECOND });
      expect(decideRotation(req).type).toBe('replay');
    });

    it('honours a configured retry window', () => {
      const { req } = supersededInput({
        idempotencyKeyDigest: KEY_DIGEST,
        now: NOW + 30 * SECOND,
        limits: testLimits({ retryWindowSeconds: 20 }),
      });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('a different key is not a retry: inside the grace window it is refused (logged, then answered already_rotated)', () => {
      const { req, successor } = supersededInput({ idempotencyKeyDigest: OTHER_KEY_DIGEST, now: NOW + SECOND });
      expect(decideRotation(req)).toEqual({ type: 'refuse_retry', successor, reason: 'racing_rotation' });
    });

    it('a different key outside the grace window is reuse', () => {
      const { req } = supersededInput({ idempotencyKeyDigest: OTHER_KEY_DIGEST, now: NOW + MINUTE });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('a request without a key is not a retry', () => {
      const { req } = supersededInput({ idempotencyKeyDigest: undefined, now: NOW + MINUTE });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('a key on the request does not match a rotation that had none', () => {
      const { req } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + MINUTE }, { keyDigest: null });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });
  });

  describe('after the retry window', () => {
    it('the same key is ordinary reuse once the grace has also passed', () => {
      const { req } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + RETRY_WINDOW });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('the same key falls back to the grace answer while a long grace still runs', () => {
      const { req, successor } = supersededInput(
        { idempotencyKeyDigest: KEY_DIGEST, now: NOW + RETRY_WINDOW },
        { policy: { reuseGraceSeconds: 3600 } },
      );
      const err = expectRotorError(() => decideRotation(req), 'already_rotated', successor.id);
      expect(err.details.successorId).toBe(successor.id);
    });
  });

  describe('inside the reuse grace window (immediate predecessor)', () => {
    it('throws already_rotated naming the successor id', () => {
      const { req, successor } = supersededInput({ now: NOW + 9 * SECOND });
      const err = expectRotorError(
        () => decideRotation(req),
        'already_rotated',
        `token was already rotated; its successor is ${successor.id}`,
      );
      expect(err.details).toEqual({ successorId: successor.id });
    });

    it('is reuse from the first millisecond after the grace window', () => {
      const { req } = supersededInput({ now: NOW + 10 * SECOND - 1 });
      expectRotorError(() => decideRotation(req), 'already_rotated', 'already rotated');
      expect(decideRotation({ ...req, now: NOW + 10 * SECOND })).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('measures the grace from rotated_at', () => {
      // rotated_at is the rotation time; revoked_at is only read for a row that lacks it.
      const { req } = supersededInput({ now: NOW + 9 * SECOND });
      const late = { ...req.current, rotatedAt: NOW - SECOND };
      expect(decideRotation({ ...req, current: late })).toEqual({ type: 'reuse', cause: 'presented_again' });
      const unset = { ...req.current, rotatedAt: null };
      expectRotorError(() => decideRotation({ ...req, current: unset }), 'already_rotated', 'already rotated');
    });

    it('with zero grace, a second presentation is reuse at once', () => {
      const { req } = supersededInput({ now: NOW }, { policy: { reuseGraceSeconds: 0 } });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('never puts a secret into the message', () => {
      const { req } = supersededInput({ now: NOW + SECOND });
      const err = expectRotorError(() => decideRotation(req), 'already_rotated', 'already rotated');
      expect(err.message).not.toContain(req.current.secretDigest);
      expect(err.message).not.toContain('rtr_');
    });
  });

  describe('wrong idempotency keys inside the grace', () => {
    const LATE = NOW + RETRY_RACE_WINDOW_MS + 1;
    const wrongKey = (racing: number, late: number, at = LATE, overrides: Partial<RotationInput> = {}) =>
      supersededInput({
        idempotencyKeyDigest: OTHER_KEY_DIGEST,
        now: at,
        receivedAt: at,
        refusedRetryKeys: { racing, late },
        ...overrides,
      });

    it(`after the race window a wrong key is a guess: refused and logged up to ${MAX_REFUSED_RETRY_KEYS} times, then reuse`, () => {
      for (let n = 0; n < MAX_REFUSED_RETRY_KEYS; n++) {
        const { req, successor } = wrongKey(0, n);
        expect(decideRotation(req)).toEqual({ type: 'refuse_retry', successor, reason: 'wrong_idempotency_key' });
      }
      expect(decideRotation(wrongKey(0, MAX_REFUSED_RETRY_KEYS).req)).toEqual({
        type: 'reuse',
        cause: 'wrong_retry_keys',
      });
      expect(decideRotation(wrongKey(0, MAX_REFUSED_RETRY_KEYS + 3).req)).toEqual({
        type: 'reuse',
        cause: 'wrong_retry_keys',
      });
    });

    it(`inside the race window a wrong key is a racing caller: up to ${MAX_RACING_RETRY_KEYS} refused, counted apart from guesses`, () => {
      for (const at of [NOW, NOW + 1, NOW + RETRY_RACE_WINDOW_MS]) {
        const { req, successor } = wrongKey(MAX_RACING_RETRY_KEYS - 1, MAX_REFUSED_RETRY_KEYS, at);
        expect(decideRotation(req)).toEqual({ type: 'refuse_retry', successor, reason: 'racing_rotation' });
      }
      expect(decideRotation(wrongKey(MAX_RACING_RETRY_KEYS, 0, NOW + 5).req)).toEqual({
        type: 'reuse',
        cause: 'wrong_retry_keys',
      });
      // Racers never count against the limit of guesses after the window.
      const { req, successor } = wrongKey(MAX_RACING_RETRY_KEYS, 0);
      expect(decideRotation(req)).toEqual({ type: 'refuse_retry', successor, reason: 'wrong_idempotency_key' });
    });

    it('a request without a key guesses nothing: already_rotated whatever the counts', () => {
      const { req, successor } = wrongKey(MAX_RACING_RETRY_KEYS, MAX_REFUSED_RETRY_KEYS, LATE, {
        idempotencyKeyDigest: undefined,
      });
      expectRotorError(() => decideRotation(req), 'already_rotated', successor.id);
    });

    it('a key against a rotation that had none is a wrong key too', () => {
      const { req, successor } = supersededInput(
        { idempotencyKeyDigest: KEY_DIGEST, now: LATE, receivedAt: LATE, refusedRetryKeys: { racing: 0, late: 0 } },
        { keyDigest: null },
      );
      expect(decideRotation(req)).toEqual({ type: 'refuse_retry', successor, reason: 'wrong_idempotency_key' });
    });

    it('the right key past the retry window but inside a long grace is not a guess', () => {
      const { req, successor } = supersededInput(
        {
          idempotencyKeyDigest: KEY_DIGEST,
          now: NOW + RETRY_WINDOW,
          receivedAt: NOW + RETRY_WINDOW,
          refusedRetryKeys: { racing: 0, late: MAX_REFUSED_RETRY_KEYS },
        },
        { policy: { reuseGraceSeconds: 3600 } },
      );
      expectRotorError(() => decideRotation(req), 'already_rotated', successor.id);
    });

    it('the right key is still replayed after refused guesses', () => {
      const { req, successor } = wrongKey(MAX_RACING_RETRY_KEYS, MAX_REFUSED_RETRY_KEYS, LATE, {
        idempotencyKeyDigest: KEY_DIGEST,
      });
      expect(decideRotation(req)).toEqual({ type: 'replay', successor });
    });
  });

  describe('outside every grace rule', () => {
    it('is reuse', () => {
      const { req } = supersededInput({ now: NOW + HOUR });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });
  });

  describe('not the immediate predecessor', () => {
    function grandparent(successorPatch: Partial<TokenRecord>) {
      const { req, successor } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + SECOND });
      return { ...req, successor: { ...successor, ...successorPatch } };
    }

    it('is reuse even inside the grace window when the successor was itself rotated', () => {
      const req = grandparent({ revokedAt: NOW + 500, revokeReason: 'rotated', successorId: 'tok_third' });
      expect(decideRotation({ ...req, idempotencyKeyDigest: undefined })).toEqual({
        type: 'reuse',
        cause: 'presented_again',
      });
    });

    it('is reuse even with the matching key inside the retry window', () => {
      const req = grandparent({ revokedAt: NOW + 500, revokeReason: 'rotated', successorId: 'tok_third' });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('is reuse when the successor was revoked', () => {
      const req = grandparent({ revokedAt: NOW + 500, revokeReason: 'revoked' });
      expect(decideRotation(req)).toEqual({ type: 'reuse', cause: 'presented_again' });
    });

    it('is reuse when the successor row is missing', () => {
      const { req } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + SECOND });
      expect(decideRotation({ ...req, successor: undefined })).toEqual({ type: 'reuse', cause: 'presented_again' });
    });
  });

  describe("mode 'by_id' never returns reuse", () => {
    it('answers already_rotated for the immediate predecessor long after the grace window', () => {
      const { req, successor } = supersededInput({ mode: 'by_id', now: NOW + DAY });
      const err = expectRotorError(() => decideRotation(req), 'already_rotated', successor.id);
      expect(err.details.successorId).toBe(successor.id);
    });

    it('answers already_rotated for an older ancestor, naming its recorded successor', () => {
      const { req, predecessor } = supersededInput({ mode: 'by_id', now: NOW + SECOND });
      const rotatedSuccessor = { ...req.successor!, revokedAt: NOW + 500, revokeReason: 'rotated' as const };
      const err = expectRotorError(
        () => decideRotation({ ...req, successor: rotatedSuccessor }),
        'already_rotated',
        'already rotated',
      );
      expect(err.details.successorId).toBe(predecessor.successorId);
    });

    it('holds across the whole grid of times, keys and successor states', () => {
      for (const now of [NOW, NOW + SECOND, NOW + MINUTE, NOW + RETRY_WINDOW, NOW + DAY]) {
        for (const idempotencyKeyDigest of [undefined, KEY_DIGEST, OTHER_KEY_DIGEST]) {
          for (const successorState of ['active', 'rotated', 'revoked', 'missing'] as const) {
            const { req, successor } = supersededInput({ mode: 'by_id', now, idempotencyKeyDigest });
            const s =
              successorState === 'missing'
                ? undefined
                : successorState === 'active'
                  ? successor
                  : { ...successor, revokedAt: NOW, revokeReason: successorState };
            expect(
              outcome({ ...req, successor: s }),
              `${now - NOW} ${idempotencyKeyDigest} ${successorState}`,
            ).not.toBe('reuse');
          }
        }
      }
    });
  });
});

describe('rule 4: workload binding', () => {
  const BINDING: WorkloadBinding = {
    issuer: 'https://gitlab.example',
    subject: 'project_path:group/app:ref_type:branch:ref:*',
    audience: 'rotor',
    claims: { namespace_id: '42' },
  };
  const bound = (overrides: Partial<TokenRecord> = {}) =>
    tokenRecord({ policy: testPolicy({ workloadBinding: BINDING }), ...overrides });
  const ACTOR: WorkloadClaims = {
    iss: 'https://gitlab.example',
    sub: 'project_path:group/app:ref_type:branch:ref:main',
    aud: ['rotor'],
    exp: NOW + 5 * MINUTE,
    jti: 'j1',
    claims: { namespace_id: '42', project_path: 'group/app' },
  };

  it('rotates a token without a binding when no actor token is presented', () => {
    expect(decideRotation(input()).type).toBe('rotate');
  });

  it('refuses an actor token for a token without a binding instead of ignoring it', () => {
    expectRotorError(
      () => decideRotation(input({ actor: ACTOR })),
      'invalid_argument',
      'actor_token is not accepted: this token has no workload binding',
    );
  });

  it('checks rule 3 first: a superseded token presented with an actor token is still reuse', () => {
    const { req } = supersededInput({ now: NOW + DAY });
    expect(decideRotation({ ...req, actor: ACTOR })).toEqual({ type: 'reuse', cause: 'presented_again' });
    const { req: boundReq } = supersededInput({
      now: NOW + DAY,
      current: bound({ revokedAt: NOW, revokeReason: 'rotated', successorId: 'tok_successor0000000000001' }),
    });
    expect(decideRotation({ ...boundReq })).toEqual({ type: 'reuse', cause: 'presented_again' });
  });

  it('rotates a bound token for a verified actor whose claims match the binding', () => {
    expect(decideRotation(input({ current: bound(), actor: ACTOR }))).toMatchObject({ type: 'rotate' });
    // A numeric claim matches its decimal form.
    expect(decideRotation(input({ current: bound(), actor: { ...ACTOR, claims: { namespace_id: 42 } } })).type).toBe(
      'rotate',
    );
  });

  it('refuses a bound token without an actor token', () => {
    expectRotorError(
      () => decideRotation(input({ current: bound() })),
      'workload_proof_required',
      'this token is bound to a workload: rotating it needs actor_token with actor_token_type urn:ietf:params:oauth:token-type:jwt',
    );
  });

  it('refuses an actor whose issuer, subject, audience or claim does not match, naming which', () => {
    const mismatches: [Partial<WorkloadClaims>, string][] = [
      [{ iss: 'https://github.example' }, 'issuer'],
      [{ sub: 'project_path:group/other:ref_type:branch:ref:main' }, 'subject'],
      [{ aud: ['other'] }, 'audience'],
      [{ claims: { namespace_id: '43' } }, 'claim namespace_id'],
      [{ claims: {} }, 'claim namespace_id'],
      [{ claims: { namespace_id: ['42'] } }, 'claim namespace_id'],
    ];
    for (const [change, what] of mismatches) {
      expectRotorError(
        () => decideRotation(input({ current: bound(), actor: { ...ACTOR, ...change } })),
        'workload_mismatch',
        `actor_token does not match the token's workload binding: ${what}`,
      );
    }
  });

  it('lets an admin rotate a bound token by id without the workload, but not an owner', () => {
    expect(decideRotation(input({ mode: 'by_id', byAdmin: true, current: bound() })).type).toBe('rotate');
    expectRotorError(
      () => decideRotation(input({ mode: 'by_id', byAdmin: false, current: bound() })),
      'workload_proof_required',
      'bound to a workload',
    );
    expect(decideRotation(input({ mode: 'by_id', byAdmin: false, current: bound(), actor: ACTOR })).type).toBe(
      'rotate',
    );
  });

  it('an actor token that failed verification is raised at rule 4, after rules 2 and 3', () => {
    const rejection = new RotorError('invalid_workload_token', 'actor_token has expired (exp)');
    expect(() => decideRotation(input({ current: bound(), actorRejection: rejection }))).toThrow(rejection);
    const { req } = supersededInput({ now: NOW + DAY });
    expect(
      decideRotation({
        ...req,
        current: { ...req.current, policy: testPolicy({ workloadBinding: BINDING }) },
        actorRejection: rejection,
      }),
    ).toEqual({ type: 'reuse', cause: 'presented_again' });
    expectRotorError(
      () =>
        decideRotation(
          input({ current: bound({ revokedAt: NOW - 1, revokeReason: 'revoked' }), actorRejection: rejection }),
        ),
      'token_revoked',
      'token has been revoked',
    );
    // A token without a binding refuses any actor token, verified or not, the same way.
    expectRotorError(
      () => decideRotation(input({ actorRejection: rejection })),
      'invalid_argument',
      'actor_token is not accepted: this token has no workload binding',
    );
  });

  it('an idempotent retry of a bound token must prove the workload again', () => {
    const { predecessor, successor } = rotatedPair({
      rotatedAt: NOW,
      keyDigest: KEY_DIGEST,
      policy: { workloadBinding: BINDING },
    });
    const req = input({ current: predecessor, successor, idempotencyKeyDigest: KEY_DIGEST, now: NOW + MINUTE });
    expect(decideRotation({ ...req, actor: ACTOR })).toEqual({ type: 'replay', successor });
    expectRotorError(() => decideRotation(req), 'workload_proof_required', 'bound to a workload');
  });
});

describe('rule 5: successor scopes and expiry', () => {
  describe('scopes', () => {
    it('keeps the current scopes when none are requested', () => {
      const decision = decideRotation(input());
      expect(decision).toMatchObject({ type: 'rotate', scopes: ['read', 'write', SCOPE_ROTATE] });
    });

    it('narrows to a requested subset', () => {
      expect(decideRotation(input({ scopes: ['read', SCOPE_ROTATE] }))).toMatchObject({
        type: 'rotate',
        scopes: ['read', SCOPE_ROTATE],
      });
    });

    it('refuses escalation with invalid_scope', () => {
      const err = expectRotorError(
        () => decideRotation(input({ scopes: ['read', 'rotor:admin'] })),
        'invalid_scope',
        'requested scopes exceed the scopes held: rotor:admin',
      );
      expect(err.message).not.toContain('read');
    });
  });

  describe('audiences (rule 5)', () => {
    const current = tokenRecord({ audiences: ['api.a', 'api.b'] });

    it('keeps the current audiences when none are requested, and narrows to a requested subset', () => {
      expect(decideRotation(input({ current }))).toMatchObject({ type: 'rotate', audiences: ['api.a', 'api.b'] });
      expect(decideRotation(input({ current, audiences: ['api.b'] }))).toMatchObject({
        type: 'rotate',
        audiences: ['api.b'],
      });
    });

    it('refuses an audience not held with invalid_target', () => {
      expectRotorError(
        () => decideRotation(input({ current, audiences: ['api.a', 'api.c'] })),
        'invalid_target',
        'audience not allowed for this token: api.c',
      );
    });

    it('narrows a token without audiences (unrestricted) to any requested ones, as creation and JWT issuance do', () => {
      const unrestricted = tokenRecord({ audiences: [] });
      expect(decideRotation(input({ current: unrestricted, audiences: ['api.a'] }))).toMatchObject({
        type: 'rotate',
        audiences: ['api.a'],
      });
      expect(decideRotation(input({ current: unrestricted }))).toMatchObject({ type: 'rotate', audiences: [] });
    });
  });

  describe('expiry', () => {
    it("defaults to the policy's default successor lifetime", () => {
      const current = tokenRecord({ policy: testPolicy({ defaultLifetimeSeconds: 3600 }) });
      expect(decideRotation(input({ current }))).toMatchObject({ type: 'rotate', expiresAt: NOW + HOUR });
    });

    it("defaults to the predecessor's issued lifetime when the policy sets none", () => {
      const current = tokenRecord({
        createdAt: NOW - 2 * DAY,
        expiresAt: NOW + 5 * DAY,
        policy: testPolicy({ defaultLifetimeSeconds: 0 }),
      });
      expect(decideRotation(input({ current }))).toMatchObject({ type: 'rotate', expiresAt: NOW + 7 * DAY });
    });

    it("caps the default by the token policy's max lifetime", () => {
      const current = tokenRecord({
        createdAt: NOW - DAY,
        expiresAt: NOW + 29 * DAY,
        policy: testPolicy({ maxLifetimeSeconds: 7 * 24 * 3600 }),
      });
      expect(decideRotation(input({ current }))).toMatchObject({ type: 'rotate', expiresAt: NOW + 7 * DAY });
    });

    it('caps the default by the server limit when that is lower than the policy', () => {
      const current = tokenRecord({ policy: testPolicy({ defaultLifetimeSeconds: 30 * 24 * 3600 }) });
      const limits = testLimits({ maxLifetimeSeconds: 24 * 3600 });
      expect(decideRotation(input({ current, limits }))).toMatchObject({ type: 'rotate', expiresAt: NOW + DAY });
    });

    it('uses a requested expiry within the max lifetime', () => {
      expect(decideRotation(input({ expiresAt: NOW + 2 * HOUR }))).toMatchObject({
        type: 'rotate',
        expiresAt: NOW + 2 * HOUR,
      });
    });

    it('accepts a requested expiry exactly at the max lifetime', () => {
      const max = tokenRecord().policy.maxLifetimeSeconds * SECOND;
      expect(decideRotation(input({ expiresAt: NOW + max }))).toMatchObject({ type: 'rotate', expiresAt: NOW + max });
    });

    it('refuses a requested expiry past the max lifetime with a clear invalid_argument', () => {
      const max = tokenRecord().policy.maxLifetimeSeconds;
      const err = expectRotorError(
        () => decideRotation(input({ expiresAt: NOW + max * SECOND + 1 })),
        'invalid_argument',
        `expires_at exceeds the max lifetime of ${max} seconds`,
      );
      expect(err.details.field).toBe('expires_at');
    });

    it('refuses a requested expiry in the past or now', () => {
      expectRotorError(
        () => decideRotation(input({ expiresAt: NOW - 1 })),
        'invalid_argument',
        'expires_at must be in the future',
      );
      expectRotorError(
        () => decideRotation(input({ expiresAt: NOW })),
        'invalid_argument',
        'expires_at must be in the future',
      );
    });
  });

  describe("mode 'presented' needs the rotor:rotate scope", () => {
    const current = tokenRecord({ scopes: ['read', 'write'] });

    it('refuses a token without it with permission_denied', () => {
      expectRotorError(
        () => decideRotation(input({ current })),
        'permission_denied',
        `lacks the ${SCOPE_ROTATE} scope`,
      );
    });

    it("does not require it in mode 'by_id' (the caller's authority is checked elsewhere)", () => {
      expect(decideRotation(input({ current, mode: 'by_id' }))).toMatchObject({
        type: 'rotate',
        scopes: ['read', 'write'],
      });
    });
  });
});

describe('rule 6: a lost race is handled by rule 3, never by a second successor', () => {
  it("the loser re-reading the rotated row with the same key gets the winner's successor", () => {
    const { req, successor } = supersededInput({ idempotencyKeyDigest: KEY_DIGEST, now: NOW + 50 });
    expect(decideRotation(req)).toEqual({ type: 'replay', successor });
  });

  it('the loser with a different key is refused as a racing caller (answered already_rotated), not given a new successor', () => {
    const { req, successor } = supersededInput({
      idempotencyKeyDigest: OTHER_KEY_DIGEST,
      now: NOW + 50,
      receivedAt: NOW + 1,
    });
    expect(decideRotation(req)).toEqual({ type: 'refuse_retry', successor, reason: 'racing_rotation' });
  });

  it('decideRotation never returns rotate for a rotated token, whatever the request', () => {
    const modes: RotationMode[] = ['presented', 'by_id'];
    let cases = 0;
    for (const mode of modes) {
      for (const now of [
        NOW,
        NOW + 1,
        NOW + 9 * SECOND,
        NOW + 10 * SECOND,
        NOW + RETRY_WINDOW - 1,
        NOW + RETRY_WINDOW,
        NOW + DAY,
      ]) {
        for (const idempotencyKeyDigest of [undefined, KEY_DIGEST, OTHER_KEY_DIGEST]) {
          for (const overlapSeconds of [0, 300]) {
            for (const successorState of ['active', 'rotated', 'missing'] as const) {
              const { req, successor } = supersededInput(
                { mode, now, idempotencyKeyDigest },
                { policy: { overlapSeconds } },
              );
              const s =
                successorState === 'missing'
                  ? undefined
                  : successorState === 'active'
                    ? successor
                    : { ...successor, revokedAt: NOW, revokeReason: 'rotated' as const };
              const result = outcome({ ...req, successor: s, scopes: ['read'], expiresAt: NOW + 2 * DAY });
              expect(
                result,
                `${mode} +${now - NOW}ms ${String(idempotencyKeyDigest)} overlap=${overlapSeconds} ${successorState}`,
              ).not.toBe('rotate');
              cases++;
            }
          }
        }
      }
    }
    expect(cases).toBe(2 * 7 * 3 * 2 * 3);
  });
});

describe('rule 7: overlap keeps the predecessor usable, never rotatable', () => {
  const OVERLAP = 300;

  function rotatedWithOverlap(patch: Partial<TokenRecord> = {}): TokenRecord {
    return { ...rotatedPair({ rotatedAt: NOW, policy: { overlapSeconds: OVERLAP } }).predecessor, ...patch };
  }

  it('a rotated token authenticates until rotated_at + overlap', () => {
    const t = rotatedWithOverlap();
    expect(usableUntil(t)).toBe(NOW + OVERLAP * SECOND);
    expect(isUsable(t, NOW)).toBe(true);
    expect(isUsable(t, NOW + OVERLAP * SECOND - 1)).toBe(true);
    expect(isUsable(t, NOW + OVERLAP * SECOND)).toBe(false);
  });

  it('the overlap ends at the token expiry when that comes first', () => {
    const t = rotatedWithOverlap({ expiresAt: NOW + MINUTE });
    expect(usableUntil(t)).toBe(NOW + MINUTE);
    expect(isUsable(t, NOW + MINUTE - 1)).toBe(true);
    expect(isUsable(t, NOW + MINUTE)).toBe(false);
  });

  it('without overlap a rotated token stops authenticating at once', () => {
    const t = rotatedPair({ rotatedAt: NOW, policy: { overlapSeconds: 0 } }).predecessor;
    expect(isUsable(t, NOW)).toBe(false);
  });

  it('inside the overlap (after the grace) presenting it for rotation is reuse, not a rotation', () => {
    const { predecessor, successor } = rotatedPair({
      rotatedAt: NOW,
      keyDigest: KEY_DIGEST,
      policy: { overlapSeconds: OVERLAP },
    });
    const now = NOW + MINUTE;
    expect(isUsable(predecessor, now)).toBe(true);
    expect(decideRotation(input({ current: predecessor, successor, now }))).toEqual({
      type: 'reuse',
      cause: 'presented_again',
    });
  });

  it('inside the overlap and the grace it is already_rotated, not a rotation', () => {
    const { predecessor, successor } = rotatedPair({ rotatedAt: NOW, policy: { overlapSeconds: OVERLAP } });
    expect(isUsable(predecessor, NOW + SECOND)).toBe(true);
    expectRotorError(
      () => decideRotation(input({ current: predecessor, successor, now: NOW + SECOND })),
      'already_rotated',
      successor.id,
    );
  });
});
