// The Python SDK (sdk/python) as a Python user meets it: its committed
// generated code is what scripts/generate-python-sdk.sh makes today, and its
// example, run with Debian's /usr/bin/python3 and nothing installed, submits a
// job to dev mode, prints the job's output from FollowLogs while one real
// drover-agent runs it and then its final state, sees a bad request refused
// with INVALID_ARGUMENT, and is refused without its token.
//
// Needs Debian's /usr/bin/python3 with python3-grpcio and python3-protobuf,
// and protobuf-compiler, protobuf-compiler-grpc and libprotobuf-dev to
// generate (sdk/python/README.md has the version pairing). Without them the
// file is skipped locally and fails in CI (CI=true).

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { ROOT, removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

const run = promisify(execFile);

/** Debian's interpreter: the python3 first on PATH may not see Debian's packages. */
const PYTHON = "/usr/bin/python3";
const SDK = join(ROOT, "sdk/python");
const GEN = join(SDK, "drover_sdk/gen");

/** Why the Python SDK cannot be generated or run here, or null when it can. */
function pythonUnavailable(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} is not installed (Debian's python3)`;
  try {
    execFileSync(PYTHON, ["-c", "import grpc, google.protobuf"], { stdio: "pipe" });
  } catch (err) {
    return `${PYTHON} cannot import grpc and google.protobuf (install python3-grpcio and python3-protobuf): ${(err as { stderr?: Buffer }).stderr ?? err}`;
  }
  try {
    execFileSync("sh", ["-c", "command -v protoc"], { stdio: "ignore" });
  } catch {
    return "protoc is not installed (protobuf-compiler)";
  }
  if (!existsSync("/usr/bin/grpc_python_plugin")) return "/usr/bin/grpc_python_plugin is not installed (protobuf-compiler-grpc)";
  if (!existsSync("/usr/include/google/protobuf/descriptor.proto")) return "the well-known types' protos are not installed (libprotobuf-dev)";
  return null;
}

/** Every file under dir but Python's byte-code caches, as paths relative to it, sorted. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .filter((f) => !f.split("/").includes("__pycache__"))
    .sort();
}

const unavailable = pythonUnavailable();
if (unavailable !== null && process.env.CI === "true") {
  throw new Error(`the Python SDK test is required in CI but cannot run: ${unavailable}`);
}

describe("the Python SDK", { skip: unavailable ?? false }, () => {
  let work: string;
  let dev: DevProcess | undefined;
  let agent: AgentProcess | undefined;
  let agentDir: string | undefined;

  /**
   * Runs the example against dev mode the way sdk/python/README.md says,
   * with `env` over the dev address and admin token (undefined unsets one);
   * resolves its exit code and output.
   */
  async function example(args: string[] = [], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    const fullEnv: NodeJS.ProcessEnv = {
      ...process.env,
      PYTHONPATH: SDK,
      // No __pycache__ in the committed tree.
      PYTHONDONTWRITEBYTECODE: "1",
      DROVER_ADDR: new URL(dev!.grpcUrl).host,
      DROVER_TOKEN: dev!.adminToken,
      ...env,
    };
    try {
      const { stdout, stderr } = await run(PYTHON, [join(SDK, "example.py"), "--timeout", "60", ...args], { cwd: ROOT, env: fullEnv, timeout: 90_000 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      if (typeof e.code !== "number") throw err;
      return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  before(async () => {
    work = tempDir("drover-sdk-python-");
    dev = await startDev({ prepared: true });
    const fleet = createClient(FleetService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
    const { secret } = await fleet.createAgentToken({ name: "sdk-python" });
    agentDir = tempDir("drover-agent-sdk-python-");
    agent = startAgent(["--server", dev.grpcUrl, "--state-dir", agentDir, "--token", secret]);
    await agent.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000);
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 1 ? true : undefined), 10_000, "the agent online");
  });

  after(async () => {
    await agent?.stop("SIGKILL");
    await dev?.stop("SIGKILL");
    if (dev) removeDir(dev.dataDir);
    if (agentDir) removeDir(agentDir);
    if (work) removeDir(work);
  });

  it("the committed generated code is exactly what scripts/generate-python-sdk.sh generates", async () => {
    const fresh = join(work, "gen");
    await run("bash", [join(ROOT, "scripts/generate-python-sdk.sh"), fresh], { cwd: ROOT });
    const files = filesUnder(fresh);
    assert.deepEqual(filesUnder(GEN), files, "the same files; run scripts/generate-python-sdk.sh");
    for (const file of files) {
      assert.ok(readFileSync(join(GEN, file)).equals(readFileSync(join(fresh, file))), `sdk/python/drover_sdk/gen/${file} is current; run scripts/generate-python-sdk.sh`);
    }
  });

  it("the example runs `echo hello from python` on the agent, prints its output from FollowLogs, then its final state, and exits 0 once it succeeded", async (t) => {
    const { code, stdout, stderr } = await example();
    for (const line of stdout.trim().split("\n")) t.diagnostic(`example: ${line}`);
    assert.equal(code, 0, `exit code; stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^submitted job [0-9a-f-]{36}$/m);
    assert.match(stdout, /^hello from python$/m, `the job's output line, from FollowLogs; stdout:\n${stdout}`);
    const states = [...stdout.matchAll(/^job [0-9a-f-]{36}: (\w+)$/gm)].map((m) => m[1]);
    assert.equal(states.at(-1), "SUCCEEDED", `the last state printed; stdout:\n${stdout}`);
  });

  it("a job without exec is refused with INVALID_ARGUMENT and a message naming spec.exec", async (t) => {
    const { code, stdout, stderr } = await example(["--without-exec"]);
    for (const line of stderr.trim().split("\n")) t.diagnostic(`example: ${line}`);
    assert.equal(code, 1, `exit code; stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stderr, /^SubmitJob failed: code=INVALID_ARGUMENT message=".*spec\.exec.*"$/m);
    assert.doesNotMatch(stdout, /submitted job/);
  });

  it("without a token every call is refused with UNAUTHENTICATED", async () => {
    const { code, stdout, stderr } = await example([], { DROVER_TOKEN: undefined });
    assert.equal(code, 1, `exit code; stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stderr, /^SubmitJob failed: code=UNAUTHENTICATED /m);
  });
});
