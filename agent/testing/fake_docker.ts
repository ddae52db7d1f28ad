// A fake Docker Engine for the docker driver's tests: a real node:http server
// on a unix socket in a temporary directory, speaking the Engine API's HTTP
// for the endpoints the driver uses, so every request really crosses a
// socket and every log byte really goes through Docker's multiplexed framing.
//
//   const docker = await FakeDocker.start({ images: ["alpine:3.20"] });
//   docker.script("alpine:3.20", { stdout: ["hi\n"], exitCode: 3 });
//   const runner = new DockerRunner({ socketPath: docker.socketPath, logger });
//   ... start / wait / stop ...
//   docker.requests  // what the driver sent, bodies parsed
//   await docker.close();
//
// Containers do not run anything: each plays a script (output over time, then
// an exit, or running until killed). What it does not model: registries and
// auth, real signals and cgroups, log timestamps, TTYs, attach, networks.

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";

/** What a fake container does once started. */
export interface ContainerScript {
  /** Written to stdout, one log entry each, as given (add the newlines you want). */
  stdout?: (string | Uint8Array)[];
  /** Written to stderr; entries alternate with stdout's (stdout[0], stderr[0], stdout[1]...). */
  stderr?: (string | Uint8Array)[];
  /** Exit code once the output is written (default 0). */
  exitCode?: number;
  /** After the output, keeps running until a kill (or stop) ends it. */
  runsUntilKilled?: boolean;
  /** SIGTERM does nothing; only SIGKILL ends it. */
  ignoresSigterm?: boolean;
  /** After the output, is killed by the kernel for memory: exit 137, State.OOMKilled. */
  oom?: boolean;
  /** Pause before each entry of output (default 0). */
  lineDelayMs?: number;
}

/** One request the fake received. */
export interface RecordedRequest {
  method: string;
  /** The path without the /vX.Y prefix and without the query. */
  path: string;
  /** The API version prefix ("v1.43"), or "" for unversioned paths. */
  version: string;
  query: Record<string, string>;
  /** The JSON body, parsed; undefined when there was none. */
  body: unknown;
}

/** A container as the fake keeps it. */
export interface FakeContainer {
  id: string;
  name: string;
  /** The create request's body, as sent. */
  config: CreateBody;
  script: ContainerScript;
  status: "created" | "running" | "exited";
  exitCode: number;
  oomKilled: boolean;
  startedAt?: Date;
  finishedAt?: Date;
  /** Signals received through kill/stop, in order. */
  signals: string[];
  /** Log entries so far: 1 stdout, 2 stderr. */
  log: { stream: 1 | 2; data: Buffer }[];
}

/** The parts of POST /containers/create the fake reads. */
export interface CreateBody {
  Image: string;
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  HostConfig?: { Binds?: string[]; Memory?: number; MemorySwap?: number; Init?: boolean; PortBindings?: Record<string, { HostIp: string; HostPort: string }[]> };
}

export interface FakeDockerOptions {
  /** Images the engine has from the start ("alpine:3.20"; no tag means latest). */
  images?: string[];
  /** Images a pull fails for (an error line in the pull's stream). Others pull successfully. */
  missingImages?: string[];
}

type Matcher = (c: CreateBody) => boolean;

/** The largest payload of one frame; longer entries go out as several frames, as the engine splits long lines. */
const MAX_FRAME = 16 * 1024;

export class FakeDocker {
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Containers by id (removed ones are deleted from it). */
  readonly containers = new Map<string, FakeContainer>();
  /** Images the engine has, normalised to name:tag. */
  readonly images = new Set<string>();
  private readonly missing = new Set<string>();
  private readonly scripts: { match: Matcher; script: ContainerScript }[] = [];
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly logStreams = new Set<http.ServerResponse>();

  private constructor(
    private readonly server: http.Server,
    private readonly dir: string,
    /** The unix socket to give the driver. */
    readonly socketPath: string,
    options: FakeDockerOptions,
  ) {
    for (const i of options.images ?? []) this.images.add(normalise(i));
    for (const i of options.missingImages ?? []) this.missing.add(normalise(i));
  }

  static async start(options: FakeDockerOptions = {}): Promise<FakeDocker> {
    const dir = await mkdtemp(join(tmpdir(), "drover-fake-docker-"));
    const socketPath = join(dir, "docker.sock");
    const server = http.createServer();
    const fake = new FakeDocker(server, dir, socketPath, options);
    server.on("request", (req, res) => {
      fake.handle(req, res).catch((err: Error) => {
        if (!res.headersSent) reply(res, 500, { message: `fake docker: ${err.message}` });
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, resolve);
    });
    return fake;
  }

  /**
   * What containers do: by image name ("alpine:3.20"), by argv (matched
   * exactly), or by a predicate on the create body. Later scripts win. The
   * default echoes the argv, space-separated, with a newline, and exits 0.
   */
  script(match: string | string[] | Matcher, script: ContainerScript): void {
    const m: Matcher =
      typeof match === "function"
        ? match
        : Array.isArray(match)
          ? (c) => JSON.stringify(c.Cmd) === JSON.stringify(match)
          : (c) => normalise(c.Image) === normalise(match);
    this.scripts.unshift({ match: m, script });
  }

  /** The requests for method and path (path without version or query). */
  requestsTo(method: string, path: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && (typeof path === "string" ? r.path === path : path.test(r.path)));
  }

  /** The container named name (without the leading slash). */
  byName(name: string): FakeContainer | undefined {
    return [...this.containers.values()].find((c) => c.name === name);
  }

  /** Cuts every open log stream mid-way, as an agent that dies would see its connections go. */
  dropLogStreams(): void {
    for (const res of this.logStreams) res.destroy();
    this.logStreams.clear();
  }

  /** Resolves when container id has exited (or is gone). */
  async exited(id: string): Promise<void> {
    while (this.containers.get(id)?.status === "running") await new Promise<void>((r) => this.listen(id, r));
  }

  async close(): Promise<void> {
    for (const c of this.containers.values()) if (c.status === "running") this.exit(c, 137);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  // --- the API ---

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://docker");
    const versioned = /^\/(v\d+\.\d+)(\/.*)$/.exec(url.pathname);
    const path = versioned ? versioned[2]! : url.pathname;
    const raw = await readBody(req);
    const body = raw.length ? JSON.parse(raw.toString("utf8")) : undefined;
    const query = Object.fromEntries(url.searchParams);
    const method = req.method ?? "GET";
    this.requests.push({ method, path, version: versioned ? versioned[1]! : "", query, body });

    if (method === "GET" && path === "/_ping") {
      res.writeHead(200, { "Content-Type": "text/plain", "API-Version": "1.43" }).end("OK");
      return;
    }
    if (method === "GET" && path === "/version") {
      reply(res, 200, { Version: "24.0.0-fake", ApiVersion: "1.43", MinAPIVersion: "1.12", Os: "linux", Arch: "amd64" });
      return;
    }
    let m: RegExpExecArray | null;
    if (method === "GET" && (m = /^\/images\/(.+)\/json$/.exec(path))) {
      const name = normalise(decodeURIComponent(m[1]!));
      if (this.images.has(name)) reply(res, 200, { Id: `sha256:${hex(32)}`, RepoTags: [name] });
      else reply(res, 404, { message: `No such image: ${name}` });
      return;
    }
    if (method === "POST" && path === "/images/create") {
      await this.pull(query.fromImage ?? "", query.tag, res);
      return;
    }
    if (method === "POST" && path === "/containers/create") {
      this.create(query.name ?? "", body as CreateBody, res);
      return;
    }
    if ((m = /^\/containers\/([^/]+)(?:\/(\w+))?$/.exec(path))) {
      const key = decodeURIComponent(m[1]!);
      const c = this.containers.get(key) ?? this.byName(key);
      if (!c) {
        reply(res, 404, { message: `No such container: ${key}` });
        return;
      }
      const action = m[2];
      if (method === "POST" && action === "start") return this.startContainer(c, res);
      if (method === "GET" && action === "logs") return this.logs(c, query, res);
      if (method === "POST" && action === "wait") return this.waitFor(c, res);
      if (method === "GET" && action === "json") return reply(res, 200, inspect(c));
      if (method === "POST" && action === "kill") return this.kill(c, query.signal ?? "SIGKILL", res);
      if (method === "POST" && action === "stop") return this.stop(c, Number(query.t ?? 10), res);
      if (method === "DELETE" && action === undefined) return this.remove(c, query, res);
    }
    reply(res, 404, { message: `page not found: ${method} ${path}` });
  }

  private async pull(fromImage: string, tag: string | undefined, res: http.ServerResponse): Promise<void> {
    const name = normalise(tag ? `${fromImage}:${tag}` : fromImage);
    res.writeHead(200, { "Content-Type": "application/json" });
    const line = (o: object): boolean => res.write(JSON.stringify(o) + "\r\n");
    line({ status: `Pulling from ${fromImage}`, id: tag ?? "latest" });
    if (this.missing.has(name)) {
      const message = `manifest for ${name} not found: manifest unknown: manifest unknown`;
      line({ errorDetail: { message }, error: message });
      res.end();
      return;
    }
    const layer = hex(6);
    line({ status: "Pulling fs layer", progressDetail: {}, id: layer });
    for (const current of [1024, 2048, 3072]) line({ status: "Downloading", progressDetail: { current, total: 3072 }, progress: "[=====>   ]", id: layer });
    line({ status: "Download complete", progressDetail: {}, id: layer });
    line({ status: "Pull complete", progressDetail: {}, id: layer });
    line({ status: `Digest: sha256:${hex(32)}` });
    line({ status: `Status: Downloaded newer image for ${name}` });
    this.images.add(name);
    res.end();
  }

  private create(name: string, config: CreateBody, res: http.ServerResponse): void {
    if (!this.images.has(normalise(config.Image))) return reply(res, 404, { message: `No such image: ${config.Image}` });
    if (name && this.byName(name)) {
      return reply(res, 409, { message: `Conflict. The container name "/${name}" is already in use by container "${this.byName(name)!.id}".` });
    }
    const id = hex(32);
    const script = this.scripts.find((s) => s.match(config))?.script ?? { stdout: [`${(config.Cmd ?? []).join(" ")}\n`] };
    this.containers.set(id, { id, name: name || `fake_${id.slice(0, 6)}`, config, script, status: "created", exitCode: 0, oomKilled: false, signals: [], log: [] });
    reply(res, 201, { Id: id, Warnings: [] });
  }

  private startContainer(c: FakeContainer, res: http.ServerResponse): void {
    if (c.status !== "created") return void res.writeHead(304).end();
    c.status = "running";
    c.startedAt = new Date();
    res.writeHead(204).end();
    void this.play(c);
  }

  /** Plays c's script: its output over time, then its end (unless a kill came first). */
  private async play(c: FakeContainer): Promise<void> {
    const s = c.script;
    const out = s.stdout ?? [];
    const err = s.stderr ?? [];
    for (let i = 0; i < Math.max(out.length, err.length); i++) {
      for (const [stream, entry] of [[1, out[i]], [2, err[i]]] as const) {
        if (entry === undefined) continue;
        if (s.lineDelayMs) await new Promise((r) => setTimeout(r, s.lineDelayMs));
        if (c.status !== "running") return;
        c.log.push({ stream, data: Buffer.from(entry) });
        this.notify(c.id);
      }
    }
    if (c.status !== "running") return;
    if (s.oom) {
      c.oomKilled = true;
      this.exit(c, 137);
    } else if (!s.runsUntilKilled) {
      this.exit(c, s.exitCode ?? 0);
    }
  }

  private exit(c: FakeContainer, code: number): void {
    c.status = "exited";
    c.exitCode = code;
    c.finishedAt = new Date();
    this.notify(c.id);
  }

  /** The log so far, framed; with follow=1 and c running, then each new entry until it exits. */
  private async logs(c: FakeContainer, query: Record<string, string>, res: http.ServerResponse): Promise<void> {
    const wanted = (stream: 1 | 2): boolean => (stream === 1 ? query.stdout === "1" : query.stderr === "1");
    res.writeHead(200, { "Content-Type": "application/vnd.docker.multiplexed-stream" });
    this.logStreams.add(res);
    res.on("close", () => this.logStreams.delete(res));
    let sent = 0;
    for (;;) {
      for (; sent < c.log.length; sent++) {
        const entry = c.log[sent]!;
        if (!wanted(entry.stream)) continue;
        for (let at = 0; at < entry.data.length; at += MAX_FRAME) {
          if (!res.write(frame(entry.stream, entry.data.subarray(at, at + MAX_FRAME)))) await waitDrain(res);
          if (res.destroyed) return;
        }
      }
      if (query.follow !== "1" || c.status !== "running" || res.destroyed) break;
      await new Promise<void>((r) => this.listen(c.id, r));
    }
    if (!res.destroyed) res.end();
  }

  /** Long-polls until c is not running, like condition=not-running. */
  private async waitFor(c: FakeContainer, res: http.ServerResponse): Promise<void> {
    // The client may give up (a stop whose grace ran out): then stop waiting too.
    let gone = false;
    let wake: (() => void) | undefined;
    res.on("close", () => {
      gone = true;
      wake?.();
    });
    while (c.status === "running" && !gone) await new Promise<void>((r) => this.listen(c.id, (wake = r)));
    if (!gone) reply(res, 200, { StatusCode: c.exitCode, Error: null });
  }

  private kill(c: FakeContainer, signal: string, res: http.ServerResponse): void {
    if (c.status !== "running") return reply(res, 409, { message: `Container ${c.id} is not running` });
    c.signals.push(signal);
    res.writeHead(204).end();
    this.signal(c, signal);
  }

  private stop(c: FakeContainer, seconds: number, res: http.ServerResponse): void {
    if (c.status !== "running") return void res.writeHead(304).end();
    c.signals.push("SIGTERM");
    this.signal(c, "SIGTERM");
    const timer = setTimeout(() => {
      if (c.status === "running") {
        c.signals.push("SIGKILL");
        this.signal(c, "SIGKILL");
      }
    }, seconds * 1000);
    void this.exited(c.id).then(() => {
      clearTimeout(timer);
      res.writeHead(204).end();
    });
  }

  private signal(c: FakeContainer, signal: string): void {
    if (signal === "SIGTERM" && c.script.ignoresSigterm) return;
    const n = (constants.signals as Record<string, number>)[signal];
    this.exit(c, 128 + (n ?? 9));
  }

  private remove(c: FakeContainer, query: Record<string, string>, res: http.ServerResponse): void {
    if (c.status === "running") {
      if (query.force !== "1") return reply(res, 409, { message: `You cannot remove a running container ${c.id}. Stop the container before attempting removal or force remove` });
      this.exit(c, 137);
    }
    this.containers.delete(c.id);
    this.notify(c.id);
    res.writeHead(204).end();
  }

  // --- waking the long polls ---

  private listen(id: string, wake: () => void): void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(wake);
  }

  private notify(id: string): void {
    const set = this.listeners.get(id);
    this.listeners.delete(id);
    for (const wake of set ?? []) wake();
  }
}

/** One frame of the multiplexed stream: type, three zero bytes, big-endian length, payload. */
export function frame(stream: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

function inspect(c: FakeContainer): object {
  const zero = "0001-01-01T00:00:00Z";
  return {
    Id: c.id,
    Name: `/${c.name}`,
    Image: `sha256:${"0".repeat(64)}`,
    State: {
      Status: c.status,
      Running: c.status === "running",
      OOMKilled: c.oomKilled,
      Dead: false,
      Pid: c.status === "running" ? 4242 : 0,
      ExitCode: c.exitCode,
      Error: "",
      StartedAt: c.startedAt?.toISOString() ?? zero,
      FinishedAt: c.finishedAt?.toISOString() ?? zero,
    },
    Config: { Image: c.config.Image, Cmd: c.config.Cmd, Env: c.config.Env, WorkingDir: c.config.WorkingDir, Labels: c.config.Labels ?? {} },
    HostConfig: { Binds: c.config.HostConfig?.Binds ?? null, Memory: c.config.HostConfig?.Memory ?? 0, Init: c.config.HostConfig?.Init ?? false },
  };
}

/** name:tag, latest when no tag is given; digests as they are. */
function normalise(image: string): string {
  if (image.includes("@")) return image;
  return image.lastIndexOf(":") > image.lastIndexOf("/") ? image : `${image}:latest`;
}

function reply(res: http.ServerResponse, status: number, body: object): void {
  res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body) + "\n");
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function waitDrain(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
