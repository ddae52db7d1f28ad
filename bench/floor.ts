// The latency floor on this machine: what the parts a job's way from SubmitJob
// to the agent's Assignment is made of cost when they do nothing else. The
// scheduling issue asks for submit → Assignment at p50 ≤ 2 ms and p99 ≤ 10 ms
// (at 500 jobs/s). That way holds at least a request in (client → server), a
// durable write and a message out on an agent's stream, so these set a floor
// under it for any design on this machine:
//
//   tcp        a byte echoed by another Node process over loopback TCP
//              (TCP_NODELAY): the cheapest hop between two processes
//   http2      a POST answered by a bare node:http2 server in another process
//   health     grpc.health.v1.Health/Check on dev mode (services/dev/main.ts,
//              nothing else to do): Drover's server stack and client
//              transport, no database
//   get_job    SchedulerService.GetJob of an unknown id on the same dev mode:
//              the same, plus one read of the embedded database (NotFound)
//   send_to_agent  FleetService.SendToAgents on the same dev mode, timed from
//              the call to the message's arrival on a connected agent's
//              stream: a request in, one durable write (Fleet's outbox) and
//              a message out, the shape of submit → Assignment with nothing
//              in between (a Cancel for no attempt; the agent acknowledges
//              every 50 ms, as drover-agent does)
//   send_to_agent_split  the same on split mode's Fleet (services/fleet/main.ts
//              on PostgreSQL and Redis, a database of its own)
//   pg_insert  a one-row INSERT committed on PostgreSQL (node-postgres, a
//              pool of 4 as a service has, prepared): split mode's durable write
//   pglite_insert  the same on an embedded database (PGlite) on a data
//              directory, in this process: the durable write of dev mode
//
// Each is called open-loop (on a fixed schedule, not waiting for the last
// answer) at each rate, after 50 unmeasured calls; p50, p90 and p99 of the
// time to the answer. At a low rate every call finds the processes idle: on
// a virtual machine waking them is much of the cost (bench/README.md).
//
//   node --import tsx bench/floor.ts          (npm run bench -- floor)
//   BENCH_FLOOR_RATES=20,100,500              the rates (calls per second)
//   BENCH_FLOOR_SEC=4                         how long each rate lasts
//
// Results: bench/results/floor.json.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import pg from "pg";
import { Health } from "../gen/ts/grpc/health/v1/health_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { openPglite } from "../lib/db/database.ts";
import { createTestDatabase } from "../lib/db/testing.ts";
import { createDroverTransport } from "../lib/grpc_transport.ts";
import { TestAgent } from "../services/fleet/testing.ts";
import {
  ADMIN_PG_URL,
  freePort,
  machine,
  percentiles,
  printTable,
  progress,
  round,
  runBenchmark,
  sleep,
  spawnNode,
  splitBackends,
  startDevMode,
  within,
  writeResult,
  type Cleanup,
  type Percentiles,
} from "./harness.ts";

const RATES = (process.env.BENCH_FLOOR_RATES ?? "20,100,500").split(",").map(Number);
const SEC = Number(process.env.BENCH_FLOOR_SEC ?? 4);
const WARMUP_CALLS = 50;
const P50_TARGET_MS = 2;

/** A call to measure; resolves when its answer is in. */
type Call = () => Promise<unknown>;

/** Open loop: a call every 1000/rate ms for SEC seconds, whatever the earlier ones are doing; the time to each answer. */
async function openLoop(rate: number, call: Call): Promise<Percentiles> {
  for (let i = 0; i < WARMUP_CALLS; i++) await call();
  const n = Math.max(1, Math.round(rate * SEC));
  const times: number[] = [];
  const calls: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    const sent = performance.now();
    calls.push(call().then(() => void times.push(performance.now() - sent)));
  }
  await within(30_000, `${n} calls at ${rate}/s`, Promise.all(calls));
  return percentiles(times, 2);
}

/** A bare node:http2 server and a TCP echo server in another process; resolves their ports. */
async function bareServers(cleanup: Cleanup): Promise<{ h2: number; tcp: number }> {
  const child = spawn(
    process.execPath,
    [
      "-e",
      `const http2 = require("node:http2"), net = require("node:net");
       const h2 = http2.createServer().on("stream", (s) => { s.respond({ ":status": 200 }); s.end("ok"); });
       h2.on("connection", (socket) => socket.setNoDelay(true));
       const tcp = net.createServer((c) => { c.setNoDelay(true); c.on("data", (d) => c.write(d)); });
       h2.listen(0, "127.0.0.1", () => tcp.listen(0, "127.0.0.1", () =>
         console.log(JSON.stringify({ h2: h2.address().port, tcp: tcp.address().port }))));`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  cleanup.defer("stop the bare servers", () => void child.kill());
  return within(10_000, "the bare servers' ports", new Promise((resolve) => child.stdout!.once("data", (d) => resolve(JSON.parse(String(d))))));
}

function http2Call(cleanup: Cleanup, port: number): Call {
  const session = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => net.connect({ host: "127.0.0.1", port, noDelay: true }) });
  cleanup.defer("close the HTTP/2 session", () => void session.close());
  return () =>
    new Promise<void>((resolve, reject) => {
      const req = session.request({ ":path": "/", ":method": "POST" });
      req.on("data", () => {}).on("end", resolve).on("error", reject);
      req.end("x");
    });
}

async function tcpCall(cleanup: Cleanup, port: number): Promise<Call> {
  const socket = net.connect(port, "127.0.0.1").setNoDelay(true);
  cleanup.defer("close the TCP socket", () => void socket.destroy());
  await within(10_000, "the TCP echo's connection", new Promise((resolve) => socket.once("connect", resolve)));
  // One byte out, one back: answers arrive in order, so each settles the oldest call.
  const waiting: (() => void)[] = [];
  socket.on("data", (data) => {
    for (let i = 0; i < data.length; i++) waiting.shift()?.();
  });
  return () =>
    new Promise<void>((resolve) => {
      waiting.push(resolve);
      socket.write("x");
    });
}

/** Split mode's Fleet alone, on a database and Redis prefix of its own; its gRPC URL and admin token. */
async function splitFleet(cleanup: Cleanup): Promise<{ url: string; token: string }> {
  const { env, adminToken } = await splitBackends(cleanup);
  const port = await freePort();
  const fleet = spawnNode(cleanup, "fleet", ["--import", "tsx", "services/fleet/main.ts"], {
    ...env,
    DROVER_GRPC_PORT: String(port),
    DROVER_HTTP_PORT: "0",
    DROVER_LOG_LEVEL: "info",
  });
  await fleet.waitForLine((l) => l.msg === "ready", 60_000);
  return { url: `http://127.0.0.1:${port}`, token: adminToken };
}

/**
 * A message through Fleet to an agent connected to it: resolves when Fleet has
 * answered (the message is stored) and the agent has it. The agent
 * acknowledges what it got every 50 ms, in one Ack, as drover-agent does.
 */
async function sendToAgent(cleanup: Cleanup, url: string, fleet: ReturnType<typeof createClient<typeof FleetService>>): Promise<Call> {
  const { secret } = await fleet.createAgentToken({ name: "bench floor" });
  // On Drover's transport with TCP_NODELAY, as drover-agent and the scheduling benchmark's agents.
  const { hostname, port } = new URL(url);
  const agentTransport = createDroverTransport({ baseUrl: url, nodeOptions: { createConnection: () => net.connect({ host: hostname, port: Number(port), noDelay: true }) } });
  const agent = await TestAgent.register(url, secret, { hostname: "floor", drivers: ["process"] }, { transport: agentTransport });
  cleanup.defer("close the agent's stream", () => agent.cancel());
  const waiting = new Map<string, () => void>();
  const unacked: string[] = [];
  const acks = setInterval(() => {
    if (unacked.length > 0) agent.ack(...unacked.splice(0));
  }, 50);
  cleanup.defer("stop the agent's acks", () => clearInterval(acks));
  // Heartbeats at the interval Welcome gave, so that Fleet keeps the agent online through the other series.
  const interval = agent.welcome?.heartbeatInterval;
  let sequence = 0;
  const heartbeats = setInterval(() => agent.heartbeat(++sequence), interval ? Number(interval.seconds) * 1000 + interval.nanos / 1e6 : 5000);
  cleanup.defer("stop the agent's heartbeats", () => clearInterval(heartbeats));
  void (async () => {
    for (;;) {
      const message = await agent.next(3_600_000).catch(() => undefined);
      if (!message) return;
      if (message.messageId) unacked.push(message.messageId);
      waiting.get(message.messageId)?.();
      waiting.delete(message.messageId);
    }
  })();
  let n = 0;
  return async () => {
    const messageId = `floor:${n++}`;
    const arrived = new Promise<void>((resolve) => waiting.set(messageId, resolve));
    const [{ results }] = await Promise.all([
      fleet.sendToAgents({ messages: [{ agentId: agent.agentId, message: { messageId, message: { case: "cancel", value: { attemptId: "00000000-0000-4000-8000-000000000000", reason: "bench floor" } } } }] }),
      arrived,
    ]);
    if (!results[0]?.delivered) throw new Error(`SendToAgents did not deliver ${messageId}`);
  };
}

async function pgInsert(cleanup: Cleanup): Promise<Call> {
  const db = await createTestDatabase(ADMIN_PG_URL);
  cleanup.defer(`drop database ${db.name}`, () => db.drop());
  // A few connections, as a service's pool has: calls that overlap do not queue on one.
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  cleanup.defer("close the PostgreSQL connections", () => pool.end());
  await pool.query("CREATE TABLE floor (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)");
  const insert = { name: "floor_insert", text: "INSERT INTO floor (note) VALUES ($1)", values: ["x"] };
  return () => pool.query(insert);
}

async function pgliteInsert(cleanup: Cleanup): Promise<Call> {
  const dataDir = mkdtempSync(join(tmpdir(), "drover-bench-floor-pglite-"));
  cleanup.defer(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const db = await openPglite(dataDir);
  cleanup.defer("close the embedded database", () => db.close());
  await db.executor.exec("CREATE TABLE floor (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), note text)");
  return () => db.executor.query("INSERT INTO floor (note) VALUES ($1)", ["x"]);
}

const WHAT: Record<string, string> = {
  tcp: "loopback TCP echo, another Node process",
  http2: "bare node:http2 POST, another process",
  health: "Health/Check on dev mode (no database)",
  get_job: "GetJob, unknown id, on dev mode (one embedded read)",
  send_to_agent: "SendToAgents → at the agent, dev mode (one embedded write)",
  send_to_agent_split: "SendToAgents → at the agent, split Fleet (one PostgreSQL write)",
  pg_insert: "one-row INSERT committed, PostgreSQL",
  pglite_insert: "one-row INSERT committed, PGlite on a directory",
};

await runBenchmark("floor", async (cleanup) => {
  const started = performance.now();
  progress("floor: starting the servers, dev mode and split mode's Fleet");
  const ports = await bareServers(cleanup);
  const dev = await startDevMode(cleanup);
  // Sockets without Nagle's algorithm, as the services' own clients and the
  // scheduling benchmark's load have (bench/README.md, "scheduling").
  const transport = createDroverTransport({ baseUrl: dev.url, interceptors: [bearer(dev.adminToken)], nodeOptions: { noDelay: true } as http2.SecureClientSessionOptions });
  const health = createClient(Health, transport);
  const scheduler = createClient(SchedulerService, transport);
  const fleet = createClient(FleetService, transport);
  const split = await splitFleet(cleanup);
  const splitTransport = createDroverTransport({ baseUrl: split.url, interceptors: [bearer(split.token)], nodeOptions: { noDelay: true } as http2.SecureClientSessionOptions });
  const unknownJob = "00000000-0000-4000-8000-000000000000";
  const calls: Record<string, Call> = {
    tcp: await tcpCall(cleanup, ports.tcp),
    http2: http2Call(cleanup, ports.h2),
    health: () => health.check({}),
    // Answered NOT_FOUND after the read; anything else is a failure, not a sample.
    get_job: () =>
      scheduler.getJob({ id: unknownJob }).then(
        () => Promise.reject(new Error(`GetJob ${unknownJob} found a job`)),
        (err: unknown) => (ConnectError.from(err).code === Code.NotFound ? undefined : Promise.reject(err)),
      ),
    send_to_agent: await sendToAgent(cleanup, dev.url, fleet),
    send_to_agent_split: await sendToAgent(cleanup, split.url, createClient(FleetService, splitTransport)),
    pg_insert: await pgInsert(cleanup),
    pglite_insert: await pgliteInsert(cleanup),
  };

  const results: Record<string, Record<string, Percentiles>> = {};
  for (const [name, call] of Object.entries(calls)) {
    results[name] = {};
    for (const rate of RATES) {
      progress(`floor: ${name} at ${rate}/s for ${SEC} s`);
      results[name]![String(rate)] = await openLoop(rate, call);
    }
  }

  const table: [string, string, string][] = [];
  for (const [name, byRate] of Object.entries(results)) {
    for (const [rate, p] of Object.entries(byRate)) {
      table.push([`${WHAT[name]}, ${rate}/s`, `p50 ${p.p50} ms, p90 ${p.p90}, p99 ${p.p99}`, p.p50 > P50_TARGET_MS ? `p50 alone above the ${P50_TARGET_MS} ms target` : ""]);
    }
  }
  // The least a design with one durable write could take: a call's way there and
  // back (as a request in and an Assignment out) plus the write, by p50.
  const conclusion = RATES.map((rate) => {
    const at = (name: string) => results[name]![String(rate)]!.p50;
    const split = round(at("health") + at("pg_insert"), 2);
    const dev = round(at("health") + at("pglite_insert"), 2);
    return `at ${rate}/s: Health/Check + one committed INSERT, p50 ${split} ms on PostgreSQL, ${dev} ms on PGlite (the ${P50_TARGET_MS} ms target for all of submit → Assignment)`;
  });
  printTable(`floor (open loop, ${SEC} s per rate; the way submit → Assignment holds a request in, a durable write and a stream message out)`, table);
  for (const line of conclusion) console.log(line);
  const file = writeResult({
    benchmark: "floor",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: Math.round((performance.now() - started) / 1000),
    table,
    conclusion,
    details: { rates: RATES, secondsPerRate: SEC, warmupCalls: WARMUP_CALLS, results },
  });
  console.log(`results: ${file}`);
});
