// The Go SDK (sdk/go) as a Go user meets it: its committed generated code is
// what scripts/generate-go-sdk.sh makes today, and its example, built offline
// in GOPATH mode with Debian's Go packages, submits a job to dev mode, prints
// the job's output from FollowLogs while one real drover-agent runs it and
// then its final state, and sees a bad request refused with InvalidArgument.
//
// Needs Debian's Go toolchain (golang-go, protobuf-compiler, protoc-gen-go,
// protoc-gen-go-grpc, golang-google-grpc-dev, golang-google-protobuf-dev and
// golang-github-golang-protobuf-1-5-dev; sdk/go/README.md says why the last).
// Without it the file is skipped locally and fails in CI (CI=true).
//
// The build is the slow part (about 15 s with a cold Go build cache, under a
// second warm): it runs while dev mode and the agent start. Its cache is Go's
// default one (or one in the temporary directory when there is none), never
// the repository.

import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { isAbsolute, join, relative } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { ROOT, removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

const run = promisify(execFile);

/** Where sdk/go sits in a GOPATH: the import path scripts/generate-go-sdk.sh generates for. */
const SDK_IMPORT_PATH = "drover/sdk/go";
/** Debian's Go sources (grpc, protobuf), the second GOPATH entry. */
const DEBIAN_GOPATH = "/usr/share/gocode";
const SDK = join(ROOT, "sdk/go");

/** Why the Go SDK cannot be built here, or null when it can. */
function goUnavailable(): string | null {
  for (const tool of ["go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `${tool} is not installed`;
    }
  }
  for (const [pkg, dir] of [
    ["golang-google-grpc-dev", "google.golang.org/grpc"],
    ["golang-google-protobuf-dev", "google.golang.org/protobuf"],
  ]) {
    if (!existsSync(join(DEBIAN_GOPATH, "src", dir!))) return `${pkg} is not installed (no ${DEBIAN_GOPATH}/src/${dir})`;
  }
  // github.com/golang/protobuf 1.3 has no registry.go; with it the example
  // compiles and then panics on its first call.
  if (!existsSync(join(DEBIAN_GOPATH, "src/github.com/golang/protobuf/proto/registry.go"))) {
    return "github.com/golang/protobuf is not 1.4 or later: install golang-github-golang-protobuf-1-5-dev";
  }
  return null;
}

/** Go's default build cache, or undefined when it has none (or it would land in the repository). */
function defaultGoCache(): string | undefined {
  try {
    const dir = execFileSync("go", ["env", "GOCACHE"], { encoding: "utf8" }).trim();
    if (!isAbsolute(dir) || !relative(ROOT, dir).startsWith("..")) return undefined;
    return dir;
  } catch {
    return undefined;
  }
}

/** Every file under dir, as paths relative to it, sorted. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

const unavailable = goUnavailable();
if (unavailable !== null && process.env.CI === "true") {
  throw new Error(`the Go SDK test is required in CI but cannot run: ${unavailable}`);
}

describe("the Go SDK", { skip: unavailable ?? false }, () => {
  let work: string;
  let dev: DevProcess | undefined;
  let agent: AgentProcess | undefined;
  let agentDir: string | undefined;
  /** The example's binary, once built. */
  let built: Promise<string>;
  let buildMs = 0;

  /** Runs the example against dev mode with the admin token; resolves its exit code and output. */
  async function example(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const bin = await built;
    const env = { ...process.env, DROVER_ADDR: new URL(dev!.grpcUrl).host, DROVER_TOKEN: dev!.adminToken };
    try {
      const { stdout, stderr } = await run(bin, ["-timeout", "60s", ...args], { env, timeout: 90_000 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      if (typeof e.code !== "number") throw err;
      return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  before(async () => {
    work = tempDir("drover-sdk-go-");
    // GOPATH mode: the SDK is copied to where its import path says, and
    // Debian's packages resolve the rest. GO111MODULE=off never touches the
    // network; GOPROXY=off makes sure of it.
    const gopath = join(work, "gopath");
    cpSync(SDK, join(gopath, "src", SDK_IMPORT_PATH), { recursive: true });
    const bin = join(work, "example");
    const goEnv = {
      ...process.env,
      GO111MODULE: "off",
      GOPATH: `${gopath}:${DEBIAN_GOPATH}`,
      GOPROXY: "off",
      GOFLAGS: "",
      GOCACHE: defaultGoCache() ?? join(work, "gocache"),
    };
    const started = performance.now();
    built = run("go", ["build", "-o", bin, `${SDK_IMPORT_PATH}/example`], { cwd: work, env: goEnv, timeout: 300_000 }).then(
      () => {
        buildMs = performance.now() - started;
        return bin;
      },
      (err: { stderr?: string; message: string }) => {
        throw new Error(`go build of the example failed:\n${err.stderr || err.message}`);
      },
    );
    // Awaited by the tests; this only keeps a failed build from being an unhandled rejection meanwhile.
    built.catch(() => {});

    dev = await startDev({ prepared: true });
    const fleet = createClient(FleetService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
    const { secret } = await fleet.createAgentToken({ name: "sdk-go" });
    agentDir = tempDir("drover-agent-sdk-go-");
    agent = startAgent(["--server", dev.grpcUrl, "--state-dir", agentDir, "--token", secret]);
    await agent.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000);
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 1 ? true : undefined), 10_000, "the agent online");
  });

  after(async () => {
    await built?.catch(() => {});
    if (buildMs > 0) console.log(`go build of the example took ${Math.round(buildMs)} ms`);
    await agent?.stop("SIGKILL");
    await dev?.stop("SIGKILL");
    if (dev) removeDir(dev.dataDir);
    if (agentDir) removeDir(agentDir);
    if (work) removeDir(work);
  });

  it("the committed generated code is exactly what scripts/generate-go-sdk.sh generates", async () => {
    const fresh = join(work, "gen");
    await run("bash", [join(ROOT, "scripts/generate-go-sdk.sh"), fresh], { cwd: ROOT });
    const committed = join(SDK, "gen");
    const files = filesUnder(fresh);
    assert.deepEqual(filesUnder(committed), files, "the same files; run scripts/generate-go-sdk.sh");
    for (const file of files) {
      assert.ok(readFileSync(join(committed, file)).equals(readFileSync(join(fresh, file))), `sdk/go/gen/${file} is current; run scripts/generate-go-sdk.sh`);
    }
  });

  it("the example runs `echo hello from go` on the agent, prints its output from FollowLogs, then its final state, and exits 0 once it succeeded", async (t) => {
    const { code, stdout, stderr } = await example();
    for (const line of stdout.trim().split("\n")) t.diagnostic(`example: ${line}`);
    assert.equal(code, 0, `exit code; stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^submitted job [0-9a-f-]{36}$/m);
    assert.match(stdout, /^hello from go$/m, `the job's output line, from FollowLogs; stdout:\n${stdout}`);
    const states = [...stdout.matchAll(/^job [0-9a-f-]{36}: (\w+)$/gm)].map((m) => m[1]);
    assert.equal(states.at(-1), "SUCCEEDED", `the last state printed; stdout:\n${stdout}`);
  });

  it("a job without exec is refused with InvalidArgument and a message naming spec.exec", async (t) => {
    const { code, stdout, stderr } = await example("-without-exec");
    for (const line of stderr.trim().split("\n")) t.diagnostic(`example: ${line}`);
    assert.equal(code, 1, `exit code; stdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stderr, /^SubmitJob failed: code=InvalidArgument message=".*spec\.exec.*"$/m);
    assert.doesNotMatch(stdout, /submitted job/);
  });
});
