import { ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';

/**
 * A direct protobuf encoder for "flat" response messages: every field a bool, string, int32,
 * int64, uint32, uint64 or enum with implicit presence (proto3 without `optional`), or a repeated
 * string, none in a oneof. IntrospectToken's response is one. It writes the wire bytes straight
 * into one buffer from the handler's plain object, where `toBinary(create(...))` builds a full
 * message, walks it by reflection and encodes every string into its own array first: in the
 * server profile that was the largest cost of an introspection after the transport
 * (bench/README.md). The output is byte for byte what toBinary writes (fields in number order,
 * zero values left out), which the tests check.
 *
 * `flatEncoder` answers undefined for any other message shape; the encoder it returns answers
 * undefined for a value outside its fast path (a negative number, a 64-bit value past 2^53, a
 * value of an unexpected type, unknown fields), and the caller then uses the generic encoding.
 */
export type FlatEncoder = (msg: Record<string, unknown>) => Buffer | undefined;

type Kind = 'bool' | 'string' | 'varint' | 'strings';

interface Plan {
  name: string;
  kind: Kind;
  /** The field's tag (number and wire type) as varint bytes. */
  tag: number[];
}

const IMPLICIT = 2; // FeatureSet_FieldPresence.IMPLICIT

function varintBytes(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/**
 * What a field of a flat message is, for the flat encoder and decoder (flat-decoder.ts) alike:
 * `varint32` an int32 or uint32, `varint64` an int64 or uint64 held as a bigint or number,
 * `enum` an enum, `strings` a repeated string; undefined for anything else (a oneof member, a
 * field with explicit presence, a message, map, bytes, float or 64-bit-as-string field).
 */
export type FlatFieldKind = 'bool' | 'string' | 'varint32' | 'varint64' | 'enum' | 'strings';

export function flatFieldKind(f: DescField): FlatFieldKind | undefined {
  if (f.oneof !== undefined) return undefined;
  if (f.fieldKind === 'list') return f.listKind === 'scalar' && f.scalar === ScalarType.STRING ? 'strings' : undefined;
  if (f.presence !== IMPLICIT) return undefined;
  if (f.fieldKind === 'enum') return 'enum';
  if (f.fieldKind !== 'scalar') return undefined;
  switch (f.scalar) {
    case ScalarType.BOOL:
      return 'bool';
    case ScalarType.STRING:
      return 'string';
    case ScalarType.INT32:
    case ScalarType.UINT32:
      return 'varint32';
    case ScalarType.INT64:
    case ScalarType.UINT64:
      return f.longAsString ? undefined : 'varint64';
    default:
      return undefined;
  }
}

function kindOf(f: DescField): Kind | undefined {
  const kind = flatFieldKind(f);
  return kind === 'varint32' || kind === 'varint64' || kind === 'enum' ? 'varint' : kind;
}

/** A number for a varint field, or undefined when it is outside the fast path. */
function varintValue(v: unknown): number | undefined {
  if (v === undefined) return 0;
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v === 'bigint') return v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
  return undefined;
}

/** Upper bound of a varint's size for a value below 2^53. */
const MAX_VARINT = 8;

export function flatEncoder(schema: DescMessage): FlatEncoder | undefined {
  const plan: Plan[] = [];
  // toBinary writes fields sorted by number.
  for (const f of [...schema.fields].sort((a, b) => a.number - b.number)) {
    const kind = kindOf(f);
    if (kind === undefined) return undefined;
    const wireType = kind === 'string' || kind === 'strings' ? 2 : 0;
    plan.push({ name: f.localName, kind, tag: varintBytes(f.number * 8 + wireType) });
  }

  return (msg) => {
    if ((msg as { $unknown?: unknown[] }).$unknown?.length) return undefined;
    // Pass 1: validate, and bound the size (a string is at most 3 UTF-8 bytes per UTF-16 unit).
    let bound = 0;
    for (const p of plan) {
      const v = msg[p.name];
      switch (p.kind) {
        case 'bool':
          if (v !== undefined && typeof v !== 'boolean') return undefined;
          bound += p.tag.length + 1;
          break;
        case 'string':
          if (v === undefined) break;
          if (typeof v !== 'string') return undefined;
          bound += p.tag.length + MAX_VARINT + v.length * 3;
          break;
        case 'varint':
          if (varintValue(v) === undefined) return undefined;
          bound += p.tag.length + MAX_VARINT;
          break;
        case 'strings':
          if (v === undefined) break;
          if (!Array.isArray(v)) return undefined;
          for (const s of v) {
            if (typeof s !== 'string') return undefined;
            bound += p.tag.length + MAX_VARINT + s.length * 3;
          }
          break;
      }
    }
    const buf = Buffer.allocUnsafe(bound);
    let at = 0;
    const tag = (t: number[]) => {
      for (const b of t) buf[at++] = b;
    };
    const varint = (n: number) => {
      while (n > 127) {
        buf[at++] = (n % 128) | 128;
        n = Math.floor(n / 128);
      }
      buf[at++] = n;
    };
    const str = (s: string) => {
      if (s.length * 3 < 128) {
        // The length fits in one byte whatever the encoding: write the bytes, then the length.
        const n = buf.write(s, at + 1, 'utf8');
        buf[at] = n;
        at += 1 + n;
      } else {
        varint(Buffer.byteLength(s, 'utf8'));
        at += buf.write(s, at, 'utf8');
      }
    };
    // Pass 2: write in declaration order, leaving out zero values (implicit presence).
    for (const p of plan) {
      const v = msg[p.name];
      switch (p.kind) {
        case 'bool':
          if (v === true) {
            tag(p.tag);
            buf[at++] = 1;
          }
          break;
        case 'string':
          if (typeof v === 'string' && v !== '') {
            tag(p.tag);
            str(v);
          }
          break;
        case 'varint': {
          const n = varintValue(v)!;
          if (n !== 0) {
            tag(p.tag);
            varint(n);
          }
          break;
        }
        case 'strings':
          if (Array.isArray(v)) {
            for (const s of v as string[]) {
              tag(p.tag);
              str(s);
            }
          }
          break;
      }
    }
    return buf.subarray(0, at);
  };
}
