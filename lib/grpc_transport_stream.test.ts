// Drover's gRPC transport's streams (grpc_transport.ts, ClientStream)
// against a real server on port 0, over real sockets: both of the server's
// stream paths (FleetService.Connect on the raw path, lib/host/grpc_stream.ts;
// SchedulerService.WatchJob through the Connect adapter), sizes past HTTP/2's
// flow-control windows, a slow reader, statuses in trailers and alone,
// cancellation both ways, deadlines, interceptors and a server not there.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter, type Interceptor } from "@connectrpc/connect";

import { ConnectRequestSchema, ConnectResponseSchema, LogStream, type ConnectRequest, type ConnectResponse } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService, type WatchJobResponseSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { createDroverTransport } from "./grpc_transport.ts";
import { serveGrpcStream } from "./host/grpc_stream.ts";
import type { RunningServer } from "./host/server.ts";
import { failure, startOpenServer } from "./testing/connect.ts";

const KiB = 1024;
// Job ids whose last hex digit says what WatchJob does.
const jobId = (last: string) => `11111111-1111-4111-8111-11111111111${last}`;
const MANY = jobId("1"); // 300 jobs of ~2 KiB (past the stream's flow-control window), then the end
const FEW = jobId("6"); // 20 jobs of ~2 KiB (within the window: all sent, and the stream closed, before they are read), then the end
const FAILS_AFTER_TWO = jobId("2"); // 2 jobs, then PERMISSION_DENIED with metadata
const FAILS_AT_ONCE = jobId("3"); // NOT_FOUND before any message
const FOREVER = jobId("4"); // a job, then nothing until the call ends
const ECHO = jobId("5"); // one job whose key is the request's x-test header

/** What the server saw of the last FOREVER call or raw Connect call: resolved when its signal aborted. */
let serverCallEnded: Promise<void> = Promise.resolve();

function routes(router: ConnectRouter): void {
  router.service(SchedulerService, {
    async *watchJob(req, ctx): AsyncGenerator<MessageInitShape<typeof WatchJobResponseSchema>> {
      const job = (i: number, key = "") => ({ job: { id: req.id, state: JobState.RUNNING, idempotencyKey: key || String(i).padStart(2048, "x") } });
      switch (req.id) {
        case MANY:
        case FEW:
          for (let i = 0; i < (req.id === MANY ? 300 : 20); i++) yield job(i);
          return;
        case FAILS_AFTER_TWO:
          yield job(0);
          yield job(1);
          throw new ConnectError("not yours", Code.PermissionDenied, { "x-why": "tests" });
        case FAILS_AT_ONCE:
          throw new ConnectError("no such job", Code.NotFound);
        case FOREVER:
          serverCallEnded = new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          yield job(0);
          await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
          return;
        case ECHO:
          yield job(0, ctx.requestHeader.get("x-test") ?? "none");
          return;
      }
    },
  });
  // Served by the Connect adapter for the other protocols; gRPC clients get the raw path below.
  router.service(FleetService, {
    async *connect() {},
  });
  serveGrpcStream(router, FleetService.method.connect, async (call) => {
    serverCallEnded = new Promise((resolve) => call.signal.addEventListener("abort", () => resolve(), { once: true }));
    // Each log frame acknowledged at its end; refused if its bytes are not the pattern the test sent.
    return (async function* (): AsyncGenerator<ConnectResponse> {
      for (let r = await call.requests.next(); !r.done; r = await call.requests.next()) {
        const m = (r.value as ConnectRequest).message;
        if (m.case !== "logFrame") continue;
        const f = m.value;
        const intact = f.data.every((b) => b === Number(f.offset % 251n));
        yield create(ConnectResponseSchema, {
          message: { case: "logAck", value: { attemptId: f.attemptId, stream: f.stream, offset: f.offset + BigInt(f.data.length), refused: intact ? "" : "bytes differ" } },
        });
      }
    })();
  });
}

describe("Drover's gRPC transport: streams", () => {
  let server: RunningServer;
  before(async () => {
    server = await startOpenServer([SchedulerService, FleetService], routes);
  });
  after(() => server.close());

  it("carries a bidi stream both ways, frames of 256 KiB and 1 MiB past the flow-control windows, in order and intact", async () => {
    const fleet = createClient(FleetService, createDroverTransport({ baseUrl: server.grpcUrl }));
    const sizes = [...Array.from({ length: 40 }, () => 256 * KiB), KiB * KiB, 1, KiB * KiB];
    const offsets: bigint[] = [];
    let at = 0n;
    for (const size of sizes) {
      offsets.push(at);
      at += BigInt(size);
    }
    async function* requests(): AsyncGenerator<ConnectRequest> {
      for (let i = 0; i < sizes.length; i++) {
        const data = Buffer.alloc(sizes[i]!, Number(offsets[i]! % 251n));
        yield create(ConnectRequestSchema, { message: { case: "logFrame", value: { attemptId: "a-1", stream: LogStream.STDOUT, offset: offsets[i]!, data } } });
      }
    }
    const acks: Array<[bigint, string]> = [];
    for await (const res of fleet.connect(requests())) {
      assert.equal(res.message.case, "logAck");
      if (res.message.case === "logAck") acks.push([res.message.value.offset, res.message.value.refused]);
    }
    assert.deepEqual(
      acks,
      sizes.map((size, i) => [offsets[i]! + BigInt(size), ""]),
    );
  });

  for (const [id, count, what] of [
    [MANY, 300, "more than the flow-control window holds: the server waits while the client does not read"],
    [FEW, 20, "all of it in the window: the server ends, and the stream closes, before the client reads"],
  ] as const) {
    it(`reads a server stream slowly without losing a message, ${count} of ~2 KiB: ${what}`, async () => {
      const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
      const it = scheduler.watchJob({ id })[Symbol.asyncIterator]();
      const first = await it.next(); // the call starts here
      await sleep(200);
      const keys = [first.value!.job!.idempotencyKey];
      for (let r = await it.next(); !r.done; r = await it.next()) keys.push(r.value.job!.idempotencyKey);
      assert.deepEqual(
        keys,
        Array.from({ length: count }, (_, i) => String(i).padStart(2048, "x")),
      );
    });
  }

  it("gives the messages before an error, then the status, message and metadata of the trailers", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
    let received = 0;
    const err = await failure(
      (async () => {
        for await (const _ of scheduler.watchJob({ id: FAILS_AFTER_TWO })) received++;
      })(),
    );
    assert.equal(received, 2);
    assert.equal(err.code, Code.PermissionDenied);
    assert.equal(err.rawMessage, "not yours");
    assert.equal(err.metadata.get("x-why"), "tests");
  });

  it("fails with a status the server sent without messages (trailers only)", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
    const err = await failure(
      (async () => {
        for await (const _ of scheduler.watchJob({ id: FAILS_AT_ONCE })) assert.fail("no message expected");
      })(),
    );
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, "no such job");
  });

  it("refuses a request the server finds invalid with INVALID_ARGUMENT naming the field", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
    const err = await failure(
      (async () => {
        for await (const _ of scheduler.watchJob({ id: "not-a-uuid" })) assert.fail("no message expected");
      })(),
    );
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /id/);
  });

  it("cancels: the client's abort ends its reading with CANCELED and the server's call", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
    const controller = new AbortController();
    let received = 0;
    const err = await failure(
      (async () => {
        for await (const _ of scheduler.watchJob({ id: FOREVER }, { signal: controller.signal })) {
          received++;
          controller.abort();
        }
      })(),
    );
    assert.equal(received, 1);
    assert.equal(err.code, Code.Canceled);
    await serverCallEnded;
  });

  it("ends a stream that outlives its deadline with DEADLINE_EXCEEDED", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
    const began = performance.now();
    const err = await failure(
      (async () => {
        for await (const _ of scheduler.watchJob({ id: FOREVER }, { timeoutMs: 300 }));
      })(),
    );
    assert.equal(err.code, Code.DeadlineExceeded);
    assert.ok(performance.now() - began >= 250, "not before the deadline");
    await serverCallEnded;
  });

  it("fails the call when the request iterable throws, and the server's call ends", async () => {
    const fleet = createClient(FleetService, createDroverTransport({ baseUrl: server.grpcUrl }));
    async function* requests(): AsyncGenerator<ConnectRequest> {
      yield create(ConnectRequestSchema, { message: { case: "logFrame", value: { attemptId: "a-1", stream: LogStream.STDOUT, data: Buffer.from("\0") } } });
      await sleep(50);
      throw new Error("the agent's queue broke");
    }
    const err = await failure(
      (async () => {
        for await (const _ of fleet.connect(requests()));
      })(),
    );
    assert.match(err.rawMessage, /the agent's queue broke/);
    await serverCallEnded;
  });

  it("runs the interceptors on stream calls: a header they add reaches the server", async () => {
    const seen: boolean[] = [];
    const interceptor: Interceptor = (next) => async (req) => {
      seen.push(req.stream);
      req.header.set("x-test", "from-interceptor");
      return next(req);
    };
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl, interceptors: [interceptor] }));
    const keys: string[] = [];
    for await (const res of scheduler.watchJob({ id: ECHO })) keys.push(res.job!.idempotencyKey);
    assert.deepEqual(keys, ["from-interceptor"]);
    assert.deepEqual(seen, [true]);
  });

  it("answers UNAVAILABLE when nothing listens at the address", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: "http://127.0.0.1:1" }));
    const err = await failure(
      (async () => {
        for await (const _ of scheduler.watchJob({ id: MANY }));
      })(),
    );
    assert.equal(err.code, Code.Unavailable);
  });
});
