// The drover CLI as people run it: a child process against a real dev-mode
// server, checking what it prints and how it exits.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { ROOT, removeDir, startDev, tempDir, type DevProcess } from "../integration/harness.ts";

const run = promisify(execFile);

/** How one `drover` invocation ended. */
interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment without any DROVER_* variable the developer may have set. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DROVER_")));
  return { ...env, NO_COLOR: "1", ...extra };
}

async function drover(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<Outcome> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["--import", "tsx", "cli/main.ts", ...args], { cwd: ROOT, env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("drover CLI against dev mode", () => {
  let dev: DevProcess;
  /** `drover --addr <dev> --token <admin> ARGS`. */
  const admin = (...args: string[]) => drover(["--addr", dev.grpcUrl, "--token", dev.adminToken, ...args]);

  before(async () => {
    dev = await startDev();
  });
  after(async () => {
    await dev?.stop();
    if (dev) removeDir(dev.dataDir);
  });

  test("tokens create, ls and revoke round-trip a token", async () => {
    const created = await admin("tokens", "create", "--name", "ci", "--role", "operator", "--ttl", "1h", "-o", "json");
    assert.equal(created.code, 0, created.stderr);
    const { token, secret } = JSON.parse(created.stdout) as { token: { id: string; role: string }; secret: string };
    assert.equal(token.role, "ROLE_OPERATOR");
    assert.ok(secret.length > 20);

    const listed = await admin("tokens", "ls");
    assert.equal(listed.code, 0, listed.stderr);
    const line = listed.stdout.split("\n").find((l) => l.startsWith(token.id));
    assert.match(listed.stdout, /^ID\s+NAME\s+ROLE\s+CREATED\s+EXPIRES\s+REVOKED\n/);
    assert.match(line ?? "", /ci\s+operator\s+\S+ ago\s+in (1h|59m)\s+-$/);

    const revoked = await admin("tokens", "revoke", token.id);
    assert.equal(revoked.code, 0, revoked.stderr);
    const after = await admin("tokens", "ls", "-o", "json");
    const mine = (JSON.parse(after.stdout) as { id: string; revokeTime?: string }[]).find((t) => t.id === token.id);
    assert.ok(mine?.revokeTime, "the token shows a revoke time");

    const refused = await drover(["--addr", dev.grpcUrl, "--token", secret, "agents", "ls"]);
    assert.equal(refused.code, 4, "the revoked secret no longer works");
  });

  test("agent-tokens create prints a secret once", async () => {
    const out = await admin("agent-tokens", "create", "--name", "rack1", "--label", "site=home", "--ttl", "2h");
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^secret:\s+\S{20,}$/m);
    assert.match(out.stdout, /^labels:\s+site=home$/m);
    assert.match(out.stdout, /shown only once/);
  });

  test("agents ls on an empty fleet prints the headers and exits 0", async () => {
    const out = await admin("agents", "ls");
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^ID\s+HOSTNAME\s+STATUS\s+SCHEDULING.*HEARTBEAT\n$/);
    assert.equal(out.stderr, "");
  });

  test("jobs submit prints a job id and jobs get returns it pending as JSON and YAML", async () => {
    const submitted = await admin("jobs", "submit", "--name", "greet", "--cpu", "500m", "--mem", "64Mi", "--", "echo", "hi");
    assert.equal(submitted.code, 0, submitted.stderr);
    const id = /^id:\s+([0-9a-f-]{36})$/m.exec(submitted.stdout)?.[1];
    assert.ok(id, `a job id in:\n${submitted.stdout}`);
    assert.match(submitted.stdout, /^command:\s+echo hi$/m);

    const json = await admin("jobs", "get", id, "-o", "json");
    assert.equal(json.code, 0, json.stderr);
    const job = JSON.parse(json.stdout) as { id: string; state: string; spec: { exec: { commands: { argv: string[] }[] }; resources: { cpuMillis: number } } };
    assert.equal(job.id, id);
    assert.equal(job.state, "JOB_STATE_PENDING");
    assert.deepEqual(job.spec.exec.commands[0]!.argv, ["echo", "hi"]);
    assert.equal(job.spec.resources.cpuMillis, 500);

    const yaml = await admin("jobs", "get", id, "-o", "yaml");
    assert.match(yaml.stdout, /^state: "JOB_STATE_PENDING"$/m);
  });

  test("a missing token exits 4 and says where it looked", async () => {
    const empty = tempDir("drover-cli-");
    try {
      const out = await drover(["agents", "ls"], cleanEnv({ DROVER_ADDR: dev.grpcUrl, DROVER_DATA_DIR: empty }));
      assert.equal(out.code, 4);
      assert.match(out.stderr, /^drover: unauthenticated: no token: pass --token, set DROVER_TOKEN/);
      assert.ok(out.stderr.includes(`${empty}/admin-token`), out.stderr);
    } finally {
      removeDir(empty);
    }
  });

  test("the dev-mode admin token is found through DROVER_DATA_DIR without --token", async () => {
    const out = await drover(["agents", "ls"], cleanEnv({ DROVER_ADDR: dev.grpcUrl, DROVER_DATA_DIR: dev.dataDir }));
    assert.equal(out.code, 0, out.stderr);
  });

  test("an invalid argument exits 2 and names the field", async () => {
    const out = await admin("tokens", "create", "--name", "", "--role", "admin");
    assert.equal(out.code, 2);
    assert.match(out.stderr, /^drover: invalid_argument: .*\bname\b.*\[string\.min_len\]\n$/);
  });

  test("a bad flag value exits 2 before any call", async () => {
    const out = await admin("agents", "drain", "some-agent", "--deadline", "soon");
    assert.equal(out.code, 2);
    assert.match(out.stderr, /^drover: invalid_argument: --deadline: "soon" is not a duration/);
  });

  test("an unknown job id exits 3", async () => {
    const out = await admin("jobs", "get", "00000000-0000-4000-8000-000000000000");
    assert.equal(out.code, 3);
    assert.match(out.stderr, /^drover: not_found: /);
  });

  test("an unreachable server exits 5", async () => {
    const out = await drover(["--addr", "http://127.0.0.1:1", "--token", "x", "agents", "ls"]);
    assert.equal(out.code, 5);
    assert.match(out.stderr, /^drover: unavailable: /);
  });
});
