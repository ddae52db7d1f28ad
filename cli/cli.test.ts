// The drover CLI as people run it: a child process (cli/bin.mjs, which runs
// the CLI's bundle) against a real dev-mode server, checking what it prints
// and how it exits. The first tests are about how bin.mjs starts it.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { ROOT, removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "../integration/harness.ts";
import { bearer } from "../lib/clients.ts";
import { cleanEnv, drover, prepareCli, runCli, TSX_CLI, type CliOutcome as Outcome } from "../lib/testing/cli.ts";
import { eventually } from "../services/fleet/testing.ts";

const run = promisify(execFile);

describe("drover on PATH (cli/bin.mjs)", () => {
  test("answers --version without loading the CLI, with the same version the CLI itself reports", async () => {
    const fast = await run(process.execPath, ["cli/bin.mjs", "--version"], { cwd: ROOT, env: cleanEnv() });
    const full = await runCli(TSX_CLI, ["--version"]);
    assert.equal(full.code, 0);
    assert.equal(fast.stdout, full.stdout);
    assert.match(fast.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  test("runs the CLI from its bundle in node_modules/.cache/drover, and through tsx with DROVER_CLI_BUNDLE=0, printing the same", async () => {
    const bundled = await drover(["jobs", "submit", "--help"]);
    assert.equal(bundled.code, 0, bundled.stderr);
    assert.match(bundled.stdout, /^Usage: drover jobs submit/);
    const cache = join(ROOT, "node_modules", ".cache", "drover");
    const manifest = JSON.parse(readFileSync(join(cache, "cli.json"), "utf8")) as { options: { entry: string }; bundle: string; inputs: [string, number, number][] };
    assert.equal(manifest.options.entry, join(ROOT, "cli", "main.ts"));
    assert.ok(existsSync(join(cache, manifest.bundle)), manifest.bundle);
    assert.ok(manifest.inputs.some(([path]) => path === join(ROOT, "cli", "jobs.ts")));

    const unbundled = await drover(["jobs", "submit", "--help"], cleanEnv({ DROVER_CLI_BUNDLE: "0" }));
    assert.equal(unbundled.code, 0, unbundled.stderr);
    assert.equal(unbundled.stdout, bundled.stdout);
    const usage = await drover(["jobs", "nonsense"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^drover: usage: unknown command 'nonsense'/);
  });
});

describe("drover CLI against dev mode", () => {
  let dev: DevProcess;
  /** `drover --addr <dev> --token <admin> ARGS`. */
  const admin = (...args: string[]) => drover(["--addr", dev.grpcUrl, "--token", dev.adminToken, ...args]);

  before(async () => {
    // Fast heartbeats and sweeps, so the agent of the jobs tests below is online and placed on quickly.
    // A stale agent gets no offers: the threshold is loose enough that a busy
    // machine's late heartbeats do not make it flap, and a job that found no
    // agent is auctioned again within a moment, not after the default 10 s.
    // The CLI's bundle made current while dev mode starts (lib/testing/cli.ts).
    const preparing = prepareCli();
    try {
      dev = await startDev({
        prepared: true,
        env: {
          DROVER_HEARTBEAT_INTERVAL_MS: "200",
          DROVER_STALE_AFTER_MS: "5000",
          DROVER_SWEEP_INTERVAL_MS: "100",
          DROVER_SCHEDULER_SWEEP_MS: "100",
          DROVER_PRESENCE_REFRESH_MS: "200",
          DROVER_WAIT_RETRY_MS: "300",
        },
      });
    } finally {
      await preparing;
    }
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

  describe("login and logout", () => {
    let home: string;
    /** A config file in a fresh directory, and an environment that reads it and has no dev-mode token. */
    let config: string;
    let env: NodeJS.ProcessEnv;
    before(() => {
      home = tempDir("drover-cli-login-");
      config = join(home, "drover", "config.json");
      env = cleanEnv({ DROVER_CONFIG: config, DROVER_DATA_DIR: join(home, "no-data") });
    });
    after(() => {
      if (home) removeDir(home);
    });

    test("login with the admin token on stdin writes the config file 0600, later commands use it, and logout removes it", async () => {
      const login = await drover(["login", "--addr", dev.grpcUrl, "--token", "-"], env, `${dev.adminToken}\n`);
      assert.equal(login.code, 0, login.stderr);
      assert.match(login.stdout, /^role:\s+admin$/m);
      assert.ok(login.stdout.includes(config), login.stdout);
      assert.equal(statSync(config).mode & 0o777, 0o600);
      assert.equal(statSync(join(home, "drover")).mode & 0o777, 0o700);
      assert.deepEqual(JSON.parse(readFileSync(config, "utf8")), { addr: dev.grpcUrl, token: dev.adminToken });

      const listed = await drover(["agents", "ls"], env);
      assert.equal(listed.code, 0, listed.stderr);

      const logout = await drover(["logout"], env);
      assert.equal(logout.code, 0, logout.stderr);
      assert.equal(existsSync(config), false);
      const after = await drover(["agents", "ls"], env);
      assert.equal(after.code, 4, "no token once logged out");
    });

    test("login with an operator token piped on stdin, without --token, checks it with a call operators may make", async () => {
      const created = await admin("tokens", "create", "--name", "login-op", "--role", "operator", "-o", "json");
      const { secret } = JSON.parse(created.stdout) as { secret: string };
      const login = await drover(["login", "--addr", dev.grpcUrl, "-o", "json"], env, secret);
      assert.equal(login.code, 0, login.stderr);
      assert.deepEqual(JSON.parse(login.stdout), { addr: dev.grpcUrl, config });
      assert.equal(JSON.parse(readFileSync(config, "utf8")).token, secret);
    });

    test("login with a bad token writes nothing, keeps the old file, and exits 4 with one unauthenticated line", async () => {
      writeFileSync(config, `${JSON.stringify({ addr: dev.grpcUrl, token: dev.adminToken })}\n`, { mode: 0o600 });
      const before = readFileSync(config, "utf8");
      const login = await drover(["login", "--addr", dev.grpcUrl, "--token", "not-a-real-token"], env);
      assert.equal(login.code, 4);
      assert.match(login.stderr, /^drover: unauthenticated: [^\n]+\n$/);
      assert.equal(login.stdout, "");
      assert.equal(readFileSync(config, "utf8"), before);

      const fresh = cleanEnv({ DROVER_CONFIG: join(home, "other", "config.json") });
      const again = await drover(["login", "--addr", dev.grpcUrl, "--token", "not-a-real-token"], fresh);
      assert.equal(again.code, 4);
      assert.equal(existsSync(join(home, "other")), false, "not even the directory");
    });

    test("an unreachable address writes nothing and exits 5", async () => {
      const fresh = cleanEnv({ DROVER_CONFIG: join(home, "down", "config.json") });
      const login = await drover(["login", "--addr", "http://127.0.0.1:1", "--token", "x"], fresh);
      assert.equal(login.code, 5);
      assert.match(login.stderr, /^drover: unavailable: /);
      assert.equal(existsSync(join(home, "down")), false);
    });

    test("a malformed config file is an error naming the file", async () => {
      const bad = join(home, "bad.json");
      writeFileSync(bad, "{ not json");
      const out = await drover(["agents", "ls"], cleanEnv({ DROVER_CONFIG: bad }));
      assert.equal(out.code, 2);
      assert.ok(out.stderr.startsWith(`drover: invalid_argument: config file ${bad}: not valid JSON`), out.stderr);
    });
  });

  // Runs and schedules need no agent for these: a run's root stages are
  // created as pending jobs, and a schedule's fired jobs stay pending.
  describe("runs and schedules", () => {
    let scheduler: Client<typeof SchedulerService>;
    let specDir: string;
    before(() => {
      scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] }));
      specDir = tempDir("drover-cli-runs-");
    });
    after(() => {
      if (specDir) removeDir(specDir);
    });

    test("runs submit reads a YAML spec and shows the graph; runs watch exits 1 once the run is cancelled", async () => {
      const file = join(specDir, "diamond.yaml");
      writeFileSync(
        file,
        ["name: diamond", "stages:", "  - name: build", "    job: {exec: {commands: [{argv: [make]}]}}", "  - name: test", "    requires: [build]",
          "    job: {exec: {commands: [{argv: [make, test]}]}, timeout: 600s}", "  - name: lint", "    job: {exec: {commands: [{argv: [make, lint]}]}}",
          "  - name: ship", "    requires: [test, lint]", "    job: {exec: {commands: [{argv: [./ship.sh]}]}}", ""].join("\n"),
      );
      const submitted = await admin("runs", "submit", file);
      assert.equal(submitted.code, 0, submitted.stderr);
      const id = /^id:\s+([0-9a-f-]{36})$/m.exec(submitted.stdout)?.[1] ?? assert.fail(`no run id in:\n${submitted.stdout}`);
      assert.match(submitted.stdout, /^state:\s+running$/m);
      assert.match(submitted.stdout, /^stages:\s+4: 2 blocked, 2 pending$/m);
      assert.match(submitted.stdout, /^STAGE\s+STATE\s+REQUIRES\s+JOB\s+ATTEMPTS\s+REASON$/m);
      const rows = submitted.stdout.split("\n").filter((l) => /^(build|test|lint|ship) /.test(l));
      assert.deepEqual(rows.map((r) => r.split(/\s+/).slice(0, 3)), [["build", "pending", "-"], ["test", "blocked", "build"], ["lint", "pending", "-"], ["ship", "blocked", "test,lint"]], "definition order, with each stage's requirements");
      assert.match(rows[0]!, /^build\s+pending\s+-\s+[0-9a-f-]{36}\s+0\s+/, "a root stage has its job at once");

      await scheduler.cancelRun({ id, reason: "cli test" });
      const watched = await admin("runs", "watch", id);
      assert.equal(watched.code, 1, watched.stderr);
      const lines = watched.stdout.trimEnd().split("\n");
      assert.match(lines[0]!, /^TIME\s+STAGE\s+STATE\s+JOB\s+REASON$/);
      assert.equal(lines.length, 6, `a header, a line per stage, the run's end:\n${watched.stdout}`);
      assert.match(lines.at(-1)!, /^\d\d:\d\d:\d\d  \(run\)\s+cancelled\s+-\s+2 cancelled, 2 skipped$/);
    });

    test("schedules create --run refuses a job option, naming the flag as typed", async () => {
      const out = await admin("schedules", "create", "nightly", "--cron", "0 3 * * *", "--run", "nightly.yaml", "--concurrency-key", "db");
      assert.equal(out.code, 2);
      assert.match(out.stderr, /^drover: invalid_argument: --concurrency-key: describes a job template; with --run, put it in the spec file's stages\n$/);
    });

    test("schedules create fires a job within seconds and schedules ls shows the counts in its zone", async () => {
      const created = await admin("schedules", "create", "cli-tick", "--cron", "*/1 * * * * *", "--tz", "Europe/Paris", "--cpu", "100m", "--", "echo", "tick");
      assert.equal(created.code, 0, created.stderr);
      try {
        assert.match(created.stdout, /^fires:\s+job: echo tick$/m);
        assert.match(created.stdout, /^next fire:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0[12]:00 \((in \d+s|\d+s ago)\)$/m);
        const fired = await eventually(async () => {
          const { schedule } = await scheduler.getSchedule({ id: "cli-tick" });
          return schedule && schedule.fireCount > 0n ? schedule : undefined;
        }, 10_000, "the schedule fired");
        const { job } = await scheduler.getJob({ id: fired.lastJobId });
        assert.equal(job?.scheduleId, fired.id);
        assert.equal(job?.spec?.name, "cli-tick", "the job is named after its schedule");

        const listed = await admin("schedules", "ls");
        assert.equal(listed.code, 0, listed.stderr);
        assert.match(listed.stdout, /^NAME\s+CRON\s+TZ\s+PAUSED\s+NEXT FIRE\s+LAST FIRE\s+FIRED\s+SKIPPED$/m);
        assert.match(listed.stdout, /^cli-tick\s+\*\/1 \* \* \* \* \*\s+Europe\/Paris\s+no\s+\S+ \S+ \+0[12]:00 \(.*\)\s+\d+s ago\s+[1-9]\d*\s+\d+$/m);
      } finally {
        await scheduler.deleteSchedule({ id: "cli-tick" });
      }
    });
  });

  // One real drover-agent runs these jobs. The tests run concurrently (each
  // drover invocation is a process start), so each looks only at its own jobs.
  describe("jobs on a real agent", { concurrency: true }, () => {
    let agent: AgentProcess;
    let agentId: string;
    let agentDir: string;
    let scheduler: Client<typeof SchedulerService>;

    /** The job id `drover run` printed on its first line (`job <id>` when following, the bare id otherwise). */
    const idOf = (stdout: string) => /^(?:job )?([0-9a-f-]{36})\b/.exec(stdout)?.[1] ?? assert.fail(`no job id in:\n${stdout}`);
    const lastLine = (stdout: string) => stdout.trimEnd().split("\n").at(-1) ?? "";

    before(async () => {
      const transport = createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] });
      const fleet = createClient(FleetService, transport);
      scheduler = createClient(SchedulerService, transport);
      const { secret } = await fleet.createAgentToken({ name: "cli" });
      agentDir = tempDir("drover-cli-agent-");
      agent = startAgent(["--server", dev.grpcUrl, "--state-dir", agentDir, "--labels", "site=cli", "--token", secret], {
        env: { DROVER_RECONNECT_MAX_MS: "200", DROVER_MAX_ATTEMPTS: "8" },
      });
      agentId = String((await agent.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000)).agentId);
      await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 1 ? true : undefined), 10_000, "the agent online");
    });
    after(async () => {
      await agent?.stop("SIGKILL");
      if (agentDir) removeDir(agentDir);
    });

    test("run --follow prints a line per change and exits with the failed job's exit code", async () => {
      const out = await admin("run", "-f", "--retries", "0", "--name", "exit3", "--", "sh", "-c", "exit 3");
      assert.equal(out.code, 3, out.stderr);
      assert.equal(out.stderr, "");
      const [first, header, ...changes] = out.stdout.trimEnd().split("\n");
      assert.match(first ?? "", /^job [0-9a-f-]{36}$/);
      assert.match(header ?? "", /^TIME\s+STATE\s+ATTEMPT\s+AGENT\s+REASON$/);
      assert.match(changes.at(-1) ?? "", new RegExp(`^\\d\\d:\\d\\d:\\d\\d  failed\\s+1\\s+${agentId}  .*exit code 3`));
      // A job may really pass through a state twice (offered, back to pending, offered again), but each printed line is a change.
      assert.ok(changes.every((line, i) => i === 0 || line !== changes[i - 1]), `a line repeats the one before it:\n${changes.join("\n")}`);

      const got = await admin("jobs", "get", idOf(out.stdout));
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stdout, /^state:\s+failed$/m);
      assert.match(got.stdout, /^retries:\s+0$/m);
      assert.match(got.stdout, /^ended:\s+.*exit code 3/m);
      assert.match(got.stdout, /^#\s+AGENT\s+STATE\s+EXIT\s+STARTED\s+DURATION\s+REASON$/m);
      assert.match(got.stdout, new RegExp(`^1\\s+${agentId}\\s+failed\\s+3\\s+\\d+s ago\\s+\\S+\\s+`, "m"));
    });

    test("run --follow fails at once on a --non-retryable-exit code, and jobs get shows the retry policy, concurrency key and agent it was given", async () => {
      const out = await admin(
        "run", "-f", "--non-retryable-exit", "3,4", "--retry-backoff", "5s", "--concurrency-key", "cli-once", "--concurrency-limit", "2",
        "--agent", agentId, "--", "sh", "-c", "exit 3",
      );
      assert.equal(out.code, 3, out.stderr);
      const got = await admin("jobs", "get", idOf(out.stdout));
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stdout, /^state:\s+failed$/m);
      assert.match(got.stdout, /^attempts:\s+1$/m);
      assert.match(got.stdout, /^retries:\s+4, backoff 5s ×2 up to 5m; exit 3, 4 final$/m);
      assert.match(got.stdout, /^concurrency:\s+key cli-once, at most 2 at a time$/m);
      assert.match(got.stdout, new RegExp(`^agents:\\s+${agentId}$`, "m"));
      const badLimit = await admin("run", "--concurrency-limit", "2", "--", "true");
      assert.equal(badLimit.code, 2);
      assert.match(badLimit.stderr, /^drover: invalid_argument: --concurrency-limit: needs --concurrency-key/);
    });

    test("run --follow -o json prints one Job per line and exits 0 when the job succeeds", async () => {
      const out = await admin("run", "-f", "-o", "json", "--env", "GREETING=hi", "--", "sh", "-c", 'test "$GREETING" = hi');
      assert.equal(out.code, 0, out.stderr);
      const jobs = out.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as { id: string; state: string; attempts?: { exitCode?: number }[] });
      assert.equal(jobs.at(-1)!.state, "JOB_STATE_SUCCEEDED");
      assert.equal(new Set(jobs.map((j) => j.id)).size, 1, "every line is the same job");
    });

    test("run prints only the job's id; jobs watch follows it and explain names the winner", async () => {
      const out = await admin("run", "--", "true");
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /^[0-9a-f-]{36}\n$/);
      const id = idOf(out.stdout);

      const watched = await admin("jobs", "watch", id);
      assert.equal(watched.code, 0, watched.stderr);
      assert.match(lastLine(watched.stdout), new RegExp(`  succeeded\\s+1\\s+${agentId}  `));

      const explained = await admin("jobs", "explain", id);
      assert.equal(explained.code, 0, explained.stderr);
      assert.match(explained.stdout, /^state:\s+succeeded$/m);
      assert.match(explained.stdout, /^Latest, attempt 1 at .*: placed on agent/m);
      assert.match(explained.stdout, new RegExp(`^  winner:\\s+${agentId}$`, "m"));
      assert.match(explained.stdout, /^  eligible agents:\s+1$/m);
      assert.match(explained.stdout, new RegExp(`^  ${agentId}\\s+won\\s+0\\.\\d{3}\\s`, "m"));

      const json = await admin("jobs", "explain", id, "-o", "json");
      const res = JSON.parse(json.stdout) as { auctions: { winnerAgentId: string; candidates: { outcome: string }[] }[] };
      assert.equal(res.auctions[0]!.winnerAgentId, agentId);
      assert.equal(res.auctions[0]!.candidates[0]!.outcome, "OUTCOME_WON");
    });

    test("explain groups agents that cannot take a job by reason", async () => {
      const out = await admin("run", "--label", "site=mars", "--", "true");
      const id = idOf(out.stdout);
      await eventually(async () => ((await scheduler.getJob({ id })).job?.waitReason.startsWith("no eligible agent") ? true : undefined), 60_000, "an auction without candidates");
      const explained = await admin("jobs", "explain", id);
      assert.equal(explained.code, 0, explained.stderr);
      assert.match(explained.stdout, /^  winner:\s+none$/m);
      assert.match(explained.stdout, /no agent was offered the job/);
      assert.match(explained.stdout, /^  INELIGIBLE BECAUSE\s+AGENTS\s+FOR EXAMPLE$/m);
      assert.match(explained.stdout, new RegExp(`^  lacks label site=mars\\s+1\\s+${agentId}$`, "m"));

      const resubmitted = await admin("jobs", "resubmit", id);
      assert.equal(resubmitted.code, 1, "a job that has not ended cannot be resubmitted");
      assert.match(resubmitted.stderr, /^drover: failed_precondition: job .* has not ended \(\w+\); cancel it first\n$/);
    });

    test("cancel ends a job with the reason given, and watch then exits 1", async () => {
      const id = idOf((await admin("run", "--", "sleep", "30")).stdout);
      const cancelled = await admin("jobs", "cancel", id, "--grace", "500ms", "--reason", "no longer needed");
      assert.equal(cancelled.code, 0, cancelled.stderr);
      assert.match(cancelled.stdout, new RegExp(`^id:\\s+${id}$`, "m"));

      const watched = await admin("jobs", "watch", id);
      assert.equal(watched.code, 1, watched.stderr);
      assert.match(lastLine(watched.stdout), /  cancelled  .*no longer needed$/);

      // Several ids: one CancelJobs, a row per job in the order given.
      const more = [idOf((await admin("run", "--", "sleep", "30")).stdout), idOf((await admin("run", "--", "sleep", "30")).stdout)];
      const both = await admin("jobs", "cancel", ...more, "--reason", "batch", "-o", "json");
      assert.equal(both.code, 0, both.stderr);
      assert.deepEqual((JSON.parse(both.stdout) as { id: string }[]).map((j) => j.id), more);
      const table = await admin("jobs", "cancel", id, ...more);
      assert.equal(table.code, 0, table.stderr);
      assert.deepEqual(table.stdout.trim().split("\n").slice(1).map((l) => l.split(/\s+/)[0]), [id, ...more]);
    });

    test("a job out of retries is in jobs dead and resubmits once per idempotency key", async () => {
      const out = await admin("run", "-f", "--retries", "1", "--", "sh", "-c", "exit 4");
      assert.equal(out.code, 4, out.stderr);
      assert.match(lastLine(out.stdout), /  dead\s+2\s+.*out of retries/);
      const id = idOf(out.stdout);

      const dead = await admin("jobs", "dead", "-o", "json");
      assert.equal(dead.code, 0, dead.stderr);
      const letters = JSON.parse(dead.stdout) as { id: string; state: string }[];
      assert.ok(letters.some((j) => j.id === id), "the job is a dead letter");
      assert.ok(letters.every((j) => j.state === "JOB_STATE_DEAD"));

      const first = await admin("jobs", "resubmit", id, "--idempotency-key", `again-${id}`);
      assert.equal(first.code, 0, first.stderr);
      const newId = /^id:\s+(\S+)$/m.exec(first.stdout)?.[1];
      assert.ok(newId && newId !== id, "a new job");
      assert.match(first.stdout, /^command:\s+sh -c 'exit 4'$/m);
      const second = await admin("jobs", "resubmit", id, "--idempotency-key", `again-${id}`);
      assert.match(second.stdout, new RegExp(`^id:\\s+${newId}$`, "m"));
      assert.match(second.stdout, /An existing job with this idempotency key/);
    });

    test("run --times 2 follows the first job; jobs get shows the second as 2 of 2", async () => {
      const out = await admin("run", "-f", "--times", "2", "--", "true");
      assert.equal(out.code, 0, out.stderr);
      const first = idOf(out.stdout);
      const next = await eventually(async () => (await scheduler.getJob({ id: first })).job?.nextJobId || undefined, 30_000, "the second job of the chain");
      const got = await admin("jobs", "get", next);
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stdout, /^run mode:\s+2 times$/m);
      assert.match(got.stdout, new RegExp(`^repeat:\\s+2 of 2, first job ${first}$`, "m"));
    });

    // Output reaches the Log service a moment after the job ends: logs are read until they show it.
    const logsOf = async (args: string[], want: (o: Outcome) => boolean, what: string) => {
      let last: Outcome | undefined;
      try {
        return await eventually(async () => {
          last = await admin("logs", ...args);
          return want(last) ? last : undefined;
        }, 30_000, what);
      } catch (err) {
        assert.fail(`${String(err)}; last: ${JSON.stringify(last)}`);
      }
    };

    test("run --follow streams the command's output, stdout to stdout and stderr to stderr, before the job's end and its exit code", async () => {
      const out = await admin("run", "-f", "--retries", "0", "--", "sh", "-c", "echo out; echo err >&2; exit 2");
      assert.equal(out.code, 2, out.stderr);
      assert.equal(out.stderr, "err\n");
      const lines = out.stdout.trimEnd().split("\n");
      assert.ok(lines.indexOf("out") > 1, `the output after the header and the first state lines:\n${out.stdout}`);
      assert.match(lines.at(-1)!, /  failed\s+1\s+.*exit code 2/, "the job's end comes last");
    });

    test("logs prints a job's stored output, filtered by stream, text, tail or time, and as JSON", async () => {
      const id = idOf((await admin("run", "--", "sh", "-c", "printf 'one\\ntwo\\nthree\\n'; echo warn >&2")).stdout);
      const all = await logsOf([id], (o) => o.stdout === "one\ntwo\nthree\n" && o.stderr === "warn\n", "the job's output stored");
      assert.equal(all.code, 0);

      const stderrOnly = await admin("logs", id, "--stream", "stderr");
      assert.deepEqual([stderrOnly.code, stderrOnly.stdout, stderrOnly.stderr], [0, "", "warn\n"]);
      const grepped = await admin("logs", id, "--grep", "^t", "--regex", "--stream", "stdout");
      assert.equal(grepped.stdout, "two\nthree\n");
      const tail = await admin("logs", id, "--tail", "1", "--stream", "stdout");
      assert.equal(tail.stdout, "three\n");
      const future = await admin("logs", id, "--since", "2100-01-01T00:00:00Z");
      assert.deepEqual([future.code, future.stdout, future.stderr], [0, "", ""]);

      const json = await admin("logs", id, "-o", "json", "--stream", "stdout");
      assert.equal(json.code, 0, json.stderr);
      const objects = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as { jobId: string; attemptId: string; stream: string; text: string; offset: number });
      assert.deepEqual(objects.map((o) => o.text), ["one\n", "two\n", "three\n"]);
      assert.deepEqual(objects.map((o) => o.offset), [0, 4, 8]);
      assert.ok(objects.every((o) => o.jobId === id && o.stream === "stdout"));

      // The attempt, by --attempt and by its bare id.
      const attemptId = objects[0]!.attemptId;
      const byFlag = await admin("logs", "--attempt", attemptId, "--stream", "stdout");
      assert.equal(byFlag.stdout, "one\ntwo\nthree\n", byFlag.stderr);
      const bare = await admin("logs", attemptId, "--stream", "stdout");
      assert.equal(bare.stdout, "one\ntwo\nthree\n", bare.stderr);
    });

    test("logs prefixes each line with its attempt when a job ran more than once", async () => {
      const out = await admin("run", "-f", "--retries", "1", "--", "sh", "-c", "echo try");
      assert.equal(out.code, 0, out.stderr);
      const failing = await admin("run", "-f", "--retries", "1", "--", "sh", "-c", "echo try; exit 4");
      assert.equal(failing.code, 4, failing.stderr);
      const id = idOf(failing.stdout);
      const logs = await logsOf([id], (o) => o.stdout === "[attempt 1] try\n[attempt 2] try\n", "both attempts' output");
      assert.equal(logs.code, 0);
      const once = await admin("logs", idOf(out.stdout));
      assert.equal(once.stdout, "try\n", "a job that ran once has no prefix");
    });

    test("logs -f follows a running job's output until it is complete", async () => {
      const id = idOf((await admin("run", "--", "sh", "-c", "echo first; sleep 1; echo second")).stdout);
      const followed = await admin("logs", "-f", id);
      assert.equal(followed.code, 0, followed.stderr);
      assert.equal(followed.stdout, "first\nsecond\n");
    });

    test("logs of a run prefixes each stage's lines with its name; RUN/STAGE shows one stage without", async () => {
      const dir = tempDir("drover-cli-logs-run-");
      const file = join(dir, "two-stages.yaml");
      writeFileSync(
        file,
        ["name: logs", "stages:", "  - name: build", "    job: {exec: {commands: [{argv: [sh, -c, 'echo compiled']}]}}",
          "  - name: test", "    requires: [build]", "    job: {exec: {commands: [{argv: [sh, -c, 'echo passed']}]}}", ""].join("\n"),
      );
      try {
        const submitted = await admin("runs", "submit", file, "-f");
        assert.equal(submitted.code, 0, submitted.stderr);
        const runId = /^run ([0-9a-f-]{36})/m.exec(submitted.stdout)?.[1] ?? assert.fail(`no run id in:\n${submitted.stdout}`);
        const all = await logsOf([`run:${runId}`], (o) => o.stdout === "[build] compiled\n[test] passed\n", "both stages' output");
        assert.equal(all.code, 0);
        const one = await admin("logs", `${runId}/test`);
        assert.equal(one.stdout, "passed\n", one.stderr);
        const missing = await admin("logs", `${runId}/deploy`);
        assert.equal(missing.code, 3);
        assert.match(missing.stderr, /^drover: not_found: run .* has no stage "deploy" \(its stages: build, test\)\n$/);
      } finally {
        removeDir(dir);
      }
    });
    test("jobs ls filters by state, shows the newest N, or follows every page with --all", async () => {
      const id = idOf((await admin("run", "--name", "listed", "--", "true")).stdout);
      // A second job, so that --limit 1 leaves one out.
      await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["true"] }] } } });
      await eventually(async () => ((await scheduler.getJob({ id })).job?.state === JobState.SUCCEEDED ? true : undefined), 60_000, "the job succeeded");

      const listed = await admin("jobs", "ls", "--state", "succeeded");
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /^ID\s+STATE\s+NAME\/COMMAND\s+ATTEMPTS\s+AGE\s+REASON\n/);
      assert.match(listed.stdout, new RegExp(`^${id}  succeeded\\s+listed\\s+1\\s+\\d+s ago\\s+attempt 1 succeeded`, "m"));
      const rows = listed.stdout.trimEnd().split("\n").slice(1);
      assert.ok(rows.every((r) => /^\S+  succeeded /.test(r)), `only succeeded jobs:\n${listed.stdout}`);

      const all = await admin("jobs", "ls", "--all", "-o", "json");
      assert.equal(all.code, 0, all.stderr);
      assert.ok((JSON.parse(all.stdout) as { id: string }[]).some((j) => j.id === id));
      assert.equal(all.stderr, "", "--all leaves nothing out");

      const one = await admin("jobs", "ls", "--limit", "1", "-o", "json");
      assert.equal(one.code, 0, one.stderr);
      assert.equal((JSON.parse(one.stdout) as unknown[]).length, 1);
      assert.match(one.stderr, /^drover: showing the newest 1 jobs; --limit N or --all for more\n$/);
    });
  });

  describe("logs errors", () => {
    test("an id that is no job's and no attempt's exits 3, a bad flag or target 2, both before printing anything", async () => {
      const unknown = await admin("logs", "00000000-0000-4000-8000-000000000000");
      assert.equal(unknown.code, 3, unknown.stderr);
      assert.match(unknown.stderr, /^drover: not_found: no job has the id 0{8}-.*, and no output is stored for an attempt with that id\n$/);
      assert.equal(unknown.stdout, "");
      const unknownRun = await admin("logs", "run:00000000-0000-4000-8000-000000000000");
      assert.equal(unknownRun.code, 3, unknownRun.stderr);
      const noTarget = await admin("logs");
      assert.equal(noTarget.code, 2);
      assert.match(noTarget.stderr, /^drover: invalid_argument: a TARGET is required/);
      const badSince = await admin("logs", "x", "--since", "yesterday");
      assert.equal(badSince.code, 2);
      assert.match(badSince.stderr, /^drover: invalid_argument: --since: "yesterday" is neither/);
      const untilFollow = await admin("logs", "x", "-f", "--until", "1m");
      assert.equal(untilFollow.code, 2);
      const yaml = await admin("logs", "x", "-o", "yaml");
      assert.match(yaml.stderr, /^drover: invalid_argument: -o: logs prints text or json/);
    });

    test("logs --help documents the TARGET syntax", async () => {
      const help = await admin("logs", "--help");
      assert.equal(help.code, 0);
      assert.match(help.stdout, /run:RUN_ID\s+every stage of the run/);
      assert.match(help.stdout, /RUN_ID\/STAGE\s+one stage of the run/);
      assert.match(help.stdout, /--attempt ID\s+one attempt/);
    });
  });
});
