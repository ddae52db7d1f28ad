// drover-agent as a real child process against a FakeFleet.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { AttemptState } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { CREDENTIAL_FILE } from "./credentials.ts";
import { AGENT_BIN, AGENT_MAIN, REPO, startAgent, within } from "./testing/agent_process.ts";
import { FakeDocker } from "./testing/fake_docker.ts";
import { eventually, FakeFleet } from "./testing/fake_fleet.ts";

describe("drover-agent (agent/main.ts)", () => {
  let fleet: FakeFleet;
  let stateDir: string;
  before(async () => {
    fleet = await FakeFleet.start();
    stateDir = await mkdtemp(join(tmpdir(), "drover-agent-main-"));
  });
  after(async () => {
    await fleet.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  it("registers with its token, and exits 0 within two seconds of SIGTERM", async () => {
    const agent = startAgent(["--server", fleet.url, "--token", "X", "--state-dir", stateDir, "--labels", "zone=a"]);
    try {
      const stream = await fleet.nextStream(15_000);
      const hello = await stream.next("hello");
      assert.equal(hello.registrationToken, "X");
      assert.deepEqual(hello.labels, { zone: "a" });
      assert.match(hello.version, /^\d+\.\d+\.\d+/);
      assert.ok((hello.total?.cpuMillis ?? 0) >= 1_000);
      stream.welcome({ agentId: "agent-main-1", agentCredential: "credential-main-1", heartbeatIntervalMs: 100 });
      await stream.next("heartbeat");
      const path = join(stateDir, CREDENTIAL_FILE);
      await eventually("the credential file", () => (agent.stdout().includes("stored the agent's credential") ? true : undefined));
      assert.deepEqual(JSON.parse(await readFile(path, "utf8")), { agentId: "agent-main-1", credential: "credential-main-1" });
      assert.equal((await stat(path)).mode & 0o777, 0o600);

      const signalled = Date.now();
      agent.child.kill("SIGTERM");
      assert.equal(await within(agent.exited, 2_000), 0, `exit code; stderr: ${agent.stderr()}`);
      assert.ok(Date.now() - signalled < 2_000);
      assert.equal(stream.requestsDone, true, "the agent half-closed its stream");
      const logs = agent.stdout().trim().split("\n").map((line) => JSON.parse(line) as { msg: string; agentId?: string });
      assert.ok(logs.some((l) => l.msg === "connected to Fleet" && l.agentId === "agent-main-1"), "logs are JSON with ids as fields");
      assert.ok(logs.some((l) => l.msg === "stopped"));
    } finally {
      agent.child.kill("SIGKILL");
    }
  });

  it("bids for offers, runs an assignment, and on SIGTERM cancels it, reports CANCELLED and exits 0", async () => {
    const dir = await mkdtemp(join(tmpdir(), "drover-agent-main-run-"));
    const agent = startAgent(["--server", fleet.url, "--token", "X", "--state-dir", dir]);
    try {
      const stream = await fleet.nextStream(15_000);
      const hello = await stream.next("hello");
      assert.ok(hello.drivers.includes("process"));
      stream.welcome({ agentId: "agent-main-2", agentCredential: "credential-main-2" });
      stream.send({ message: { case: "offer", value: { offerId: "offer-1", jobId: "job-1", driver: "process" } } });
      assert.equal((await stream.next("bid")).offerId, "offer-1");

      stream.send({ messageId: "m-1", message: { case: "assignment", value: { attemptId: "attempt-1", jobId: "job-1", exec: { commands: [{ argv: ["sleep", "30"] }] } } } });
      await eventually("RUNNING", () => stream.all("jobEvent").find((e) => e.state === AttemptState.RUNNING));
      agent.child.kill("SIGTERM");
      assert.equal(await within(agent.exited, 3_000), 0, `exit code; stderr: ${agent.stderr()}`);
      const last = stream.all("jobEvent").at(-1);
      assert.equal(last && AttemptState[last.state], "CANCELLED", "Fleet heard the attempt end before the stream closed");
    } finally {
      agent.child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("reports the docker driver in Hello only when a Docker engine answers on its socket, and runs a docker job there", async () => {
    const docker = await FakeDocker.start();
    const dirs = [await mkdtemp(join(tmpdir(), "drover-agent-docker-")), await mkdtemp(join(tmpdir(), "drover-agent-nodocker-"))];
    const withEngine = startAgent(["--server", fleet.url, "--token", "D", "--state-dir", dirs[0]!], { DROVER_DOCKER_SOCKET: docker.socketPath });
    const without = startAgent(["--server", fleet.url, "--token", "E", "--state-dir", dirs[1]!], { DROVER_DOCKER_SOCKET: join(dirs[1]!, "no-such.sock") });
    try {
      const hellos = new Map<string, { stream: Awaited<ReturnType<FakeFleet["nextStream"]>>; drivers: string[] }>();
      for (let i = 0; i < 2; i++) {
        const stream = await fleet.nextStream(15_000);
        const hello = await stream.next("hello");
        hellos.set(hello.registrationToken, { stream, drivers: hello.drivers });
      }
      assert.deepEqual(hellos.get("D")?.drivers, ["process", "docker"]);
      assert.deepEqual(hellos.get("E")?.drivers, ["process"], "no engine: no docker driver, and no crash");
      const stream = hellos.get("D")!.stream;
      stream.welcome({ agentId: "agent-docker-1", agentCredential: "credential-docker-1" });
      stream.send({ messageId: "m-d", message: { case: "assignment", value: { attemptId: "attempt-d", jobId: "job-d", driver: "docker", exec: { image: "alpine:3.20", commands: [{ argv: ["echo", "from", "a", "container"] }] } } } });
      const end = await eventually("the docker attempt's end", () => stream.all("jobEvent").find((e) => e.state === AttemptState.SUCCEEDED || e.state === AttemptState.FAILED), 15_000);
      assert.equal(AttemptState[end.state], "SUCCEEDED", end.message);
      // The fake engine echoes a container's argv as its output.
      assert.equal(await readFile(join(dirs[0]!, "runs", "job-d", "job-d", "attempt-d", "cmd-000.stdout.log"), "utf8"), "echo from a container\n");
    } finally {
      withEngine.child.kill("SIGKILL");
      without.child.kill("SIGKILL");
      await docker.close();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    }
  });

  it("exits 2 naming DROVER_SERVER when no server is given", async () => {
    const agent = startAgent(["--token", "X", "--state-dir", stateDir]);
    assert.equal(await within(agent.exited, 15_000), 2);
    assert.match(agent.stderr(), /DROVER_SERVER/);
  });

  it("exits 2 naming DROVER_TOKEN when it has neither a credential nor a token", async () => {
    const empty = await mkdtemp(join(tmpdir(), "drover-agent-main-empty-"));
    try {
      const agent = startAgent(["--server", fleet.url, "--state-dir", empty]);
      assert.equal(await within(agent.exited, 15_000), 2);
      assert.match(agent.stderr(), /DROVER_TOKEN/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  /**
   * Starts drover-agent as `entry` (node arguments) with `env`, and checks
   * that it registers with the version in package.json, sends metrics from
   * systeminformation, and exits 0 on SIGTERM.
   */
  async function runsAgainstFleet(entry: string[], env: Record<string, string> = {}): Promise<void> {
    const version = (JSON.parse(await readFile(join(REPO, "package.json"), "utf8")) as { version: string }).version;
    const dir = await mkdtemp(join(tmpdir(), "drover-agent-entry-"));
    const agent = startAgent(["--server", fleet.url, "--token", "ENTRY", "--state-dir", dir], env, entry);
    try {
      const stream = await fleet.nextStream(15_000);
      const hello = await stream.next("hello");
      assert.equal(hello.registrationToken, "ENTRY");
      assert.equal(hello.version, version, "package.json is found beside the sources");
      stream.welcome({ agentId: "agent-entry-1", agentCredential: "credential-entry-1", heartbeatIntervalMs: 100 });
      const heartbeat = await stream.next("heartbeat");
      assert.ok((heartbeat.metrics?.memoryTotalBytes ?? 0n) > 0n, "metrics come from systeminformation");
      agent.child.kill("SIGTERM");
      assert.equal(await within(agent.exited, 2_000), 0, `exit code; stderr: ${agent.stderr()}`);
    } finally {
      agent.child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  }

  it("runs from its cached bundle as drover-agent (agent/bin.mjs), web_headers.ts as its Headers, and through tsx with DROVER_AGENT_BUNDLE=0", async () => {
    await runsAgainstFleet([AGENT_BIN]);
    await runsAgainstFleet([AGENT_BIN], { DROVER_AGENT_BUNDLE: "0" });
    const manifest = JSON.parse(await readFile(join(REPO, "node_modules", ".cache", "drover", "agent.json"), "utf8")) as {
      options: { entry: string; inject: string[]; packages: string };
      bundle: string;
    };
    assert.deepEqual(manifest.options, { entry: AGENT_MAIN, inject: [join(REPO, "agent", "web_headers.ts")], packages: "bundle" });
    assert.ok((await stat(join(REPO, "node_modules", ".cache", "drover", manifest.bundle))).size > 0);
  });

  it("runs as the bundle scripts/build-agent.sh makes, with plain node and no tsx", async () => {
    // Inside the repository, so the bundle finds systeminformation in node_modules.
    const bundle = join(REPO, "dist", `drover-agent-test-${process.pid}.mjs`);
    try {
      const built = spawnSync("bash", [join(REPO, "scripts", "build-agent.sh"), bundle], { cwd: REPO, encoding: "utf8" });
      assert.equal(built.status, 0, built.stderr);
      await runsAgainstFleet([bundle]);
    } finally {
      await rm(bundle, { force: true });
    }
  });
});
