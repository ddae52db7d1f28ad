// The docker driver against FakeDocker, a fake engine on a real unix socket:
// every request crosses the socket and every byte of output goes through
// Docker's multiplexed framing. No Docker engine runs on our machines, so
// what a real engine would add (pulls, cgroups, signals) is not tested here:
// see "Docker driver" in README.md.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";

import { CommandSchema, ExecSpecSchema } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { logFileName } from "./bundle.ts";
import { containerWorkingDir, defaultSocketPath, DockerRunner, splitReference, StreamDemuxer } from "./docker_runner.ts";
import type { CommandExit, CommandHandle, CommandTask } from "./runner.ts";
import { FakeDocker, frame, type CreateBody } from "./testing/fake_docker.ts";

const logger = createLogger("silent");
const IMAGE = "alpine:3.20";

let root: string;
let tasks = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "drover-docker-test-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface TaskOptions {
  image?: string;
  env?: Record<string, string>;
  shell?: boolean;
  memoryLimitBytes?: bigint;
  /** Relative to the work directory. */
  cwd?: string;
  index?: number;
}

/** A task with a fresh attempt id and its own bundle directory (work/ inside it). */
async function newTask(argv: string[], o: TaskOptions = {}): Promise<CommandTask> {
  tasks += 1;
  const attemptId = `attempt-${tasks}`;
  const index = o.index ?? 0;
  const bundleDir = join(root, attemptId);
  const workDir = join(bundleDir, "work");
  await mkdir(join(workDir, o.cwd ?? ""), { recursive: true });
  return {
    attemptId,
    jobId: "job-1",
    index,
    command: create(CommandSchema, { argv }),
    exec: create(ExecSpecSchema, { image: o.image ?? IMAGE, commands: [{ argv }], memoryLimitBytes: o.memoryLimitBytes ?? 0n }),
    cwd: join(workDir, o.cwd ?? ""),
    workDir,
    bundleDir,
    stdoutPath: join(bundleDir, logFileName(index, "stdout")),
    stderrPath: join(bundleDir, logFileName(index, "stderr")),
    env: o.env ?? {},
    shell: o.shell ?? false,
    logger,
  };
}

/** Runs fn with a fake engine and a runner on its socket; the engine is closed whatever happens. */
async function withDocker(fn: (docker: FakeDocker, runner: DockerRunner) => Promise<void>, images = [IMAGE], missingImages: string[] = []): Promise<void> {
  const docker = await FakeDocker.start({ images, missingImages });
  try {
    await fn(docker, new DockerRunner({ socketPath: docker.socketPath, logger }));
  } finally {
    await docker.close();
  }
}

/** Runs fn with a plain server listening on a unix socket in a temp dir; closed afterwards. */
async function withSocketServer(server: net.Server, fn: (socketPath: string) => Promise<void>): Promise<void> {
  const socketPath = join(await mkdtemp(join(root, "sock-")), "not-docker.sock");
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  try {
    await fn(socketPath);
  } finally {
    if (server instanceof http.Server) server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function readOr(path: string, fallback = ""): Promise<string> {
  return readFile(path, "utf8").catch(() => fallback);
}

/** The create request the fake received for task. */
function createBody(docker: FakeDocker, task: CommandTask): CreateBody {
  const req = docker.requestsTo("POST", "/containers/create").find((r) => r.query.name === `drover-${task.attemptId}-${task.index}`);
  assert.ok(req, `no create request for ${task.attemptId}`);
  return req.body as CreateBody;
}

describe("DockerRunner.availability", () => {
  it("is false, naming the socket, when no socket exists at the path", async () => {
    const socketPath = join(root, "no-such-dir", "docker.sock");
    const a = await new DockerRunner({ socketPath, logger }).availability();
    assert.equal(a.available, false);
    assert.match(!a.available ? a.reason : "", /no docker socket at .*no-such-dir\/docker\.sock \(ENOENT\)/);
  });

  it("is false when the path is a plain file nobody listens on", async () => {
    const socketPath = join(root, "plain-file.sock");
    await writeFile(socketPath, "");
    const a = await new DockerRunner({ socketPath, logger }).availability();
    assert.equal(a.available, false);
    assert.match(!a.available ? a.reason : "", /plain-file\.sock \(ECONNREFUSED\)/);
  });

  it("is false when an HTTP server that is not docker answers on the socket", async () => {
    const server = http.createServer((_req, res) => res.writeHead(404, { "Content-Type": "text/html" }).end("<h1>nginx</h1>"));
    await withSocketServer(server, async (socketPath) => {
      const a = await new DockerRunner({ socketPath, logger }).availability();
      assert.equal(a.available, false);
      assert.match(!a.available ? a.reason : "", /not-docker\.sock answered GET \/_ping with 404 .*nginx.*: not a docker engine/);
    });
  });

  it("is false when the socket accepts connections but does not answer within the ping timeout", async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => sockets.push(s));
    await withSocketServer(server, async (socketPath) => {
      const started = Date.now();
      const a = await new DockerRunner({ socketPath, logger, pingTimeoutMs: 150 }).availability();
      assert.equal(a.available, false);
      assert.match(!a.available ? a.reason : "", /did not answer GET \/_ping within 150 ms/);
      assert.ok(Date.now() - started < 2_000);
      for (const s of sockets) s.destroy();
    });
  });

  it("is false, with the engine's words, when the engine is too old for API 1.43", async () => {
    const server = http.createServer((req, res) => {
      if (req.url === "/_ping") return void res.writeHead(200).end("OK");
      res.writeHead(400, { "Content-Type": "application/json" }).end('{"message":"client version 1.43 is too new. Maximum supported API version is 1.41"}');
    });
    await withSocketServer(server, async (socketPath) => {
      const a = await new DockerRunner({ socketPath, logger }).availability();
      assert.equal(a.available, false);
      assert.match(!a.available ? a.reason : "", /refused API v1\.43: client version 1\.43 is too new/);
    });
  });

  it("is true against a docker engine, asking for version at API v1.43", async () => {
    await withDocker(async (docker, runner) => {
      assert.deepEqual(await runner.availability(), { available: true });
      assert.deepEqual(
        docker.requests.map((r) => `${r.method} ${r.version} ${r.path}`),
        ["GET  /_ping", "GET v1.43 /version"],
      );
    });
  });
});

describe("defaultSocketPath", () => {
  it("takes DOCKER_HOST when it is a unix socket and the standard socket otherwise", () => {
    assert.equal(defaultSocketPath({ DOCKER_HOST: "unix:///run/user/1000/docker.sock" }), "/run/user/1000/docker.sock");
    assert.equal(defaultSocketPath({ DOCKER_HOST: "tcp://10.0.0.5:2376" }), "/var/run/docker.sock");
    assert.equal(defaultSocketPath({}), "/var/run/docker.sock");
  });
});

describe("StreamDemuxer", () => {
  const stream = Buffer.concat([frame(1, Buffer.from("out one\n")), frame(2, Buffer.from("err\n")), frame(1, Buffer.alloc(0)), frame(1, Buffer.from([0, 255, 10]))]);

  it("hands on every byte of every frame, whichever byte a chunk ends at", () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const demuxer = new StreamDemuxer();
      const pieces = [...demuxer.push(stream.subarray(0, cut)), ...demuxer.push(stream.subarray(cut))];
      const of = (n: number): string => Buffer.concat(pieces.filter((p) => p.stream === n).map((p) => p.payload)).toString("hex");
      assert.equal(of(1), Buffer.from("out one\n\x00\xff\n", "latin1").toString("hex"), `cut at ${cut}`);
      assert.equal(of(2), Buffer.from("err\n").toString("hex"), `cut at ${cut}`);
      assert.ok(demuxer.atBoundary);
    }
  });

  it("hands on a stream fed one byte at a time", () => {
    const demuxer = new StreamDemuxer();
    const pieces = [...stream].flatMap((b) => demuxer.push(Buffer.from([b])));
    assert.equal(Buffer.concat(pieces.filter((p) => p.stream === 2).map((p) => p.payload)).toString(), "err\n");
  });

  it("refuses a stream that is not multiplexed (a TTY's raw output)", () => {
    assert.throws(() => new StreamDemuxer().push(Buffer.from("hello world\n")), /not a multiplexed docker stream/);
  });
});

describe("containerWorkingDir and splitReference", () => {
  it("maps a cwd inside the work directory under /work and refuses one outside it", () => {
    assert.equal(containerWorkingDir("/s/a/work", "/s/a/work"), "/work");
    assert.equal(containerWorkingDir("/s/a/work", "/s/a/work/src/app"), "/work/src/app");
    assert.equal(containerWorkingDir("/s/a/work", "/s/a/work/..hidden"), "/work/..hidden");
    assert.throws(() => containerWorkingDir("/s/a/work", "/s/a"), /cwd \/s\/a is outside \/s\/a\/work/);
    assert.throws(() => containerWorkingDir("/s/a/work", "/etc"), /outside/);
  });

  it("pulls latest when the reference has no tag, and keeps a registry's port out of the tag", () => {
    assert.deepEqual(splitReference("alpine"), { fromImage: "alpine", tag: "latest" });
    assert.deepEqual(splitReference("alpine:3.20"), { fromImage: "alpine", tag: "3.20" });
    assert.deepEqual(splitReference("registry:5000/team/app"), { fromImage: "registry:5000/team/app", tag: "latest" });
    assert.deepEqual(splitReference("registry:5000/team/app:v2"), { fromImage: "registry:5000/team/app", tag: "v2" });
    assert.deepEqual(splitReference("alpine@sha256:abc"), { fromImage: "alpine@sha256:abc" });
  });
});

describe("DockerRunner running a command", () => {
  it("writes stdout and stderr byte-exact into their own files, multi-frame output included", async () => {
    await withDocker(async (docker, runner) => {
      // 100 KiB is 7 frames of the fake's 16 KiB; the bytes include every value 0-255, so nothing may be decoded.
      const big = Buffer.alloc(100 * 1024, 0).map((_, i) => (i * 7 + 3) % 256);
      docker.script(["make"], { stdout: ["building\n", big, "done\n"], stderr: ["warning: one\n", "warning: two\n"], exitCode: 0 });
      const task = await newTask(["make"]);
      const exit = await runner.wait(await runner.start(task));
      assert.equal(exit.exitCode, 0);
      assert.deepEqual(await readFile(task.stdoutPath), Buffer.concat([Buffer.from("building\n"), big, Buffer.from("done\n")]));
      assert.equal(await readFile(task.stderrPath, "utf8"), "warning: one\nwarning: two\n");
    });
  });

  it("appends to output files that already hold something", async () => {
    await withDocker(async (_docker, runner) => {
      const task = await newTask(["echo", "second"]);
      await writeFile(task.stdoutPath, "first\n");
      await runner.wait(await runner.start(task));
      assert.equal(await readFile(task.stdoutPath, "utf8"), "first\necho second\n");
    });
  });

  it("reports the container's exit code, with no signal and no peak memory", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["false"], { exitCode: 3 });
      const task = await newTask(["false"]);
      const before = Date.now();
      const exit = await runner.wait(await runner.start(task));
      assert.equal(exit.exitCode, 3);
      assert.equal(exit.signal, "");
      assert.equal(exit.peakRssBytes, 0);
      assert.equal(exit.failure, undefined);
      assert.ok(exit.endTime.getTime() >= before - 1_000 && exit.endTime.getTime() <= Date.now() + 1_000);
    });
  });

  it("creates the container with the attempt's labels, env, work directory bind, working directory and memory cap", async () => {
    await withDocker(async (docker, runner) => {
      const task = await newTask(["python", "train.py"], { env: { MODE: "fast", EMPTY: "" }, cwd: "src/model", memoryLimitBytes: 256n * 1024n * 1024n, index: 2 });
      await runner.wait(await runner.start(task));
      const body = createBody(docker, task);
      assert.equal(body.Image, IMAGE);
      assert.deepEqual(body.Cmd, ["python", "train.py"]);
      assert.deepEqual(body.Env?.sort(), ["EMPTY=", "MODE=fast"]);
      assert.equal(body.WorkingDir, "/work/src/model");
      assert.deepEqual(body.Labels, { "drover.attempt_id": task.attemptId, "drover.job_id": "job-1", "drover.command_index": "2" });
      assert.deepEqual(body.HostConfig?.Binds, [`${task.workDir}:/work`]);
      assert.equal(body.HostConfig?.Memory, 256 * 1024 * 1024);
      assert.equal(body.HostConfig?.MemorySwap, 256 * 1024 * 1024);
      assert.equal(body.HostConfig?.Init, true);
      assert.equal(body.ExposedPorts, undefined);
      assert.equal(body.HostConfig?.PortBindings, undefined);
      assert.ok(docker.requests.every((r) => r.version === "v1.43"), "every request names API v1.43");
    });
  });

  it("publishes a replica's assigned port on the host under the same number", async () => {
    await withDocker(async (docker, runner) => {
      const task = { ...(await newTask(["web"], { env: { PORT: "31234" } })), port: 31234 };
      await runner.wait(await runner.start(task));
      const body = createBody(docker, task);
      assert.deepEqual(body.ExposedPorts, { "31234/tcp": {} });
      assert.deepEqual(body.HostConfig?.PortBindings, { "31234/tcp": [{ HostIp: "", HostPort: "31234" }] });
    });
  });

  it("runs the command through /bin/sh -c when the task asks for a shell, and sets no memory cap when the spec has none", async () => {
    await withDocker(async (docker, runner) => {
      const task = await newTask(["echo", "$HOME", "|", "wc"], { shell: true });
      await runner.wait(await runner.start(task));
      const body = createBody(docker, task);
      assert.deepEqual(body.Cmd, ["/bin/sh", "-c", "echo $HOME | wc"]);
      assert.equal(body.HostConfig?.Memory, undefined);
    });
  });

  it("pulls an image the engine does not have, writing the pull's progress to system.log", async () => {
    await withDocker(
      async (docker, runner) => {
        const task = await newTask(["echo", "hi"], { image: "python:3.12" });
        const exit = await runner.wait(await runner.start(task));
        assert.equal(exit.exitCode, 0);
        const pulls = docker.requestsTo("POST", "/images/create");
        assert.deepEqual(pulls.map((r) => r.query), [{ fromImage: "python", tag: "3.12" }]);
        const log = await readFile(join(task.bundleDir, "system.log"), "utf8");
        assert.match(log, /docker pull python:3\.12: not on this machine; pulling\n/);
        assert.match(log, /docker pull python:3\.12: [0-9a-f]{12}: Pull complete\n/);
        assert.match(log, /docker pull python:3\.12: Status: Downloaded newer image for python:3\.12\n/);
        assert.doesNotMatch(log, /Downloading/, "the per-percent ticks stay out of system.log");
        assert.equal(await readFile(task.stdoutPath, "utf8"), "echo hi\n");

        // Present now: the next command does not pull again.
        await runner.wait(await runner.start(await newTask(["true"], { image: "python:3.12" })));
        assert.equal(docker.requestsTo("POST", "/images/create").length, 1);
      },
      [],
    );
  });

  it("rejects with the registry's message when the image cannot be pulled, and creates nothing", async () => {
    await withDocker(
      async (docker, runner) => {
        const task = await newTask(["true"], { image: "ghcr.io/acme/nope:1" });
        await assert.rejects(runner.start(task), /docker could not pull image ghcr\.io\/acme\/nope:1: manifest for ghcr\.io\/acme\/nope:1 not found/);
        assert.match(await readFile(join(task.bundleDir, "system.log"), "utf8"), /error: manifest for ghcr\.io\/acme\/nope:1 not found/);
        assert.equal(docker.requestsTo("POST", "/containers/create").length, 0);
        assert.equal(docker.requestsTo("GET", "/images/ghcr.io/acme/nope:1/json").length, 1, "the image's name goes in the path with its slashes");
      },
      [],
      ["ghcr.io/acme/nope:1"],
    );
  });

  it("rejects before talking to the engine when the spec names no image or the cwd is outside the work directory", async () => {
    await withDocker(async (docker, runner) => {
      await assert.rejects(runner.start(await newTask(["true"], { image: "" })), /needs an image \(ExecSpec\.image is empty\)/);
      await assert.rejects(runner.start(await newTask(["true"], { image: "alpine 3" })), /"alpine 3" is not an image reference/);
      const outside = { ...(await newTask(["true"])), cwd: "/etc" };
      await assert.rejects(runner.start(outside), /mounts only the work directory; cwd \/etc is outside/);
      assert.equal(docker.requests.length, 0);
    });
  });

  it("rejects with a message naming the socket when the engine is not there", async () => {
    const runner = new DockerRunner({ socketPath: join(root, "gone.sock"), logger });
    await assert.rejects(runner.start(await newTask(["true"])), /no docker socket at .*gone\.sock/);
  });

  it("replaces its own leftover container of the same attempt and command instead of failing on the name", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["sleep"], { runsUntilKilled: true });
      const task = await newTask(["sleep"]);
      const first = await runner.start(task);
      const second = await runner.start(task);
      assert.notEqual(second.saved.id, first.saved.id);
      assert.equal(docker.containers.has(first.saved.id), false);
      await runner.destroy(second);
    });
  });

  it("reports a container the kernel killed for memory as out of memory, naming the limit", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["hog"], { stdout: ["allocating\n"], oom: true });
      const task = await newTask(["hog"], { memoryLimitBytes: 64n * 1024n * 1024n });
      const exit = await runner.wait(await runner.start(task));
      assert.equal(exit.exitCode, 137);
      assert.equal(exit.failure, "out of memory (the container's limit is 67108864 bytes)");
      assert.equal(await readFile(task.stdoutPath, "utf8"), "allocating\n");
    });
  });

  it("says running while the container runs, exited after it ended, and gone once destroyed", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["serve"], { runsUntilKilled: true });
      const handle = await runner.start(await newTask(["serve"]));
      assert.equal(await runner.status(handle), "running");
      await runner.stop(handle, 1_000);
      assert.equal(await runner.status(handle), "exited");
      await runner.destroy(handle);
      assert.equal(await runner.status(handle), "gone");
    });
  });
});

describe("DockerRunner.stop", () => {
  it("sends SIGTERM and, when the container ignores it, SIGKILL once the grace has passed", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["stubborn"], { stdout: ["up\n"], runsUntilKilled: true, ignoresSigterm: true });
      const task = await newTask(["stubborn"]);
      const handle = await runner.start(task);
      await eventually("output", async () => ((await readOr(task.stdoutPath)) === "up\n" ? true : undefined));
      const started = Date.now();
      await runner.stop(handle, 300);
      const took = Date.now() - started;
      const exit = await runner.wait(handle);
      assert.ok(took >= 250 && took < 3_000, `stop took ${took} ms for a 300 ms grace`);
      assert.deepEqual(docker.containers.get(handle.saved.id)?.signals, ["SIGTERM", "SIGKILL"]);
      assert.deepEqual(
        docker.requestsTo("POST", /\/kill$/).map((r) => r.query.signal),
        ["SIGTERM", "SIGKILL"],
      );
      assert.equal(exit.exitCode, 137, "docker reports 128 + 9");
      assert.equal(exit.signal, "");
    });
  });

  it("does not wait out the grace when the container obeys the first signal, and sends the signal it is given", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["server"], { runsUntilKilled: true });
      const handle = await runner.start(await newTask(["server"]));
      const started = Date.now();
      await runner.stop(handle, 10_000, "SIGINT");
      assert.ok(Date.now() - started < 2_000);
      assert.deepEqual(docker.containers.get(handle.saved.id)?.signals, ["SIGINT"]);
      assert.equal((await runner.wait(handle)).exitCode, 130);
    });
  });

  it("is a quiet no-op on a container that has ended or been removed", async () => {
    await withDocker(async (docker, runner) => {
      const handle = await runner.start(await newTask(["echo"]));
      await runner.wait(handle);
      await runner.stop(handle, 100);
      await runner.stop(handle, 100);
      await runner.destroy(handle);
      await runner.stop(handle, 100);
      assert.deepEqual(docker.requestsTo("POST", /\/kill$/).length, 3);
    });
  });

  it("never throws, even when the engine has gone away", async () => {
    let handle: CommandHandle | undefined;
    let socketPath = "";
    await withDocker(async (docker, runner) => {
      docker.script(["x"], { runsUntilKilled: true });
      handle = await runner.start(await newTask(["x"]));
      socketPath = docker.socketPath;
    });
    const runner = new DockerRunner({ socketPath, logger });
    await runner.stop(handle!, 100);
    await runner.destroy(handle!);
  });
});

describe("DockerRunner.destroy", () => {
  it("removes the container, with force and its anonymous volumes, and can be called again", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["daemon"], { runsUntilKilled: true });
      const handle = await runner.start(await newTask(["daemon"]));
      await runner.destroy(handle);
      assert.equal(docker.containers.has(handle.saved.id), false);
      await runner.destroy(handle);
      const deletes = docker.requestsTo("DELETE", `/containers/${handle.saved.id}`);
      assert.equal(deletes.length, 2);
      assert.deepEqual(deletes[0]!.query, { force: "1", v: "1" });
      // The log stream ends with the container, so a wait() after destroy still resolves, saying what happened.
      const exit = await runner.wait(handle);
      assert.equal(exit.exitCode, -1);
      assert.match(exit.failure ?? "", /the container disappeared before it ended/);
    });
  });
});

describe("DockerRunner.reattach", () => {
  it("resumes following a running container where the files end, writing no byte twice", async () => {
    await withDocker(async (docker, runner) => {
      const lines = Array.from({ length: 8 }, (_, i) => `line ${i}\n`);
      docker.script(["count"], { stdout: lines, stderr: ["e0\n", "e1\n"], lineDelayMs: 40, exitCode: 5 });
      const task = await newTask(["count"]);
      const handle = await runner.start(task);
      await eventually("two lines on disk", async () => ((await readOr(task.stdoutPath)).includes("line 1\n") ? true : undefined));

      // The agent dies: its log stream is cut and the container runs on without it.
      docker.dropLogStreams();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const saved = JSON.parse(JSON.stringify(handle.saved));

      const restarted = new DockerRunner({ socketPath: docker.socketPath, logger });
      const again = await restarted.reattach(saved, task);
      assert.ok(again && "saved" in again, "a handle for the running container");
      const exit = await restarted.wait(again);
      assert.equal(exit.exitCode, 5);
      assert.equal(await readFile(task.stdoutPath, "utf8"), lines.join(""));
      assert.equal(await readFile(task.stderrPath, "utf8"), "e0\ne1\n");
    });
  });

  it("returns how a container ended while the agent was away, collects the rest of its output and removes it", async () => {
    await withDocker(async (docker, runner) => {
      docker.script(["batch"], { stdout: ["a\n", "b\n", "c\n"], lineDelayMs: 30, exitCode: 2 });
      const task = await newTask(["batch"]);
      const handle = await runner.start(task);
      await eventually("the first line", async () => ((await readOr(task.stdoutPath)) === "a\n" ? true : undefined));
      docker.dropLogStreams();
      await docker.exited(handle.saved.id);

      const restarted = new DockerRunner({ socketPath: docker.socketPath, logger });
      const ended = (await restarted.reattach(handle.saved, task)) as CommandExit;
      assert.equal(ended.exitCode, 2);
      assert.equal(ended.signal, "");
      assert.ok(ended.endTime.getTime() <= Date.now());
      assert.equal(await readFile(task.stdoutPath, "utf8"), "a\nb\nc\n");
      assert.equal(docker.containers.has(handle.saved.id), false);
    });
  });

  it("returns undefined for a container the engine does not know, or one of another attempt", async () => {
    await withDocker(async (docker, runner) => {
      const task = await newTask(["true"]);
      assert.equal(await runner.reattach({ driver: "docker", id: "0".repeat(64), startTime: new Date().toISOString() }, task), undefined);

      docker.script(["other"], { runsUntilKilled: true });
      const theirs = await runner.start(await newTask(["other"]));
      assert.equal(await runner.reattach(theirs.saved, task), undefined);
      assert.equal(await runner.reattach({ ...theirs.saved, driver: "process" }, task), undefined);
      await runner.destroy(theirs);
    });
  });
});
