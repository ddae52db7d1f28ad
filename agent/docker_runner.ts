// The docker driver: each command of an attempt is one container of the
// ExecSpec's image, run by the local Docker Engine through its HTTP API on a
// unix socket (node:http, no client library).
//
//   start(task)
//     GET  /images/{image}/json          present? else
//     POST /images/create                pull; progress → <bundle>/system.log
//     POST /containers/create            drover-<attempt>-<index>, labels, env,
//                                        <workDir> bound at /work, memory cap
//     POST /containers/{id}/start
//     GET  /containers/{id}/logs         follow; demultiplexed into the
//                                        command's stdout and stderr files
//   wait     POST /containers/{id}/wait, then GET /containers/{id}/json (OOMKilled)
//   stop     POST /containers/{id}/kill?signal=S, SIGKILL after the grace
//   destroy  DELETE /containers/{id}?force=1&v=1
//   reattach GET /containers/{id}/json, then the logs again from where the
//            files on disk end
//
// Containers are not created with AutoRemove: wait() needs to inspect the
// exited container (exit code, OOMKilled), and reattach() after an agent
// restart needs it to still exist. destroy() removes it.

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import http from "node:http";
import { isAbsolute, join, posix, relative, sep } from "node:path";
import { createInterface } from "node:readline";
import { finished } from "node:stream/promises";

import type { Logger } from "../lib/logger.ts";
import { fileSize } from "./bundle.ts";
import type {
  Availability,
  CommandExit,
  CommandHandle,
  CommandStatus,
  CommandTask,
  Runner,
  RunnerCapabilities,
  SavedHandle,
} from "./runner.ts";

/**
 * The Engine API version every request names. 1.43 is Docker 24 (2023); an
 * older engine answers 400 "client version 1.43 is too new", which
 * availability() reports as the reason.
 */
export const DOCKER_API_VERSION = "v1.43";
const API = `/${DOCKER_API_VERSION}`;

/** Where the engine listens when DOCKER_HOST does not say otherwise. */
export const DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock";
/** The container path the attempt's work directory is bound to. */
export const CONTAINER_WORK_DIR = "/work";

const DEFAULT_PING_TIMEOUT_MS = 2_000;
/** Bound on ordinary API calls (inspect, create, kill...); waits, pulls and log streams have none. */
const CALL_TIMEOUT_MS = 60_000;
/** How long wait() lets the log stream finish after the container exited before giving up on the rest. */
const LOG_DRAIN_MS = 10_000;

export interface DockerRunnerOptions {
  /** The engine's unix socket; default from DOCKER_HOST (unix:// only), else /var/run/docker.sock. */
  socketPath?: string;
  logger: Logger;
  /** Bound on availability()'s _ping and version requests; default 2 s. */
  pingTimeoutMs?: number;
}

/** The engine socket DOCKER_HOST names when it is a unix:// address, else the default one. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST;
  if (host?.startsWith("unix://") && host.length > "unix://".length) return host.slice("unix://".length);
  return DEFAULT_DOCKER_SOCKET;
}

/** A started container, and the log stream that copies its output to the task's files. */
class DockerHandle implements CommandHandle {
  /** Settles (never rejects) when the log stream has ended and both files are closed. */
  logs: Promise<void> = Promise.resolve();
  /** Cancels the log stream (when the stream outlives the container by too much). */
  readonly logsAbort = new AbortController();

  constructor(readonly saved: SavedHandle) {}
}

/** One piece of a frame's payload, from the stream the frame's header named. */
export interface StreamPiece {
  /** 0 stdin, 1 stdout, 2 stderr, 3 the engine's own error (systemerr). */
  stream: number;
  payload: Buffer;
}

/**
 * Splits Docker's multiplexed log stream (containers without a TTY) into
 * stdout and stderr. Each frame is an 8-byte header — the stream type, three
 * zero bytes, the payload length as a big-endian uint32 — then the payload.
 * Payloads are handed on as they arrive, in pieces if a chunk ends inside
 * one, so at most the 8 header bytes are ever held back, however large a
 * frame is.
 */
export class StreamDemuxer {
  private readonly header = Buffer.alloc(8);
  private headerBytes = 0;
  private stream = 0;
  private remaining = 0;

  /** The payload pieces chunk completes, in order. Throws when chunk is not a multiplexed stream. */
  push(chunk: Buffer): StreamPiece[] {
    const pieces: StreamPiece[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.remaining === 0) {
        const take = Math.min(8 - this.headerBytes, chunk.length - offset);
        chunk.copy(this.header, this.headerBytes, offset, offset + take);
        this.headerBytes += take;
        offset += take;
        if (this.headerBytes < 8) break;
        this.headerBytes = 0;
        if (this.header[0]! > 3 || this.header[1] !== 0 || this.header[2] !== 0 || this.header[3] !== 0) {
          throw new Error(`not a multiplexed docker stream (frame header ${this.header.toString("hex")})`);
        }
        this.stream = this.header[0]!;
        this.remaining = this.header.readUInt32BE(4);
        continue;
      }
      const take = Math.min(this.remaining, chunk.length - offset);
      pieces.push({ stream: this.stream, payload: chunk.subarray(offset, offset + take) });
      offset += take;
      this.remaining -= take;
    }
    return pieces;
  }

  /** True between frames: nothing of a frame is pending. */
  get atBoundary(): boolean {
    return this.headerBytes === 0 && this.remaining === 0;
  }
}

interface DockerResponse {
  status: number;
  body: Buffer;
}

/** What GET /containers/{id}/json says, as far as the driver reads it. */
interface ContainerInspect {
  Id: string;
  State: { Running: boolean; Status: string; ExitCode: number; OOMKilled: boolean; StartedAt: string; FinishedAt: string; Error?: string };
  Config: { Labels?: Record<string, string> | null };
  HostConfig: { Memory?: number };
}

/** Bytes of output already on disk, per stream; reattach skips that much of the log. */
interface LogOffsets {
  stdout: number;
  stderr: number;
}

export class DockerRunner implements Runner {
  readonly driver = "docker";
  readonly capabilities: RunnerCapabilities = {
    // Containers belong to the engine, not to the agent: they run on while it restarts.
    reattach: true,
    // HostConfig.Memory, the cgroup's limit (and no swap beyond it).
    memoryLimit: true,
    // The engine has no per-container niceness.
    nice: false,
    // Not measured: the cgroup's memory.peak would need the engine's stats API.
    peakRss: false,
  };

  private readonly socketPath: string;
  private readonly logger: Logger;
  private readonly pingTimeoutMs: number;
  /** wait()'s result per handle, so that it is computed once however often it is asked for. */
  private readonly exits = new WeakMap<CommandHandle, Promise<CommandExit>>();

  constructor(options: DockerRunnerOptions) {
    this.logger = options.logger.child({ component: "docker_runner" });
    this.socketPath = options.socketPath ?? defaultSocketPath();
    this.pingTimeoutMs = options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS;
    const host = process.env.DOCKER_HOST;
    if (!options.socketPath && host && !host.startsWith("unix://")) {
      this.logger.info({ dockerHost: host, socketPath: this.socketPath }, "DOCKER_HOST is not a unix socket; the docker driver uses the default socket");
    }
  }

  async availability(): Promise<Availability> {
    try {
      const ping = await this.call("GET", "/_ping", { timeoutMs: this.pingTimeoutMs, versioned: false });
      if (ping.status !== 200 || ping.body.toString().trim() !== "OK") {
        return { available: false, reason: `${this.socketPath} answered GET /_ping with ${ping.status} ${JSON.stringify(snippet(ping.body))}: not a docker engine` };
      }
      // Versioned, so that an engine too old for our API version says so here rather than at the first start().
      const version = await this.call("GET", "/version", { timeoutMs: this.pingTimeoutMs });
      if (version.status !== 200) {
        return { available: false, reason: `docker at ${this.socketPath} refused API ${DOCKER_API_VERSION}: ${errorMessage(version)}` };
      }
      const v = parseJson(version.body) as { Version?: string; ApiVersion?: string; Os?: string; Arch?: string } | undefined;
      this.logger.info({ socketPath: this.socketPath, version: v?.Version, apiVersion: v?.ApiVersion, os: v?.Os, arch: v?.Arch }, "docker engine found");
      return { available: true };
    } catch (err) {
      return { available: false, reason: this.unreachable(err) };
    }
  }

  async start(task: CommandTask): Promise<CommandHandle> {
    const image = task.exec.image;
    if (!image) throw new Error("the docker driver needs an image (ExecSpec.image is empty)");
    if (!IMAGE_REFERENCE.test(image)) throw new Error(`${JSON.stringify(image)} is not an image reference`);
    const workingDir = containerWorkingDir(task.workDir, task.cwd);
    const log = task.logger.child({ component: "docker_runner", image, index: task.index });
    try {
      await this.ensureImage(image, task, log);
      const id = await this.create(task, workingDir);
      const started = await this.call("POST", `/containers/${id}/start`);
      if (started.status !== 204 && started.status !== 304) {
        // The container exists but its command could not run (an executable not in the image, say): it is of no use.
        await this.remove(id, log);
        throw new Error(`docker could not start the command in ${image}: ${errorMessage(started)}`);
      }
      const handle = new DockerHandle({ driver: this.driver, id, startTime: new Date().toISOString(), extra: { name: containerName(task), image } });
      handle.logs = this.copyLogs(handle, task, { follow: true, skip: { stdout: 0, stderr: 0 } });
      log.debug({ containerId: id }, "container started");
      return handle;
    } catch (err) {
      if (isConnectionError(err)) throw new Error(this.unreachable(err));
      throw err;
    }
  }

  wait(handle: CommandHandle): Promise<CommandExit> {
    let exit = this.exits.get(handle);
    if (!exit) {
      // A handle this runner did not make (rebuilt from its SavedHandle) has no log stream to drain.
      exit = this.waitOnce(handle instanceof DockerHandle ? handle : new DockerHandle(handle.saved));
      this.exits.set(handle, exit);
    }
    return exit;
  }

  async stop(handle: CommandHandle, graceMs: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const id = handle.saved.id;
    try {
      if (!(await this.kill(id, signal)) || signal === "SIGKILL") return;
      if (await this.exitsWithin(id, graceMs)) return;
      this.logger.debug({ containerId: id, graceMs, signal }, "container outlived the grace period; sending SIGKILL");
      await this.kill(id, "SIGKILL");
    } catch (err) {
      this.logger.warn({ containerId: id, err: describe(err) }, "could not stop container");
    }
  }

  async status(handle: CommandHandle): Promise<CommandStatus> {
    const c = await this.inspect(handle.saved.id);
    if (!c) return "gone";
    return c.State.Running ? "running" : "exited";
  }

  async destroy(handle: CommandHandle): Promise<void> {
    await this.remove(handle.saved.id, this.logger);
  }

  /**
   * Output on reattach. The log files hold exactly what the engine sent
   * before the agent went down, in order, so their sizes are the offsets to
   * resume from: the logs are read again from the beginning and the first
   * <size> bytes of each stream are skipped. Nothing is written twice and
   * nothing is lost, including what the container wrote while no agent
   * listened. `since=<time>` was the alternative and is worse either way:
   * the handle's start time repeats everything already on disk, and the
   * files' mtime (coarse, and racing the engine's own timestamps) can drop
   * or repeat the lines at the seam. The one case this misses is an engine
   * whose log driver rotated away the start of the log (json-file with
   * max-size): then the offsets no longer line up.
   */
  async reattach(saved: SavedHandle, task: CommandTask): Promise<CommandHandle | CommandExit | undefined> {
    if (saved.driver !== this.driver) return undefined;
    const log = task.logger.child({ component: "docker_runner", containerId: saved.id, index: task.index });
    let c: ContainerInspect | undefined;
    try {
      c = await this.inspect(saved.id);
    } catch (err) {
      log.warn({ err: describe(err) }, "cannot inspect container to reattach");
      return undefined;
    }
    if (!c) return undefined;
    // Container ids are unique; the label check is against a manifest pointing at someone else's container.
    const labels = c.Config.Labels ?? {};
    if (labels["drover.attempt_id"] !== task.attemptId) {
      log.warn({ labels }, "container to reattach belongs to another attempt");
      return undefined;
    }
    const skip = { stdout: await fileSize(task.stdoutPath), stderr: await fileSize(task.stderrPath) };
    const handle = new DockerHandle(saved);
    if (c.State.Running) {
      handle.logs = this.copyLogs(handle, task, { follow: true, skip });
      log.info({ skip }, "reattached to running container");
      return handle;
    }
    // It ended while the agent was down: collect the rest of its output and how it ended, then remove it,
    // since no handle is returned that destroy() could be called with.
    await this.copyLogs(handle, task, { follow: false, skip });
    const exit = exitOf(c.State.ExitCode, c);
    await this.remove(saved.id, log);
    log.info({ exitCode: exit.exitCode, failure: exit.failure }, "container ended while the agent was away");
    return exit;
  }

  // --- the steps of start() ---

  /** Pulls image unless the engine has it. A tag already present is not refreshed. */
  private async ensureImage(image: string, task: CommandTask, log: Logger): Promise<void> {
    // As the docker CLI does, the reference goes into the path as it is, slashes and all (start() checked its characters).
    const found = await this.call("GET", `/images/${image}/json`);
    if (found.status === 200) return;
    if (found.status !== 404) throw new Error(`docker could not look up image ${image}: ${errorMessage(found)}`);

    const systemLog = createWriteStream(join(task.bundleDir, "system.log"), { flags: "a" });
    let writeError: Error | undefined;
    systemLog.on("error", (err) => (writeError ??= err));
    const note = (text: string): void => {
      log.debug({ progress: text }, "pulling image");
      systemLog.write(`${new Date().toISOString()} docker pull ${image}: ${text}\n`);
    };
    try {
      note("not on this machine; pulling");
      const { fromImage, tag } = splitReference(image);
      const query = new URLSearchParams({ fromImage, ...(tag ? { tag } : {}) });
      const res = await this.open("POST", `/images/create?${query}`);
      if (res.statusCode !== 200) {
        const failure = `docker could not pull image ${image}: ${errorMessage({ status: res.statusCode ?? 0, body: await readAll(res) })}`;
        note(failure);
        throw new Error(failure);
      }
      // The body is one JSON object per line until the pull ends; a failure is a line with error/errorDetail.
      let failure: string | undefined;
      for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
        const m = parseJson(Buffer.from(line)) as PullMessage | undefined;
        if (!m) continue;
        if (m.error || m.errorDetail) {
          failure = m.errorDetail?.message ?? m.error ?? "unknown error";
          note(`error: ${failure}`);
          continue;
        }
        const text = progressText(m);
        if (text) note(text);
      }
      if (failure) throw new Error(`docker could not pull image ${image}: ${failure}`);
    } finally {
      systemLog.end();
      await finished(systemLog).catch(() => undefined);
      if (writeError) log.warn({ err: writeError.message }, "could not write system.log");
    }
  }

  /** Creates the command's container; returns its id. */
  private async create(task: CommandTask, workingDir: string): Promise<string> {
    const argv = task.command.argv;
    const memory = Number(task.exec.memoryLimitBytes);
    // A replica's port, published on every interface as a process listening on it would be.
    const port = task.port ? `${task.port}/tcp` : undefined;
    const body = {
      Image: task.exec.image,
      Cmd: task.shell ? ["/bin/sh", "-c", argv.join(" ")] : argv,
      Env: Object.entries(task.env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: workingDir,
      Labels: {
        "drover.attempt_id": task.attemptId,
        "drover.job_id": task.jobId,
        "drover.command_index": String(task.index),
      },
      ...(port ? { ExposedPorts: { [port]: {} } } : {}),
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      HostConfig: {
        Binds: [`${task.workDir}:${CONTAINER_WORK_DIR}`],
        // A small init as PID 1 (docker-init, tini): PID 1 gets no default signal handlers, so without it a
        // command that never installed a SIGTERM handler would ignore stop()'s SIGTERM and always wait out the grace.
        Init: true,
        // MemorySwap equal to Memory: no swap on top, so the cap is a cap.
        ...(memory > 0 ? { Memory: memory, MemorySwap: memory } : {}),
        ...(port ? { PortBindings: { [port]: [{ HostIp: "", HostPort: String(task.port) }] } } : {}),
      },
    };
    const name = containerName(task);
    let res = await this.call("POST", `/containers/create?name=${encodeURIComponent(name)}`, { body });
    if (res.status === 409) {
      // Our own leftover (an agent that died between create and saving the handle): remove it and create afresh.
      const old = await this.inspect(name);
      const labels = old?.Config.Labels ?? {};
      if (labels["drover.attempt_id"] !== task.attemptId || labels["drover.command_index"] !== String(task.index)) {
        throw new Error(`docker could not create container ${name}: ${errorMessage(res)}`);
      }
      await this.remove(name, task.logger);
      res = await this.call("POST", `/containers/create?name=${encodeURIComponent(name)}`, { body });
    }
    if (res.status !== 201) throw new Error(`docker could not create a container of ${task.exec.image}: ${errorMessage(res)}`);
    const created = parseJson(res.body) as { Id?: string; Warnings?: string[] } | undefined;
    if (!created?.Id) throw new Error(`docker created a container of ${task.exec.image} but did not say its id`);
    for (const w of created.Warnings ?? []) task.logger.warn({ containerId: created.Id, warning: w }, "docker warning on create");
    return created.Id;
  }

  /**
   * Copies the container's output into the task's files until the log stream
   * ends (the container exited, or follow is false and the log is read).
   * Writes respect the files' backpressure, so output is never held in
   * memory beyond a chunk. Never rejects: a broken stream is logged and the
   * files keep what arrived.
   */
  private async copyLogs(handle: DockerHandle, task: CommandTask, o: { follow: boolean; skip: LogOffsets }): Promise<void> {
    const id = handle.saved.id;
    const log = task.logger.child({ component: "docker_runner", containerId: id });
    const out = createWriteStream(task.stdoutPath, { flags: "a" });
    const err = createWriteStream(task.stderrPath, { flags: "a" });
    let writeError: Error | undefined;
    const onWriteError = (e: Error): void => {
      writeError ??= e;
      handle.logsAbort.abort();
    };
    out.on("error", onWriteError);
    err.on("error", onWriteError);
    const skip = { ...o.skip };
    try {
      const query = `follow=${o.follow ? 1 : 0}&stdout=1&stderr=1`;
      const res = await this.open("GET", `/containers/${id}/logs?${query}`, { signal: handle.logsAbort.signal });
      if (res.statusCode !== 200) {
        log.warn({ status: res.statusCode, message: errorMessage({ status: res.statusCode ?? 0, body: await readAll(res) }) }, "docker would not give the container's logs");
        return;
      }
      const demuxer = new StreamDemuxer();
      for await (const chunk of res) {
        for (const piece of demuxer.push(chunk as Buffer)) {
          if (piece.stream === 3) {
            log.warn({ message: piece.payload.toString() }, "docker reported an error in the log stream");
            continue;
          }
          const key = piece.stream === 2 ? "stderr" : "stdout";
          let payload = piece.payload;
          if (skip[key] > 0) {
            const n = Math.min(skip[key], payload.length);
            skip[key] -= n;
            payload = payload.subarray(n);
            if (payload.length === 0) continue;
          }
          const file = key === "stderr" ? err : out;
          if (!file.write(payload)) await once(file, "drain");
        }
      }
    } catch (e) {
      if (writeError) log.error({ err: writeError.message }, "could not write the command's output");
      else log.warn({ err: describe(e) }, "stopped following the container's logs");
    } finally {
      out.end();
      err.end();
      await Promise.all([finished(out).catch(() => undefined), finished(err).catch(() => undefined)]);
    }
  }

  // --- wait and stop ---

  private async waitOnce(handle: DockerHandle): Promise<CommandExit> {
    const id = handle.saved.id;
    const ended = (failure: string): CommandExit => ({ exitCode: -1, signal: "", peakRssBytes: 0, endTime: new Date(), failure });
    let exit: CommandExit;
    try {
      const res = await this.call("POST", `/containers/${id}/wait`, { timeoutMs: 0 });
      if (res.status === 404) {
        exit = ended("the container disappeared before it ended (removed outside the agent?)");
      } else if (res.status !== 200) {
        exit = ended(`docker could not wait for the container: ${errorMessage(res)}`);
      } else {
        const w = parseJson(res.body) as { StatusCode?: number; Error?: { Message?: string } | null } | undefined;
        const c = await this.inspect(id).catch(() => undefined);
        exit = exitOf(w?.StatusCode ?? -1, c);
        if (w?.Error?.Message && !exit.failure) exit.failure = w.Error.Message;
      }
    } catch (err) {
      exit = ended(`lost the docker engine while waiting for the container: ${isConnectionError(err) ? this.unreachable(err) : describe(err)}`);
    }
    // All output on disk before anyone reads the files; a stream that does not end soon after the exit is cut.
    if (!(await settlesWithin(handle.logs, LOG_DRAIN_MS))) {
      this.logger.warn({ containerId: id, drainMs: LOG_DRAIN_MS }, "log stream still open after the container ended; cutting it");
      handle.logsAbort.abort();
      await handle.logs;
    }
    return exit;
  }

  /** Sends signal; false when there was nothing to signal (gone, or not running). */
  private async kill(id: string, signal: NodeJS.Signals): Promise<boolean> {
    const res = await this.call("POST", `/containers/${id}/kill?signal=${signal}`);
    if (res.status === 204) return true;
    if (res.status === 404 || res.status === 409) return false;
    throw new Error(`docker could not send ${signal}: ${errorMessage(res)}`);
  }

  /**
   * True when the container stops running within ms. kill + kill rather than
   * POST /stop?t=: /stop takes whole seconds, sends the image's StopSignal
   * instead of the one asked for, and holds the request open for the whole
   * grace; this way the grace is exact and the signal is the caller's.
   */
  private async exitsWithin(id: string, ms: number): Promise<boolean> {
    try {
      const res = await this.call("POST", `/containers/${id}/wait`, { timeoutMs: 0, signal: AbortSignal.timeout(Math.max(0, ms)) });
      return res.status === 200 || res.status === 404;
    } catch (err) {
      if ((err as Error).name === "AbortError" || (err as Error).name === "TimeoutError") return false;
      throw err;
    }
  }

  /** DELETE with force (a running container is killed) and v (its anonymous volumes go too). Never throws. */
  private async remove(id: string, log: Logger): Promise<void> {
    try {
      const res = await this.call("DELETE", `/containers/${id}?force=1&v=1`);
      // 409: a removal already in progress.
      if (res.status !== 204 && res.status !== 404 && res.status !== 409) {
        log.warn({ containerId: id, status: res.status, message: errorMessage(res) }, "docker could not remove container");
      }
    } catch (err) {
      log.warn({ containerId: id, err: describe(err) }, "could not remove container");
    }
  }

  private async inspect(idOrName: string): Promise<ContainerInspect | undefined> {
    const res = await this.call("GET", `/containers/${encodeURIComponent(idOrName)}/json`);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new Error(`docker could not inspect container ${idOrName}: ${errorMessage(res)}`);
    return parseJson(res.body) as ContainerInspect;
  }

  // --- HTTP over the unix socket ---

  /** Opens a request and resolves with the response once its headers are in; the body is the caller's to read. */
  private open(
    method: string,
    path: string,
    o: { body?: unknown; timeoutMs?: number; signal?: AbortSignal; versioned?: boolean } = {},
  ): Promise<http.IncomingMessage> {
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body));
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path: (o.versioned === false ? "" : API) + path,
          headers: payload ? { "Content-Type": "application/json", "Content-Length": payload.length } : {},
          signal: o.signal,
        },
        resolve,
      );
      req.on("error", reject);
      if (o.timeoutMs) {
        req.setTimeout(o.timeoutMs, () => req.destroy(new DockerTimeout(`${method} ${path}`, o.timeoutMs!)));
      }
      req.end(payload);
    });
  }

  /** A whole request: status and body. Default timeout CALL_TIMEOUT_MS; 0 for none (long polls). */
  private async call(
    method: string,
    path: string,
    o: { body?: unknown; timeoutMs?: number; signal?: AbortSignal; versioned?: boolean } = {},
  ): Promise<DockerResponse> {
    const res = await this.open(method, path, { ...o, timeoutMs: o.timeoutMs ?? CALL_TIMEOUT_MS });
    return { status: res.statusCode ?? 0, body: await readAll(res) };
  }

  /** Why the engine could not be reached, naming the socket. */
  private unreachable(err: unknown): string {
    const code = (err as NodeJS.ErrnoException).code;
    const at = this.socketPath;
    if (err instanceof DockerTimeout) return `docker at ${at} did not answer ${err.request} within ${err.ms} ms`;
    if (code === "ENOENT") return `no docker socket at ${at} (ENOENT): is docker installed and running?`;
    if (code === "ECONNREFUSED") return `nothing accepts connections on ${at} (ECONNREFUSED): is the docker engine running?`;
    if (code === "EACCES" || code === "EPERM") return `permission denied on ${at} (${code}): the agent's user needs access to the docker socket`;
    return `cannot talk to docker at ${at}: ${describe(err)}`;
  }
}

class DockerTimeout extends Error {
  constructor(
    readonly request: string,
    readonly ms: number,
  ) {
    super(`${request} timed out after ${ms} ms`);
  }
}

interface PullMessage {
  status?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * A pull message as a line a person reads, or undefined for the many
 * intermediate "Downloading [==>   ]" ticks of one layer: system.log keeps
 * each layer's steps, not every percent of them.
 */
function progressText(m: PullMessage): string | undefined {
  if (!m.status) return undefined;
  if (m.progressDetail?.current !== undefined) return undefined;
  return m.id ? `${m.id}: ${m.status}` : m.status;
}

/** How a container ended, from its wait status code and (when it could be read) its inspect. */
function exitOf(statusCode: number, c: ContainerInspect | undefined): CommandExit {
  // A container killed by signal N reports 128+N, as a shell would; that cannot be told apart from a
  // command that exited with 128+N itself, so the code is passed on as it is and signal stays "".
  const exit: CommandExit = { exitCode: statusCode, signal: "", peakRssBytes: 0, endTime: finishedAt(c) };
  if (c?.State.OOMKilled) {
    const limit = c.HostConfig.Memory ?? 0;
    exit.failure = limit > 0 ? `out of memory (the container's limit is ${limit} bytes)` : "out of memory (the container had no limit: the machine ran out)";
  } else if (c?.State.Error) {
    exit.failure = c.State.Error;
  }
  return exit;
}

function finishedAt(c: ContainerInspect | undefined): Date {
  const t = c ? Date.parse(c.State.FinishedAt) : NaN;
  // The engine says 0001-01-01T00:00:00Z for "not finished".
  return Number.isFinite(t) && t > 0 ? new Date(t) : new Date();
}

/** The container's working directory for a host cwd inside workDir (bound at /work). */
export function containerWorkingDir(workDir: string, cwd: string): string {
  const rel = relative(workDir, cwd);
  if (rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new Error(`the docker driver mounts only the work directory; cwd ${cwd} is outside ${workDir}`);
  }
  return rel === "" ? CONTAINER_WORK_DIR : posix.join(CONTAINER_WORK_DIR, ...rel.split(/[\\/]/));
}

/** drover-<attempt>-<index>, held to the characters docker allows in names. */
function containerName(task: CommandTask): string {
  return `drover-${task.attemptId}-${task.index}`.replace(/[^A-Za-z0-9_.-]/g, "_");
}

/**
 * fromImage and tag for POST /images/create. Without a tag the engine would
 * pull every tag of the repository, so a reference without one pulls
 * "latest", as `docker pull` does. A digest reference goes whole in fromImage.
 */
export function splitReference(image: string): { fromImage: string; tag?: string } {
  if (image.includes("@")) return { fromImage: image };
  const colon = image.lastIndexOf(":");
  // A colon before the last slash belongs to a registry's port (registry:5000/app).
  if (colon > image.lastIndexOf("/")) return { fromImage: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { fromImage: image, tag: "latest" };
}

/** What an image reference may contain: docker's grammar is stricter, but nothing outside this set is valid. */
const IMAGE_REFERENCE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/;

/** The engine's error message ({"message": ...}) or the start of the body. */
function errorMessage(res: DockerResponse): string {
  const m = (parseJson(res.body) as { message?: string } | undefined)?.message;
  return m ? m : `HTTP ${res.status} ${snippet(res.body)}`.trim();
}

function snippet(body: Buffer): string {
  const s = body.toString("utf8").trim();
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
}

async function readAll(res: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return err instanceof DockerTimeout || code === "ENOENT" || code === "ECONNREFUSED" || code === "EACCES" || code === "EPERM" || code === "ECONNRESET";
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** True when promise settles within ms (its timer cleared either way). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
