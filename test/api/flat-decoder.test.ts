import { create, fromBinary, ScalarType, toBinary, type DescMessage } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flatDecoder } from '../../src/api/flat-decoder.js';
import { ExpiryService } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { CheckRequestSchema, HealthService } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import {
  IntrospectTokenRequestSchema,
  RevokeTokenRequestSchema,
  TokenService,
} from '../../src/gen/rotor/v1/token_service_pb.js';
import { fuzzParams } from '../fuzz/support.js';
import { encodedMessage, protoBody } from '../fuzz/proto-messages.js';

const INPUTS: DescMessage[] = [
  ...new Set(
    [...TokenService.methods, ...TokenExchangeService.methods, ...HealthService.methods, ...ExpiryService.methods].map(
      (m) => m.input,
    ),
  ),
];
const FLAT = INPUTS.filter((s) => flatDecoder(s) !== undefined);
const IMPLICIT = 2; // FeatureSet_FieldPresence.IMPLICIT
const SMALL_SCALARS = [ScalarType.STRING, ScalarType.BOOL, ScalarType.INT32, ScalarType.UINT32];

/** fromBinary's answer, or the error it throws. */
function generic(schema: DescMessage, bytes: Uint8Array): { msg?: unknown; error?: unknown } {
  try {
    return { msg: fromBinary(schema, bytes) };
  } catch (error) {
    return { error };
  }
}

function decoder(schema: DescMessage) {
  const decode = flatDecoder(schema);
  if (!decode) throw new Error(`${schema.typeName} has no flat decoder`);
  return decode;
}

const bytesOf = (schema: DescMessage, init: Record<string, unknown>) =>
  Buffer.from(toBinary(schema, create(schema, init as never)));

describe('flatDecoder', () => {
  it('exists for the hot requests and for no message with repeated, message, 64-bit or optional fields', () => {
    const names = FLAT.map((s) => s.typeName);
    expect(names).toContain(IntrospectTokenRequestSchema.typeName);
    expect(names).toContain(CheckRequestSchema.typeName);
    expect(names).toContain(RevokeTokenRequestSchema.typeName);
    for (const s of FLAT)
      for (const f of s.fields) {
        const at = `${s.typeName}.${f.name}`;
        expect(f.presence, at).toBe(IMPLICIT);
        expect(f.oneof, at).toBeUndefined();
        if (f.fieldKind === 'enum') expect(f.enum.open, at).toBe(true);
        else {
          expect(f.fieldKind, at).toBe('scalar');
          if (f.fieldKind === 'scalar') expect(SMALL_SCALARS, at).toContain(f.scalar);
        }
      }
    // RotateTokenRequest has repeated scopes and a Timestamp: the generic decoding.
    expect(flatDecoder(TokenService.method.rotateToken.input)).toBeUndefined();
  });

  it('returns exactly what fromBinary returns for the messages it takes', () => {
    const cases: [DescMessage, Record<string, unknown>][] = [
      [IntrospectTokenRequestSchema, {}],
      [IntrospectTokenRequestSchema, { token: 'rtr_sa_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG' }],
      [IntrospectTokenRequestSchema, { token: 'ünïcødé ✓ 𝄞' }],
      [IntrospectTokenRequestSchema, { token: 'x'.repeat(127) }],
      [IntrospectTokenRequestSchema, { token: 'x'.repeat(128) }],
      [IntrospectTokenRequestSchema, { token: 'x'.repeat(5000) }],
      [CheckRequestSchema, {}],
      [RevokeTokenRequestSchema, { id: 'tok_1', cascade: true }],
      [RevokeTokenRequestSchema, { id: '', cascade: false, dryRun: true }],
    ];
    for (const [schema, init] of cases) {
      const bytes = bytesOf(schema, init);
      const flat = decoder(schema)(bytes);
      expect(flat, `${schema.typeName} ${JSON.stringify(init)}`).toBeDefined();
      expect(flat).toStrictEqual(fromBinary(schema, bytes));
      // Same keys in the same order as create() (the objects share one shape).
      expect(Object.keys(flat!)).toEqual(Object.keys(create(schema)));
    }
  });

  it('declines what fromBinary must decide: unknown fields, wrong wire types, bad or ambiguous UTF-8, truncation', () => {
    const decode = decoder(IntrospectTokenRequestSchema);
    const token = (payload: number[]) => Buffer.from([0x0a, payload.length, ...payload]);
    const declined: Buffer[] = [
      Buffer.from([0x10, 0x01]), // field 2: unknown
      Buffer.from([0x08, 0x01]), // field 1 as a varint
      token([0xc3, 0x28]), // invalid UTF-8
      token([0xef, 0xbf, 0xbd]), // U+FFFD sent as such
      token([0xef, 0xbb, 0xbf, 0x61]), // a leading byte order mark (TextDecoder drops it)
      Buffer.from([0x0a, 0x05, 0x61]), // length past the end
      Buffer.from([0x0a]), // tag without a length
      Buffer.from([0x0a, 0x80, 0x80, 0x01]), // a three-byte length
    ];
    for (const bytes of declined) expect(decode(bytes), bytes.toString('hex')).toBeUndefined();
    const revoke = decoder(RevokeTokenRequestSchema);
    // A bool as a ten-byte varint (a negative number): fromBinary reads it.
    const tenBytes = Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect(revoke(tenBytes)).toBeUndefined();
    expect(generic(RevokeTokenRequestSchema, tenBytes).msg).toMatchObject({ cascade: true });
  });

  it('agrees with fromBinary on generated messages, mutated encodings and random bytes', () => {
    expect(FLAT.length).toBeGreaterThan(2);
    for (const schema of FLAT) {
      const decode = decoder(schema);
      let taken = 0;
      fc.assert(
        fc.property(fc.oneof(encodedMessage(schema), protoBody(schema)), (bytes) => {
          const flat = decode(bytes);
          const { msg, error } = generic(schema, bytes);
          if (flat === undefined) return;
          taken++;
          expect(error, schema.typeName).toBeUndefined();
          expect(flat).toStrictEqual(msg);
          expect(Object.keys(flat)).toEqual(Object.keys(msg as object));
        }),
        fuzzParams(300),
      );
      // The fast path is the common one, not a path the generated inputs never reach.
      expect(taken, schema.typeName).toBeGreaterThan(30);
    }
  });
});
