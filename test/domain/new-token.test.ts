import { describe, expect, it } from 'vitest';
import { requireId } from '../../src/domain/input-limits.js';
import { mintSuccessor, mintToken, newId, type NewTokenSpec } from '../../src/domain/new-token.js';
import { parseSecret } from '../../src/domain/token-secret.js';
import { DAY, NOW, seededRandom, testKeys, testPolicy, tokenRecord } from './fixtures.js';

const spec: NewTokenSpec = {
  kind: 'service_account',
  ownerId: 'svc-deployer',
  name: 'deployer',
  description: 'deploys things',
  scopes: ['deploy', 'rotor:rotate'],
  audiences: ['api'],
  policy: testPolicy(),
  expiresAt: NOW + 30 * DAY,
};

describe('newId', () => {
  it('is a prefixed 22-character base62 id that passes requireId', () => {
    const id = newId('tok', seededRandom('id'));
    expect(id).toMatch(/^tok_[0-9A-Za-z]{22}$/);
    expect(requireId('id', id)).toBe(id);
    expect(newId('fam', seededRandom('id'))).toMatch(/^fam_[0-9A-Za-z]{22}$/);
  });

  it('differs between successive draws', () => {
    const random = seededRandom('ids');
    const ids = new Set(Array.from({ length: 100 }, () => newId('tok', random)));
    expect(ids.size).toBe(100);
  });
});

describe('mintToken', () => {
  it('mints the head of a new family with a parseable secret and its digest', () => {
    const keys = testKeys();
    const { record, secret } = mintToken(spec, NOW, seededRandom('mint'), keys);
    expect(parseSecret(secret)).toEqual({ kind: 'service_account', secret });
    expect(record).toMatchObject({
      ...spec,
      previousId: null,
      successorId: null,
      createdAt: NOW,
      revokedAt: null,
      revokeReason: null,
    });
    expect(record.id).toMatch(/^tok_/);
    expect(record.familyId).toMatch(/^fam_/);
    expect(record.secretDigest).toBe(keys.secretDigest(secret));
    expect(record.displayPrefix).toBe(secret.slice(0, 'rtr_sa_'.length + 4));
    expect(JSON.stringify(record)).not.toContain(secret);
  });
});

describe('mintSuccessor', () => {
  const current = tokenRecord({ kind: 'project', id: 'tok_pred', familyId: 'fam_f1' });

  it('inherits kind, owner, name, audiences, policy and family; links to the predecessor', () => {
    const keys = testKeys();
    const { record, secret } = mintSuccessor(
      current,
      { scopes: ['read'], expiresAt: NOW + DAY },
      NOW,
      seededRandom('s'),
      seededRandom('r'),
      keys,
    );
    expect(parseSecret(secret).kind).toBe('project');
    expect(record).toMatchObject({
      kind: current.kind,
      ownerId: current.ownerId,
      name: current.name,
      description: current.description,
      audiences: current.audiences,
      policy: current.policy,
      familyId: 'fam_f1',
      previousId: 'tok_pred',
      successorId: null,
      scopes: ['read'],
      createdAt: NOW,
      expiresAt: NOW + DAY,
      revokedAt: null,
      rotatedAt: null,
      rotationKeyDigest: null,
    });
    expect(record.id).not.toBe(current.id);
    expect(record.secretDigest).toBe(keys.secretDigest(secret));
  });

  it('uses narrowed audiences when given, the inherited ones otherwise', () => {
    const keys = testKeys();
    const wide = tokenRecord({ audiences: ['api', 'billing'] });
    const narrowed = mintSuccessor(
      wide,
      { scopes: [], expiresAt: NOW + DAY, audiences: ['billing'] },
      NOW,
      seededRandom('s'),
      seededRandom('r'),
      keys,
    );
    expect(narrowed.record.audiences).toEqual(['billing']);
    const inherited = mintSuccessor(
      wide,
      { scopes: [], expiresAt: NOW + DAY },
      NOW,
      seededRandom('s'),
      seededRandom('r'),
      keys,
    );
    expect(inherited.record.audiences).toEqual(['api', 'billing']);
  });

  it('re-derives the same secret from the same idempotent byte stream (rule 3 replay)', () => {
    const keys = testKeys();
    const a = mintSuccessor(
      current,
      { scopes: [], expiresAt: NOW + DAY },
      NOW,
      keys.successorBytes('seed', 'key-0000000000000000'),
      seededRandom('r1'),
      keys,
    );
    const b = mintSuccessor(
      current,
      { scopes: [], expiresAt: NOW + DAY },
      NOW,
      keys.successorBytes('seed', 'key-0000000000000000'),
      seededRandom('r2'),
      keys,
    );
    expect(b.secret).toBe(a.secret);
    expect(b.record.secretDigest).toBe(a.record.secretDigest);
    const c = mintSuccessor(
      current,
      { scopes: [], expiresAt: NOW + DAY },
      NOW,
      keys.successorBytes('seed', 'key-0000000000000001'),
      seededRandom('r1'),
      keys,
    );
    expect(c.secret).not.toBe(a.secret);
  });
});
