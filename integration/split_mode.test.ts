// Split mode: each service its own process on real PostgreSQL and Redis,
// started with the commands docker-compose.yml names, on a fresh database
// that is dropped afterwards.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { DeployService } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { FleetService, Role } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/ts/grpc/health/v1/health_pb.ts";
import { bearer } from "../lib/clients.ts";
import { requirePostgres, requireRedis } from "../lib/testing/services.ts";
import { callUnary, grpcJsClient } from "./grpc_js.ts";
import { createTestDatabase, randomToken, ROOT, startSplit, type DroverProcess, type SplitEnv } from "./harness.ts";

const postgresUrl = await requirePostgres();
const redisUrl = await requireRedis();
const echoJob = { spec: { exec: { commands: [{ argv: ["echo", "hi"] }] } } };

describe("split mode", { skip: postgresUrl === null || redisUrl === null ? "needs PostgreSQL and Redis" : false }, () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: SplitEnv;
  const procs: Record<string, DroverProcess> = {};

  before(async () => {
    db = await createTestDatabase(postgresUrl!);
    env = { databaseUrl: db.url, redisUrl: redisUrl!, adminToken: randomToken(), redisPrefix: `drover-it-${process.pid}:` };
    procs.fleet = await startSplit("fleet", env);
    env.fleetUrl = procs.fleet.grpcUrl;
    const others = await Promise.all(["scheduler", "bid", "deploy", "log"].map((name) => startSplit(name, env)));
    ["scheduler", "bid", "deploy", "log"].forEach((name, i) => (procs[name] = others[i]!));
  });

  after(async () => {
    await Promise.all(Object.values(procs).map((p) => p.stop("SIGKILL")));
    await db?.drop();
  });

  it("every service answers health on both ports, through Connect and @grpc/grpc-js", async () => {
    for (const [name, proc] of Object.entries(procs)) {
      const health = createClient(Health, createGrpcTransport({ baseUrl: proc.grpcUrl }));
      assert.equal((await health.check({})).status, ServingStatus.SERVING, name);
      const h1 = await fetch(`${proc.httpUrl}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      assert.deepEqual(await h1.json(), { status: "SERVING" }, name);
      const client = grpcJsClient("grpc/health/v1/health.proto", "grpc.health.v1.Health", proc.grpcUrl);
      try {
        assert.equal((await callUnary(client, "Check", {})).status, "SERVING", name);
      } finally {
        client.close();
      }
    }
  });

  it("each process serves its own service only", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: procs.scheduler!.grpcUrl }));
    assert.equal((await health.check({ service: "drover.scheduler.v1.SchedulerService" })).status, ServingStatus.SERVING);
    await assert.rejects(health.check({ service: "drover.fleet.v1.FleetService" }), (err: unknown) => ConnectError.from(err).code === Code.NotFound);
  });

  it("services check callers' tokens with Fleet: a token minted on Fleet works on the Scheduler", async () => {
    const fleet = createClient(FleetService, createGrpcTransport({ baseUrl: procs.fleet!.grpcUrl, interceptors: [bearer(env.adminToken)] }));
    const { secret } = await fleet.createApiToken({ name: "split operator", role: Role.OPERATOR });
    const scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: procs.scheduler!.grpcUrl, interceptors: [bearer(secret)] }));
    const res = await scheduler.submitJob(echoJob);
    assert.equal(res.job?.state, JobState.PENDING);
    const got = await scheduler.getJob({ id: res.job!.id });
    assert.equal(got.job?.id, res.job!.id);

    const forged = createClient(SchedulerService, createGrpcTransport({ baseUrl: procs.scheduler!.grpcUrl, interceptors: [bearer("drv_forged")] }));
    await assert.rejects(forged.submitJob(echoJob), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    const anonymous = createClient(DeployService, createGrpcTransport({ baseUrl: procs.deploy!.grpcUrl }));
    await assert.rejects(anonymous.getDeployment({ name: "web" }), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
  });

  it("a malformed request gets INVALID_ARGUMENT naming the field", async () => {
    const deploy = createClient(DeployService, createGrpcTransport({ baseUrl: procs.deploy!.grpcUrl, interceptors: [bearer(env.adminToken)] }));
    await assert.rejects(deploy.applyDeployment({ name: "Not_A_Label", spec: { exec: { commands: [{ argv: ["sleep", "1"] }] } } }), (err: unknown) => {
      const e = ConnectError.from(err);
      return e.code === Code.InvalidArgument && /name: /.test(e.rawMessage);
    });
  });

  it("each service created its own schema and nothing else", async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ schema: string; migrations: string }>(
        `SELECT table_schema AS schema, count(*)::text AS migrations FROM information_schema.tables
          WHERE table_name = '_prisma_migrations' GROUP BY table_schema ORDER BY table_schema`,
      );
      assert.deepEqual(rows.map((r) => r.schema), ["bid", "deploy", "fleet", "log", "scheduler"]);
    } finally {
      await client.end();
    }
  });

  it("two replicas of one service migrate the same empty database at once", async () => {
    const fresh = await createTestDatabase(postgresUrl!);
    const replicas: DroverProcess[] = [];
    try {
      const started = await Promise.allSettled([0, 1, 2].map(() => startSplit("fleet", { ...env, databaseUrl: fresh.url })));
      for (const s of started) if (s.status === "fulfilled") replicas.push(s.value);
      assert.deepEqual(started.map((s) => s.status), ["fulfilled", "fulfilled", "fulfilled"], String(started.find((s) => s.status === "rejected")?.reason));
      const client = new pg.Client({ connectionString: fresh.url });
      await client.connect();
      try {
        const { rows } = await client.query(`SELECT migration_name FROM fleet._prisma_migrations WHERE finished_at IS NOT NULL`);
        const onDisk = (await import("node:fs")).readdirSync(`${ROOT}/prisma/fleet/migrations`).filter((n) => !n.endsWith(".toml"));
        assert.equal(rows.length, onDisk.length, "each migration applied exactly once");
      } finally {
        await client.end();
      }
      // All three replicas serve.
      for (const r of replicas) {
        const health = createClient(Health, createGrpcTransport({ baseUrl: r.grpcUrl }));
        assert.equal((await health.check({})).status, ServingStatus.SERVING);
      }
    } finally {
      await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
      await fresh.drop();
    }
  });

  it("SIGTERM shuts a split-mode service down cleanly within a few seconds", async () => {
    const extra = await startSplit("log", env);
    const stopped = await extra.stop("SIGTERM");
    assert.equal(stopped.code, 0, extra.stderr());
    assert.ok(stopped.ms < 5000, `stopped in ${Math.round(stopped.ms)} ms`);
    assert.ok(extra.logs.some((l) => l.msg === "stopped"), "logged that it stopped");
  });

  it("a bad configuration stops the process with a message that names the variable", async () => {
    const child = spawn(process.execPath, ["services/bin.mjs", "scheduler"], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: "mysql://nope", REDIS_URL: redisUrl!, DROVER_ADMIN_TOKEN: env.adminToken, DROVER_FLEET_URL: env.fleetUrl!, DROVER_GRPC_PORT: "seventy" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    assert.equal(code, 2);
    assert.match(stderr, /DROVER_GRPC_PORT: must be an integer/);
    assert.match(stderr, /DATABASE_URL: must use postgres or postgresql/);
  });
});
