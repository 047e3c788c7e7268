/**
 * Protobuf request bodies for the binary fuzz files (Connect application/proto, Connect streaming,
 * gRPC): messages of a method's own input type with values of every field's own type (so they
 * decode and reach validation), the same encodings mutated (bytes flipped, cut short, unknown
 * fields, a known field number with the wrong wire type, invalid UTF-8 in a string field, a length
 * prefix that lies), and random bytes.
 */
import { create, type DescField, type DescMessage, ScalarType, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import fc from 'fast-check';
import { bytes, fieldValue } from './arbitraries.js';

/** A value of one scalar type, near its edges. */
function scalarValue(t: ScalarType): fc.Arbitrary<unknown> {
  switch (t) {
    case ScalarType.STRING:
      return fieldValue;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 40 });
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.integer(), fc.constantFrom(0, -1, 1, 500, 501, 2 ** 31 - 1, -(2 ** 31)));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.nat(), fc.constant(2 ** 32 - 1));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.constantFrom(0n, 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n),
      );
    default:
      return fc.oneof(
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.constantFrom(0n, -1n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n, -(2n ** 63n)),
      );
  }
}

/** Timestamp and Duration: seconds and nanos anywhere in their wire range, valid or not. */
const wellKnownTime = fc.record({
  seconds: fc.oneof(
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.constantFrom(0n, 1n, -1n, 3600n, 1_900_000_000n, 253402300799n, 253402300800n, 315576000000n),
  ),
  nanos: fc.oneof(fc.integer(), fc.constantFrom(0, 999_999_999, 1_000_000_000, -1)),
});

function fieldArbitrary(f: DescField, depth: number): fc.Arbitrary<unknown> {
  const one = (kind: 'scalar' | 'enum' | 'message', scalar?: ScalarType, message?: DescMessage) => {
    if (kind === 'enum') return fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer());
    if (kind === 'message') {
      if (message?.typeName === 'google.protobuf.Timestamp' || message?.typeName === 'google.protobuf.Duration')
        return wellKnownTime;
      return depth > 0 && message ? messageInit(message, depth - 1) : fc.constant({});
    }
    return scalarValue(scalar ?? ScalarType.STRING);
  };
  switch (f.fieldKind) {
    case 'list':
      return fc.array(one(f.listKind, f.scalar, f.message), { maxLength: f.listKind === 'message' ? 4 : 20 });
    case 'map':
      return fc.dictionary(
        fieldValue,
        f.mapKind === 'scalar' ? scalarValue(f.scalar) : f.mapKind === 'enum' ? fc.integer() : fc.constant({}),
        { maxKeys: 3 },
      );
    case 'enum':
      return one('enum');
    case 'message':
      return one('message', undefined, f.message);
    default:
      return one('scalar', f.scalar);
  }
}

/** The init shape of a message: any subset of its fields, each with a value of its type. */
export function messageInit(desc: DescMessage, depth = 2): fc.Arbitrary<Record<string, unknown>> {
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of desc.fields) record[f.localName] = fieldArbitrary(f, depth);
  return fc.record(record, { requiredKeys: [] });
}

/** A well-formed encoding of a message of `desc`. */
export function encodedMessage(desc: DescMessage): fc.Arbitrary<Buffer> {
  return messageInit(desc).map((init) => Buffer.from(toBinary(desc, create(desc, init as never))));
}

/** One raw field: a known or unknown field number with any wire type and a matching (or lying) body. */
function rawField(desc: DescMessage): fc.Arbitrary<Uint8Array> {
  const numbers = desc.fields.map((f) => f.number);
  const fieldNo = fc.oneof(...(numbers.length > 0 ? [{ weight: 3, arbitrary: fc.constantFrom(...numbers) }] : []), {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: 2 ** 29 - 1 }),
  });
  return fc.oneof(
    // Varint (for a string field: the wrong wire type).
    fc
      .tuple(fieldNo, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
      .map(([n, v]) => new BinaryWriter().tag(n, WireType.Varint).uint64(v).finish()),
    // Length-delimited with arbitrary bytes: invalid UTF-8 in a string field, garbage in a message field.
    fc
      .tuple(fieldNo, fc.uint8Array({ maxLength: 30 }))
      .map(([n, b]) => new BinaryWriter().tag(n, WireType.LengthDelimited).bytes(b).finish()),
    // A length prefix longer than what follows.
    fc
      .tuple(fieldNo, fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.uint8Array({ maxLength: 8 }))
      .map(([n, len, b]) => new BinaryWriter().tag(n, WireType.LengthDelimited).uint32(len).raw(b).finish()),
    fc.tuple(fieldNo).map(([n]) => new BinaryWriter().tag(n, WireType.Bit32).fixed32(0xffffffff).finish()),
    fc.tuple(fieldNo).map(([n]) =>
      new BinaryWriter()
        .tag(n, WireType.Bit64)
        .fixed64(2n ** 64n - 1n)
        .finish(),
    ),
    // Groups (deprecated), an end-group without a start.
    fc.tuple(fieldNo).map(([n]) => new BinaryWriter().tag(n, WireType.StartGroup).finish()),
    fc.tuple(fieldNo).map(([n]) => new BinaryWriter().tag(n, WireType.EndGroup).finish()),
  );
}

/** A valid encoding mutated: one byte changed, cut short, or raw fields inserted before or after. */
function mutated(desc: DescMessage): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.tuple(encodedMessage(desc), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([b, at, v]) => {
      if (b.length === 0) return Buffer.from([v]);
      const out = Buffer.from(b);
      out[at % out.length] = v;
      return out;
    }),
    fc.tuple(encodedMessage(desc), fc.nat()).map(([b, n]) => b.subarray(0, b.length === 0 ? 0 : n % b.length)),
    fc
      .tuple(encodedMessage(desc), fc.array(rawField(desc), { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([b, raw, before]) => Buffer.concat(before ? [...raw, b] : [b, ...raw])),
  );
}

/** A request body for a method taking `desc`: mostly well-formed, often mutated, sometimes noise. */
export function protoBody(desc: DescMessage): fc.Arbitrary<Buffer> {
  return fc.oneof(
    { weight: 6, arbitrary: encodedMessage(desc) },
    { weight: 4, arbitrary: mutated(desc) },
    { weight: 2, arbitrary: fc.array(rawField(desc), { maxLength: 6 }).map((f) => Buffer.concat(f)) },
    { weight: 1, arbitrary: bytes },
  );
}
