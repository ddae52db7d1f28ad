// The real drover-agent against Fleet in dev mode, as a user would run them:
// an operator mints a registration token, the agent registers and keeps its
// credential (mode 0600), shows up online with its labels, drivers,
// resources and metrics, hears a drain, comes back as the same agent after a
// restart and after Fleet itself is killed and restarted, goes offline when
// stopped, and is refused (with no new agent appearing) once its credential
// is revoked or the agent is deleted.
//
// Thresholds are short (200 ms heartbeats, stale after 600 ms, offline after
// 1.5 s) so the whole story takes seconds.

import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService, Schedulability } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { freePort, removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

const HEARTBEAT_MS = 200;
const OFFLINE_AFTER_MS = 1500;
const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
  DROVER_STALE_AFTER_MS: "600",
  DROVER_OFFLINE_AFTER_MS: String(OFFLINE_AFTER_MS),
  DROVER_MONITOR_INTERVAL_MS: "50",
  DROVER_SWEEP_INTERVAL_MS: "100",
  DROVER_PRESENCE_REFRESH_MS: "200",
  DROVER_SNAPSHOT_INTERVAL_MS: "200",
};

/** Log lines of the agent, by message. */
const REGISTERED = "registered; stored the agent's credential";
const CONNECTED = "connected to Fleet";
const DRAINING = "draining: declining new work";

describe("drover-agent against Fleet in dev mode", () => {
  let dev: DevProcess;
  let port: number;
  let admin: Client<typeof FleetService>;
  let registration: string;
  let stateDir: string;
  let agentId: string;
  const agents: AgentProcess[] = [];
  const dirs: string[] = [];

  /** Starts dev mode on the same data directory and port every time, so the agent can find it again. */
  async function startFleet(dataDir?: string): Promise<DevProcess> {
    const started = await startDev({ dataDir, prepared: true, env: { ...FAST, DROVER_GRPC_PORT: String(port) } });
    admin = createClient(FleetService, createGrpcTransport({ baseUrl: started.grpcUrl, interceptors: [bearer(started.adminToken)] }));
    return started;
  }

  /** Runs drover-agent with its state in dir; the token only when given. */
  function agent(dir: string, token?: string): AgentProcess {
    const args = ["--server", dev.grpcUrl, "--state-dir", dir, "--labels", "zone=a"];
    if (token !== undefined) args.push("--token", token);
    const started = startAgent(args, { env: { DROVER_RECONNECT_MAX_MS: String(HEARTBEAT_MS) } });
    agents.push(started);
    return started;
  }

  async function status(id: string): Promise<AgentStatus | undefined> {
    return (await admin.getAgent({ id })).agent?.status;
  }

  before(async () => {
    port = await freePort();
    dev = await startFleet();
    dirs.push(dev.dataDir);
    ({ secret: registration } = await admin.createAgentToken({ name: "rack-1", labels: { rack: "r1" } }));
    stateDir = tempDir("drover-agent-");
    dirs.push(stateDir);
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop("SIGKILL")));
    await dev?.stop("SIGKILL");
    dirs.forEach(removeDir);
  });

  it("registers with the token, keeps its credential in a 0600 file, and is listed online with what it reported", async () => {
    const first = agent(stateDir, registration);
    const registered = await first.waitForLog((l) => l.msg === REGISTERED, 20_000);
    agentId = String(registered.agentId);
    assert.ok(agentId);

    const file = join(stateDir, "credential.json");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(JSON.parse(readFileSync(file, "utf8")).agentId, agentId);

    // Metrics come with heartbeats and reach the listing with the next snapshot.
    const listed = await eventually(
      async () => {
        const { agents: all } = await admin.listAgents({ status: AgentStatus.ONLINE });
        const a = all.find((x) => x.id === agentId);
        return a?.metrics && a.metrics.memoryTotalBytes > 0n && a.lastHeartbeatTime ? a : undefined;
      },
      5000,
      "the agent listed online with metrics",
    );
    assert.equal(listed.hostname, os.hostname());
    assert.deepEqual(listed.labels, { zone: "a", rack: "r1" });
    assert.deepEqual(listed.drivers, ["process"]);
    assert.equal(listed.schedulability, Schedulability.ELIGIBLE);
    assert.ok(listed.total!.cpuMillis >= 1000, `cpu ${listed.total!.cpuMillis}`);
    assert.ok(listed.total!.memoryBytes > 0n && listed.total!.diskBytes > 0n);
    assert.ok(listed.free!.memoryBytes > 0n && listed.free!.memoryBytes <= listed.total!.memoryBytes);
    const m = listed.metrics!;
    assert.ok(m.memoryUsedBytes > 0n && m.memoryUsedBytes <= m.memoryTotalBytes);
    assert.ok(m.diskTotalBytes > 0n && m.diskUsedBytes > 0n);
    assert.ok(m.uptimeSeconds > 0n);
    assert.ok(m.agentRssBytes > 10_000_000n, `agent RSS ${m.agentRssBytes}`);
    assert.ok(m.load1 >= 0 && m.cpuPercent >= 0 && m.cpuPercent <= 100);
  });

  it("hears DrainAgent: the agent logs that it drains, and GetAgent says DRAINING", async () => {
    const running = agents.at(-1)!;
    const { agent: drained } = await admin.drainAgent({ id: agentId, reason: "kernel upgrade" });
    assert.equal(drained?.schedulability, Schedulability.DRAINING);
    const line = await running.waitForLog((l) => l.msg === DRAINING);
    assert.equal(line.reason, "kernel upgrade");
    assert.equal(line.agentId, agentId);
    assert.equal((await admin.getAgent({ id: agentId })).agent?.schedulability, Schedulability.DRAINING);
  });

  it("exits 0 on SIGTERM and, restarted without a token, reconnects with its stored credential as the same agent", async () => {
    const stopped = await agents.at(-1)!.stop("SIGTERM");
    assert.equal(stopped.code, 0, `exit code; stderr:\n${agents.at(-1)!.stderr()}`);

    const again = agent(stateDir);
    const connected = await again.waitForLog((l) => l.msg === CONNECTED, 20_000);
    assert.equal(connected.agentId, agentId);
    assert.ok(!again.logs.some((l) => l.msg === REGISTERED), "it did not register again");
    await eventually(async () => ((await status(agentId)) === AgentStatus.ONLINE ? true : undefined));
    const { agents: all } = await admin.listAgents({});
    assert.deepEqual(
      all.map((a) => a.id),
      [agentId],
    );
  });

  it("reconnects by itself within about a heartbeat interval when Fleet is killed and restarted on the same data and port", async (t) => {
    const running = agents.at(-1)!;
    const before = running.logs.length;
    const killed = await dev.stop("SIGKILL");
    assert.equal(killed.signal, "SIGKILL");
    // The agent notices at once (the kernel resets its connection) and keeps dialling.
    await running.waitForLog((l) => l.msg === "stream to Fleet ended; reconnecting" || l.msg === "stream to Fleet failed; reconnecting", 5000, before);

    dev = await startFleet(dev.dataDir);
    const back = Date.now();
    await eventually(
      async () => {
        const { agent: a } = await admin.getAgent({ id: agentId });
        // Online on a stream opened after the restart, not the row left by the killed process.
        return a?.status === AgentStatus.ONLINE && a.connectTime && Number(a.connectTime.seconds) * 1000 >= back - 1000 ? a : undefined;
      },
      5000,
      "the agent online again",
    );
    const ms = Date.now() - back;
    // Its reconnect backoff is capped at one interval, so a dial lands within
    // ~200 ms of the restart, plus the dial itself and this poll.
    t.diagnostic(`online ${ms} ms after Fleet was back`);
    assert.ok(ms < 1500, `online ${ms} ms after Fleet was back`);
    const connected = await running.waitForLog((l) => l.msg === CONNECTED, 1000, before);
    assert.equal(connected.agentId, agentId);
    assert.equal(running.child.exitCode, null, "the agent kept running");
  });

  it("goes offline after the threshold once the agent is stopped", async (t) => {
    const stopped = await agents.at(-1)!.stop("SIGTERM");
    assert.equal(stopped.code, 0);
    const since = Date.now();
    const offline = await eventually(
      async () => {
        const { agent: a } = await admin.getAgent({ id: agentId });
        return a?.status === AgentStatus.OFFLINE ? a : undefined;
      },
      OFFLINE_AFTER_MS + 3000,
      "the agent offline",
    );
    const ms = Date.now() - since;
    t.diagnostic(`offline ${ms} ms after the agent stopped`);
    assert.ok(ms >= OFFLINE_AFTER_MS - HEARTBEAT_MS - 100, `offline after ${ms} ms, not before the threshold`);
    assert.deepEqual(
      offline.history.slice(0, 2).map((h) => [AgentStatus[h.from], AgentStatus[h.to]]),
      [
        ["STALE", "OFFLINE"],
        ["ONLINE", "STALE"],
      ],
    );
  });

  it("refuses a deleted agent that comes back with its credential, with UNAUTHENTICATED and no new agent", async () => {
    await admin.deleteAgent({ id: agentId });
    const again = agent(stateDir);
    const refused = await again.waitForLog((l) => l.code === "Unauthenticated", 20_000);
    assert.equal(refused.level, 50, "logged as an error");
    assert.equal(refused.agentId, agentId);
    // Still dialling (with backoff), never registering anew.
    await again.waitForLog((l) => l.code === "Unauthenticated", 5000, again.logs.indexOf(refused) + 1);
    assert.ok(!again.logs.some((l) => l.msg === CONNECTED || l.msg === REGISTERED));
    assert.deepEqual((await admin.listAgents({})).agents, []);
    assert.equal((await again.stop("SIGTERM")).code, 0);
  });

  it("refuses an agent whose credential is revoked: its live stream ends with UNAUTHENTICATED and no new agent appears", async () => {
    const dir = tempDir("drover-agent-");
    dirs.push(dir);
    const second = agent(dir, registration);
    const id = String((await second.waitForLog((l) => l.msg === REGISTERED, 20_000)).agentId);
    await eventually(async () => ((await status(id)) === AgentStatus.ONLINE ? true : undefined));

    const { tokens } = await admin.listApiTokens({ pageSize: 1000 });
    const credential = tokens.find((t) => t.name.startsWith(`agent ${id}`) && !t.revokeTime);
    assert.ok(credential, "the agent's credential is listed");
    const before = second.logs.length;
    await admin.revokeApiToken({ id: credential.id });
    const refused = await second.waitForLog((l) => l.code === "Unauthenticated", 2000, before);
    assert.equal(refused.agentId, id);
    // The next dials with the revoked credential are refused too.
    await second.waitForLog((l) => l.code === "Unauthenticated" && l.welcomed === false, 5000, before);
    assert.ok(!second.logs.slice(before).some((l) => l.msg === CONNECTED || l.msg === REGISTERED));
    assert.deepEqual(
      (await admin.listAgents({})).agents.map((a) => a.id),
      [id],
    );
  });

  it("refuses a wrong registration token with UNAUTHENTICATED and creates no agent", async () => {
    const dir = tempDir("drover-agent-");
    dirs.push(dir);
    const stranger = agent(dir, "not-a-registration-token-at-all");
    const refused = await stranger.waitForLog((l) => l.code === "Unauthenticated", 20_000);
    assert.match(String(refused.msg), /refused the registration token/);
    assert.equal(statSync(dir).isDirectory(), true);
    assert.throws(() => statSync(join(dir, "credential.json")), /ENOENT/);
    assert.equal((await admin.listAgents({})).agents.length, 1);
  });
});
