// The real drover-agent in its own network namespace, joined to the host by
// a veth pair, talking to Fleet (dev mode) on the host side of the link. The
// link is cut: Fleet marks the agent stale, then offline. The link comes
// back: the agent reconnects by itself and is online again, as the same
// agent, with nobody doing anything. Twice: a short cut, where Fleet's end of
// the stream reaches the agent once the link is back, and a long one, where
// the agent has to find out by itself (its HTTP/2 PING goes unanswered, up to
// 25 s: the longest part of this file).
//
//   host: Fleet on the host end of the veth ══ netns (integration/netns.ts): the agent
//
// Needs root and `ip` (iproute2). Without them it is skipped locally and
// fails in CI (CI=true), like the tests that need PostgreSQL and Redis.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AgentStatus, FleetService, type Agent } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";
import { ip, Netns, requireNetnsInCi } from "./netns.ts";

const STALE_AFTER_MS = 600;
const OFFLINE_AFTER_MS = 1500;
/** The agent's PING interval and timeout: a dead link is noticed within twice this. */
const PING_MS = 1000;
/** The agent's deadline from dialling to Welcome, which also bounds a dial stuck in SYN retries. */
const WELCOME_TIMEOUT_MS = 2000;
/** The agent's longest wait between dials (DROVER_RECONNECT_MAX_MS). */
const RECONNECT_MAX_MS = 500;
const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "200",
  DROVER_STALE_AFTER_MS: String(STALE_AFTER_MS),
  DROVER_OFFLINE_AFTER_MS: String(OFFLINE_AFTER_MS),
  DROVER_MONITOR_INTERVAL_MS: "50",
  DROVER_SWEEP_INTERVAL_MS: "100",
  DROVER_PRESENCE_REFRESH_MS: "200",
  DROVER_SNAPSHOT_INTERVAL_MS: "200",
  // Fleet PINGs each connection after a second of silence and drops it if
  // the PING is not answered within another.
  DROVER_KEEPALIVE_MS: "1000",
};

const REGISTERED = "registered; stored the agent's credential";
const CONNECTED = "connected to Fleet";

const net = new Netns("it");
const unavailable = requireNetnsInCi("the network-namespace test");

describe("drover-agent in its own network namespace", { skip: unavailable ?? false }, () => {
  let dev: DevProcess | undefined;
  let agent: AgentProcess | undefined;
  let admin: Client<typeof FleetService>;
  let stateDir: string | undefined;
  let agentId: string;

  before(async () => {
    net.create();
    dev = await startDev({ prepared: true, env: { ...FAST, DROVER_HOST: net.hostAddress } });
    assert.match(dev.grpcUrl, new RegExp(`^http://${net.hostAddress.replaceAll(".", "\\.")}:\\d+`));
    admin = createClient(FleetService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
  });

  after(async () => {
    try {
      await agent?.stop("SIGKILL");
      await dev?.stop("SIGKILL");
    } finally {
      net.teardown();
      if (dev) removeDir(dev.dataDir);
      if (stateDir) removeDir(stateDir);
    }
  });

  /** The agent's status as Fleet reports it. */
  async function status(): Promise<Agent> {
    return (await admin.getAgent({ id: agentId })).agent!;
  }

  /** Polls GetAgent (from the host) until the agent has status `want`. */
  async function reaches(want: AgentStatus, timeoutMs: number): Promise<void> {
    await eventually(async () => ((await status()).status === want ? true : undefined), timeoutMs, `the agent ${AgentStatus[want]}`);
  }

  /** The transitions Fleet recorded last, newest first. */
  async function lastTransitions(n: number): Promise<string[][]> {
    return (await status()).history.slice(0, n).map((h) => [AgentStatus[h.from], AgentStatus[h.to]]);
  }

  /** Cuts the link on the agent's side: nothing it sends leaves the namespace, nothing reaches it. */
  const cutLink = () => net.cut();
  const restoreLink = () => net.restore();

  it("registers from inside the namespace and is online", async () => {
    const { secret } = await admin.createAgentToken({ name: "netns" });
    stateDir = tempDir("drover-agent-netns-");
    agent = startAgent(["--server", dev!.grpcUrl, "--token", secret, "--state-dir", stateDir, "--labels", "zone=a"], {
      prefix: net.prefix,
      env: {
        DROVER_RECONNECT_MAX_MS: String(RECONNECT_MAX_MS),
        DROVER_PING_INTERVAL_MS: String(PING_MS),
        DROVER_PING_TIMEOUT_MS: String(PING_MS),
        DROVER_WELCOME_TIMEOUT_MS: String(WELCOME_TIMEOUT_MS),
      },
    });
    agentId = String((await agent.waitForLog((l) => l.msg === REGISTERED, 20_000)).agentId);
    assert.equal(ip("netns", "identify", String(agent.child.pid)).trim(), net.name, "the agent runs in the namespace");
    await reaches(AgentStatus.ONLINE, 5000);
  });

  it("goes stale then offline when the link is cut, and is online again soon after it returns", async (t) => {
    const cut = Date.now();
    cutLink();
    await reaches(AgentStatus.STALE, 3000);
    const staleMs = Date.now() - cut;
    await reaches(AgentStatus.OFFLINE, 5000);
    const offlineMs = Date.now() - cut;
    t.diagnostic(`stale ${staleMs} ms and offline ${offlineMs} ms after the cut`);
    // Both are counted from the last heartbeat Fleet got, which left before
    // the cut — one interval (200 ms) before it on a quiet machine, more when
    // the agent's timers run late on a busy one: measure from it.
    const last = (await status()).lastHeartbeatTime;
    assert.ok(last, "Fleet recorded a last heartbeat");
    const lastMs = Number(timestampMs(last));
    assert.ok(lastMs <= cut + 100, `the last heartbeat arrived ${lastMs - cut} ms after the cut`);
    assert.ok(cut + staleMs - lastMs >= STALE_AFTER_MS - 100, `stale ${cut + staleMs - lastMs} ms after the last heartbeat`);
    assert.ok(cut + offlineMs - lastMs >= OFFLINE_AFTER_MS - 100, `offline ${cut + offlineMs - lastMs} ms after the last heartbeat`);

    // Fleet ended the stream when it judged the agent offline; that end (or,
    // once Fleet's keepalive has dropped the connection, a reset) reaches the
    // agent when the link returns, and it dials again. Nobody touches either.
    const from = agent!.logs.length;
    const restored = Date.now();
    restoreLink();
    await reaches(AgentStatus.ONLINE, 5000);
    const onlineMs = Date.now() - restored;
    t.diagnostic(`online ${onlineMs} ms after the link came back`);
    assert.ok(onlineMs < 3000, `online ${onlineMs} ms after the link came back`);

    assert.equal((await agent!.waitForLog((l) => l.msg === CONNECTED, 1000, from)).agentId, agentId, "the same agent");
    assert.deepEqual(await lastTransitions(3), [
      ["OFFLINE", "ONLINE"],
      ["STALE", "OFFLINE"],
      ["ONLINE", "STALE"],
    ]);
  });

  it("notices a long outage by itself (its HTTP/2 PING goes unanswered), and is online within its backoff cap once the link returns", async (t) => {
    const from = agent!.logs.length;
    const cut = Date.now();
    cutLink();
    await reaches(AgentStatus.OFFLINE, 5000);
    // The agent PINGs Fleet PING_MS after the last answer and gives it PING_MS,
    // so it drops the dead connection and starts dialling, which fails (or
    // times out) while its link is down.
    const noticed = await agent!.waitForLog((l) => typeof l.msg === "string" && /reconnecting$/.test(l.msg), 10_000, from);
    const noticedMs = Number(noticed.time) - cut;
    t.diagnostic(`the agent noticed ${noticedMs} ms after the cut: ${noticed.code}: ${noticed.error}`);
    assert.ok(noticedMs <= 3 * PING_MS + 1000, `noticed ${noticedMs} ms after the cut`);
    assert.equal(agent!.logs.slice(from).some((l) => l.msg === CONNECTED), false, "not reconnected while the link is down");

    const restored = Date.now();
    restoreLink();
    await reaches(AgentStatus.ONLINE, 5000);
    const onlineMs = Date.now() - restored;
    t.diagnostic(`online ${onlineMs} ms after the link came back`);
    // A fresh dial: at most the backoff cap, the dial, Hello and this poll.
    // A dial may be stuck in SYN retries when the link returns: the Welcome
    // deadline ends it, then the next dial (after at most the cap) succeeds.
    assert.ok(onlineMs < WELCOME_TIMEOUT_MS + RECONNECT_MAX_MS + 1500, `online ${onlineMs} ms after the link came back`);

    assert.equal((await agent!.waitForLog((l) => l.msg === CONNECTED, 1000, from)).agentId, agentId, "the same agent");
    assert.equal(agent!.child.exitCode, null, "the agent kept running");
    assert.deepEqual(
      (await admin.listAgents({})).agents.map((a) => a.id),
      [agentId],
      "no other agent appeared",
    );
    assert.deepEqual(await lastTransitions(3), [
      ["OFFLINE", "ONLINE"],
      ["STALE", "OFFLINE"],
      ["ONLINE", "STALE"],
    ]);
  });
});
