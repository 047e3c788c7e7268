import { type DescFile, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';

/** The proto-loader package definition ReflectionService reads. */
type PackageDefinition = ConstructorParameters<typeof ReflectionService>[0];

/** `files` and everything they import (well-known types included), each file after its imports. */
function withImports(files: readonly DescFile[]): DescFile[] {
  const ordered: DescFile[] = [];
  const seen = new Set<string>();
  const visit = (file: DescFile) => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependencies) visit(dep);
    ordered.push(file);
  };
  for (const file of files) visit(file);
  return ordered;
}

/**
 * The package definition of `files`, shaped as proto-loader shapes one (an entry per message
 * type, each carrying the serialized files), but holding the files exactly as protoc-gen-es
 * received them. proto-loader's own loader (`loadFileDescriptorSetFromBuffer`) rebuilds files
 * from protobufjs, merging the files of one package and dropping their imports, and `buf curl`
 * then cannot resolve `google.protobuf.Timestamp` from what reflection sends; ReflectionService
 * reads nothing but `fileDescriptorProtos`.
 */
function packageDefinition(files: readonly DescFile[]): PackageDefinition {
  const all = withImports(files);
  const fileDescriptorProtos = all.map((f) => Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  const definition: PackageDefinition = {};
  for (const file of all) {
    for (const message of file.messages) {
      definition[message.typeName] = {
        format: 'Protocol Buffer 3 DescriptorProto',
        type: message.proto,
        fileDescriptorProtos,
      };
    }
  }
  return definition;
}

/**
 * Serves gRPC server reflection (`grpc.reflection.v1` and `v1alpha`, `@grpc/reflection`) on the
 * gRPC port, so `buf curl`, grpcurl and Postman need no copy of the protos. The schema is the
 * protobuf-es descriptors the handlers are built from (src/gen) and the files they import.
 */
export function addGrpcReflection(server: grpc.Server, files: readonly DescFile[]): void {
  new ReflectionService(packageDefinition(files)).addToServer(server);
}
