import { describe, expect, it } from 'vitest';
import {
  keyToCreate,
  prepublishLeadMs,
  publishedKeys,
  signingKeyAt,
  type KeySchedule,
  type SigningKeyMeta,
} from '../../src/domain/signing-key-schedule.js';
import { DAY, HOUR, MINUTE, NOW } from './fixtures.js';

const WEEK: KeySchedule = { rotationMs: 7 * DAY, ttlMs: 5 * MINUTE };

function key(slot: number, notBefore: number, schedule = WEEK, createdAt = notBefore): SigningKeyMeta {
  return {
    kid: `k${slot}`,
    alg: 'ES256',
    slot,
    createdAt,
    notBefore,
    retireAt: notBefore + schedule.rotationMs,
    publishUntil: notBefore + schedule.rotationMs + schedule.ttlMs,
  };
}

describe('prepublishLeadMs', () => {
  it('is a quarter of the rotation period, at most a day', () => {
    expect(prepublishLeadMs({ rotationMs: 4 * HOUR, ttlMs: 0 })).toBe(HOUR);
    expect(prepublishLeadMs(WEEK)).toBe(DAY);
  });
});

describe('keyToCreate', () => {
  it('creates slot 0, signing at once, when there is no key', () => {
    expect(keyToCreate([], -1, NOW, WEEK)).toEqual({
      slot: 0,
      notBefore: NOW,
      retireAt: NOW + 7 * DAY,
      publishUntil: NOW + 7 * DAY + 5 * MINUTE,
    });
  });

  it('creates nothing while the current key is far from retiring', () => {
    expect(keyToCreate([key(0, NOW)], 0, NOW + 6 * DAY - 1, WEEK)).toBeUndefined();
  });

  it('pre-publishes the successor a day before the current key retires; it signs from the retirement on', () => {
    const k0 = key(0, NOW);
    expect(keyToCreate([k0], 0, NOW + 6 * DAY, WEEK)).toEqual({
      slot: 1,
      notBefore: k0.retireAt,
      retireAt: k0.retireAt + 7 * DAY,
      publishUntil: k0.retireAt + 7 * DAY + 5 * MINUTE,
    });
  });

  it('creates nothing when the successor already exists (another replica made it)', () => {
    const k0 = key(0, NOW);
    const k1 = key(1, k0.retireAt, WEEK, NOW + 6 * DAY);
    expect(keyToCreate([k0, k1], 1, NOW + 6 * DAY + HOUR, WEEK)).toBeUndefined();
  });

  it('after a gap with no current key, a new key signs at once with the next slot number', () => {
    expect(keyToCreate([], 7, NOW + 90 * DAY, WEEK)).toMatchObject({ slot: 8, notBefore: NOW + 90 * DAY });
  });
});

describe('signingKeyAt', () => {
  it('picks the key whose window holds now; the pre-published key only from its not_before', () => {
    const k0 = key(0, NOW);
    const k1 = key(1, k0.retireAt, WEEK, NOW + 6 * DAY);
    expect(signingKeyAt([k0, k1], NOW + 6 * DAY + HOUR)?.kid).toBe('k0');
    expect(signingKeyAt([k0, k1], k0.retireAt - 1)?.kid).toBe('k0');
    expect(signingKeyAt([k0, k1], k0.retireAt)?.kid).toBe('k1');
    expect(signingKeyAt([k0, k1], k1.retireAt)).toBeUndefined();
  });
});

describe('publishedKeys', () => {
  it('keeps a retired key until the last token it signed has expired, newest first', () => {
    const k0 = key(0, NOW);
    const k1 = key(1, k0.retireAt, WEEK, NOW + 6 * DAY);
    expect(publishedKeys([k0, k1], k0.retireAt + 5 * MINUTE - 1).map((k) => k.kid)).toEqual(['k1', 'k0']);
    expect(publishedKeys([k0, k1], k0.retireAt + 5 * MINUTE).map((k) => k.kid)).toEqual(['k1']);
  });
});
