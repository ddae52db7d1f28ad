// Service replicas (Assignment.service): the real AgentWorker and JobHandler
// (and, for agent restarts, drover-agent as a child process) against
// FakeFleet, with real processes that crash, serve HTTP and get killed.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { ResourcesSchema } from "../gen/ts/drover/common/v1/resources_pb.ts";
import { HealthState, type ServiceRunSchema } from "../gen/ts/drover/common/v1/service_pb.ts";
import { AttemptState, LogStream, MetricsSchema, type AssignmentSchema, type JobEvent } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { AgentWorker } from "./agent_worker.ts";
import { bundleDir, readManifest, type Manifest } from "./bundle.ts";
import { CredentialStore } from "./credentials.ts";
import { JobEventOutbox } from "./job_events.ts";
import { JobHandler } from "./job_handler.ts";
import { LogShipper } from "./log_shipper.ts";
import { RememberingProbe, type MachineSample } from "./metrics.ts";
import { killGroup } from "./process_runner.ts";
import { MIN_DOUBLED_DELAY_MS, PortBook, restartDelayMs, restartDelays, STABLE_RUN_MS } from "./service_supervisor.ts";
import { startAgent, within, type AgentProcess } from "./testing/agent_process.ts";
import { eventually, FakeFleet, type FakeStream } from "./testing/fake_fleet.ts";

const GiB = 1024n ** 3n;
const { HEALTHY, UNHEALTHY } = HealthState;

const machine = new RememberingProbe({
  async sample(): Promise<MachineSample> {
    return {
      metrics: create(MetricsSchema, { cpuPercent: 20, load1: 0.5, memoryTotalBytes: 8n * GiB, memoryUsedBytes: 4n * GiB }),
      total: create(ResourcesSchema, { cpuMillis: 4000, memoryBytes: 8n * GiB, diskBytes: 100n * GiB }),
      free: create(ResourcesSchema, { cpuMillis: 2000, memoryBytes: 4n * GiB, diskBytes: 50n * GiB }),
    };
  },
});

/** A web server on $PORT: /healthz answers 200. */
const HTTP_SERVER = [
  process.execPath,
  "-e",
  'require("http").createServer((q, s) => { s.statusCode = q.url === "/healthz" ? 200 : 404; s.end(String(process.pid)); }).listen(Number(process.env.PORT), "127.0.0.1")',
];

describe("PortBook", () => {
  it("never hands out a port a live replica holds, and hands it out again once released", async () => {
    const offered = [5000, 5000, 5001, 5000];
    const book = new PortBook(async () => offered.shift()!);
    assert.equal(await book.assign(), 5000);
    assert.equal(await book.assign(), 5001); // 5000 is held: its replica's process may be down between restarts
    book.release(5000);
    assert.equal(await book.assign(), 5000);
    // A replica resumed after an agent restart holds its port; a system offering only held ports is an error, not a loop.
    const full = new PortBook(async () => 7);
    full.hold(7);
    await assert.rejects(full.assign(), /held by another replica/);
  });
});

describe("restartDelayMs (pure)", () => {
  const delays = { initialMs: 100, maxMs: 400 };

  it("starts at the initial delay, doubles after each quick exit and stops at the maximum", () => {
    let previous: number | undefined;
    const seen = [1, 2, 3, 4, 5].map(() => (previous = restartDelayMs(delays, previous, 10)));
    assert.deepEqual(seen, [100, 200, 400, 400, 400]);
  });

  it("goes back to the initial delay after a run of a minute or more", () => {
    assert.equal(restartDelayMs(delays, 400, STABLE_RUN_MS - 1), 400);
    assert.equal(restartDelayMs(delays, 400, STABLE_RUN_MS), 100);
  });

  it("defaults to 1 s doubling up to 1 min, and an initial delay of 0 restarts at once only the first time", () => {
    assert.deepEqual(restartDelays(undefined), { initialMs: 1_000, maxMs: 60_000 });
    assert.equal(restartDelayMs({ initialMs: 1_000, maxMs: 60_000 }, 32_000, 5), 60_000);
    assert.equal(restartDelayMs({ initialMs: 0, maxMs: 60_000 }, undefined, 5), 0);
    assert.equal(restartDelayMs({ initialMs: 0, maxMs: 60_000 }, 0, 5), MIN_DOUBLED_DELAY_MS);
  });
});

interface Agent {
  work: JobHandler;
  stateDir: string;
}

/** A worker with a JobHandler and a LogShipper against url; always cancels what runs, stops everything and removes the state directory. */
async function withAgent(url: string, fn: (agent: Agent) => Promise<void>, limits: { maxAttempts?: number; maxServices?: number } = {}): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), "drover-service-test-"));
  const logger = createLogger("silent");
  const events = new JobEventOutbox();
  const logs = new LogShipper({ logger });
  const work = new JobHandler({ stateDir, maxAttempts: 4, ...limits, allowShell: false, lastSample: () => machine.latest, events, logs, logger, defaultCancelGraceMs: 1_000 });
  const worker = new AgentWorker({
    server: url,
    registrationToken: "registration-token-1",
    credentials: await CredentialStore.open(stateDir),
    hostname: "test-host",
    version: "9.9.9",
    labels: {},
    drivers: ["process"],
    machine,
    work,
    events,
    logs,
    logger,
    backoff: { baseMs: 20, capMs: 100 },
    welcomeTimeoutMs: 2_000,
    stopGraceMs: 300,
    ackFlushMs: 10,
  });
  void worker.run();
  try {
    await fn({ work, stateDir });
  } finally {
    await work.shutdown(0);
    await worker.stop();
    await logs.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

type ServiceInit = MessageInitShape<typeof ServiceRunSchema>;

function assignService(stream: FakeStream, attemptId: string, argv: string[], service: ServiceInit): void {
  const value: MessageInitShape<typeof AssignmentSchema> = { attemptId, jobId: `job-${attemptId}`, exec: { commands: [{ argv }] }, service: { deployment: "web", revision: 1, replicaId: `replica-${attemptId}`, ...service } };
  stream.send({ messageId: `assign:${attemptId}`, message: { case: "assignment", value } });
}

function cancel(stream: FakeStream, attemptId: string, graceMs = 1_000): void {
  stream.send({ messageId: `cancel:${attemptId}`, message: { case: "cancel", value: { attemptId, gracePeriod: durationFromMs(graceMs), reason: "scaled down" } } });
}

/** The health events received, in order. */
const healthEvents = (stream: FakeStream): JobEvent[] => stream.all("jobEvent").filter((e) => e.health !== undefined);

/** Waits for a health event matching check, among those received on the stream. */
function health(stream: FakeStream, what: string, check: (e: JobEvent) => boolean, timeoutMs = 5_000): Promise<JobEvent> {
  return eventually(what, () => healthEvents(stream).find(check), timeoutMs);
}

const finalEvents = (stream: FakeStream) => stream.all("jobEvent").filter((e) => e.state !== AttemptState.STARTING && e.state !== AttemptState.RUNNING);

async function manifestOf(stateDir: string, attemptId: string): Promise<Manifest> {
  const m = await readManifest(bundleDir(stateDir, { attemptId, jobId: `job-${attemptId}` }));
  assert.ok(m, "the bundle has a manifest");
  return m;
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${port}${path}`, { agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("service replicas on a real stream", () => {
  let fleet: FakeFleet;
  before(async () => {
    fleet = await FakeFleet.start();
  });
  after(async () => {
    await fleet.close();
  });

  it("restarts a command that exits 1 at once with growing delays, reports restarts 1, 2, 3 as UNHEALTHY, ships each run's output, and never ends the attempt", async () => {
    await withAgent(fleet.url, async ({ stateDir }) => {
      const { stream } = await fleet.accept();
      assignService(stream, "crash", ["sh", "-c", "echo run; exit 1"], { restart: { initialDelay: durationFromMs(100), maxDelay: durationFromMs(400) } });
      await health(stream, "the fourth restart", (e) => e.health!.restarts === 4);

      const firstOfEach = [1, 2, 3].map((n) => healthEvents(stream).find((e) => e.health!.restarts === n)!);
      assert.deepEqual(
        firstOfEach.map((e) => [e.health!.restarts, HealthState[e.health!.state], e.health!.message, e.state]),
        [1, 2, 3].map((n) => [n, "UNHEALTHY", "exited with code 1", AttemptState.RUNNING]),
      );
      const ids = healthEvents(stream).map((e) => e.eventId);
      assert.deepEqual(ids, ids.map((_, i) => `crash:health-${i + 1}`), "health events are numbered 1, 2, 3...");
      const sequences = stream.all("jobEvent").map((e) => e.sequence);
      assert.deepEqual(sequences, [...sequences].sort((a, b) => a - b), "sequence numbers grow");

      const runs = stream.all("jobEvent").filter((e) => e.command !== undefined);
      assert.deepEqual(runs.slice(0, 4).map((e) => [e.eventId, e.command!.index, e.command!.exitCode]), [0, 1, 2, 3].map((i) => [`crash:cmd-00${i}`, i, 1]));

      // Each restart waits its delay after the previous run ended: 100, 200, 400, then 400 again (the cap).
      const m = await manifestOf(stateDir, "crash");
      const gaps = [1, 2, 3, 4].map((i) => Date.parse(m.commands[i]!.startTime!) - Date.parse(m.commands[i - 1]!.endTime!));
      for (const [i, want] of [100, 200, 400, 400].entries()) assert.ok(gaps[i]! >= want - 5 && gaps[i]! < want + 300, `gap ${i + 1} was ${gaps[i]} ms, wanted ${want}`);
      assert.equal(m.service?.delayMs, 400);
      assert.equal(m.closed, false);

      for (const i of [0, 1, 2, 3]) assert.equal(await readFile(join(bundleDir(stateDir, { attemptId: "crash", jobId: "job-crash" }), `cmd-00${i}.stdout.log`), "utf8"), "run\n");
      // The shipper follows the new files: each run's output is its own frame, at the stream's running offset.
      const frames = await eventually("stdout of the fourth run", () => {
        const out = stream.all("logFrame").filter((f) => f.stream === LogStream.STDOUT && f.data.length > 0);
        return out.some((f) => f.commandIndex === 3) ? out : undefined;
      });
      assert.deepEqual(frames.slice(0, 4).map((f) => [f.commandIndex, Number(f.offset), Buffer.from(f.data).toString()]), [0, 1, 2, 3].map((i) => [i, i * 4, "run\n"]));
      assert.deepEqual(finalEvents(stream), [], "the attempt never ends by itself");
    });
  });

  it("brings an HTTP server on its assigned port to HEALTHY; killed, it is UNHEALTHY, restarted on the same port, and HEALTHY again", async () => {
    await withAgent(fleet.url, async ({ stateDir }) => {
      const { stream } = await fleet.accept();
      assignService(stream, "web", HTTP_SERVER, {
        assignPort: true,
        // A slow machine may take a while to start node: no UNHEALTHY before it listens.
        healthCheck: { check: { case: "http", value: { path: "/healthz" } }, interval: durationFromMs(100), timeout: durationFromMs(100), unhealthyThreshold: 50 },
        restart: { initialDelay: durationFromMs(100) },
      });
      const healthy = await health(stream, "HEALTHY", (e) => e.health!.state === HEALTHY);
      const port = healthy.health!.port;
      assert.ok(port > 0, "the assigned port is reported");
      assert.equal(healthy.health!.restarts, 0);
      assert.match(healthy.health!.message, new RegExp(`^GET http://127.0.0.1:${port}/healthz answered 200$`));
      assert.deepEqual(healthEvents(stream).map((e) => HealthState[e.health!.state]), ["HEALTHY"], "UNSPECIFIED until the first verdict, which is not reported");
      const m = await manifestOf(stateDir, "web");
      assert.equal(m.service?.port, port, "the port is kept in the manifest");
      const first = await get(port, "/healthz");
      assert.equal(first.status, 200);

      killGroup(Number(m.commands[0]!.handle!.id), "SIGKILL");
      const down = await health(stream, "UNHEALTHY", (e) => e.health!.state === UNHEALTHY);
      assert.deepEqual([down.health!.message, down.health!.restarts, down.health!.port], ["killed by SIGKILL", 0, port]);
      const restarted = await health(stream, "the restart", (e) => e.health!.restarts === 1);
      assert.equal(restarted.health!.state, UNHEALTHY);
      const again = await health(stream, "HEALTHY again", (e) => e.health!.restarts === 1 && e.health!.state === HEALTHY);
      assert.equal(again.health!.port, port, "the same port after the restart");
      const second = await get(port, "/healthz");
      assert.notEqual(second.body, first.body, "a new process answers on the port");
      assert.deepEqual(finalEvents(stream), []);
    });
  });

  it("checks the assigned port with a tcp check: UNHEALTHY while nothing listens, HEALTHY once the server does", async () => {
    await withAgent(fleet.url, async () => {
      const { stream } = await fleet.accept();
      const late = ["sh", "-c", `sleep 0.5; exec "$0" -e "$1"`, HTTP_SERVER[0]!, HTTP_SERVER[2]!];
      assignService(stream, "tcp", late, { assignPort: true, healthCheck: { check: { case: "tcp", value: {} }, interval: durationFromMs(100), unhealthyThreshold: 2 } });
      const down = await health(stream, "UNHEALTHY", (e) => e.health!.state === UNHEALTHY);
      assert.equal(down.health!.message, `tcp 127.0.0.1:${down.health!.port}: ECONNREFUSED`);
      const up = await health(stream, "HEALTHY", (e) => e.health!.state === HEALTHY);
      assert.equal(up.health!.message, `tcp 127.0.0.1:${up.health!.port}: connected`);
      assert.equal(up.health!.restarts, 0);
    });
  });

  it("runs a command check in the work directory with the replica's PORT, after the initial delay", async () => {
    await withAgent(fleet.url, async () => {
      const { stream } = await fleet.accept();
      const started = Date.now();
      assignService(stream, "cmd", ["sh", "-c", 'sleep 0.6; touch "ready-$PORT"; exec sleep 30'], {
        assignPort: true,
        healthCheck: {
          check: { case: "command", value: { argv: ["sh", "-c", 'test -e "ready-$PORT"'] } },
          interval: durationFromMs(100),
          unhealthyThreshold: 1,
          healthyThreshold: 2,
          initialDelay: durationFromMs(300),
        },
      });
      const down = await health(stream, "UNHEALTHY", (e) => e.health!.state === UNHEALTHY);
      assert.ok(Date.now() - started >= 300, "no check before the initial delay");
      assert.equal(down.health!.message, "check command sh exited with code 1");
      const up = await health(stream, "HEALTHY", (e) => e.health!.state === HEALTHY);
      assert.equal(up.health!.message, "check command sh exited with code 0");
    });
  });

  it("counts a replica against DROVER_MAX_SERVICES, not DROVER_MAX_ATTEMPTS: with both at 1 and a replica running, it bids for a batch job and declines another replica", async () => {
    await withAgent(fleet.url, async () => {
      const { stream } = await fleet.accept();
      assignService(stream, "svc-limit", ["sleep", "30"], {});
      await eventually("the replica running", () => stream.all("jobEvent").find((e) => e.attemptId === "svc-limit" && e.state === AttemptState.RUNNING));
      stream.send({ message: { case: "offer", value: { offerId: "batch-1", jobId: "job-batch", driver: "process" } } });
      assert.equal((await stream.next("bid")).offerId, "batch-1");
      stream.send({ message: { case: "offer", value: { offerId: "svc-2", jobId: "job-svc-2", driver: "process", service: true } } });
      const declined = await stream.next("decline");
      assert.equal(declined.offerId, "svc-2");
      assert.equal(declined.reason, "running 1 service replica, the most this agent takes (DROVER_MAX_SERVICES)");
      cancel(stream, "svc-limit");
      await eventually("the replica cancelled", () => finalEvents(stream).find((e) => e.attemptId === "svc-limit"));
    }, { maxAttempts: 1, maxServices: 1 });
  });

  it("on Cancel stops the service with SIGTERM and ends CANCELLED, without a restart", async () => {
    await withAgent(fleet.url, async ({ stateDir, work }) => {
      const { stream } = await fleet.accept();
      assignService(stream, "stop", ["sleep", "30"], { healthCheck: { interval: durationFromMs(100) }, restart: { initialDelay: durationFromMs(50) } });
      await health(stream, "HEALTHY", (e) => e.health!.state === HEALTHY);
      cancel(stream, "stop");
      const end = await eventually("the final event", () => finalEvents(stream)[0]);
      assert.deepEqual([AttemptState[end.state], end.signal, end.message, end.command?.index], ["CANCELLED", "SIGTERM", "cancelled: scaled down", 0]);
      await sleep(300);
      const m = await manifestOf(stateDir, "stop");
      assert.equal(m.commands.length, 1, "no restart");
      assert.equal(existsSync(join(bundleDir(stateDir, { attemptId: "stop", jobId: "job-stop" }), "cmd-001.stdout.log")), false);
      assert.equal(stream.all("jobEvent").at(-1), end, "nothing after the final event");
      assert.deepEqual(work.running(), []);
    });
  });

  it("on Cancel during a restart delay ends CANCELLED at once, and the service is never started again", async () => {
    await withAgent(fleet.url, async ({ stateDir }) => {
      const { stream } = await fleet.accept();
      assignService(stream, "pause", ["sh", "-c", "exit 3"], { restart: { initialDelay: durationFromMs(3_000) } });
      await eventually("the first run's end", () => stream.all("jobEvent").find((e) => e.command?.index === 0));
      const asked = Date.now();
      cancel(stream, "pause");
      const end = await eventually("the final event", () => finalEvents(stream)[0]);
      assert.ok(Date.now() - asked < 1_000, "it did not wait out the delay");
      assert.deepEqual([AttemptState[end.state], end.exitCode, end.command?.index], ["CANCELLED", 3, 0]);
      const m = await waitUntil(async () => {
        const x = await manifestOf(stateDir, "pause");
        return x.closed ? x : undefined;
      });
      assert.deepEqual(m.commands.map((c) => c.index), [0]);
      assert.equal(m.state, "CANCELLED");
    });
  });

  it("fails the attempt when a setup command fails, without starting the service", async () => {
    await withAgent(fleet.url, async ({ stateDir }) => {
      const { stream } = await fleet.accept();
      stream.send({
        messageId: "assign:setup",
        message: { case: "assignment", value: { attemptId: "setup", jobId: "job-setup", exec: { continueOnFailure: true, commands: [{ argv: ["false"] }, { argv: ["sleep", "30"] }] }, service: { deployment: "web" } } },
      });
      const end = await eventually("the final event", () => finalEvents(stream)[0]);
      assert.deepEqual([AttemptState[end.state], end.message], ["FAILED", "command 1 (false) exited with code 1"]);
      assert.equal(existsSync(join(bundleDir(stateDir, { attemptId: "setup", jobId: "job-setup" }), "cmd-001.stdout.log")), false);
    });
  });

  it("fails the attempt when the service command cannot be started at all", async () => {
    await withAgent(fleet.url, async () => {
      const { stream } = await fleet.accept();
      assignService(stream, "missing", ["no-such-program-drover"], { restart: { initialDelay: durationFromMs(50) } });
      const end = await eventually("the final event", () => finalEvents(stream)[0]);
      assert.equal(AttemptState[end.state], "FAILED");
      assert.match(end.message, /^command 1 \(no-such-program-drover\) could not start: no-such-program-drover was not found on PATH/);
      assert.deepEqual(healthEvents(stream), [], "it never ran, so it was never checked");
    });
  });

  it("keeps restarting and checking while Fleet is unreachable, and delivers the health events after reconnect", async () => {
    const link = await TcpLink.open(Number(new URL(fleet.url).port));
    try {
      await withAgent(link.url, async ({ stateDir }) => {
        const { stream } = await fleet.accept();
        assignService(stream, "offline", ["sh", "-c", "sleep 0.1; exit 2"], { restart: { initialDelay: durationFromMs(100), maxDelay: durationFromMs(100) } });
        await health(stream, "the first restart", (e) => e.health!.restarts === 1);
        stream.eventAck(stream.all("jobEvent").map((e) => e.eventId));
        const seenBefore = Math.max(...healthEvents(stream).map((e) => e.health!.restarts));

        link.down();
        const cutAt = Date.now();
        // Restarts go on with nobody to tell.
        const during = await waitUntil(async () => {
          const m = await manifestOf(stateDir, "offline");
          return m.commands.length >= seenBefore + 4 ? m : undefined;
        });
        const startedWhileDown = during.commands.filter((c) => c.startTime && Date.parse(c.startTime) > cutAt).length;
        assert.ok(startedWhileDown >= 3, `${startedWhileDown} runs started while Fleet was unreachable`);
        await link.up();

        const second = (await fleet.accept()).stream;
        const delivered = await eventually("health events from the outage", () => {
          const later = healthEvents(second).filter((e) => e.health!.restarts > seenBefore + 2);
          return later.length > 0 ? later : undefined;
        });
        assert.equal(delivered[0]!.health!.state, UNHEALTHY);
        const all = [...healthEvents(stream), ...healthEvents(second)];
        const numbers = [...new Set(all.map((e) => Number(e.eventId.split("health-")[1])))].sort((a, b) => a - b);
        assert.deepEqual(numbers, numbers.map((_, i) => i + 1), "no health event was lost on the way");
        assert.deepEqual(finalEvents(second), []);
      });
    } finally {
      link.down();
    }
  });
});

// The tests run side by side, each with a FakeFleet of its own: most of a
// test is waiting for agent processes to start.
describe("service replicas across an agent restart (drover-agent killed with SIGKILL)", { concurrency: true }, () => {
  const fleets: FakeFleet[] = [];
  let root: string;
  const agents: AgentProcess[] = [];
  const stateDirs: string[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "drover-service-recovery-"));
  });
  after(async () => {
    for (const a of agents) a.child.kill("SIGKILL");
    // Whatever runs in the bundles goes too.
    for (const dir of stateDirs) {
      const m = await readManifest(bundleDir(dir, { attemptId: "svc", jobId: "job-svc" }));
      for (const c of m?.commands ?? []) if (c.handle) killGroup(Number(c.handle.id), "SIGKILL");
    }
    await Promise.all(fleets.map((f) => f.close()));
    await rm(root, { recursive: true, force: true });
  });

  /** A FakeFleet of the test's own. */
  async function newFleet(): Promise<FakeFleet> {
    const fleet = await FakeFleet.start();
    fleets.push(fleet);
    return fleet;
  }

  /** A fresh agent welcomed by a fresh FakeFleet, with a service whose stdout says its PORT, HEALTHY. */
  async function agentWithService(name: string): Promise<{ fleet: FakeFleet; stateDir: string; agent: AgentProcess; stream: FakeStream; port: number; shim: number }> {
    const stateDir = join(root, name);
    stateDirs.push(stateDir);
    const fleet = await newFleet();
    const agent = startAgent(["--server", fleet.url, "--token", "X", "--state-dir", stateDir]);
    agents.push(agent);
    const stream = await fleet.nextStream(15_000);
    await stream.next("hello");
    stream.welcome({ agentId: `agent-${name}`, agentCredential: `credential-${name}`, heartbeatIntervalMs: 200 });
    assignService(stream, "svc", ["sh", "-c", 'echo "$PORT"; exec sleep 30'], {
      assignPort: true,
      healthCheck: { interval: durationFromMs(100) },
      restart: { initialDelay: durationFromMs(100) },
    });
    const healthy = await health(stream, "HEALTHY", (e) => e.health!.state === HEALTHY, 15_000);
    const m = await readManifest(bundleDir(stateDir, { attemptId: "svc", jobId: "job-svc" }));
    return { fleet, stateDir, agent, stream, port: healthy.health!.port, shim: Number(m!.commands[0]!.handle!.id) };
  }

  async function restartAgent(fleet: FakeFleet, stateDir: string, agent: AgentProcess, whileDown?: () => Promise<void>): Promise<{ stream: FakeStream; agent: AgentProcess; running: string[] }> {
    agent.child.kill("SIGKILL");
    await within(agent.exited, 5_000);
    await whileDown?.();
    const again = startAgent(["--server", fleet.url, "--state-dir", stateDir]);
    agents.push(again);
    const stream = await fleet.nextStream(15_000);
    const hello = await stream.next("hello", 15_000);
    stream.welcome({ heartbeatIntervalMs: 200 });
    return { stream, agent: again, running: hello.running.map((r) => `${r.attemptId}:${AttemptState[r.state]}`) };
  }

  /** What run index of the service printed (its PORT), once it has. */
  const outputOf = (stateDir: string, index: number) =>
    waitUntil(async () => (await readFile(join(bundleDir(stateDir, { attemptId: "svc", jobId: "job-svc" }), `cmd-00${index}.stdout.log`), "utf8").catch(() => "")) || undefined);

  it("re-attaches to a service still running and keeps supervising it: killed later, it is restarted on the same port", async () => {
    const { fleet, stateDir, agent, stream, port, shim } = await agentWithService("live");
    const lastBefore = healthEvents(stream).at(-1)!;
    const { stream: second, agent: again, running } = await restartAgent(fleet, stateDir, agent);
    assert.deepEqual(running, ["svc:RUNNING"], "Hello lists the replica");
    const resent = await health(second, "the last health event again", () => true);
    assert.deepEqual([resent.eventId, resent.sequence, resent.health!.state], [lastBefore.eventId, lastBefore.sequence, HEALTHY], "the same event, so Fleet applies it once");
    assert.ok(alive(shim), "the service was not restarted");

    // The service itself, not its shim: the shim records how it ended, as it does while no agent watches.
    const service = Number(readFileSync(`/proc/${shim}/task/${shim}/children`, "utf8").trim().split(" ")[0]);
    process.kill(service, "SIGKILL");
    // Three failed process checks may say so before the poll of a re-attached process sees it end.
    const down = await health(second, "UNHEALTHY", (e) => e.health!.state === UNHEALTHY, 10_000);
    assert.match(down.health!.message, /^(killed by SIGKILL|the process is not running)$/);
    assert.notEqual(down.eventId, lastBefore.eventId);
    const restarted = await health(second, "the restart", (e) => e.health!.restarts === 1, 10_000);
    assert.deepEqual([HealthState[restarted.health!.state], restarted.health!.message], ["UNHEALTHY", "killed by SIGKILL"], "the restart says how it ended");
    const back = await health(second, "HEALTHY after the restart", (e) => e.health!.restarts === 1 && e.health!.state === HEALTHY, 10_000);
    assert.equal(back.health!.port, port);
    assert.equal(await outputOf(stateDir, 1), `${port}\n`, "the restarted service got the same PORT");
    const numbers = [...healthEvents(stream), ...healthEvents(second)].map((e) => Number(e.eventId.split("health-")[1]));
    assert.deepEqual([...new Set(numbers)], [...new Set(numbers)].sort((a, b) => a - b), "health event numbers go on after the restart");
    again.child.kill("SIGTERM");
    const end = await eventually("CANCELLED on the agent's stop", () => finalEvents(second)[0], 10_000);
    assert.equal(end.state, AttemptState.CANCELLED);
  });

  it("restarts a service that exited while the agent was down, reporting how its shim saw it end, on the same port", async () => {
    const { fleet, stateDir, agent, port, shim } = await agentWithService("exited");
    assert.equal(await outputOf(stateDir, 0), `${port}\n`);
    const { stream: second, agent: again, running } = await restartAgent(fleet, stateDir, agent, async () => {
      const service = Number(readFileSync(`/proc/${shim}/task/${shim}/children`, "utf8").trim().split(" ")[0]);
      process.kill(service, "SIGKILL");
      await waitUntil(async () => (existsSync(`/proc/${shim}`) ? undefined : true));
    });
    assert.deepEqual(running, ["svc:RUNNING"], "the attempt did not end");
    const back = await health(second, "HEALTHY after the restart", (e) => e.health!.restarts === 1 && e.health!.state === HEALTHY, 10_000);
    assert.equal(back.health!.port, port);
    const ended = second.all("jobEvent").find((e) => e.command?.index === 0);
    assert.deepEqual([ended?.eventId, ended?.command?.signal], ["svc:cmd-000", "SIGKILL"]);
    const restarted = healthEvents(second).find((e) => e.health!.restarts === 1)!;
    assert.equal(restarted.health!.message, "killed by SIGKILL");
    assert.equal(await outputOf(stateDir, 1), `${port}\n`);
    assert.deepEqual(finalEvents(second), []);
    again.child.kill("SIGTERM");
    await eventually("CANCELLED on the agent's stop", () => finalEvents(second)[0], 10_000);
  });

  it("restarts a service whose whole process group died with the agent, though it left no exit status", async () => {
    const { fleet, stateDir, agent, port, shim } = await agentWithService("gone");
    const { stream: second, agent: again } = await restartAgent(fleet, stateDir, agent, async () => {
      killGroup(shim, "SIGKILL");
      await waitUntil(async () => (existsSync(`/proc/${shim}`) ? undefined : true));
    });
    const back = await health(second, "HEALTHY after the restart", (e) => e.health!.restarts === 1 && e.health!.state === HEALTHY, 10_000);
    assert.equal(back.health!.port, port);
    const ended = second.all("jobEvent").find((e) => e.command?.index === 0);
    assert.equal(ended?.command?.message, "command 1 (sh) ended while the agent was down and left no exit status");
    assert.deepEqual(finalEvents(second), [], "not lost: a service is started again");
    again.child.kill("SIGTERM");
    await eventually("CANCELLED on the agent's stop", () => finalEvents(second)[0], 10_000);
  });
  it("restarts a service the agent was waiting to restart when it died, after the same delay, not a doubled one", async () => {
    const stateDir = join(root, "delay");
    stateDirs.push(stateDir);
    const fleet = await newFleet();
    const agent = startAgent(["--server", fleet.url, "--token", "X", "--state-dir", stateDir]);
    agents.push(agent);
    const stream = await fleet.nextStream(15_000);
    await stream.next("hello");
    stream.welcome({ agentId: "agent-delay", agentCredential: "credential-delay", heartbeatIntervalMs: 200 });
    // Exits 4 the first time, then runs.
    assignService(stream, "svc", ["sh", "-c", "if [ -e ran ]; then exec sleep 30; fi; touch ran; exit 4"], { restart: { initialDelay: durationFromMs(1_000), maxDelay: durationFromMs(10_000) } });
    await eventually("the first run's end", () => stream.all("jobEvent").find((e) => e.command?.index === 0), 15_000);
    const killedAt = Date.now();
    const { stream: second, agent: again, running } = await restartAgent(fleet, stateDir, agent);
    assert.deepEqual(running, ["svc:RUNNING"]);
    await health(second, "the restart", (e) => e.health!.restarts === 1, 10_000);
    const m = await readManifest(bundleDir(stateDir, { attemptId: "svc", jobId: "job-svc" }));
    const waited = Date.parse(m!.commands[1]!.startTime!) - killedAt;
    assert.ok(waited >= 1_000, `the delay is waited again by the new agent process (run 1 started ${waited} ms after the kill)`);
    assert.deepEqual([m?.service?.delayMs, m?.service?.delayFor, m?.commands.length], [1_000, 0, 2]);
    assert.equal(second.all("jobEvent").find((e) => e.command?.index === 0)?.eventId, "svc:cmd-000", "the run's end is sent again under its id");
    again.child.kill("SIGTERM");
    await eventually("CANCELLED on the agent's stop", () => finalEvents(second)[0], 10_000);
  });
});

/** A TCP relay in front of FakeFleet: down() refuses and cuts every connection until up(), as a network outage does. */
class TcpLink {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private port = 0;

  private constructor(private readonly target: number) {}

  static async open(target: number): Promise<TcpLink> {
    const link = new TcpLink(target);
    await link.up();
    return link;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, "127.0.0.1", resolve));
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  down(): void {
    this.server?.close();
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function waitUntil<T>(check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(20);
  }
}
