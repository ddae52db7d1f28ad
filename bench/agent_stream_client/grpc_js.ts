// The Health client built with @grpc/grpc-js from the .proto file loaded at
// run time by @grpc/proto-loader (no generated code): one channel.

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import type { HealthStreamClient, Keepalive } from "./client.ts";

const HEALTH_PROTO = fileURLToPath(new URL("../../proto-vendor/grpc/health/v1/health.proto", import.meta.url));

type Callback = (err: grpc.ServiceError | null, res: { status: number }) => void;
interface HealthStub extends grpc.Client {
  Check(req: { service: string }, options: grpc.CallOptions, cb: Callback): grpc.ClientUnaryCall;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: number }>;
}

export function grpcJsHealthClient(baseUrl: string, keepalive?: Keepalive): HealthStreamClient {
  // enums as numbers, like the generated code; defaults so status 0 is present.
  const definition = protoLoader.loadSync(HEALTH_PROTO, { defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    grpc: { health: { v1: { Health: new (target: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => HealthStub } } };
  };
  const options: grpc.ChannelOptions = keepalive
    ? { "grpc.keepalive_time_ms": keepalive.intervalMs, "grpc.keepalive_timeout_ms": keepalive.timeoutMs }
    : {};
  const stub = new pkg.grpc.health.v1.Health(new URL(baseUrl).host, grpc.credentials.createInsecure(), options);
  return {
    check(timeoutMs) {
      return new Promise((resolve, reject) =>
        stub.Check({ service: "" }, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res.status))),
      );
    },
    watch(onStatus, signal) {
      return new Promise((resolve) => {
        const call = stub.Watch({ service: "" });
        const cancel = () => call.cancel();
        signal.addEventListener("abort", cancel, { once: true });
        call.on("data", (res: { status: number }) => onStatus(res.status));
        // A non-OK status also emits "error"; "status" comes once in every case.
        call.on("error", () => {});
        call.on("status", (status: grpc.StatusObject) => {
          signal.removeEventListener("abort", cancel);
          resolve({ code: grpc.status[status.code] ?? String(status.code), message: status.details });
        });
      });
    },
    close() {
      stub.close();
    },
  };
}
