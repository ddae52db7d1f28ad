// The raw gRPC unary path (grpc_unary.ts) on a real server on port 0, over
// real sockets. Each behaviour is checked four ways, which must agree: the
// generated client over gRPC (the raw path), the same client over Drover's
// own transport (lib/grpc_transport.ts: raw on both ends), over the Connect
// protocol on the same HTTP/2 listener, and over gRPC with gzip (both left
// to the Connect adapter and the standard interceptors). A bare node:http2 client
// sends the malformed bodies. The services are small fakes, not Drover's.

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";

import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter, type HandlerContext, type ServiceImpl, type Transport } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";

import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { ClaimPlaceableJobsRequestSchema, GetJobRequestSchema, JobState, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/ts/grpc/health/v1/health_pb.ts";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import type { Logger } from "../logger.ts";
import { failure } from "../testing/connect.ts";
import { kLogger, kPrincipal } from "./context.ts";
import { createDroverTransport } from "../grpc_transport.ts";
import { isRawGrpcCall } from "./grpc_unary.ts";
import { envelope } from "./grpc_wire.ts";
import { REQUEST_ID_HEADER, accessPolicy } from "./interceptors.ts";
import { startServer, type RunningServer } from "./server.ts";

const OPERATOR = "operator-secret";
const AGENT = "agent-secret";
const authenticator: Authenticator = {
  async authenticate(secret) {
    if (secret === OPERATOR) return { tokenId: "t-operator", role: Role.OPERATOR, name: "ci" };
    if (secret === AGENT) return { tokenId: "t-agent", role: Role.AGENT, name: "node-1" };
    return null;
  },
};

const JOB = "11111111-1111-4111-8111-111111111111";
const MISSING = "00000000-0000-4000-8000-000000000404";
const BROKEN = "00000000-0000-4000-8000-000000000500";
const HEADERS = "00000000-0000-4000-8000-0000000000a0";
const SECRET_DETAIL = "connection to postgres://drover:hunter2@db failed";

/** What the fake implementation saw of its last calls. */
interface Seen {
  principal?: Principal;
  raw?: boolean;
  hadLogger?: boolean;
  /** ClaimPlaceableJobs: its signal's reason once aborted, and the timeout it saw. */
  aborted?: ConnectError;
  timeoutMs?: number;
  waiting?: () => void;
}

function fakeScheduler(seen: Seen): Partial<ServiceImpl<typeof SchedulerService>> {
  const note = (ctx: HandlerContext) => {
    seen.principal = ctx.values.get(kPrincipal);
    seen.raw = isRawGrpcCall(ctx);
    seen.hadLogger = ctx.values.get(kLogger) !== undefined;
  };
  return {
    submitJob(req, ctx) {
      note(ctx);
      return { job: { id: JOB, state: JobState.PENDING, spec: req.spec }, created: true };
    },
    getJob(req, ctx) {
      note(ctx);
      if (req.id === MISSING) throw new ConnectError(`job ${req.id} not found`, Code.NotFound, { "x-missing": req.id });
      if (req.id === BROKEN) throw new Error(SECRET_DETAIL);
      if (req.id === HEADERS) {
        ctx.responseHeader.set("x-extra", "header");
        ctx.responseTrailer.set("x-after", "trailer");
        return { job: { id: req.id, state: JobState.RUNNING, spec: { exec: { commands: [{ argv: [ctx.requestHeader.get("x-test") ?? "none"] }] } } } };
      }
      return { job: { id: req.id, state: JobState.RUNNING } };
    },
    // A long poll: waits for its signal, says why it ended.
    async claimPlaceableJobs(_req, ctx) {
      note(ctx);
      seen.timeoutMs = ctx.timeoutMs();
      await new Promise<void>((resolve) => {
        ctx.signal.addEventListener("abort", () => resolve(), { once: true });
        seen.waiting?.();
      });
      seen.aborted = ConnectError.from(ctx.signal.reason);
      return { jobs: [] };
    },
  };
}

/** A pino logger that keeps its lines. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) }), lines };
}

async function start(seen: Seen, logger: Logger): Promise<RunningServer> {
  return startServer({
    services: [SchedulerService],
    routes: (router: ConnectRouter) => router.service(SchedulerService, fakeScheduler(seen)),
    listen: { host: "127.0.0.1", grpcPort: 0, httpPort: 0 },
    logger,
    authenticator,
    policy: accessPolicy({}),
    shutdownGraceMs: 200,
  });
}

const bearer = (secret: string, extra: Record<string, string> = {}) => ({ headers: { authorization: `Bearer ${secret}`, ...extra } });
const validJob = { spec: { exec: { commands: [{ argv: ["echo", "hi"] }] } } };

/** The ways in: only plain gRPC takes the raw path. */
const WAYS: { name: string; raw: boolean; transport: (url: string) => Transport }[] = [
  { name: "gRPC (raw path)", raw: true, transport: (baseUrl) => createGrpcTransport({ baseUrl }) },
  { name: "gRPC from Drover's transport (raw paths both ends)", raw: true, transport: (baseUrl) => createDroverTransport({ baseUrl }) },
  { name: "Connect protocol (adapter)", raw: false, transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" }) },
  { name: "gRPC with gzip (adapter)", raw: false, transport: (baseUrl) => createGrpcTransport({ baseUrl, sendCompression: compressionGzip }) },
];

for (const way of WAYS) {
  describe(`unary calls over ${way.name}`, () => {
    const seen: Seen = {};
    const { logger, lines } = capturingLogger();
    let server: RunningServer;
    let scheduler: ReturnType<typeof createClient<typeof SchedulerService>>;

    before(async () => {
      server = await start(seen, logger);
      scheduler = createClient(SchedulerService, way.transport(server.grpcUrl));
    });
    after(() => server.close());

    it("answers an authorized call, handing the implementation the principal and the call's logger", async () => {
      const res = await scheduler.submitJob(validJob, bearer(OPERATOR));
      assert.equal(res.job?.id, JOB);
      assert.deepEqual(res.job?.spec?.exec?.commands[0]?.argv, ["echo", "hi"]);
      assert.equal(seen.principal?.name, "ci");
      assert.equal(seen.raw, way.raw);
      assert.equal(seen.hadLogger, true);
    });

    it("refuses a call without a token (UNAUTHENTICATED) and a role the method does not allow (PERMISSION_DENIED)", async () => {
      const none = await failure(scheduler.submitJob(validJob));
      assert.equal(none.code, Code.Unauthenticated);
      assert.match(none.rawMessage, /missing bearer token/);
      const agent = await failure(scheduler.submitJob(validJob, bearer(AGENT)));
      assert.equal(agent.code, Code.PermissionDenied);
      assert.equal(agent.rawMessage, "role agent may not call drover.scheduler.v1.SchedulerService/SubmitJob");
    });

    it("answers an invalid request with INVALID_ARGUMENT naming the field, after auth", async () => {
      const err = await failure(scheduler.submitJob({ spec: {} }, bearer(OPERATOR)));
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, /spec\.exec/);
      const anonymous = await failure(scheduler.submitJob({ spec: {} }));
      assert.equal(anonymous.code, Code.Unauthenticated);
    });

    it("passes a ConnectError through with its code, message and metadata, and the request id", async () => {
      const err = await failure(scheduler.getJob({ id: MISSING }, bearer(OPERATOR, { [REQUEST_ID_HEADER]: "req-missing" })));
      assert.equal(err.code, Code.NotFound);
      assert.equal(err.rawMessage, `job ${MISSING} not found`);
      assert.equal(err.metadata.get("x-missing"), MISSING);
      assert.equal(err.metadata.get(REQUEST_ID_HEADER), "req-missing");
      const line = lines.find((l) => l.requestId === "req-missing" && l.msg === "call failed");
      assert.equal(line?.code, "NotFound");
      assert.equal(line?.method, "GetJob");
    });

    it("turns another error into INTERNAL without its message, and logs it with service and method", async () => {
      const err = await failure(scheduler.getJob({ id: BROKEN }, bearer(OPERATOR, { [REQUEST_ID_HEADER]: "req-broken" })));
      assert.equal(err.code, Code.Internal);
      assert.equal(err.rawMessage, "internal error");
      const logged = lines.find((l) => l.msg === "unexpected error" && l.requestId === "req-broken");
      assert.equal(logged?.service, SchedulerService.typeName);
      assert.equal(logged?.method, "GetJob");
      assert.match(JSON.stringify(logged?.err), /hunter2/);
    });

    it("echoes the caller's request id, makes one otherwise, and logs a call ok at debug", async () => {
      let header: Headers | undefined;
      await scheduler.getJob({ id: JOB }, { ...bearer(OPERATOR, { [REQUEST_ID_HEADER]: "req-ok" }), onHeader: (h) => (header = h) });
      assert.equal(header?.get(REQUEST_ID_HEADER), "req-ok");
      assert.ok(lines.some((l) => l.requestId === "req-ok" && l.msg === "call ok" && l.method === "GetJob"));
      await scheduler.getJob({ id: JOB }, { ...bearer(OPERATOR), onHeader: (h) => (header = h) });
      assert.match(header?.get(REQUEST_ID_HEADER) ?? "", /^[0-9a-f-]{36}$/);
    });

    it("shows the implementation the request headers, and sends the headers and trailers it set", async () => {
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const res = await scheduler.getJob({ id: HEADERS }, { ...bearer(OPERATOR, { "x-test": "seen" }), onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) });
      assert.deepEqual(res.job?.spec?.exec?.commands[0]?.argv, ["seen"]);
      assert.equal(header?.get("x-extra"), "header");
      assert.equal(trailer?.get("x-after"), "trailer");
    });

    it("aborts the implementation's signal with CANCELED when the client cancels", async () => {
      seen.aborted = undefined;
      const controller = new AbortController();
      const waiting = new Promise<void>((resolve) => (seen.waiting = resolve));
      const call = scheduler.claimPlaceableJobs({ bidder: "t", maxJobs: 1 }, { ...bearer(OPERATOR), signal: controller.signal });
      await waiting;
      controller.abort();
      assert.equal((await failure(call)).code, Code.Canceled);
      await until(() => seen.aborted !== undefined);
      assert.equal(abortedCode(seen), Code.Canceled);
    });

    it("gives the implementation the grpc-timeout, and ends its signal when the client gives up", async () => {
      seen.aborted = undefined;
      const err = await failure(scheduler.claimPlaceableJobs({ bidder: "t", maxJobs: 1 }, { ...bearer(OPERATOR), timeoutMs: 150 }));
      assert.equal(err.code, Code.DeadlineExceeded);
      // At most the deadline; below zero when the handler first ran after it had passed (a loaded machine).
      assert.ok(Number.isFinite(seen.timeoutMs) && seen.timeoutMs! <= 150, `timeoutMs ${seen.timeoutMs}`);
      // The client's deadline and the server's pass together: either may end the signal first.
      await until(() => seen.aborted !== undefined);
    });

    it("serves health to callers without a token", async () => {
      const health = createClient(Health, way.transport(server.grpcUrl));
      assert.equal((await health.check({})).status, HealthCheckResponse_ServingStatus.SERVING);
    });
  });
}

describe("the raw gRPC unary path at shutdown", () => {
  it("waits for a call in flight, then aborts its signal with the server's UNAVAILABLE", async () => {
    const seen: Seen = {};
    const server = await start(seen, pino({ level: "silent" }));
    const scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: server.grpcUrl }));
    const waiting = new Promise<void>((resolve) => (seen.waiting = resolve));
    const call = scheduler.claimPlaceableJobs({ bidder: "t", maxJobs: 1 }, bearer(OPERATOR));
    await waiting;
    assert.equal(seen.raw, true);
    const started = performance.now();
    await server.close();
    assert.ok(performance.now() - started >= 190, "close() gave the call its grace first");
    assert.equal(abortedCode(seen), Code.Unavailable);
    await call.catch(() => {}); // answered or cut: the server is gone either way
  });
});

describe("malformed gRPC bodies on the raw unary path", () => {
  let server: RunningServer;
  let session: http2.ClientHttp2Session;
  before(async () => {
    server = await start({}, pino({ level: "silent" }));
    session = http2.connect(server.grpcUrl);
  });
  after(async () => {
    session.close();
    await server.close();
  });

  /** One call made byte by byte: its headers and trailers. */
  function rawCall(body: Buffer, extra: http2.OutgoingHttpHeaders = {}): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }> {
    const stream = session.request({
      ":method": "POST",
      ":path": "/drover.scheduler.v1.SchedulerService/GetJob",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${OPERATOR}`,
      ...extra,
    });
    return new Promise((resolve, reject) => {
      let headers: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => (headers = h));
      stream.on("trailers", (t) => (trailers = t));
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("close", () => resolve({ headers, trailers, body: Buffer.concat(chunks) }));
      stream.on("error", reject);
      stream.end(body);
    });
  }

  const getJob = envelope(toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { id: JOB })));
  const compressedFlag = Buffer.from(getJob);
  compressedFlag[0] = 1;

  /** A ClaimPlaceableJobs (the fake's long poll) sent with `timeout` to a server of its own; `drive` looks on. */
  async function rawClaim(timeout: string, drive: (stream: http2.ClientHttp2Stream, seen: Seen) => Promise<void>): Promise<void> {
    const seen: Seen = {};
    const own = await start(seen, pino({ level: "silent" }));
    const client = http2.connect(own.grpcUrl);
    try {
      const stream = client.request({
        ":method": "POST",
        ":path": "/drover.scheduler.v1.SchedulerService/ClaimPlaceableJobs",
        "content-type": "application/grpc",
        authorization: `Bearer ${OPERATOR}`,
        "grpc-timeout": timeout,
      });
      stream.resume();
      stream.end(envelope(toBinary(ClaimPlaceableJobsRequestSchema, create(ClaimPlaceableJobsRequestSchema, { bidder: "t", maxJobs: 1 }))));
      await drive(stream, seen);
    } finally {
      client.close();
      await own.close();
    }
  }

  it("aborts the implementation's signal with DEADLINE_EXCEEDED when the grpc-timeout passes", () =>
    rawClaim("100m", async (stream, seen) => {
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.on("trailers", resolve));
      await until(() => seen.aborted !== undefined);
      assert.equal(abortedCode(seen), Code.DeadlineExceeded);
      // At most the deadline; below zero when the handler first ran after it had passed (a loaded machine).
      assert.ok(Number.isFinite(seen.timeoutMs) && seen.timeoutMs! <= 100, `timeoutMs ${seen.timeoutMs}`);
      assert.equal((await trailers)["grpc-status"], "0", "the implementation's answer still goes out, as Connect's does");
    }));

  it("keeps a call whose grpc-timeout lies past setTimeout's range (99999999H) until the client cancels it", () =>
    rawClaim("99999999H", async (stream, seen) => {
      await until(() => seen.timeoutMs !== undefined);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(seen.aborted, undefined, "the deadline did not fire");
      assert.ok(seen.timeoutMs! > 3.5e14, `timeoutMs ${seen.timeoutMs}`);
      stream.close(http2.constants.NGHTTP2_CANCEL);
      await until(() => seen.aborted !== undefined);
      assert.equal(abortedCode(seen), Code.Canceled);
    }));

  const cases: [string, Buffer, http2.OutgoingHttpHeaders, Code, RegExp][] = [
    ["no message", Buffer.alloc(0), {}, Code.Unimplemented, /missing input message/],
    ["two messages", Buffer.concat([getJob, getJob]), {}, Code.Unimplemented, /extra input message/],
    ["a cut envelope", getJob.subarray(0, getJob.length - 3), {}, Code.InvalidArgument, /incomplete envelope/],
    ["a compressed flag without grpc-encoding", compressedFlag, {}, Code.Internal, /compressed envelope/],
    ["bytes that do not decode", envelope(Buffer.from([0x0a, 0xff])), {}, Code.Internal, /^parse binary/],
    ["a bad grpc-timeout", getJob, { "grpc-timeout": "soon" }, Code.InvalidArgument, /invalid grpc timeout/],
  ];
  for (const [what, body, extra, code, message] of cases) {
    it(`answers ${what} with ${Code[code]}, and the connection carries on`, async () => {
      const res = await rawCall(body, extra);
      assert.equal(res.headers[":status"], 200);
      assert.equal(res.trailers["grpc-status"], String(code));
      assert.match(decodeURIComponent(String(res.trailers["grpc-message"])), message);
      const ok = await rawCall(getJob);
      assert.equal(ok.trailers["grpc-status"], "0");
      assert.ok(ok.body.length > 5, "the good call got its message");
    });
  }
});

/** Why the long poll's signal ended (a function, so a test's reset of `seen.aborted` does not narrow its type). */
const abortedCode = (seen: Seen) => seen.aborted?.code;

async function until(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
