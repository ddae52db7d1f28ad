// Drover's gRPC transport (grpc_transport.ts) against a real server on port
// 0, over real sockets. What each call means (errors, codes, metadata,
// deadlines, cancellation) is checked in lib/host/grpc_unary.test.ts, where
// this transport is one of the ways in; here: sizes, concurrency and a
// server that is not there. Streams: grpc_transport_stream.test.ts.

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";

import { Code, createClient, type ConnectRouter } from "@connectrpc/connect";

import { LogStream } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { LogService } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { JobState, SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { createDroverTransport } from "./grpc_transport.ts";
import type { RunningServer } from "./host/server.ts";
import { failure, startOpenServer } from "./testing/connect.ts";

const MiB = 2 ** 20;
// The frames the last IngestLogs carried, as the server decoded them.
let ingested: Array<{ attemptId: string; offset: bigint; data: Uint8Array }> = [];

function routes(router: ConnectRouter): void {
  router.service(SchedulerService, {
    // Answers with an argv as long as the id's last digit says, in MiB.
    getJob(req) {
      const size = Number(req.id.at(-1)) * MiB;
      return { job: { id: req.id, state: JobState.RUNNING, spec: { exec: { commands: [{ argv: ["x".repeat(size)] }] } } } };
    },
  });
  router.service(LogService, {
    // Acknowledges each frame at the end of its bytes.
    ingestLogs(req) {
      ingested = req.frames;
      return { acks: req.frames.map((f) => ({ attemptId: f.attemptId, stream: f.stream, offset: f.offset + BigInt(f.data.length) })) };
    },
  });
}

describe("Drover's gRPC transport", () => {
  let server: RunningServer;
  // Node warns once per signal, in whichever case first adds an eleventh listener.
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  before(() => process.on("warning", onWarning));
  after(() => process.off("warning", onWarning));
  before(async () => {
    server = await startOpenServer([SchedulerService, LogService], routes);
  });
  after(() => server.close());

  it("carries a request and an answer of several MiB, past HTTP/2's flow-control windows", async () => {
    const transport = createDroverTransport({ baseUrl: server.grpcUrl });
    const log = createClient(LogService, transport);
    const frames = [0, 1, 2].map((i) => ({ attemptId: `a-${i}`, stream: LogStream.STDOUT, offset: BigInt(i), data: new Uint8Array(MiB).fill(i + 1) }));
    const { acks } = await log.ingestLogs({ agentId: "agent-1", frames });
    assert.deepEqual(
      acks.map((a) => [a.attemptId, a.offset]),
      [["a-0", BigInt(MiB)], ["a-1", BigInt(MiB + 1)], ["a-2", BigInt(MiB + 2)]],
    );
    // IngestLogs is written by hand (lib/log_frame_wire.ts): every byte arrives.
    assert.deepEqual(
      ingested.map((f) => [f.attemptId, f.offset, Buffer.from(f.data).equals(Buffer.alloc(MiB, Number(f.offset) + 1))]),
      [["a-0", 0n, true], ["a-1", 1n, true], ["a-2", 2n, true]],
    );
    const scheduler = createClient(SchedulerService, transport);
    const { job } = await scheduler.getJob({ id: "11111111-1111-4111-8111-111111111113" });
    assert.equal(job?.spec?.exec?.commands[0]?.argv[0]?.length, 3 * MiB);
  });

  it("keeps 500 calls in flight on one connection, each with its own answer", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: server.grpcUrl }));
    const ids = Array.from({ length: 500 }, (_, i) => `11111111-1111-4111-8111-${String(i).padStart(11, "0")}0`);
    const answers = await Promise.all(ids.map((id) => scheduler.getJob({ id })));
    assert.deepEqual(
      answers.map((a) => a.job?.id),
      ids,
    );
  });

  it("runs its interceptors on every call, with or without a signal or deadline, and hands their errors back as ConnectErrors", async () => {
    const seen: string[] = [];
    {
      const scheduler = createClient(
        SchedulerService,
        createDroverTransport({
          baseUrl: server.grpcUrl,
          interceptors: [
            (next) => async (req) => {
              if (req.header.get("x-fail") === "yes") throw new Error("refused by an interceptor");
              const res = await next(req);
              seen.push(`${req.method.name} ${req.signal.aborted ? "aborted" : "live"} ${res.stream ? "" : (res.message as { job?: { id: string } }).job?.id}`);
              return res;
            },
          ],
        }),
      );
      const id = "11111111-1111-4111-8111-111111111110";
      await scheduler.getJob({ id });
      await scheduler.getJob({ id }, { timeoutMs: 5_000 });
      await scheduler.getJob({ id }, { signal: new AbortController().signal });
      assert.deepEqual(seen, [`GetJob live ${id}`, `GetJob live ${id}`, `GetJob live ${id}`]);
      const err = await failure(scheduler.getJob({ id }, { headers: { "x-fail": "yes" } }));
      assert.equal(err.code, Code.Unknown);
      assert.match(err.message, /refused by an interceptor/);
      // Many calls at once with no signal of their own (here and in the cases before): no listeners pile up on a shared one.
      await Promise.all(Array.from({ length: 50 }, () => scheduler.getJob({ id })));
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings.map((w) => w.message), []);
    }
  });

  it("opens its connections with receive windows of 1 MiB a stream and 4 MiB the connection, not Node's 64 KiB", async () => {
    // A bare HTTP/2 server that answers every call UNIMPLEMENTED and notes what the client's session told it.
    const seen: Array<{ streamWindow: number | undefined; connectionWindow: number | undefined }> = [];
    const h2 = http2.createServer();
    const sessions: http2.ServerHttp2Session[] = [];
    h2.on("session", (session) => sessions.push(session));
    h2.on("stream", (stream, _headers) => {
      const session = stream.session!;
      seen.push({ streamWindow: session.remoteSettings.initialWindowSize, connectionWindow: session.state.remoteWindowSize });
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(Code.Unimplemented), "grpc-message": "no" }, { endStream: true });
    });
    await new Promise<void>((resolve) => h2.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = h2.address() as import("node:net").AddressInfo;
      const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: `http://127.0.0.1:${port}` }));
      const err = await failure(scheduler.getJob({ id: "11111111-1111-4111-8111-111111111110" }));
      assert.equal(err.code, Code.Unimplemented);
      assert.deepEqual(seen, [{ streamWindow: 1 << 20, connectionWindow: 4 << 20 }]);
    } finally {
      for (const session of sessions) session.destroy();
      h2.close();
    }
  });

  it("answers UNAVAILABLE when nothing listens at the address", async () => {
    const scheduler = createClient(SchedulerService, createDroverTransport({ baseUrl: "http://127.0.0.1:1" }));
    const err = await failure(scheduler.getJob({ id: "11111111-1111-4111-8111-111111111110" }));
    assert.equal(err.code, Code.Unavailable);
  });
});
