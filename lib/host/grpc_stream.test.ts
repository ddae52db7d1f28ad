// The raw gRPC stream path (grpc_stream.ts) on a real server on port 0, over
// real sockets: the generated connect-node client where a client's view is
// the point, a bare node:http2 client where the bytes on the wire are.
// FleetService.Connect is the method (the only bidi one); the handler here is
// a small echo, not Fleet.

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

import {
  ConnectRequestSchema,
  ConnectResponseSchema,
  type ConnectRequest,
  type ConnectResponse,
} from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Authenticator } from "../auth/tokens.ts";
import { createLogger } from "../logger.ts";
import { serveGrpcStream, type GrpcStreamCall, type GrpcStreamHandler } from "./grpc_stream.ts";
import { REQUEST_ID_HEADER, accessPolicy } from "./interceptors.ts";
import { startServer, type RunningServer } from "./server.ts";

const PATH = "/drover.fleet.v1.FleetService/Connect";
const nobody: Authenticator = { authenticate: async () => null };

/** What the echo handler saw, for the tests to look at. */
interface Seen {
  calls: GrpcStreamCall<ConnectRequest>[];
  /** Responses the handler produced (taken by the transport). */
  produced: number;
}

const drain = (reason: string, messageId = ""): ConnectResponse =>
  create(ConnectResponseSchema, { messageId, message: { case: "drain", value: { draining: true, reason } } });

/**
 * Answers Hello with a Drain carrying the hostname, each Heartbeat with a
 * Drain naming its sequence, and an Ack of ids ["flood", N, size] with N
 * Drains of `size` bytes. Refuses the call for the headers the tests use.
 */
function echo(seen: Seen): GrpcStreamHandler<ConnectRequest, ConnectResponse> {
  return async (call, header) => {
    if (header("x-test") === "refuse") throw new ConnectError("the credential “x” is revoked: 100% sure", Code.Unauthenticated);
    if (header("x-test") === "throw") throw new Error("the database password is hunter2");
    seen.calls.push(call);
    return (async function* () {
      for (;;) {
        const next = await untilAborted(call.requests.next(), call.signal);
        if (next.done) return;
        const m = next.value.message;
        if (m.case === "hello") yield drain(m.value.hostname);
        if (m.case === "heartbeat") yield drain(`heartbeat ${m.value.sequence}`, `hb-${m.value.sequence}`);
        if (m.case === "ack" && m.value.messageIds[0] === "flood") {
          const [, count, size] = m.value.messageIds.map(Number);
          for (let i = 0; i < count!; i++) {
            seen.produced++;
            yield drain("x".repeat(size!), String(i));
          }
        }
      }
    })();
  };
}

/** A read that gives up with the signal's reason when the call ends. */
function untilAborted<T>(read: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    read.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function routes(seen: Seen) {
  return (router: ConnectRouter) => {
    // The Connect adapter's implementation, for every protocol but plain gRPC.
    router.service(FleetService, {
      async *connect() {
        yield drain("served by the Connect adapter");
      },
    });
    serveGrpcStream(router, FleetService.method.connect, echo(seen));
  };
}

async function startEcho(seen: Seen): Promise<RunningServer> {
  return startServer({
    services: [FleetService],
    routes: routes(seen),
    listen: { host: "127.0.0.1", grpcPort: 0, httpPort: 0 },
    logger: createLogger("silent"),
    authenticator: nobody,
    policy: accessPolicy({ [FleetService.typeName]: { Connect: "open" } }),
    shutdownGraceMs: 200,
  });
}

/** A gRPC frame: flags, big-endian length, payload. */
function frame(payload: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = flags;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

const request = (init: Parameters<typeof create<typeof ConnectRequestSchema>>[1]) => frame(toBinary(ConnectRequestSchema, create(ConnectRequestSchema, init)));
const heartbeat = (sequence: number) => request({ message: { case: "heartbeat", value: { sequence: BigInt(sequence) } } });

/** One call made byte by byte with node:http2: what came back. */
interface RawResult {
  headers: http2.IncomingHttpHeaders;
  messages: ConnectResponse[];
  trailers: http2.IncomingHttpHeaders;
}

/**
 * Opens a gRPC call on `session` and lets `drive` write to it; collects the
 * response frames and the trailers. The client's side is left to `drive`.
 */
function rawCall(session: http2.ClientHttp2Session, drive: (stream: http2.ClientHttp2Stream) => unknown, extra: http2.OutgoingHttpHeaders = {}): Promise<RawResult> {
  const stream = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers", ...extra });
  return new Promise((resolve, reject) => {
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let body = Buffer.alloc(0);
    stream.on("response", (h) => (headers = h));
    // As agents do: once the server has ended the call, the client closes its side too.
    stream.on("trailers", (t) => {
      trailers = t;
      if (!stream.writableEnded) stream.end();
    });
    stream.on("data", (chunk: Buffer) => (body = Buffer.concat([body, chunk])));
    stream.on("error", reject);
    stream.on("close", () => {
      const messages: ConnectResponse[] = [];
      for (let at = 0; at < body.length; ) {
        const length = body.readUInt32BE(at + 1);
        messages.push(fromBinary(ConnectResponseSchema, body.subarray(at + 5, at + 5 + length)));
        at += 5 + length;
      }
      resolve({ headers, messages, trailers });
    });
    Promise.resolve(drive(stream)).catch(reject);
  });
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("raw gRPC streams", () => {
  const seen: Seen = { calls: [], produced: 0 };
  let server: RunningServer;
  let session: http2.ClientHttp2Session;

  before(async () => {
    server = await startEcho(seen);
    session = http2.connect(server.grpcUrl);
  });

  after(async () => {
    session?.close();
    await server?.close();
  });

  it("answers each request in order and ends with status OK when the client closes its side (generated gRPC client)", async () => {
    const client = createClient(FleetService, createGrpcTransport({ baseUrl: server.grpcUrl }));
    const requests = async function* () {
      yield create(ConnectRequestSchema, { message: { case: "hello", value: { hostname: "node-a" } } });
      for (let i = 1; i <= 3; i++) yield create(ConnectRequestSchema, { message: { case: "heartbeat", value: { sequence: BigInt(i) } } });
    };
    const reasons: string[] = [];
    for await (const response of client.connect(requests(), { headers: { [REQUEST_ID_HEADER]: "req-1" } })) {
      if (response.message.case === "drain") reasons.push(response.message.value.reason);
    }
    assert.deepEqual(reasons, ["node-a", "heartbeat 1", "heartbeat 2", "heartbeat 3"]);
  });

  it("leaves other protocols on the same path to the Connect adapter", async () => {
    const client = createClient(FleetService, createConnectTransport({ baseUrl: server.grpcUrl, httpVersion: "2" }));
    const reasons: string[] = [];
    for await (const response of client.connect((async function* () {})())) {
      if (response.message.case === "drain") reasons.push(response.message.value.reason);
    }
    assert.deepEqual(reasons, ["served by the Connect adapter"]);
  });

  it("sends the request id back in the headers and grpc-status 0 in the trailers", async () => {
    const result = await rawCall(session, (s) => s.end(heartbeat(7)), { [REQUEST_ID_HEADER]: "req-42" });
    assert.equal(result.headers[":status"], 200);
    assert.equal(result.headers["content-type"], "application/grpc+proto");
    assert.equal(result.headers[REQUEST_ID_HEADER], "req-42");
    assert.equal(result.trailers["grpc-status"], "0");
    assert.deepEqual(result.messages.map((m) => m.messageId), ["hb-7"]);
  });

  it("cuts messages out of frames split across DATA chunks at any byte, and out of several frames in one chunk", async () => {
    const result = await rawCall(session, async (s) => {
      // Three frames in one write, then one frame a byte at a time, each byte its own DATA frame.
      s.write(Buffer.concat([heartbeat(1), heartbeat(2), heartbeat(3)]));
      const split = heartbeat(4);
      for (const byte of split) {
        s.write(Buffer.from([byte]));
        await tick();
      }
      // And a frame whose header ends one chunk and whose payload is the next.
      const last = heartbeat(5);
      s.write(last.subarray(0, 5));
      await tick();
      s.end(last.subarray(5));
    });
    assert.equal(result.trailers["grpc-status"], "0");
    assert.deepEqual(result.messages.map((m) => m.messageId), ["hb-1", "hb-2", "hb-3", "hb-4", "hb-5"]);
  });

  it("ends a call whose frame does not decode with INTERNAL (parse binary), and the connection carries on", async () => {
    const bad = await rawCall(session, (s) => s.end(Buffer.concat([heartbeat(1), frame(Buffer.from([0xff, 0xff, 0xff, 0xff]))])));
    assert.equal(bad.trailers["grpc-status"], String(Code.Internal));
    assert.match(decodeURIComponent(String(bad.trailers["grpc-message"])), /^parse binary: /);
    assert.deepEqual(bad.messages.map((m) => m.messageId), ["hb-1"]);
    const good = await rawCall(session, (s) => s.end(heartbeat(2)));
    assert.equal(good.trailers["grpc-status"], "0");
  });

  it("ends a call announcing a message over 4 MiB with RESOURCE_EXHAUSTED, without waiting for its bytes", async () => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(5 * 2 ** 20, 1);
    // The client's side stays open: the answer must not wait for the 5 MiB.
    const result = await rawCall(session, (s) => void s.write(header));
    assert.equal(result.trailers["grpc-status"], String(Code.ResourceExhausted));
    assert.match(decodeURIComponent(String(result.trailers["grpc-message"])), /larger than configured readMaxBytes 4194304/);
  });

  it("ends a call whose request side ends inside a frame with INVALID_ARGUMENT", async () => {
    const result = await rawCall(session, (s) => s.end(heartbeat(1).subarray(0, 7)));
    assert.equal(result.trailers["grpc-status"], String(Code.InvalidArgument));
    assert.equal(decodeURIComponent(String(result.trailers["grpc-message"])), "protocol error: incomplete envelope");
  });

  it("ends a call with a compressed frame but no grpc-encoding with INTERNAL", async () => {
    const compressed = heartbeat(1);
    compressed[0] = 1;
    const result = await rawCall(session, (s) => s.end(compressed));
    assert.equal(result.trailers["grpc-status"], String(Code.Internal));
  });

  it("ends a call whose message breaks a protovalidate rule with INVALID_ARGUMENT naming the field", async () => {
    const client = createClient(FleetService, createGrpcTransport({ baseUrl: server.grpcUrl }));
    const requests = async function* () {
      yield create(ConnectRequestSchema, { message: { case: "hello", value: { hostname: "node-a", agentId: "a".repeat(65) } } });
    };
    try {
      for await (const _ of client.connect(requests()));
      assert.fail("the call succeeded");
    } catch (e) {
      const error = ConnectError.from(e);
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /^invalid ConnectRequest: hello\.agent_id: .*\[string\.max_len\]/);
    }
  });

  it("ends a call the handler refuses with the refusal's code and message (percent-encoded on the wire)", async () => {
    const client = createClient(FleetService, createGrpcTransport({ baseUrl: server.grpcUrl }));
    try {
      for await (const _ of client.connect((async function* () {})(), { headers: { "x-test": "refuse" } }));
      assert.fail("the call succeeded");
    } catch (e) {
      const error = ConnectError.from(e);
      assert.equal(error.code, Code.Unauthenticated);
      assert.equal(error.rawMessage, "the credential “x” is revoked: 100% sure");
    }
    const raw = await rawCall(session, (s) => s.end(), { "x-test": "refuse", [REQUEST_ID_HEADER]: "req-7" });
    assert.equal(raw.trailers["grpc-message"], encodeURIComponent("the credential “x” is revoked: 100% sure"));
    assert.equal(raw.trailers[REQUEST_ID_HEADER], "req-7");
  });

  it("turns an error that is not a ConnectError into INTERNAL without its message", async () => {
    const result = await rawCall(session, (s) => s.end(), { "x-test": "throw" });
    assert.equal(result.trailers["grpc-status"], String(Code.Internal));
    assert.equal(decodeURIComponent(String(result.trailers["grpc-message"])), "internal error");
  });

  it("aborts the call's signal with CANCELED when the client cancels", async () => {
    const before = seen.calls.length;
    const abort = new AbortController();
    const client = createClient(FleetService, createGrpcTransport({ baseUrl: server.grpcUrl }));
    const { requests, wake } = heldHello();
    const call = (async () => {
      for await (const _ of client.connect(requests(), { signal: abort.signal })) abort.abort();
    })();
    await assert.rejects(call, (e) => ConnectError.from(e).code === Code.Canceled);
    wake();
    const signal = seen.calls[before]!.signal;
    for (let i = 0; i < 100 && !signal.aborted; i++) await sleep(10);
    assert.equal(signal.aborted, true);
    assert.equal(ConnectError.from(signal.reason).code, Code.Canceled);
  });

  it("holds the handler back while the client does not read (write() full → wait for drain), then delivers everything", async () => {
    const count = 2000;
    const size = 4096; // ~8 MiB in all, far past HTTP/2 windows and socket buffers
    let client!: http2.ClientHttp2Stream;
    const result = rawCall(session, (s) => {
      client = s;
      s.pause();
      s.write(request({ message: { case: "ack", value: { messageIds: ["flood", String(count), String(size)] } } }));
    });
    const start = seen.produced;
    await sleep(500);
    const producedWhilePaused = seen.produced - start;
    assert.ok(producedWhilePaused < count / 2, `the handler produced ${producedWhilePaused} of ${count} messages while the client read nothing`);
    client.resume();
    client.end();
    const { messages, trailers } = await result;
    assert.equal(trailers["grpc-status"], "0");
    assert.equal(messages.length, count);
    assert.deepEqual(
      messages.slice(0, 3).map((m) => m.messageId),
      ["0", "1", "2"],
    );
  });
});

/** A client stream that says hello, then stays open until wake() is called. */
function heldHello() {
  let wake!: () => void;
  const hold = new Promise<void>((resolve) => (wake = resolve));
  const requests = async function* () {
    yield create(ConnectRequestSchema, { message: { case: "hello", value: { hostname: "node-a" } } });
    await hold;
  };
  return { requests, wake: () => wake() };
}

describe("raw gRPC streams at shutdown", () => {
  it("ends the streams still open with UNAVAILABLE when the server closes", async () => {
    const seen: Seen = { calls: [], produced: 0 };
    const server = await startEcho(seen);
    try {
      const client = createClient(FleetService, createGrpcTransport({ baseUrl: server.grpcUrl }));
      const { requests, wake } = heldHello();
      const reasons: string[] = [];
      const call = (async () => {
        for await (const response of client.connect(requests())) {
          if (response.message.case === "drain") reasons.push(response.message.value.reason);
          if (reasons.length === 1) void server.close();
        }
      })();
      await assert.rejects(call, (e) => {
        const error = ConnectError.from(e);
        return error.code === Code.Unavailable && error.rawMessage === "server is shutting down";
      });
      wake();
      assert.deepEqual(reasons, ["node-a"]);
    } finally {
      await server.close();
    }
  });
});
