import { create, fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { flatEncoder } from '../../src/api/flat-encoder.js';
import { CheckResponseSchema } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import {
  GetTokenResponseSchema,
  IntrospectTokenResponseSchema,
  RevokeFamilyResponseSchema,
} from '../../src/gen/rotor/v1/token_service_pb.js';

/** The flat encoding, which must exist for these inputs. */
function flat(schema: DescMessage, msg: Record<string, unknown>): Buffer {
  const encode = flatEncoder(schema);
  if (!encode) throw new Error(`${schema.typeName} has no flat encoder`);
  const bytes = encode(msg);
  if (!bytes) throw new Error('the flat encoder declined');
  return bytes;
}

const generic = (schema: DescMessage, msg: Record<string, unknown>) =>
  Buffer.from(toBinary(schema, create(schema, msg as never)));

const introspections: Record<string, unknown>[] = [
  {},
  { active: false },
  {
    active: true,
    scope: 'orders:read orders:write',
    exp: 1_800_000_000n,
    iat: 1_700_000_000n,
    sub: 'owner-1',
    tokenType: 'Bearer',
    tokenId: 'tok_0123456789abcdefghijkl',
    familyId: 'fam_0123456789abcdefghijkl',
    kind: TokenKind.SERVICE_ACCOUNT,
    ownerId: 'owner-1',
    aud: ['https://a.example', '', 'b'],
  },
  // Non-ASCII, lone surrogates (both encoders write U+FFFD), lengths around the one-byte prefix.
  {
    active: true,
    sub: 'ünïcødé ✓ 𝄞',
    scope: 'x'.repeat(42),
    ownerId: 'y'.repeat(43),
    iss: 'z'.repeat(200),
    jti: '\ud800',
    clientId: 'a\udc00b',
  },
  { active: true, exp: BigInt(Number.MAX_SAFE_INTEGER), iat: 127n, kind: TokenKind.PERSONAL, aud: ['é'.repeat(100)] },
  { exp: 128n, iat: 16_384n, aud: [] },
];

describe('flatEncoder', () => {
  it('writes exactly the bytes toBinary writes for IntrospectTokenResponse', () => {
    for (const msg of introspections) {
      const bytes = flat(IntrospectTokenResponseSchema, msg);
      expect(
        bytes.equals(generic(IntrospectTokenResponseSchema, msg)),
        JSON.stringify(msg, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)),
      ).toBe(true);
      expect(fromBinary(IntrospectTokenResponseSchema, bytes).active).toBe(msg.active === true);
    }
  });

  it('accepts a built message as well as a plain object, and numbers for 64-bit fields', () => {
    const msg = create(IntrospectTokenResponseSchema, { active: true, exp: 42n, tokenId: 'tok_x' });
    expect(
      flat(IntrospectTokenResponseSchema, msg as never).equals(generic(IntrospectTokenResponseSchema, msg as never)),
    ).toBe(true);
    expect(
      flat(IntrospectTokenResponseSchema, { exp: 42 }).equals(generic(IntrospectTokenResponseSchema, { exp: 42n })),
    ).toBe(true);
  });

  it('covers the other flat responses (health check, revoke family)', () => {
    for (const status of ['SERVING', 'NOT_SERVING', '']) {
      expect(flat(CheckResponseSchema, { status }).equals(generic(CheckResponseSchema, { status }))).toBe(true);
    }
    expect(
      flat(RevokeFamilyResponseSchema, { revokedCount: 300 }).equals(
        generic(RevokeFamilyResponseSchema, { revokedCount: 300 }),
      ),
    ).toBe(true);
  });

  it('declines values outside its fast path, so the generic encoding answers', () => {
    const encode = flatEncoder(IntrospectTokenResponseSchema)!;
    for (const msg of [
      { exp: -1n },
      { exp: BigInt(Number.MAX_SAFE_INTEGER) + 1n },
      { exp: 1.5 },
      { kind: -1 },
      { scope: 42 },
      { active: 'yes' },
      { aud: 'not-a-list' },
      { aud: [1] },
      { $unknown: [{ no: 99, wireType: 0, data: new Uint8Array([1]) }] },
    ]) {
      expect(
        encode(msg as Record<string, unknown>),
        JSON.stringify(msg, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)),
      ).toBeUndefined();
    }
  });

  it('does not apply to messages with message fields', () => {
    expect(flatEncoder(GetTokenResponseSchema)).toBeUndefined();
  });
});
