// Clients built with @grpc/grpc-js, an implementation of gRPC independent of
// Connect, from the .proto files themselves: if these talk to our servers,
// so can any other gRPC stack.

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { join } from "node:path";
import { ROOT } from "./harness.ts";

const includeDirs = [join(ROOT, "proto"), join(ROOT, "proto-vendor")];

function load(file: string): grpc.GrpcObject {
  const def = protoLoader.loadSync(file, { includeDirs, longs: String, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def);
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type UnaryMethod = (req: object, metadata: grpc.Metadata, cb: Callback<Record<string, unknown>>) => void;

/** A grpc-js client of `service` (for example "grpc.health.v1.Health") at a URL like http://127.0.0.1:7070. */
export function grpcJsClient(file: string, service: string, url: string): grpc.Client & Record<string, UnaryMethod> {
  let obj: unknown = load(file);
  for (const part of service.split(".")) obj = (obj as Record<string, unknown>)[part];
  const Ctor = obj as grpc.ServiceClientConstructor;
  return new Ctor(new URL(url).host, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, UnaryMethod>;
}

/** Calls a unary method, resolving its response or rejecting with the grpc-js ServiceError. */
export function callUnary(client: Record<string, UnaryMethod>, method: string, req: object, token?: string): Promise<Record<string, unknown>> {
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return new Promise((resolve, reject) => client[method]!(req, metadata, (err, res) => (err ? reject(err) : resolve(res))));
}

export { grpc };
