// The README's grpcurl / buf curl block, run. grpcurl is not installed here,
// so each `npx buf curl` command of the block is run exactly as shown (the
// address and $TOKEN, $JOB_ID, $AGENT_ID substituted) against `drover dev`
// with one real drover-agent, and its output checked; each grpcurl command is
// checked to ask for the same thing as the buf curl command after it (same
// method, headers and request). Editing a command in the README edits what
// this test runs; adding or removing one fails it until the test agrees.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { bufCurl } from "./buf_curl.ts";
import { removeDir, ROOT, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

/** The line just above the block, in README.md. */
const MARKER = "<!-- integration/grpcurl.test.ts runs every `npx buf curl` command in the next block";
/** The address the README's commands use; the test puts dev mode's in its place. */
const README_HOST = "127.0.0.1:7070";
const README_URL = `http://${README_HOST}`;
/** The block's first command, which the test stands in for with dev mode's admin token. */
const TOKEN_LINE = "TOKEN=$(cat .drover/admin-token)";

/** One operation of the block: a comment, a grpcurl command and its buf curl equivalent (shell source, unexpanded). */
interface Example {
  title: string;
  grpcurl: string;
  bufCurl: string;
}

/** The fenced block after MARKER in README.md. */
function readmeBlock(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const at = readme.indexOf(MARKER);
  assert.ok(at >= 0, `README.md has the marker line ${MARKER}`);
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(match, "a ```sh block follows the marker");
  return match[1]!;
}

/**
 * Splits the block into examples. Every line must be blank, a comment (the
 * next example's title), the TOKEN line, or a grpcurl / npx buf curl command
 * (backslash-newline continues it), with each grpcurl command followed by
 * its buf curl equivalent.
 */
function parseBlock(block: string): Example[] {
  const examples: Example[] = [];
  let title = "";
  let pending: string | undefined;
  for (const line of block.replace(/\\\n\s*/g, " ").split("\n")) {
    if (line.trim() === "" || line === TOKEN_LINE) continue;
    if (line.startsWith("# ")) {
      title = line.slice(2);
    } else if (line.startsWith("grpcurl ")) {
      assert.equal(pending, undefined, `a buf curl command follows each grpcurl command (before: ${line})`);
      pending = line;
    } else if (line.startsWith("npx buf curl ")) {
      assert.ok(pending, `a grpcurl command precedes each buf curl command (${line})`);
      examples.push({ title, grpcurl: pending, bufCurl: line });
      pending = undefined;
    } else {
      assert.fail(`unexpected line in the README block: ${line}`);
    }
  }
  assert.equal(pending, undefined, "the last grpcurl command has its buf curl equivalent");
  return examples;
}

/**
 * The words a POSIX shell makes of `src`: quotes, backslash escapes and
 * $NAME / ${NAME} expansion from `vars` (an unknown name fails). Anything
 * that would need a real shell (pipes, redirections, $(...)) fails too, so
 * the README's commands stay runnable as written.
 */
function shellWords(src: string, vars: Record<string, string>): string[] {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let i = 0;
  const expand = (): string => {
    const m = /^\$(?:\{([A-Z_][A-Z0-9_]*)\}|([A-Z_][A-Z0-9_]*))/.exec(src.slice(i));
    if (!m) throw new Error(`unsupported $ at ${i} in: ${src}`);
    const name = m[1] ?? m[2]!;
    const value = vars[name];
    if (value === undefined) throw new Error(`$${name} is not set, in: ${src}`);
    i += m[0].length;
    return value;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = src.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated ' in: ${src}`);
      word += src.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      for (i++; src[i] !== '"'; ) {
        if (i >= src.length) throw new Error(`unterminated " in: ${src}`);
        if (src[i] === "\\" && '"\\$`'.includes(src[i + 1] ?? "")) {
          word += src[i + 1];
          i += 2;
        } else if (src[i] === "$") {
          word += expand();
        } else {
          word += src[i++];
        }
      }
      i++;
    } else if (c === "\\") {
      word += src[i + 1] ?? "";
      i += 2;
    } else if (c === "$") {
      word += expand();
    } else if ("|&;<>()`".includes(c)) {
      throw new Error(`needs a real shell (${c}): ${src}`);
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** What a command asks for, whichever tool it is written for. */
interface Request {
  /** "list-services", "list-methods", or the method ("package.Service/Method"). */
  operation: string;
  /** For grpcurl describe: the service described. */
  described?: string;
  address: string;
  headers: string[];
  /** The request, parsed. */
  data?: unknown;
}

/** Reads the flags of one command; unknown flags fail, so the README cannot drift into options this test does not understand. */
function flags(words: string[], known: Record<string, "bool" | "value">): { flags: Map<string, string[]>; rest: string[] } {
  const found = new Map<string, string[]>();
  let i = 0;
  for (; i < words.length && words[i]!.startsWith("-"); i++) {
    const name = words[i]!;
    const kind = known[name];
    assert.ok(kind, `unknown flag ${name}`);
    const value = kind === "value" ? words[++i]! : "";
    found.set(name, [...(found.get(name) ?? []), value]);
  }
  return { flags: found, rest: words.slice(i) };
}

function grpcurlRequest(words: string[]): Request {
  assert.equal(words[0], "grpcurl");
  const { flags: f, rest } = flags(words.slice(1), { "-plaintext": "bool", "-H": "value", "-d": "value" });
  assert.ok(f.has("-plaintext"), "grpcurl talks h2c to the gRPC port: -plaintext");
  const [address, verb, target, ...extra] = rest;
  assert.deepEqual(extra, [], "nothing after the method");
  const base = { address: address!, headers: f.get("-H") ?? [], data: f.has("-d") ? JSON.parse(f.get("-d")![0]!) : undefined };
  if (verb === "list") return { ...base, operation: "list-services" };
  if (verb === "describe") return { ...base, operation: "list-methods", described: target };
  assert.equal(target, undefined);
  return { ...base, operation: verb! };
}

function bufCurlRequest(words: string[]): Request {
  assert.deepEqual(words.slice(0, 3), ["npx", "buf", "curl"]);
  const { flags: f, rest } = flags(words.slice(3), {
    "--http2-prior-knowledge": "bool",
    "--protocol": "value",
    "--list-services": "bool",
    "--list-methods": "bool",
    "-H": "value",
    "-d": "value",
  });
  assert.ok(f.has("--http2-prior-knowledge"), "buf curl talks h2c to the gRPC port: --http2-prior-knowledge");
  assert.equal(rest.length, 1, "one URL");
  const url = new URL(rest[0]!);
  const base = { address: url.host, headers: f.get("-H") ?? [], data: f.has("-d") ? JSON.parse(f.get("-d")![0]!) : undefined };
  if (f.has("--list-services")) return { ...base, operation: "list-services" };
  if (f.has("--list-methods")) return { ...base, operation: "list-methods" };
  assert.deepEqual(f.get("--protocol"), ["grpc"], "a method call speaks gRPC: --protocol grpc");
  return { ...base, operation: url.pathname.slice(1) };
}

/** Splits buf curl's output of a stream (one pretty-printed JSON document per message). */
function jsonDocuments(out: string): unknown[] {
  return out
    .trim()
    .split(/(?<=^\})\n(?=\{)/m)
    .map((doc) => JSON.parse(doc));
}

const DROVER_SERVICES = ["bid", "deploy", "fleet", "log", "scheduler"].map((s) => `drover.${s}.v1.${s[0]!.toUpperCase()}${s.slice(1)}Service`);

/** A decoded protobuf JSON answer, read loosely: the assertions say what they expect of it. */
type Json = Record<string, any>;

describe("the README's grpcurl and buf curl commands, against dev mode and a real agent", () => {
  let dev: DevProcess;
  let agent: AgentProcess;
  let agentId: string;
  const dirs: string[] = [];
  const examples = parseBlock(readmeBlock());

  before(async () => {
    dev = await startDev({ prepared: true, env: { DROVER_HEARTBEAT_INTERVAL_MS: "200", DROVER_SCHEDULER_SWEEP_MS: "100" } });
    dirs.push(dev.dataDir);
    const fleet = createClient(FleetService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
    const { secret } = await fleet.createAgentToken({ name: "grpcurl" });
    const dir = tempDir("drover-agent-grpcurl-");
    dirs.push(dir);
    agent = startAgent(["--server", dev.grpcUrl, "--state-dir", dir, "--token", secret], { env: { DROVER_RECONNECT_MAX_MS: "200" } });
    agentId = String((await agent.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000)).agentId);
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 1 ? true : undefined), 10_000, "the agent online");
  });

  after(async () => {
    await agent?.stop("SIGKILL");
    await dev?.stop("SIGKILL");
    dirs.forEach(removeDir);
  });

  it("shows, in order: list services, describe a service, submit a job, follow its output, watch and get it, drain an agent", () => {
    const placeholders = { TOKEN: "t", JOB_ID: "j", AGENT_ID: "a" };
    assert.deepEqual(
      examples.map((e) => bufCurlRequest(shellWords(e.bufCurl, placeholders)).operation),
      [
        "list-services",
        "list-methods",
        "drover.scheduler.v1.SchedulerService/SubmitJob",
        "drover.log.v1.LogService/FollowLogs",
        "drover.scheduler.v1.SchedulerService/WatchJob",
        "drover.scheduler.v1.SchedulerService/GetJob",
        "drover.fleet.v1.FleetService/DrainAgent",
      ],
    );
  });

  it("pairs each grpcurl command with a buf curl command that asks for the same thing", () => {
    const placeholders = { TOKEN: "t", JOB_ID: "j", AGENT_ID: "a" };
    for (const e of examples) {
      const g = grpcurlRequest(shellWords(e.grpcurl, placeholders));
      const b = bufCurlRequest(shellWords(e.bufCurl, placeholders));
      assert.equal(g.address, README_HOST, e.title);
      assert.equal(b.address, README_HOST, e.title);
      assert.equal(g.operation, b.operation, e.title);
      assert.deepEqual(g.headers, b.headers, e.title);
      assert.deepEqual(g.data, b.data, e.title);
      const isCall = g.operation.includes("/");
      assert.deepEqual(g.headers, isCall ? ["authorization: Bearer t"] : [], `${e.title}: calls carry the token, reflection needs none`);
    }
  });

  it("runs every buf curl command as shown and gets what the comment above it says", async () => {
    const vars: Record<string, string> = { TOKEN: dev.adminToken, AGENT_ID: agentId };
    for (const e of examples) {
      const words = shellWords(e.bufCurl, vars).map((w) => (w.startsWith(README_URL) ? dev.grpcUrl + w.slice(README_URL.length) : w));
      const { operation, described } = { ...bufCurlRequest(words), described: grpcurlRequest(shellWords(e.grpcurl, vars)).described };
      const out = await bufCurl(words.slice(3));
      switch (operation) {
        case "list-services":
          assert.deepEqual(out.trim().split("\n").sort(), [
            ...DROVER_SERVICES,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
          ]);
          break;
        case "list-methods": {
          assert.equal(described, SchedulerService.typeName);
          const listed = new Set(out.trim().split("\n"));
          for (const m of SchedulerService.methods) assert.ok(listed.has(`${SchedulerService.typeName}/${m.name}`), `lists ${m.name}`);
          break;
        }
        case "drover.scheduler.v1.SchedulerService/SubmitJob": {
          const res = JSON.parse(out) as Json;
          assert.equal(res.created, true);
          assert.match(res.job.id, /^[0-9a-f-]{36}$/);
          assert.equal(res.job.spec.name, "greet");
          vars.JOB_ID = res.job.id;
          break;
        }
        case "drover.log.v1.LogService/FollowLogs": {
          // The job's `echo hi`, base64 in JSON; the stream ended, so the job had ended and its output was complete.
          const lines = (jsonDocuments(out) as Json[]).flatMap((res) => res.lines ?? []);
          assert.ok(lines.every((l) => l.jobId === vars.JOB_ID), out);
          const stdout = lines.filter((l) => l.stream === "STREAM_STDOUT").map((l) => Buffer.from(l.data ?? "", "base64").toString());
          assert.equal(stdout.join(""), "hi\n", out);
          break;
        }
        case "drover.scheduler.v1.SchedulerService/WatchJob": {
          const updates = jsonDocuments(out) as Json[];
          assert.ok(updates.every((u) => u.job.id === vars.JOB_ID));
          assert.equal(updates.at(-1)!.job.state, "JOB_STATE_SUCCEEDED", out);
          break;
        }
        case "drover.scheduler.v1.SchedulerService/GetJob": {
          const { job } = JSON.parse(out) as Json;
          assert.equal(job.id, vars.JOB_ID);
          assert.equal(job.state, "JOB_STATE_SUCCEEDED");
          assert.equal(job.attempts[0].state, "ATTEMPT_STATE_SUCCEEDED");
          assert.equal(job.attempts[0].agentId, agentId);
          break;
        }
        case "drover.fleet.v1.FleetService/DrainAgent": {
          const { agent: drained } = JSON.parse(out) as Json;
          assert.equal(drained.id, agentId);
          assert.match(drained.schedulability, /DRAIN/);
          break;
        }
        default:
          assert.fail(`no assertion for ${operation} (${e.title})`);
      }
    }
  });
});
