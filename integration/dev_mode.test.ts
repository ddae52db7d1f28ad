// Dev mode as a user meets it: one process started the way `npm start` does,
// called through the generated Connect clients, through @grpc/grpc-js, with
// `buf curl` and reflection only, and with plain HTTP/1.1 JSON.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { SchedulerService, JobState } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { FleetService, Role } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/ts/grpc/health/v1/health_pb.ts";
import { SubmitJobRequestSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { bufCurl } from "./buf_curl.ts";
import { callUnary, grpcJsClient } from "./grpc_js.ts";
import { removeDir, startDev, type DevProcess } from "./harness.ts";

const DROVER_SERVICES = [
  "drover.bid.v1.BidService",
  "drover.deploy.v1.DeployService",
  "drover.fleet.v1.FleetService",
  "drover.log.v1.LogService",
  "drover.scheduler.v1.SchedulerService",
];

const echoJob = { spec: { exec: { commands: [{ argv: ["echo", "hi"] }] } } };

describe("dev mode", () => {
  let dev: DevProcess;

  before(async () => {
    dev = await startDev();
  });

  after(async () => {
    await dev?.stop("SIGKILL");
    if (dev) removeDir(dev.dataDir);
  });

  it("every service answers health through the generated Connect client over gRPC", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: dev.grpcUrl }));
    for (const service of ["", ...DROVER_SERVICES]) {
      const res = await health.check({ service });
      assert.equal(res.status, ServingStatus.SERVING, `health of ${service || "the process"}`);
    }
  });

  it("every service answers health through @grpc/grpc-js", async () => {
    const client = grpcJsClient("grpc/health/v1/health.proto", "grpc.health.v1.Health", dev.grpcUrl);
    try {
      for (const service of ["", ...DROVER_SERVICES]) {
        const res = await callUnary(client, "Check", { service });
        assert.equal(res.status, "SERVING", `health of ${service || "the process"}`);
      }
    } finally {
      client.close();
    }
  });

  it("a Drover method answers @grpc/grpc-js with a real job", async () => {
    const client = grpcJsClient("drover/scheduler/v1/scheduler_service.proto", "drover.scheduler.v1.SchedulerService", dev.grpcUrl);
    try {
      const submitted = await callUnary(client, "SubmitJob", echoJob, dev.adminToken);
      const job = submitted.job as { id: string; state: string };
      assert.equal(job.state, "JOB_STATE_PENDING");
      const got = await callUnary(client, "GetJob", { id: job.id }, dev.adminToken);
      assert.equal((got.job as { id: string }).id, job.id);
    } finally {
      client.close();
    }
  });

  it("Connect, gRPC-Web and gRPC all reach the services on the HTTP/2 port", async () => {
    for (const transport of [
      createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }),
      createConnectTransport({ baseUrl: dev.grpcUrl, httpVersion: "2", interceptors: [bearer(dev.adminToken)] }),
      createGrpcWebTransport({ baseUrl: dev.grpcUrl, httpVersion: "2", interceptors: [bearer(dev.adminToken)] }),
    ]) {
      const res = await createClient(SchedulerService, transport).submitJob(echoJob);
      assert.equal(res.job?.state, JobState.PENDING);
    }
  });

  it("plain HTTP/1.1 JSON reaches the services on the HTTP port, as curl would send it", async () => {
    const res = await fetch(`${dev.httpUrl}/drover.scheduler.v1.SchedulerService/SubmitJob`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev.adminToken}` },
      body: JSON.stringify(echoJob),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { job: { state: string } };
    assert.equal(body.job.state, "JOB_STATE_PENDING");
    const health = await fetch(`${dev.httpUrl}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.deepEqual(await health.json(), { status: "SERVING" });
  });

  it("reflection lists the five services, health and reflection (buf curl --list-services)", async () => {
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      const out = await bufCurl(["--http2-prior-knowledge", "--reflect-protocol", protocol, "--list-services", dev.grpcUrl]);
      assert.deepEqual(out.trim().split("\n").sort(), [
        ...DROVER_SERVICES,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]);
    }
  });

  it("buf curl calls a method with no .proto file, through reflection alone", async () => {
    const out = await bufCurl([
      "--http2-prior-knowledge",
      "--protocol",
      "grpc",
      "-H",
      `authorization: Bearer ${dev.adminToken}`,
      "-d",
      JSON.stringify({ ...echoJob, idempotencyKey: "buf-curl-1" }),
      `${dev.grpcUrl}/drover.scheduler.v1.SchedulerService/SubmitJob`,
    ]);
    const res = JSON.parse(out) as { job: { state: string; idempotencyKey: string } };
    assert.equal(res.job.state, "JOB_STATE_PENDING");
    assert.equal(res.job.idempotencyKey, "buf-curl-1");
  });

  it("a malformed request gets INVALID_ARGUMENT naming the field", async () => {
    const scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
    await assert.rejects(
      scheduler.submitJob({ spec: { exec: { commands: [{ argv: [] }] } } }),
      (err: unknown) => {
        const e = ConnectError.from(err);
        assert.equal(e.code, Code.InvalidArgument);
        assert.match(e.rawMessage, /spec\.exec\.commands\[0\]\.argv/);
        return true;
      },
    );
    await assert.rejects(scheduler.getJob({ id: "not-a-uuid" }), (err: unknown) => {
      const e = ConnectError.from(err);
      assert.equal(e.code, Code.InvalidArgument);
      assert.match(e.rawMessage, /^invalid GetJobRequest: id: /);
      return true;
    });
  });

  it("bytes that are not a protobuf message get a clear error and the service keeps serving", async () => {
    // Connect (like grpc-go) reports an undecodable binary body as INTERNAL
    // "parse binary: ..."; JSON that does not parse is INVALID_ARGUMENT.
    const garbage = await fetch(`${dev.httpUrl}/drover.scheduler.v1.SchedulerService/SubmitJob`, {
      method: "POST",
      headers: { "content-type": "application/proto", authorization: `Bearer ${dev.adminToken}` },
      body: new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
    });
    const garbageBody = (await garbage.json()) as { code: string; message: string };
    assert.match(garbageBody.message, /^parse binary: /);
    const badJson = await fetch(`${dev.httpUrl}/drover.scheduler.v1.SchedulerService/SubmitJob`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${dev.adminToken}` },
      body: '{"spec": {"priority": "high"}}',
    });
    assert.equal(badJson.status, 400);
    assert.equal(((await badJson.json()) as { code: string }).code, "invalid_argument");
    const health = createClient(Health, createGrpcTransport({ baseUrl: dev.grpcUrl }));
    assert.equal((await health.check({})).status, ServingStatus.SERVING);
  });

  it("a missing token gets UNAUTHENTICATED and a wrong role gets PERMISSION_DENIED", async () => {
    const anonymous = createClient(SchedulerService, createGrpcTransport({ baseUrl: dev.grpcUrl }));
    await assert.rejects(anonymous.submitJob(echoJob), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);

    const forged = createClient(SchedulerService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer("drv_forged")] }));
    await assert.rejects(forged.submitJob(echoJob), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);

    const fleet = createClient(FleetService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
    const { secret } = await fleet.createApiToken({ name: "ci operator", role: Role.OPERATOR });
    const asOperator = createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(secret)] });
    // An operator may run work ...
    const res = await createClient(SchedulerService, asOperator).submitJob(echoJob);
    assert.equal(res.job?.state, JobState.PENDING);
    // ... but not mint tokens.
    await assert.rejects(
      createClient(FleetService, asOperator).createApiToken({ name: "escalate", role: Role.ADMIN }),
      (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
    );
  });

  it("a second dev process on the same data directory refuses to start and names the holder", async () => {
    await assert.rejects(startDev({ dataDir: dev.dataDir }), (err: Error) => {
      assert.match(err.message, new RegExp(`in use by another Drover process \\(pid ${dev.child.pid}\\)`));
      return true;
    });
    const health = createClient(Health, createGrpcTransport({ baseUrl: dev.grpcUrl }));
    assert.equal((await health.check({})).status, ServingStatus.SERVING);
  });

  it("SIGTERM ends an open stream with UNAVAILABLE, stops within seconds, and a restart keeps the data", async () => {
    const scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
    const kept = await scheduler.submitJob(create(SubmitJobRequestSchema, { ...echoJob, idempotencyKey: "kept-across-restart" }));

    const health = createClient(Health, createGrpcTransport({ baseUrl: dev.grpcUrl }));
    const stream = health.watch({ service: "" });
    const iterator = stream[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.status, ServingStatus.SERVING);
    const streamEnd = (async () => {
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done) return "ended without an error";
        }
      } catch (err) {
        return Code[ConnectError.from(err).code];
      }
    })();

    const stopped = await dev.stop("SIGTERM");
    assert.equal(stopped.code, 0, `exit code; stderr:\n${dev.stderr()}`);
    assert.ok(stopped.ms < 5000, `stopped in ${Math.round(stopped.ms)} ms`);
    assert.equal(await streamEnd, "Unavailable");

    const again = await startDev({ dataDir: dev.dataDir });
    dev = again;
    assert.equal(again.adminToken.length > 16, true);
    const after = createClient(SchedulerService, createGrpcTransport({ baseUrl: again.grpcUrl, interceptors: [bearer(again.adminToken)] }));
    const got = await after.getJob({ id: kept.job!.id });
    assert.equal(got.job?.idempotencyKey, "kept-across-restart");
  });
});
