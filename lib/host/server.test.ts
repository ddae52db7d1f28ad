// The real-server tier: startServer on port 0, called over HTTP/2 (gRPC) and
// HTTP/1.1 (Connect JSON), and shut down while calls are open.

import assert from "node:assert/strict";
import * as net from "node:net";
import { describe, it } from "node:test";

import { Code, createClient, type ServiceImpl } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/ts/grpc/health/v1/health_pb.ts";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import { createLogger } from "../logger.ts";
import { REQUEST_ID_HEADER, accessPolicy } from "./interceptors.ts";
import { startServer, type RunningServer } from "./server.ts";
import { failure } from "../testing/connect.ts";

const OPERATOR = "operator-secret";
const SLOW_JOB = "00000000-0000-4000-8000-000000000001";
// Longer than the 500 ms close() gives ended streams to flush, so only the
// wait for in-flight unary calls can let this one finish.
const SLOW_MS = 800;

const authenticator: Authenticator = {
  async authenticate(secret: string): Promise<Principal | null> {
    return secret === OPERATOR ? { tokenId: "t-1", role: Role.OPERATOR, name: "ci" } : null;
  },
};

const auth = { headers: { authorization: `Bearer ${OPERATOR}` } };

/** A scheduler whose GetJob of SLOW_JOB takes SLOW_MS and reports when it started. */
function slowScheduler(started: () => void): Partial<ServiceImpl<typeof SchedulerService>> {
  return {
    async getJob(req) {
      if (req.id === SLOW_JOB) {
        started();
        await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
      }
      return { job: { id: req.id, state: JobState.PENDING } };
    },
  };
}

/** Starts a server on free ports, runs fn, and always closes it. */
async function withServer(fn: (server: RunningServer, started: Promise<void>) => Promise<void>, keepaliveMs?: number): Promise<void> {
  let markStarted!: () => void;
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const server = await startServer({
    services: [SchedulerService],
    routes: (router) => router.service(SchedulerService, slowScheduler(markStarted)),
    listen: { host: "127.0.0.1", grpcPort: 0, httpPort: 0 },
    logger: createLogger("silent"),
    authenticator,
    policy: accessPolicy({}),
    shutdownGraceMs: 5_000,
    keepaliveMs,
  });
  try {
    await fn(server, started);
  } finally {
    await server.close();
  }
}


describe("startServer", () => {
  it("listens on free ports for HTTP/2 and HTTP/1.1", async () => {
    await withServer(async (server) => {
      assert.match(server.grpcUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(server.httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(server.grpcUrl, server.httpUrl);
      assert.equal(server.shutdownSignal.aborted, false);
    });
  });

  it("serves health over HTTP/2 with gRPC", async () => {
    await withServer(async (server) => {
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.grpcUrl }));
      assert.equal((await health.check({})).status, ServingStatus.SERVING);
      assert.equal((await health.check({ service: SchedulerService.typeName })).status, ServingStatus.SERVING);
      const err = await failure(health.check({ service: "drover.nope.v1.Nope" }));
      assert.equal(err.code, Code.NotFound);
    });
  });

  it("serves health over HTTP/1.1 as Connect JSON", async () => {
    await withServer(async (server) => {
      const res = await fetch(`${server.httpUrl}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ service: SchedulerService.typeName }),
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: "SERVING" });
      assert.ok(res.headers.get(REQUEST_ID_HEADER), "the response carries a request id");
    });
  });

  it("runs the standard interceptors in front of Drover services", async () => {
    await withServer(async (server) => {
      const scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: server.grpcUrl }));
      const id = "00000000-0000-4000-8000-000000000002";
      assert.equal((await scheduler.getJob({ id }, auth)).job?.id, id);
      assert.equal((await failure(scheduler.getJob({ id }))).code, Code.Unauthenticated);
      assert.equal((await failure(scheduler.getJob({ id: "not-a-uuid" }, auth))).code, Code.InvalidArgument);
    });
  });

  it("close() turns health NOT_SERVING first, then ends an open Watch with UNAVAILABLE", async () => {
    await withServer(async (server) => {
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.grpcUrl }));
      const watch = health.watch({})[Symbol.asyncIterator]();
      assert.equal((await watch.next()).value?.status, ServingStatus.SERVING);

      const closed = server.close();
      assert.equal(server.health.get(""), ServingStatus.NOT_SERVING);
      const next = await watch.next();
      assert.equal(next.done, false);
      assert.equal(next.value?.status, ServingStatus.NOT_SERVING);

      // Ending normally would tell the client "OK, no more updates".
      const err = await failure(watch.next());
      assert.equal(err.code, Code.Unavailable);
      assert.equal(server.shutdownSignal.aborted, true);
      await closed;
    });
  });

  it("close() waits for an in-flight unary call to finish successfully", async () => {
    await withServer(async (server, started) => {
      const scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: server.grpcUrl }));
      const order: string[] = [];
      const call = scheduler.getJob({ id: SLOW_JOB }, auth).then((res) => {
        order.push("call finished");
        return res;
      });
      await started;
      const t0 = performance.now();
      await server.close().then(() => order.push("server closed"));
      const res = await call;
      assert.equal(res.job?.id, SLOW_JOB);
      assert.deepEqual(order, ["call finished", "server closed"]);
      assert.ok(performance.now() - t0 >= SLOW_MS / 2, "close() returned before the call could have finished");
    });
  });

  it("close() is idempotent", async () => {
    await withServer(async (server) => {
      const first = server.close();
      const second = server.close();
      assert.equal(first, second);
      await first;
      await server.close();
    });
  });

  it("refuses calls after close()", async () => {
    await withServer(async (server) => {
      await server.close();
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.grpcUrl }));
      const err = await failure(health.check({}));
      assert.equal(err.code, Code.Unavailable);
      await assert.rejects(
        fetch(`${server.httpUrl}/grpc.health.v1.Health/Check`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{}",
        }),
      );
    });
  });

  it("keepalive drops a connection whose peer stops answering PINGs, and keeps one that answers", async () => {
    await withServer(async (server) => {
      // A live HTTP/2 client answers PINGs by itself: its connection survives several rounds.
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.grpcUrl }));
      assert.equal((await health.check({})).status, ServingStatus.SERVING);

      // A peer that says hello in HTTP/2 and then goes silent, like a machine that vanished.
      const { port } = new URL(server.grpcUrl);
      const silent = net.connect(Number(port), "127.0.0.1");
      const closed = new Promise<number>((resolve) => {
        const opened = performance.now();
        silent.once("close", () => resolve(performance.now() - opened));
      });
      silent.on("error", () => {});
      silent.on("data", () => {}); // read, but never answer
      silent.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
      const ms = await closed;
      assert.ok(ms < 2_000, `silent peer dropped after ${Math.round(ms)} ms`);

      await new Promise((resolve) => setTimeout(resolve, 700));
      assert.equal((await health.check({})).status, ServingStatus.SERVING, "the answering client's connection still works");
    }, 200);
  });
});
