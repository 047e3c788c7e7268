import { toBinary } from '@bufbuild/protobuf';
import { DurationSchema } from '@bufbuild/protobuf/wkt';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/**
 * `google.rpc.RetryInfo` (google/rpc/error_details.proto: `google.protobuf.Duration retry_delay = 1`),
 * the standard error detail that tells a gRPC client how long to wait. Encoded here by hand, a
 * one-field message, rather than vendoring the googleapis protos into proto/ for it.
 */
export const RETRY_INFO_TYPE = 'google.rpc.RetryInfo';

/** The binary RetryInfo for a delay of whole seconds. */
export function encodeRetryInfo(seconds: number): Uint8Array {
  const delay = toBinary(DurationSchema, { $typeName: 'google.protobuf.Duration', seconds: BigInt(seconds), nanos: 0 });
  return new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(delay).finish();
}

/** The delay of a binary RetryInfo, in milliseconds (clients and tests read it back). */
export function decodeRetryInfoMs(bytes: Uint8Array): number {
  const reader = new BinaryReader(bytes);
  let ms = 0;
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field !== 1 || wire !== WireType.LengthDelimited) {
      reader.skip(wire);
      continue;
    }
    const inner = new BinaryReader(reader.bytes());
    while (inner.pos < inner.len) {
      const [f, w] = inner.tag();
      if (f === 1) ms += Number(inner.int64()) * 1000;
      else if (f === 2) ms += inner.int32() / 1e6;
      else inner.skip(w);
    }
  }
  return ms;
}
