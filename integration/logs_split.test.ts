// Logs end to end in split mode: a real drover-agent running real commands,
// Fleet, Scheduler, Bid and Log each their own process on PostgreSQL and
// Redis. Two Log replicas: a follower on the one that stores a job's output
// gets it from that replica's publisher without Redis, a follower on a
// second replica through Redis, each line once and in order. Two faults from
// the Log issue:
//
//   - the Log service is killed with SIGKILL during a flood of output and
//     started again: the stored output ends up byte for byte the file in
//     the agent's execution bundle (hashes compared), each byte stored once;
//   - the Log service's Redis goes away while someone follows a job: the
//     follower keeps receiving output (from storage), gets every line once
//     and in order, and the follow ends when the job does.
//
// The Log service reaches Redis through a small TCP proxy the test can cut,
// so the rest of the system (and other test files) keep their Redis.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Redis } from "ioredis";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { bundleDir } from "../agent/bundle.ts";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { LogService, Stream } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { JobState, SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { requirePostgres, requireRedis } from "../lib/testing/services.ts";
import { eventually } from "../services/fleet/testing.ts";
import {
  createTestDatabase,
  freePort,
  randomToken,
  removeDir,
  startAgent,
  startSplit,
  tempDir,
  type AgentProcess,
  type DroverProcess,
  type SplitEnv,
} from "./harness.ts";

const postgresUrl = await requirePostgres();
const redisUrl = await requireRedis();

const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "500",
  DROVER_STALE_AFTER_MS: "3000",
  DROVER_OFFLINE_AFTER_MS: "20000",
  DROVER_SCHEDULER_SWEEP_MS: "100",
  DROVER_WAIT_RETRY_MS: "300",
  DROVER_SHUTDOWN_GRACE_MS: "200",
};

/** A TCP proxy that can be cut (every connection closed, new ones refused) and restored on the same port. */
class CuttableProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = createConnection(this.target);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((res, rej) => server.once("error", rej).listen(this.port, "127.0.0.1", res));
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    if (server) await new Promise<void>((res) => server.close(() => res()));
  }
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

describe("logs in split mode", { skip: postgresUrl === null || redisUrl === null ? "needs PostgreSQL and Redis" : false }, () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: SplitEnv;
  let sql: pg.Pool;
  let proxy: CuttableProxy;
  const procs: Record<string, DroverProcess> = {};
  let logPort = 0;
  let agent: AgentProcess;
  let stateDir: string;
  let fleet: Client<typeof FleetService>;
  let scheduler: Client<typeof SchedulerService>;
  let logs: Client<typeof LogService>;

  function startLog(): Promise<DroverProcess> {
    const url = (port: number) => `http://127.0.0.1:${port}`;
    return startSplit("log", { ...env, redisUrl: `redis://127.0.0.1:${proxy.port}` }, {
      ...FAST,
      DROVER_GRPC_PORT: String(logPort),
      DROVER_FLEET_URL: url(Number(new URL(procs.fleet!.grpcUrl).port)),
      DROVER_SCHEDULER_URL: url(Number(new URL(procs.scheduler!.grpcUrl).port)),
    });
  }

  before(async () => {
    db = await createTestDatabase(postgresUrl!);
    sql = new pg.Pool({ connectionString: db.url, max: 2 });
    const redis = new URL(redisUrl!);
    proxy = new CuttableProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
    await proxy.open();
    env = { databaseUrl: db.url, redisUrl: redisUrl!, adminToken: randomToken(), redisPrefix: `drover-it-logs-${process.pid}:` };
    const [pf, ps, pb] = await Promise.all([freePort(), freePort(), freePort()]);
    logPort = await freePort();
    const url = (port: number) => `http://127.0.0.1:${port}`;
    const urls = { DROVER_FLEET_URL: url(pf), DROVER_SCHEDULER_URL: url(ps), DROVER_BID_URL: url(pb), DROVER_LOG_URL: url(logPort) };
    procs.fleet = await startSplit("fleet", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(pf) });
    const [s, b] = await Promise.all([
      startSplit("scheduler", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(ps) }),
      startSplit("bid", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(pb) }),
    ]);
    procs.scheduler = s;
    procs.bid = b;
    procs.log = await startLog();

    const client = <T extends Parameters<typeof createClient>[0]>(service: T, baseUrl: string) =>
      createClient(service, createGrpcTransport({ baseUrl, interceptors: [bearer(env.adminToken)] }));
    fleet = client(FleetService, procs.fleet.grpcUrl);
    scheduler = client(SchedulerService, procs.scheduler.grpcUrl);
    logs = client(LogService, procs.log.grpcUrl);

    const { secret } = await fleet.createAgentToken({ name: "logs-it" });
    stateDir = tempDir("drover-logs-it-");
    agent = startAgent(["--server", procs.fleet.grpcUrl, "--state-dir", stateDir, "--token", secret], { env: { DROVER_RECONNECT_MAX_MS: "300" } });
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 1 ? true : undefined), 30_000, "the agent online");
  });

  after(async () => {
    await agent?.stop("SIGKILL");
    await Promise.all(Object.values(procs).map((p) => p.stop("SIGKILL")));
    await proxy?.cut();
    await sql?.end();
    await db?.drop();
    if (stateDir) removeDir(stateDir);
  });

  async function waitForJob(id: string, timeoutMs: number) {
    return eventually(
      async () => {
        const { job } = await scheduler.getJob({ id });
        return job && [JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED, JobState.TIMED_OUT].includes(job.state) ? job : undefined;
      },
      timeoutMs,
      `job ${id} ended`,
    );
  }

  /** Every stored byte of one stream of an attempt, read page by page through ReadLogs. */
  async function storedOutput(attemptId: string, stream: Stream): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    let pageToken = "";
    do {
      const page = await logs.readLogs({ attemptId, stream, pageToken, limitBytes: 4 << 20 });
      for (const line of page.lines) if (!line.marker) parts.push(line.data);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return Buffer.concat(parts);
  }

  it("stores a flood of output byte for byte although the Log service is killed in the middle", async () => {
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["seq", "1", "2000000"] }, { argv: ["seq", "5", "9"] }] } } });
    const jobId = job!.id;
    // Kill the Log service once part of the output is stored, then start it again on its port.
    await eventually(
      async () => {
        const { rows } = await sql.query<{ n: string }>(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM log.log_streams`);
        return Number(rows[0]!.n) > 1 << 20 ? true : undefined;
      },
      60_000,
      "a first MiB stored",
    );
    await procs.log!.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
    procs.log = await startLog();

    const ended = await waitForJob(jobId, 120_000);
    assert.equal(ended.state, JobState.SUCCEEDED);
    const attempt = ended.attempts.at(-1)!;
    // Every stream complete: the agent sent its final frames and they are recorded.
    await eventually(
      async () => {
        const { rows } = await sql.query(`SELECT count(*)::int AS n FROM log.log_streams WHERE attempt_id = $1 AND complete`, [attempt.id]);
        return rows[0].n === 3 ? true : undefined;
      },
      120_000,
      "the attempt's three streams complete",
    );

    const dir = bundleDir(stateDir, { attemptId: attempt.id, jobId });
    const file = Buffer.concat([readFileSync(join(dir, "cmd-000.stdout.log")), readFileSync(join(dir, "cmd-001.stdout.log"))]);
    assert.ok(file.length > 14_000_000, `the commands wrote ${file.length} bytes`);
    const stored = await storedOutput(attempt.id, Stream.STDOUT);
    assert.equal(stored.length, file.length);
    assert.equal(sha256(stored), sha256(file));

    // Each byte once: the chunks tile the stream without overlap.
    const { rows } = await sql.query<{ start: string; end: string }>(
      `SELECT start_offset::text AS start, end_offset::text AS end FROM log.log_chunks WHERE attempt_id = $1 AND stream = 'stdout' ORDER BY start_offset`,
      [attempt.id],
    );
    let next = 0;
    for (const row of rows) {
      assert.equal(Number(row.start), next, "chunks are contiguous");
      next = Number(row.end);
    }
    assert.equal(next, file.length);
  });

  it("redacts a secret value before it is stored", async () => {
    const { job } = await scheduler.submitJob({
      spec: { exec: { commands: [{ argv: ["printenv", "API_KEY"] }], env: { API_KEY: "s3cr3t-value-42" }, secretEnv: ["API_KEY"] } },
    });
    const ended = await waitForJob(job!.id, 60_000);
    assert.equal(ended.state, JobState.SUCCEEDED);
    const attemptId = ended.attempts.at(-1)!.id;
    const stored = await eventually(async () => {
      const out = await storedOutput(attemptId, Stream.STDOUT);
      return out.length > 0 ? out : undefined;
    }, 30_000, "the output stored");
    assert.equal(stored.toString(), "[REDACTED]\n");
  });

  /** The job's stdout lines as a follow on `client` gets them, until the follow ends. */
  async function followLines(client: Client<typeof LogService>, jobId: string): Promise<string[]> {
    const received: string[] = [];
    let pending = "";
    for await (const res of client.followLogs({ jobId, stream: Stream.STDOUT })) {
      for (const line of res.lines) {
        pending += Buffer.from(line.data).toString();
        if (!line.partial) {
          received.push(...pending.split("\n").filter((l) => l !== ""));
          pending = "";
        }
      }
    }
    return received;
  }

  it("two Log replicas: a follower on the one storing the output gets it without Redis, one on the other through Redis, each every line once", async () => {
    const url = (port: number) => `http://127.0.0.1:${port}`;
    const second = await startSplit("log", env, {
      ...FAST,
      DROVER_GRPC_PORT: String(await freePort()),
      DROVER_FLEET_URL: url(Number(new URL(procs.fleet!.grpcUrl).port)),
      DROVER_SCHEDULER_URL: url(Number(new URL(procs.scheduler!.grpcUrl).port)),
    });
    const redis = new Redis(redisUrl!);
    try {
      const there = createClient(LogService, createGrpcTransport({ baseUrl: second.grpcUrl, interceptors: [bearer(env.adminToken)] }));
      const appended = async (jobId: string) => redis.exists(`${env.redisPrefix}stream:log:job:${jobId}`);
      const script = "let i = 0; const t = setInterval(() => { console.log('tick ' + i++); if (i === 40) { clearInterval(t); } }, 25);";
      const expected = Array.from({ length: 40 }, (_, i) => `tick ${i}`);

      // Followed on the replica Fleet sends the output to (the first) only.
      const { job: alone } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: [process.execPath, "-e", script] }] } } });
      assert.deepEqual(await followLines(logs, alone!.id), expected);
      assert.equal(await appended(alone!.id), 0, "the output went through Redis though only the storing replica follows it");

      // Followed on both.
      const { job: both } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: [process.execPath, "-e", script] }] } } });
      const [here, away] = await Promise.all([followLines(logs, both!.id), followLines(there, both!.id)]);
      assert.deepEqual(here, expected);
      assert.deepEqual(away, expected);
      assert.equal(await appended(both!.id), 1, "nothing went through Redis for the second replica's follower");
    } finally {
      await redis.quit();
      await second.stop("SIGKILL");
    }
  });

  it("a follower keeps getting every line, once and in order, while the Log service's Redis is cut, and its follow ends with the job", async () => {
    const script = "let i = 0; const t = setInterval(() => { console.log('tick ' + i++); if (i === 60) { clearInterval(t); } }, 50);";
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: [process.execPath, "-e", script] }] } } });
    const received: string[] = [];
    let cut = false;
    const follow = (async () => {
      let pending = "";
      for await (const res of logs.followLogs({ jobId: job!.id, stream: Stream.STDOUT })) {
        for (const line of res.lines) {
          pending += Buffer.from(line.data).toString();
          if (!line.partial) {
            received.push(...pending.split("\n").filter((l) => l !== ""));
            pending = "";
          }
        }
        if (!cut && received.length >= 10) {
          cut = true;
          await proxy.cut();
        }
      }
    })();
    // Redis comes back while output still flows.
    await eventually(async () => (received.length >= 30 ? true : undefined), 60_000, "30 lines followed");
    await proxy.open();
    await follow;
    assert.deepEqual(
      received,
      Array.from({ length: 60 }, (_, i) => `tick ${i}`),
    );
  });
});
