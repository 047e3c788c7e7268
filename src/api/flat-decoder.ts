import type { DescField, DescMessage } from '@bufbuild/protobuf';
import { flatFieldKind } from './flat-encoder.js';

/**
 * A direct protobuf decoder for "flat" request messages, the counterpart of flat-encoder.ts: every
 * field a string, bool, open enum, int32 or uint32 with implicit presence (proto3 without `optional`),
 * none repeated or in a oneof. IntrospectTokenRequest (one string) and the no-op's CheckRequest (no
 * field) are such messages. `fromBinary` builds a reflection wrapper and a reader per message and
 * looks every field up by number; on the gRPC port that was 3.1 % of a cached IntrospectToken's
 * busy time (bench/README.md, "Thirteenth session"). This reads the few tags the message
 * has straight from the bytes into the object `create(schema)` makes (`$typeName`, then each field
 * at its zero value, in declaration order).
 *
 * `flatDecoder` answers undefined for any other message shape. The decoder it returns answers
 * undefined for any input outside its fast path, and the caller then decodes with `fromBinary`,
 * which gives the answer or the error: an unknown field (fromBinary keeps it in `$unknown`), a
 * wire type that does not match the field, a varint of five bytes or more (a negative or large
 * number), a string that is not clean UTF-8 (fromBinary refuses invalid UTF-8; a U+FFFD written by
 * the sender is decided there too), a string starting with U+FEFF (fromBinary's TextDecoder drops
 * it as a byte order mark), a truncated field. So the object it returns is always the one
 * fromBinary would have returned, which the tests check on generated inputs.
 */
export type FlatDecoder = (bytes: Uint8Array) => Record<string, unknown> | undefined;

type Kind = 'string' | 'bool' | 'varint';

interface Field {
  name: string;
  kind: Kind;
  /** The zero value `create` gives the field. */
  zero: string | boolean | number;
}

const EDITION_PROTO2 = 998; // Edition.EDITION_PROTO2

/** The highest field number with a one-byte tag (wire types need the low three bits). */
const MAX_ONE_BYTE_FIELD = 15;

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

/** U+FFFD, what Buffer's UTF-8 decoding puts in place of a malformed sequence. */
const REPLACEMENT = '\ufffd';
/** U+FEFF at the start of a string: TextDecoder (fromBinary) drops it as a byte order mark, Buffer keeps it. */
const BOM = 0xfeff;

function kindOf(f: DescField): Kind | undefined {
  switch (flatFieldKind(f)) {
    case 'string':
      return 'string';
    case 'bool':
      return 'bool';
    case 'varint32':
      return 'varint';
    case 'enum':
      // A closed enum keeps an unknown value in `$unknown`: fromBinary's business.
      return f.enum?.open ? 'varint' : undefined;
    default:
      // Repeated strings and 64-bit numbers are left to fromBinary.
      return undefined;
  }
}

export function flatDecoder(schema: DescMessage): FlatDecoder | undefined {
  // create() gives a proto2 message a prototype for its defaults, even one without fields.
  if (schema.file.edition === EDITION_PROTO2) return undefined;
  // By field number (one-byte tags only: request messages here have few fields).
  const byNumber: (Field | undefined)[] = new Array<Field | undefined>(MAX_ONE_BYTE_FIELD + 1);
  // In declaration order, as create() sets them.
  const fields: Field[] = [];
  for (const f of schema.fields) {
    const kind = kindOf(f);
    if (kind === undefined || f.number > MAX_ONE_BYTE_FIELD) return undefined;
    const field: Field = { name: f.localName, kind, zero: kind === 'string' ? '' : kind === 'bool' ? false : 0 };
    byNumber[f.number] = field;
    fields.push(field);
  }
  const typeName = schema.typeName;

  return (bytes) => {
    const msg: Record<string, unknown> = { $typeName: typeName };
    for (const f of fields) msg[f.name] = f.zero;
    const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const end = buf.length;
    let at = 0;
    while (at < end) {
      const tag = buf[at++]!;
      // A tag of more than one byte is a field number past 15: unknown here.
      if (tag > 0x7f) return undefined;
      const field = byNumber[tag >> 3];
      if (field === undefined) return undefined;
      const wire = tag & 7;
      if (field.kind === 'string') {
        if (wire !== WIRE_LEN || at >= end) return undefined;
        // Lengths up to 127 (one byte) and up to 16,383 (two); anything longer goes to fromBinary.
        let len = buf[at++]!;
        if (len > 0x7f) {
          if (at >= end || buf[at]! > 0x7f) return undefined;
          len = (len & 0x7f) | (buf[at++]! << 7);
        }
        if (at + len > end) return undefined;
        const s = buf.toString('utf8', at, at + len);
        if (s.includes(REPLACEMENT) || s.charCodeAt(0) === BOM) return undefined;
        msg[field.name] = s;
        at += len;
      } else {
        if (wire !== WIRE_VARINT) return undefined;
        // Up to four bytes: 0 ≤ value < 2^28, the same number for every varint type.
        let value = 0;
        let shift = 0;
        for (;;) {
          if (at >= end || shift > 21) return undefined;
          const b = buf[at++]!;
          value |= (b & 0x7f) << shift;
          if (b < 0x80) break;
          shift += 7;
        }
        msg[field.name] = field.kind === 'bool' ? value !== 0 : value;
      }
    }
    return msg;
  };
}
