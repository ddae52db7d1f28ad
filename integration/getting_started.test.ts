// Replays docs/getting-started.md: every fenced block the doc marks with a
// `<!-- replay ... -->` comment runs, in order, as the reader would type it,
// against a real dev-mode server and real agents. A doc edit that breaks a
// command fails here.
//
// The markers:
//   <!-- replay -->                          each command runs to completion and must exit 0
//   <!-- replay: server -->                  the command starts the server; it runs in the background
//                                            (a running server is stopped first, as the doc says)
//   <!-- replay: agent -->                   the command starts an agent in the background, on the first machine
//   <!-- replay: agent on a second machine -->  the same, in a second clone
//   <!-- replay: file NAME -->               the block is written to NAME in the first clone
//
// A "clone" is a temporary directory holding a symlink to every entry of this
// repository except dev mode's and the agent's state (.drover, .drover-agent),
// so `npm start`, `npx drover` and `npx drover-agent` work there as in a fresh
// clone, and the state they keep in `./` lands in the temporary directory.
//
// What differs from a reader's machine, and nothing else:
//   - the server's ports are free ones (DROVER_GRPC_PORT, DROVER_HTTP_PORT in
//     its environment) and the CLI is told the address (DROVER_ADDR);
//   - `http://127.0.0.1:7070` and the example `http://192.168.1.10:7070` become
//     the server's real address;
//   - `<secret>`, `<job id>` and `<run id>` become what earlier commands printed.

import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { freePort, removeDir, ROOT, tempDir } from "./harness.ts";
import { cleanEnv } from "../lib/testing/cli.ts";

const DOC = join(ROOT, "docs", "getting-started.md");

/** A fenced block of the doc with the replay marker just before it. */
interface MarkedBlock {
  /** The marker's text after `replay`, e.g. "", "server", "file hello.yaml". */
  kind: string;
  body: string;
  /** 1-based line of the opening fence, for messages. */
  line: number;
}

/** Every fenced block preceded (blank lines aside) by `<!-- replay[: kind] -->`, in order. */
function markedBlocks(markdown: string): MarkedBlock[] {
  const lines = markdown.split("\n");
  const blocks: MarkedBlock[] = [];
  let pending: string | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const marker = /^<!--\s*replay(?::\s*(.*?))?\s*-->\s*$/.exec(line);
    if (marker) {
      pending = marker[1] ?? "";
      continue;
    }
    if (line.startsWith("```")) {
      const start = i;
      const body: string[] = [];
      while (++i < lines.length && !lines[i]!.startsWith("```")) body.push(lines[i]!);
      if (pending !== undefined) blocks.push({ kind: pending, body: body.join("\n") + "\n", line: start + 1 });
      pending = undefined;
      continue;
    }
    if (line.trim() !== "") pending = undefined;
  }
  return blocks;
}

/** The commands of a shell block: continuation lines joined, comments and blank lines dropped. */
function commandsOf(body: string): string[] {
  return body
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** A directory that works like a fresh clone of this repository (see the top of the file). */
function makeClone(dir: string): string {
  mkdirSync(dir);
  for (const entry of readdirSync(ROOT)) {
    if (entry.startsWith(".drover") || entry === ".git") continue;
    symlinkSync(join(ROOT, entry), join(dir, entry));
  }
  return dir;
}

/** A command left running in the background, in its own process group. */
interface Background {
  child: ChildProcess;
  output(): string;
  /** Resolves the first JSON log line whose msg is `msg`; rejects on exit or after `timeoutMs`. */
  waitForMsg(msg: string, timeoutMs: number): Promise<Record<string, unknown>>;
  /** SIGTERM to the whole group, SIGKILL after 10 s; resolves once the group is gone. Idempotent. */
  stop(): Promise<void>;
}

function startBackground(command: string, cwd: string, env: NodeJS.ProcessEnv): Background {
  const child = spawn("sh", ["-c", command], { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const lines: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  createInterface({ input: child.stdout! }).on("line", (line) => {
    output += line + "\n";
    try {
      lines.push(JSON.parse(line));
    } catch {
      return;
    }
    listeners.forEach((notify) => notify());
  });
  child.once("exit", () => listeners.forEach((notify) => notify()));

  const waitForMsg = (msg: string, timeoutMs: number) =>
    new Promise<Record<string, unknown>>((res, rej) => {
      const timer = setTimeout(() => done(() => rej(new Error(`no "${msg}" from \`${command}\` within ${timeoutMs} ms; output:\n${output}`))), timeoutMs);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        settle();
      };
      const check = () => {
        const found = lines.find((l) => l.msg === msg);
        if (found) return done(() => res(found));
        if (child.exitCode !== null || child.signalCode !== null) {
          done(() => rej(new Error(`\`${command}\` exited (code ${child.exitCode}) before "${msg}"; output:\n${output}`)));
        }
      };
      listeners.add(check);
      check();
    });

  // The group outlives `sh` (npm and npx start node as grandchildren), so its
  // end is polled rather than awaited through the child.
  const groupAlive = () => {
    try {
      process.kill(-child.pid!, 0);
      return true;
    } catch {
      return false;
    }
  };
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (!groupAlive()) return;
      process.kill(-child.pid!, "SIGTERM");
      const deadline = Date.now() + 10_000;
      while (groupAlive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (groupAlive()) process.kill(-child.pid!, "SIGKILL");
    })());

  return { child, output: () => output, waitForMsg, stop };
}

/** Runs one command to completion through sh; resolves its exit code and output. */
function runCommand(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile("sh", ["-c", command], { cwd, env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
      res({ code, stdout, stderr });
    });
  });
}

/** Kills whatever still runs with `dir` in its command line (job commands left by a killed agent). */
async function killLeftovers(dir: string): Promise<void> {
  const ps = await new Promise<string>((res) => execFile("ps", ["-eo", "pid=,pgid=,args="], (_err, stdout) => res(stdout ?? "")));
  for (const line of ps.split("\n")) {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (!m || !m[3]!.includes(dir) || Number(m[1]) === process.pid) continue;
    try {
      process.kill(-Number(m[2]), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

describe("docs/getting-started.md", () => {
  const blocks = markedBlocks(readFileSync(DOC, "utf8"));

  it("marks for replay every step a newcomer takes", () => {
    const replayed = blocks.filter((b) => !b.kind.startsWith("file")).flatMap((b) => commandsOf(b.body));
    for (const step of [
      "npm start",
      "npx drover agent-tokens create",
      "npx drover-agent --server",
      "npx drover run -f",
      "npx drover jobs get",
      "npx drover runs submit",
      "npx drover runs get",
      "npx drover schedules create",
      "npx drover schedules ls",
      "npx drover schedules rm",
      "npx drover agents ls",
      "npx drover deploy apply",
      "npx drover deploy rollback",
    ]) {
      assert.ok(replayed.some((c) => c.includes(step)), `a replayed command starting "${step}"; replayed:\n${replayed.join("\n")}`);
    }
    assert.deepEqual(blocks.filter((b) => b.kind.startsWith("agent")).map((b) => b.kind), ["agent", "agent on a second machine"]);
  });

  describe("replayed against a dev-mode server and real agents", () => {
    let root: string;
    let laptop: string;
    let garage: string;
    let grpcPort: number;
    let httpPort: number;
    let server: Background | undefined;
    const agents: Background[] = [];

    before(async () => {
      root = tempDir("drover-getting-started-");
      laptop = makeClone(join(root, "laptop"));
      garage = makeClone(join(root, "garage"));
      // Fixed free ports rather than 0: the doc restarts the server and the first agent must find it again.
      grpcPort = await freePort();
      httpPort = await freePort();
    });

    after(async () => {
      // Agents first, with SIGTERM, so they cancel their jobs; then the server.
      await Promise.all(agents.map((a) => a.stop()));
      await server?.stop();
      if (root) {
        await killLeftovers(root);
        removeDir(root);
      }
    });

    it("every marked command works as printed, in order", { timeout: 480_000 }, async () => {
      const addr = `http://127.0.0.1:${grpcPort}`;
      const cliEnv = cleanEnv({ DROVER_ADDR: addr });
      const serverEnv = cleanEnv({ DROVER_GRPC_PORT: String(grpcPort), DROVER_HTTP_PORT: String(httpPort), DROVER_LOG_LEVEL: "info" });
      const captured: Record<string, string | undefined> = {};

      /** The command as the reader would have typed it here: the substitutions listed at the top, and only those. */
      const substitute = (command: string) =>
        command
          .replace(/http:\/\/(127\.0\.0\.1|192\.168\.1\.10):7070/g, addr)
          .replace(/<(secret|job id|run id)>/g, (_m, name: string) => captured[name] ?? assert.fail(`"${command}" needs <${name}>, which no earlier command printed`));

      for (const block of blocks) {
        const where = `docs/getting-started.md:${block.line}`;
        if (block.kind.startsWith("file ")) {
          writeFileSync(join(laptop, block.kind.slice("file ".length).trim()), block.body);
          continue;
        }
        // Substituted one at a time: a command may need what the one before it in the same block printed.
        const commands = commandsOf(block.body);

        if (block.kind === "server") {
          assert.equal(commands.length, 1, `${where}: a server block holds one command`);
          await server?.stop();
          server = startBackground(substitute(commands[0]!), laptop, serverEnv);
          await server.waitForMsg("drover dev mode ready", 60_000);
          continue;
        }

        if (block.kind.startsWith("agent")) {
          assert.equal(commands.length, 1, `${where}: an agent block holds one command`);
          const agent = startBackground(substitute(commands[0]!), block.kind === "agent" ? laptop : garage, cleanEnv({}));
          agents.push(agent);
          await agent.waitForMsg("connected to Fleet", 30_000);
          continue;
        }

        assert.equal(block.kind, "", `${where}: unknown replay marker "${block.kind}"`);
        for (const printed of commands) {
          const command = substitute(printed);
          const out = await runCommand(command, laptop, cliEnv);
          assert.equal(out.code, 0, `${where}: \`${command}\` exited ${out.code}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
          check(command, out.stdout);
          captured.secret = /^secret:\s+(\S+)$/m.exec(out.stdout)?.[1] ?? captured.secret;
          captured["job id"] = /^job ([0-9a-f-]{36})/m.exec(out.stdout)?.[1] ?? captured["job id"];
          captured["run id"] = /^run ([0-9a-f-]{36})/m.exec(out.stdout)?.[1] ?? captured["run id"];
        }
      }
    });
  });
});

/** A few outputs the doc promises, beyond exiting 0. */
function check(command: string, stdout: string): void {
  const says = (re: RegExp) => assert.match(stdout, re, `\`${command}\` printed:\n${stdout}`);
  if (/^npx drover run -f .*-- echo hello$/.test(command)) says(/^\S+\s+succeeded\s+1\s+ag_\S+/m);
  if (/^npx drover jobs get \S+$/.test(command)) {
    says(/^state:\s+succeeded$/m);
    says(/^0\s+echo\s+0\s+/m); // command 0: echo, exit 0
  }
  if (/^npx drover runs submit .* -f$/.test(command)) says(/^\S+\s+\(run\)\s+succeeded\s+-\s+4 succeeded$/m);
  if (/^npx drover runs get /.test(command)) for (const stage of ["fetch", "build", "check", "report"]) says(new RegExp(`^${stage}\\s+succeeded\\s`, "m"));
  if (/^npx drover schedules ls$/.test(command)) says(/^hello-every-5min\s+\*\/5 \* \* \* \*\s+UTC\s+no\s/m);
  if (/^npx drover agents ls --label site=garage$/.test(command)) says(/\bonline\b.*\bsite=garage\b/);
  if (/^npx drover run -f --label site=garage /.test(command)) says(/^\S+\s+succeeded\s+1\s+ag_\S+/m);
  if (/^npx drover deploy apply \S+ --wait$/.test(command)) says(/^hello-web: revision \d+ running, 2\/2 healthy$/m);
  if (/^npx drover deploy rollback hello-web --wait$/.test(command)) says(/^hello-web: revision 1 running, 2\/2 healthy$/m);
  if (/^npx drover deploy history hello-web$/.test(command)) says(/^1\s+current, stable\s/m);
  if (/^npx drover deploy stop hello-web --wait$/.test(command)) says(/^hello-web: stopped, no replica runs$/m);
  // Every replica's output, the stopped ones' too: revision 1's, and after the rollback revision 2's,
  // each line naming its slot, and its revision once there are two.
  if (/^npx drover logs deployment\/hello-web$/.test(command)) {
    says(/^\[slot [01](?: rev 1)?\] saying hello on port \d+$/m);
    // Revisions are named once two appear: after the rollback, revision 2's stopped replicas are read too.
    if (/ rev 1\]/.test(stdout)) says(/^\[slot [01] rev 2\] saying hello again on port \d+$/m);
    for (const line of stdout.split("\n").filter((l) => l.includes("hello again"))) {
      assert.match(line, /^\[slot [01] rev 2\] saying hello again on port \d+$/, `\`${command}\` printed:\n${stdout}`);
    }
  }
}
