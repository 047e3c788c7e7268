import { describe, expect, it } from 'vitest';
import {
  assertMayReadMetrics,
  checkCreation,
  isAdmin,
  mayIntrospectOthers,
  requireManage,
  requireRotateById,
  requireView,
  type CreationRequest,
  type Principal,
} from '../../src/domain/authorization.js';
import type { RotorErrorCode } from '../../src/domain/errors.js';
import { SCOPE_ADMIN, SCOPE_INTROSPECT, SCOPE_METRICS, SCOPE_ROTATE } from '../../src/domain/scopes.js';
import { DAY, HOUR, NOW, expectRotorError, testPolicy, tokenRecord } from './fixtures.js';

const MSG_OTHER_OWNER = 'caller may not access tokens of this owner';

/** Asserts the exact code and the exact message (fixtures' expectRotorError matches a substring). */
function expectExactly(fn: () => unknown, code: RotorErrorCode, message: string): void {
  const err = expectRotorError(fn, code, message);
  expect(err.message).toBe(message);
}

/** An owner token of `user-1`: read write rotor:rotate, audience `api`, 29 days left. */
function caller(overrides: Parameters<typeof tokenRecord>[0] = {}): Principal {
  return tokenRecord({ id: 'tok_caller00000000000000001', ...overrides });
}

function admin(overrides: Parameters<typeof tokenRecord>[0] = {}): Principal {
  return caller({ ownerId: 'ops', scopes: [SCOPE_ADMIN], audiences: [], ...overrides });
}

function target(overrides: Parameters<typeof tokenRecord>[0] = {}) {
  return tokenRecord({ id: 'tok_target00000000000000001', ...overrides });
}

describe('GET /metrics with ROTOR_METRICS=token', () => {
  it('rotor:metrics or rotor:admin may read; anyone else is insufficient_scope', () => {
    expect(() => assertMayReadMetrics(caller({ scopes: [SCOPE_METRICS] }))).not.toThrow();
    expect(() => assertMayReadMetrics(admin())).not.toThrow();
    expectExactly(
      () => assertMayReadMetrics(caller({ scopes: [SCOPE_ROTATE, SCOPE_INTROSPECT] })),
      'insufficient_scope',
      'reading metrics needs rotor:metrics or rotor:admin',
    );
  });
});

describe('roles', () => {
  it('rotor:admin makes an admin; rotor:introspect or admin may introspect others', () => {
    expect(isAdmin(admin())).toBe(true);
    expect(isAdmin(caller())).toBe(false);
    expect(mayIntrospectOthers(admin())).toBe(true);
    expect(mayIntrospectOthers(caller({ scopes: [SCOPE_INTROSPECT] }))).toBe(true);
    expect(mayIntrospectOthers(caller({ scopes: ['read', SCOPE_ROTATE] }))).toBe(false);
  });
});

describe('requireView: admin, or the same owner id', () => {
  it('the same owner may view any of its tokens, whatever their scopes', () => {
    expect(() => requireView(caller({ scopes: ['read'] }), target({ scopes: [SCOPE_ADMIN] }))).not.toThrow();
  });

  it('another owner is refused; an admin is not', () => {
    expectExactly(() => requireView(caller(), target({ ownerId: 'user-2' })), 'permission_denied', MSG_OTHER_OWNER);
    expect(() => requireView(admin(), target({ ownerId: 'user-2' }))).not.toThrow();
  });
});

describe('requireManage: admin, or the same owner holding every scope of the target', () => {
  it('refuses a caller lacking scopes of the target, naming them in the target’s order', () => {
    expectExactly(
      () => requireManage(caller({ scopes: ['read'] }), target({ scopes: ['write', 'read', SCOPE_ROTATE] })),
      'permission_denied',
      'caller lacks scopes of the target token: write rotor:rotate',
    );
    expectExactly(
      () => requireManage(caller({ scopes: ['read', 'write'] }), target({ scopes: [SCOPE_ADMIN] })),
      'permission_denied',
      'caller lacks scopes of the target token: rotor:admin',
    );
  });

  it('accepts the same owner holding every scope (equal or more), including itself', () => {
    expect(() =>
      requireManage(caller({ scopes: ['read', 'write'] }), target({ scopes: ['write', 'read'] })),
    ).not.toThrow();
    expect(() => requireManage(caller({ scopes: ['read', 'write', 'x'] }), target({ scopes: ['read'] }))).not.toThrow();
    const self = caller();
    expect(() => requireManage(self, tokenRecord({ ...self }))).not.toThrow();
  });

  it('checks the owner before the scopes, and an admin passes both', () => {
    expectExactly(
      () => requireManage(caller({ scopes: ['read'] }), target({ ownerId: 'user-2', scopes: ['write'] })),
      'permission_denied',
      MSG_OTHER_OWNER,
    );
    expect(() => requireManage(admin(), target({ ownerId: 'user-2', scopes: ['write', 'deploy'] }))).not.toThrow();
  });
});

describe('requireRotateById: manage rights, and rotor:rotate for a non-admin', () => {
  it('holding every scope of the target but not rotor:rotate is refused, for a sibling and for itself', () => {
    const c = caller({ scopes: ['read', 'write'] });
    expectExactly(
      () => requireRotateById(c, target({ scopes: ['read', 'write'] })),
      'permission_denied',
      'rotating a token needs the rotor:rotate scope',
    );
    expectExactly(
      () => requireRotateById(c, tokenRecord({ ...c })),
      'permission_denied',
      'rotating a token needs the rotor:rotate scope',
    );
  });

  it('missing target scopes are reported first', () => {
    expectExactly(
      () => requireRotateById(caller({ scopes: ['read'] }), target({ scopes: ['read', 'write'] })),
      'permission_denied',
      'caller lacks scopes of the target token: write',
    );
  });

  it('with rotor:rotate and every scope of the target it passes; an admin needs no rotor:rotate', () => {
    expect(() =>
      requireRotateById(caller({ scopes: ['read', 'write', SCOPE_ROTATE] }), target({ scopes: ['read', 'write'] })),
    ).not.toThrow();
    expect(() => requireRotateById(admin({ scopes: [SCOPE_ADMIN] }), target({ ownerId: 'user-2' }))).not.toThrow();
  });
});

describe('checkCreation: a non-admin creates nothing looser than itself', () => {
  /** The caller: read write, audiences a b, expires NOW + 1 day, overlap 30 s, grace 10 s. */
  const c = caller({
    scopes: ['read', 'write'],
    audiences: ['a', 'b'],
    expiresAt: NOW + DAY,
    policy: testPolicy({ overlapSeconds: 30, reuseGraceSeconds: 10 }),
  });

  function req(overrides: Partial<CreationRequest> = {}): CreationRequest {
    return {
      ownerId: c.ownerId,
      scopes: ['read'],
      audiences: ['a'],
      expiresAt: NOW + HOUR,
      policy: testPolicy({ overlapSeconds: 0 }),
      ...overrides,
    };
  }

  it('accepts a narrower request, and equal values (same scopes, audiences, expiry, policy)', () => {
    expect(() => checkCreation(c, req())).not.toThrow();
    expect(() =>
      checkCreation(
        c,
        req({ scopes: ['write', 'read'], audiences: ['b', 'a'], expiresAt: c.expiresAt, policy: c.policy }),
      ),
    ).not.toThrow();
  });

  it.each<[string, Partial<CreationRequest>, RotorErrorCode, string]>([
    ['another owner', { ownerId: 'user-2' }, 'permission_denied', MSG_OTHER_OWNER],
    [
      'a scope it lacks',
      { scopes: ['read', 'deploy', SCOPE_ADMIN] },
      'invalid_scope',
      'requested scopes exceed the scopes held: deploy rotor:admin',
    ],
    ['an audience outside its own', { audiences: ['a', 'c'] }, 'invalid_target', "audiences exceed the caller's: c"],
    [
      'no audiences (unrestricted)',
      { audiences: [] },
      'invalid_target',
      "audiences exceed the caller's: (unrestricted)",
    ],
    [
      'an expiry 1 ms after its own',
      { expiresAt: NOW + DAY + 1 },
      'invalid_argument',
      'expires_at must not be later than the expiry of the calling token',
    ],
    [
      'a longer overlap',
      { policy: testPolicy({ overlapSeconds: 31 }) },
      'invalid_argument',
      "policy must not be looser than the calling token's: overlap_seconds",
    ],
    [
      'a longer max lifetime and reuse grace',
      { policy: testPolicy({ maxLifetimeSeconds: 365 * 86400, reuseGraceSeconds: 11 }) },
      'invalid_argument',
      "policy must not be looser than the calling token's: max_lifetime_seconds, reuse_grace_seconds",
    ],
  ])('refuses %s', (_label, overrides, code, message) => {
    expectExactly(() => checkCreation(c, req(overrides)), code, message);
  });

  it('a longer default successor lifetime is not "looser" (the max lifetime still caps it)', () => {
    expect(() =>
      checkCreation(c, req({ policy: testPolicy({ overlapSeconds: 0, defaultLifetimeSeconds: 3600 }) })),
    ).not.toThrow();
  });

  it('a caller without audiences may create with any audiences or none', () => {
    const open = caller({ ...c, audiences: [] });
    expect(() => checkCreation(open, req({ audiences: ['x', 'y'] }))).not.toThrow();
    expect(() => checkCreation(open, req({ audiences: [] }))).not.toThrow();
  });

  it('checks the owner first', () => {
    expectExactly(
      () => checkCreation(c, req({ ownerId: 'user-2', scopes: ['deploy'], audiences: [] })),
      'permission_denied',
      MSG_OTHER_OWNER,
    );
  });

  it('a token bound to a workload creates only tokens with the same binding (an unbound one would void it)', () => {
    const binding = {
      issuer: 'https://ci.example',
      subject: 'repo:org/app:*',
      audience: 'rotor',
      claims: { namespace_id: '42' },
    };
    const bound = caller({
      ...c,
      policy: testPolicy({ overlapSeconds: 30, reuseGraceSeconds: 10, workloadBinding: binding }),
    });
    expect(() =>
      checkCreation(
        bound,
        req({
          policy: testPolicy({ overlapSeconds: 0, workloadBinding: { ...binding, claims: { namespace_id: '42' } } }),
        }),
      ),
    ).not.toThrow();
    expectExactly(
      () => checkCreation(bound, req()),
      'invalid_argument',
      "policy must not be looser than the calling token's: workload_binding",
    );
    expectExactly(
      () =>
        checkCreation(
          bound,
          req({ policy: testPolicy({ overlapSeconds: 0, workloadBinding: { ...binding, subject: '*:main' } }) }),
        ),
      'invalid_argument',
      "policy must not be looser than the calling token's: workload_binding",
    );
    // An unbound caller may create bound tokens: a binding only narrows.
    expect(() =>
      checkCreation(c, req({ policy: testPolicy({ overlapSeconds: 0, workloadBinding: binding }) })),
    ).not.toThrow();
  });

  it('an admin is not limited', () => {
    const a = admin({
      expiresAt: NOW + HOUR,
      policy: testPolicy({ overlapSeconds: 0, reuseGraceSeconds: 0 }),
      audiences: ['a'],
    });
    expect(() =>
      checkCreation(
        a,
        req({
          ownerId: 'anyone',
          scopes: ['deploy', SCOPE_INTROSPECT],
          audiences: [],
          expiresAt: NOW + 300 * DAY,
          policy: testPolicy({ overlapSeconds: 3600, reuseGraceSeconds: 60 }),
        }),
      ),
    ).not.toThrow();
  });
});

/**
 * Rotation by id returns the successor's secret to the caller, so managing must not let a caller
 * obtain a token looser than it could create; a rotated token inside its overlap window makes
 * ordinary calls only.
 */
describe('no secret looser than the caller could create', () => {
  it('requireManage: an audience-bound caller may not manage an unrestricted (or wider-audience) token', () => {
    expectExactly(
      () => requireManage(caller({ audiences: ['a'] }), target({ audiences: [] })),
      'permission_denied',
      'caller lacks audiences of the target token: (unrestricted)',
    );
  });

  it('requireRotateById: a non-admin may not rotate (and receive) a token with a looser policy than its own', () => {
    expectExactly(
      () =>
        requireRotateById(
          caller({ policy: testPolicy({ overlapSeconds: 0 }) }),
          target({ policy: testPolicy({ overlapSeconds: 600 }) }),
        ),
      'permission_denied',
      "the target token's policy is looser than the caller's: overlap_seconds",
    );
  });

  it('a rotated caller (inside its overlap window) may neither manage nor create', () => {
    const rotated = caller({
      revokedAt: NOW - 1000,
      revokeReason: 'rotated',
      successorId: 'tok_successor0000000000001',
    });
    const message = 'a rotated token may not create or manage tokens; use its successor';
    expectExactly(() => requireManage(rotated, target()), 'permission_denied', message);
    expectExactly(
      () =>
        checkCreation(rotated, {
          ownerId: rotated.ownerId,
          scopes: ['read'],
          audiences: ['api'],
          expiresAt: NOW + HOUR,
          policy: rotated.policy,
        }),
      'permission_denied',
      message,
    );
  });
});
