// Which gRPC client should the agent use for its one long-lived stream to
// Fleet: connect-node's gRPC transport or @grpc/grpc-js? Measured on
// grpc.health.v1.Health of a real dev-mode server (Watch is a server stream
// that stays open; FleetService.Connect is not implemented yet), each client
// in its own process (agent_stream_client/worker.ts):
//
//   memory      RSS and heap per open stream, with 1, 100, 1000 streams;
//   reconnect   SIGTERM the server with 100 streams open, restart it on the
//               same port, time until every stream is open again through a
//               simple re-open loop, and which errors the client saw;
//   keepalive   through a TCP proxy: does a configured PING keep an idle
//               stream alive past a 3 s idle timeout, and does it detect a
//               peer that vanished without a FIN;
//   throughput  unary Health/Check calls per second, 1 and 16 in flight.
//
// Run alone with `node --import tsx bench/agent_stream_client.ts`; results
// go to bench/results/agent_stream_client.json.

import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LIBRARIES, type Keepalive, type Library } from "./agent_stream_client/client.ts";
import { TcpProxy } from "./agent_stream_client/tcp_proxy.ts";
import type { WorkerConfig } from "./agent_stream_client/worker.ts";
import {
  freePort,
  machine,
  sleep,
  printTable,
  ROOT,
  round,
  cpuMsOf,
  fmtSummary,
  progress,
  rssOf,
  runBenchmark,
  summarize,
  spawnNode,
  waitForServing,
  within,
  writeResult,
  type Cleanup,
  type ManagedProcess,
} from "./harness.ts";

const MEMORY_STREAMS = [1, 100, 1000];
const RECONNECT_STREAMS = 100;
/** How many times the server is killed and restarted at once under the open streams, per library. */
const RECONNECT_ROUNDS = 3;
/** Then once more with the server kept down this long, to show the effect of a library's own backoff. */
const OUTAGE_MS = 8_000;
/** The re-open loop's delay after a stream ends or fails to open, ±50% jitter. */
const RETRY_DELAY_MS = 200;
const KEEPALIVE: Keepalive = { intervalMs: 1_000, timeoutMs: 1_000 };
/** The proxy's idle timeout, standing in for a NAT or load balancer. */
const PROXY_IDLE_MS = 3_000;
/** How long an idle (or cut-off) stream is watched. */
const IDLE_WATCH_MS = 6_000;
const THROUGHPUT_MS = 3_000;
const THROUGHPUT_CONCURRENCY = [1, 16];

const WORKER = fileURLToPath(new URL("./agent_stream_client/worker.ts", import.meta.url));

type Message = { type: string } & Record<string, unknown>;

/** A worker process; its messages are consumed in order with next(). */
class Worker {
  private readonly child: ChildProcess;
  private readonly inbox: Message[] = [];
  private readonly waiters = new Set<() => void>();
  private stderrTail = "";
  private exited = false;

  constructor(cleanup: Cleanup, config: WorkerConfig) {
    this.child = fork(WORKER, [JSON.stringify(config)], {
      cwd: ROOT,
      execArgv: ["--import", "tsx", "--expose-gc"],
      stdio: ["ignore", "inherit", "pipe", "ipc"],
    });
    this.child.stderr!.on("data", (chunk: Buffer) => (this.stderrTail = (this.stderrTail + chunk.toString()).slice(-3000)));
    this.child.on("message", (m: Message) => {
      this.inbox.push(m);
      this.wake();
    });
    this.child.on("exit", () => {
      this.exited = true;
      this.wake();
    });
    cleanup.defer(`kill worker ${config.library} ${config.scenario}`, () => {
      if (!this.exited) this.child.kill("SIGKILL");
    });
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  /** The next message of `type`; undefined if none came within `ms`. Throws if the worker failed. */
  async maybeNext(type: string, ms: number): Promise<Message | undefined> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(() => resolve(undefined)), ms);
      const finish = (then: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        then();
      };
      const check = () => {
        const failed = this.inbox.find((m) => m.type === "failed");
        if (failed) return finish(() => reject(new Error(`worker failed: ${String(failed.error)}\n${this.stderrTail}`)));
        const index = this.inbox.findIndex((m) => m.type === type);
        if (index >= 0) return finish(() => resolve(this.inbox.splice(index, 1)[0]));
        if (this.exited) finish(() => reject(new Error(`worker exited before sending "${type}"\n${this.stderrTail}`)));
      };
      this.waiters.add(check);
      check();
    });
  }

  async next(type: string, ms: number): Promise<Message> {
    const m = await this.maybeNext(type, ms);
    if (!m) throw new Error(`no "${type}" from the worker within ${ms} ms\n${this.stderrTail}`);
    return m;
  }

  finish(): void {
    if (!this.exited) this.child.send({ type: "finish" });
  }

  /** Asks the worker to finish and returns its "done" message. */
  async done(ms = 15_000): Promise<Message> {
    this.finish();
    return this.next("done", ms);
  }
}

/** The dev-mode server the clients talk to; restartable on the same port and data directory. */
class DevServer {
  proc!: ManagedProcess;
  constructor(
    private readonly cleanup: Cleanup,
    readonly dataDir: string,
    readonly port: number,
  ) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Spawns it and resolves once Health/Check answers SERVING. */
  async start(): Promise<void> {
    this.proc = spawnNode(this.cleanup, "dev server", ["--import", "tsx", "services/dev/main.ts", "--data-dir", this.dataDir], {
      DROVER_GRPC_PORT: String(this.port),
      DROVER_HTTP_PORT: "0",
    });
    const proc = this.proc;
    try {
      await waitForServing(this.baseUrl, { ms: 30_000, alive: () => proc.running });
    } catch (err) {
      throw new Error(`${(err as Error).message}\nstderr: ${proc.stderr}`);
    }
  }
}

// ---------------------------------------------------------------- memory

async function measureMemory(cleanup: Cleanup, server: DevServer, library: Library, streams: number) {
  const serverBefore = await rssOf(server.proc.pid);
  const worker = new Worker(cleanup, { scenario: "memory", library, baseUrl: server.baseUrl, streams, deadlineMs: 60_000 });
  const opened = await worker.next("opened", 45_000);
  const serverAfter = await rssOf(server.proc.pid);
  const done = await worker.done();
  const before = opened.before as Record<string, number>;
  const after = opened.after as Record<string, number>;
  const delta = (key: string) => after[key]! - before[key]!;
  return {
    library,
    streams,
    openMs: round(opened.openMs as number),
    clientBaseRssMiB: round(before.rss! / 2 ** 20),
    clientRssDeltaKiB: round(delta("rss") / 1024),
    clientHeapDeltaKiB: round(delta("heapUsed") / 1024),
    rssPerStreamKiB: round(delta("rss") / 1024 / streams, 2),
    heapPerStreamKiB: round(delta("heapUsed") / 1024 / streams, 2),
    externalPerStreamKiB: round(delta("external") / 1024 / streams, 2),
    // PGlite's heap makes this swing by hundreds of MiB either way: kept for the record, not shown.
    serverRssDeltaMiB: serverBefore && serverAfter ? round((serverAfter - serverBefore) / 2 ** 20) : null,
    endCodesOnCancel: done.endCodesOnCancel,
  };
}

// ---------------------------------------------------------------- reconnect

/** What the old server logged from SIGTERM on: how calls ended, and anything at warn or above. */
function shutdownLog(proc: ManagedProcess) {
  const from = proc.lines.findIndex((l) => l.msg === "signal received");
  const lines = from >= 0 ? proc.lines.slice(from) : [];
  const failedByCode: Record<string, number> = {};
  const problems: string[] = [];
  for (const l of lines) {
    if (l.msg === "call failed") {
      const key = `${String(l.method)} ${String(l.code)}`;
      failedByCode[key] = (failedByCode[key] ?? 0) + 1;
    }
    if (typeof l.level === "number" && l.level >= 40 && problems.length < 5) problems.push(JSON.stringify(l).slice(0, 300));
  }
  return { callsFailedByMethodAndCode: failedByCode, warningsOrErrors: problems, stoppedLogged: lines.some((l) => l.msg === "stopped") };
}

/** One kill-and-restart of the server under open streams. */
async function reconnectRound(server: DevServer, worker: Worker, downForMs = 0) {
  const killAt = Date.now();
  const stopped = await server.proc.stop();
  const exitAt = Date.now();
  const serverLog = shutdownLog(server.proc);
  await sleep(downForMs);
  await server.start();
  const servingAt = Date.now();
  const allUp = await worker.maybeNext("allUp", 40_000);
  const firstDown = await worker.maybeNext("firstDown", 0);
  const allDown = await worker.maybeNext("allDown", 0);
  const since = (m: Message | undefined, t: number) => (m ? (m.at as number) - t : null);
  return {
    serverStopMs: round(stopped.ms),
    serverExitCode: stopped.code,
    killToFirstStreamEndMs: since(firstDown, killAt),
    killToAllStreamsEndedMs: since(allDown, killAt),
    serverDownMs: servingAt - exitAt,
    killToAllReopenedMs: since(allUp, killAt),
    servingToAllReopenedMs: since(allUp, servingAt),
    serverLog,
  };
}

async function measureReconnect(cleanup: Cleanup, server: DevServer, library: Library) {
  const worker = new Worker(cleanup, {
    scenario: "reconnect",
    library,
    baseUrl: server.baseUrl,
    streams: RECONNECT_STREAMS,
    retryDelayMs: RETRY_DELAY_MS,
    deadlineMs: 150_000,
  });
  await worker.next("allUp", 20_000);
  const rounds = [];
  for (let i = 0; i < RECONNECT_ROUNDS; i++) {
    const round = await reconnectRound(server, worker);
    rounds.push(round);
    if (round.servingToAllReopenedMs === null) break; // the client did not recover: more rounds say nothing
  }
  const outage = rounds.length === RECONNECT_ROUNDS ? await reconnectRound(server, worker, OUTAGE_MS) : null;
  const done = await worker.done();
  const reopened = rounds.map((r) => r.servingToAllReopenedMs).filter((ms): ms is number => ms !== null);
  const ended = rounds.map((r) => r.killToAllStreamsEndedMs).filter((ms): ms is number => ms !== null);
  return {
    library,
    streams: RECONNECT_STREAMS,
    retryDelayMs: RETRY_DELAY_MS,
    allReopenedEveryRound: reopened.length === RECONNECT_ROUNDS,
    servingToAllReopenedMs: reopened.length ? summarize(reopened) : null,
    killToAllStreamsEndedMs: ended.length ? summarize(ended) : null,
    serverDownMs: summarize(rounds.map((r) => r.serverDownMs)),
    streamEnds: done.streamEnds as Record<string, number>,
    streamEndMessages: done.endMessages,
    failedReopenAttempts: done.failedAttempts as Record<string, number>,
    failedReopenMessages: done.failedMessages,
    statusMessagesReceived: done.statusMessages,
    attempts: done.attempts,
    rounds,
    outage: outage && { serverDownMs: outage.serverDownMs, servingToAllReopenedMs: outage.servingToAllReopenedMs, killToAllReopenedMs: outage.killToAllReopenedMs },
  };
}

// ---------------------------------------------------------------- keepalive

interface KeepaliveCase {
  name: string;
  keepalive?: Keepalive;
  /** The fault: "idle" (proxy closes idle connections) or "freeze" (peer vanishes). */
  fault: "idle" | "freeze";
}

const KEEPALIVE_CASES: KeepaliveCase[] = [
  { name: `idle ${PROXY_IDLE_MS / 1000} s cut, no ping`, fault: "idle" },
  { name: `idle ${PROXY_IDLE_MS / 1000} s cut, ping ${KEEPALIVE.intervalMs / 1000} s`, fault: "idle", keepalive: KEEPALIVE },
  { name: "vanished peer, no ping", fault: "freeze" },
  { name: `vanished peer, ping ${KEEPALIVE.intervalMs / 1000} s / timeout ${KEEPALIVE.timeoutMs / 1000} s`, fault: "freeze", keepalive: KEEPALIVE },
];

async function measureKeepalive(cleanup: Cleanup, server: DevServer, library: Library, c: KeepaliveCase) {
  const proxy = new TcpProxy({ host: "127.0.0.1", port: server.port }, { idleTimeoutMs: c.fault === "idle" ? PROXY_IDLE_MS : 0 });
  cleanup.defer("close proxy", () => proxy.close());
  const baseUrl = await proxy.listen();
  const worker = new Worker(cleanup, { scenario: "keepalive", library, baseUrl, keepalive: c.keepalive, deadlineMs: 40_000 });
  await worker.next("up", 20_000);
  const bytesAtUp = proxy.bytes.toServer;
  const faultAt = Date.now();
  if (c.fault === "freeze") proxy.freeze();
  const ended = await worker.maybeNext("ended", IDLE_WATCH_MS);
  const done = await worker.done();
  await proxy.close();
  return {
    library,
    case: c.name,
    fault: c.fault,
    keepalive: c.keepalive ?? null,
    openAfterMs: ended ? null : IDLE_WATCH_MS,
    stillOpen: done.open as boolean,
    endedAfterMs: ended ? (ended.at as number) - faultAt : null,
    endCode: ended?.code ?? null,
    endMessage: ended?.message ?? null,
    bytesClientToServerAfterUp: proxy.bytes.toServer - bytesAtUp,
    idleClosedByProxy: proxy.idleClosed,
  };
}

// ---------------------------------------------------------------- throughput

async function measureThroughput(cleanup: Cleanup, server: DevServer, library: Library, concurrency: number) {
  const worker = new Worker(cleanup, {
    scenario: "throughput",
    library,
    baseUrl: server.baseUrl,
    concurrency,
    durationMs: THROUGHPUT_MS,
    deadlineMs: 30_000,
  });
  // The worker warms up for 300 ms before its measured run; the server's CPU is read around both.
  const serverCpuBefore = await cpuMsOf(server.proc.pid);
  const done = await worker.next("done", 25_000);
  const serverCpuAfter = await cpuMsOf(server.proc.pid);
  const calls = done.calls as number;
  return {
    library,
    concurrency,
    callsPerSec: Math.round(calls / (done.seconds as number)),
    errors: done.errors,
    firstError: done.firstError ?? null,
    clientCpuUsPerCall: round(((done.cpuMs as number) * 1000) / calls, 1),
    clientRssMiB: round((done.rss as number) / 2 ** 20),
    serverCpuShare:
      serverCpuBefore !== undefined && serverCpuAfter !== undefined
        ? round((serverCpuAfter - serverCpuBefore) / (((done.seconds as number) + 0.3) * 1000), 2)
        : null,
  };
}

/** What each library offers for keepalive and reconnection (from their documentation and source, versions in package.json). */
const KEEPALIVE_OPTIONS = {
  "connect-node": {
    keepalive:
      "createGrpcTransport / Http2SessionManager options: pingIntervalMs (default: no pings), pingTimeoutMs (default 15000), " +
      "pingIdleConnection (default false: ping only while streams are open), idleConnectionTimeoutMs (default 900000)",
    reconnect:
      "no backoff: the session manager dials again on the next call after a failed or closed connection; a GOAWAY lets open streams finish while new calls use a new connection",
  },
  "grpc-js": {
    keepalive:
      "channel options grpc.keepalive_time_ms (default: off), grpc.keepalive_timeout_ms (default 20000), grpc.keepalive_permit_without_calls (default 0)",
    reconnect:
      "the channel reconnects by itself with exponential backoff (grpc.initial_reconnect_backoff_ms 1000, ×1.6, jitter 0.2, grpc.max_reconnect_backoff_ms 120000); " +
      "calls made while it is in TRANSIENT_FAILURE fail at once with UNAVAILABLE unless waitForReady is set",
  },
};

function concludeFrom(r: {
  memory: Awaited<ReturnType<typeof measureMemory>>[];
  reconnect: Awaited<ReturnType<typeof measureReconnect>>[];
  keepalive: Awaited<ReturnType<typeof measureKeepalive>>[];
  throughput: Awaited<ReturnType<typeof measureThroughput>>[];
}): string[] {
  const of = <T extends { library: Library }>(rows: T[], l: Library, match: (x: T) => boolean = () => true) =>
    rows.find((x) => x.library === l && match(x))!;
  const lines: string[] = [];
  const m = (l: Library) => of(r.memory, l, (x) => x.streams === 1000);
  lines.push(
    `memory at 1000 streams: connect-node ${m("connect-node").rssPerStreamKiB} KiB RSS / ${m("connect-node").heapPerStreamKiB} KiB heap per stream, ` +
      `grpc-js ${m("grpc-js").rssPerStreamKiB} / ${m("grpc-js").heapPerStreamKiB}; ` +
      `with one stream the client process is ${of(r.memory, "connect-node", (x) => x.streams === 1).clientBaseRssMiB} vs ` +
      `${of(r.memory, "grpc-js", (x) => x.streams === 1).clientBaseRssMiB} MiB RSS. The agent holds one stream, so per-stream cost does not decide.`,
  );
  for (const x of r.reconnect) {
    const codes = new Set([...Object.keys(x.streamEnds), ...Object.keys(x.failedReopenAttempts)]);
    const other = [...codes].filter((c) => c !== "UNAVAILABLE");
    const reopened = x.servingToAllReopenedMs;
    lines.push(
      `reconnect ${x.library}: all ${x.streams} streams re-opened ` +
        (reopened ? `${Math.round(reopened.min)}–${Math.round(reopened.max)} ms (median ${Math.round(reopened.median)})` : "NEVER") +
        ` after the server answered SERVING again (${x.rounds.length} restarts, server down ~${Math.round(x.serverDownMs.median)} ms); ` +
        `codes seen: ${[...codes].join(", ") || "none"}` +
        (other.length ? ` — NOT only UNAVAILABLE: ${other.join(", ")}` : " (only UNAVAILABLE)") +
        (x.outage ? `; after a ${OUTAGE_MS / 1000} s outage: ${x.outage.servingToAllReopenedMs ?? "NEVER"} ms.` : "."),
    );
  }
  for (const l of LIBRARIES) {
    const kept = of(r.keepalive, l, (x) => x.fault === "idle" && x.keepalive !== null);
    const cut = of(r.keepalive, l, (x) => x.fault === "idle" && x.keepalive === null);
    const dead = of(r.keepalive, l, (x) => x.fault === "freeze" && x.keepalive !== null);
    const deadNoPing = of(r.keepalive, l, (x) => x.fault === "freeze" && x.keepalive === null);
    lines.push(
      `keepalive ${l}: without ping the idle stream was ${cut.endedAfterMs === null ? "NOT cut (?)" : `cut after ${cut.endedAfterMs} ms (${cut.endCode})`}; ` +
        `with ping it ${kept.endedAfterMs === null ? `stayed open ${IDLE_WATCH_MS / 1000} s` : `still ended after ${kept.endedAfterMs} ms (${kept.endCode})`}; ` +
        `a vanished peer was ${dead.endedAfterMs === null ? "NOT detected" : `detected after ${dead.endedAfterMs} ms (${dead.endCode})`} with ping, ` +
        `${deadNoPing.endedAfterMs === null ? `never (${IDLE_WATCH_MS / 1000} s)` : `after ${deadNoPing.endedAfterMs} ms`} without.`,
    );
  }
  const t = (l: Library, c: number) => of(r.throughput, l, (x) => x.concurrency === c);
  lines.push(
    `unary throughput (client and server share the cores; rough): connect-node ${t("connect-node", 1).callsPerSec}/s and ${t("connect-node", 16).callsPerSec}/s, ` +
      `grpc-js ${t("grpc-js", 1).callsPerSec}/s and ${t("grpc-js", 16).callsPerSec}/s (1 and 16 in flight); ` +
      `client CPU per call ${t("connect-node", 16).clientCpuUsPerCall} vs ${t("grpc-js", 16).clientCpuUsPerCall} µs.`,
  );

  // The recommendation: its reasons are checked against this run's numbers, and a contradiction is said out loud.
  const reopen = (l: Library) => of(r.reconnect, l);
  const medianReopen = (l: Library) => reopen(l).servingToAllReopenedMs?.median ?? Infinity;
  const outageReopen = (l: Library) => reopen(l).outage?.servingToAllReopenedMs ?? Infinity;
  const keepaliveWorks = (l: Library) =>
    of(r.keepalive, l, (x) => x.fault === "idle" && x.keepalive !== null).endedAfterMs === null &&
    of(r.keepalive, l, (x) => x.fault === "freeze" && x.keepalive !== null).endedAfterMs !== null;
  const fasterBack = medianReopen("connect-node") <= medianReopen("grpc-js") && outageReopen("connect-node") <= outageReopen("grpc-js");
  const cut = of(r.keepalive, "connect-node", (x) => x.fault === "idle" && x.keepalive === null);
  lines.push(
    "RECOMMENDATION: the agent uses connect-node (createGrpcTransport + createClient). " +
      "It is the stack the services already use: the same generated schemas in gen/ts, typed messages, ConnectError codes and " +
      "interceptors (the bearer token of lib/clients.ts); grpc-js needs proto-loader's untyped objects or a second code generator. " +
      (fasterBack
        ? `It has no backoff of its own, so the agent's jittered loop alone decides when to reconnect: all streams were back ` +
          `${Math.round(medianReopen("connect-node"))} ms after the server was (grpc-js: ${Math.round(medianReopen("grpc-js"))} ms, ` +
          `and ${outageReopen("connect-node")} vs ${outageReopen("grpc-js")} ms after a ${OUTAGE_MS / 1000} s outage, because the channel's ` +
          `own backoff — 1 s ×1.6 up to 120 s — sits under the agent's). `
        : `(This run did NOT show connect-node reconnecting sooner than grpc-js; check the reconnect rows.) `) +
      (keepaliveWorks("connect-node") && keepaliveWorks("grpc-js")
        ? "Keepalive is equivalent (pingIntervalMs/pingTimeoutMs vs grpc.keepalive_time_ms/timeout_ms): both kept the idle stream through the proxy's cut and detected a vanished peer. "
        : "(Keepalive did NOT behave the same in both; check the keepalive rows.) ") +
      `grpc-js is leaner (${m("grpc-js").rssPerStreamKiB} vs ${m("connect-node").rssPerStreamKiB} KiB per stream, ` +
      `${t("grpc-js", 16).clientCpuUsPerCall} vs ${t("connect-node", 16).clientCpuUsPerCall} µs CPU per unary call), which does not matter for one stream and a few calls a second.`,
  );
  lines.push(
    "For the agent's stream client: set pingIntervalMs and pingTimeoutMs (for example 30 s and 10 s; without them a vanished Fleet is never noticed); " +
      "re-open on every end of the stream it did not cancel itself — " +
      (cut.endCode === "CANCELED"
        ? `connect-node reports a connection cut by the network as CANCELED ("${cut.endMessage}"), not UNAVAILABLE, so "was my own signal aborted?" must decide, not the code; `
        : "") +
      "give unary calls a timeoutMs.",
  );
  return lines;
}

// ---------------------------------------------------------------- report

const name = (l: Library) => (l === "connect-node" ? "connect" : "grpc-js");

await runBenchmark("agent_stream_client", async (cleanup) => {
  const began = performance.now();
  const dataDir = mkdtempSync(join(tmpdir(), "drover-bench-stream-"));
  cleanup.defer(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const server = new DevServer(cleanup, dataDir, await freePort());
  await server.start();

  progress("agent_stream_client: memory per stream");
  const memory = [];
  for (const library of LIBRARIES) for (const n of MEMORY_STREAMS) memory.push(await measureMemory(cleanup, server, library, n));

  progress("agent_stream_client: unary throughput");
  const throughput = [];
  for (const library of LIBRARIES) for (const c of THROUGHPUT_CONCURRENCY) throughput.push(await measureThroughput(cleanup, server, library, c));

  progress("agent_stream_client: keepalive through a TCP proxy");
  // The cases of one library run side by side: they mostly wait.
  const keepalive = [];
  for (const library of LIBRARIES) {
    keepalive.push(...(await within(60_000, `keepalive cases of ${library}`, Promise.all(KEEPALIVE_CASES.map((c) => measureKeepalive(cleanup, server, library, c))))));
  }

  progress("agent_stream_client: reconnect across server restarts");
  // Last: it restarts the server.
  const reconnect = [];
  for (const library of LIBRARIES) reconnect.push(await measureReconnect(cleanup, server, library));
  await server.proc.stop();

  const table: [string, string, string][] = [];
  const pair = <T>(rows: T[], pick: (r: T) => string, match: (r: T) => boolean = () => true) =>
    LIBRARIES.map((l) => `${name(l)} ${rows.filter((r) => (r as { library: Library }).library === l && match(r)).map(pick).join(", ")}`).join(" | ");
  for (const n of MEMORY_STREAMS) {
    table.push([
      `memory, ${n} stream${n > 1 ? "s" : ""}: client RSS / heap per stream`,
      pair(memory, (r) => `${r.rssPerStreamKiB} / ${r.heapPerStreamKiB} KiB`, (r) => r.streams === n),
      n === 1 ? "noisy at 1" : `open all: ${pair(memory, (r) => `${Math.round(r.openMs)} ms`, (r) => r.streams === n)}`,
    ]);
  }
  table.push(["memory: client RSS with 1 stream", pair(memory, (r) => `${r.clientBaseRssMiB} MiB`, (r) => r.streams === 1), "library loaded, one connection"]);
  for (const r of reconnect) {
    table.push([
      `reconnect ${name(r.library)}: SIGTERM → all ${r.streams} streams ended`,
      r.killToAllStreamsEndedMs ? fmtSummary(r.killToAllStreamsEndedMs) : "not all ended",
      `ended with ${JSON.stringify(r.streamEnds)}`,
    ]);
    table.push([
      `reconnect ${name(r.library)}: SERVING again → all re-opened`,
      r.servingToAllReopenedMs ? fmtSummary(r.servingToAllReopenedMs) : "NEVER",
      `${r.rounds.length} rounds${r.allReopenedEveryRound ? "" : " (NOT all recovered)"}; server down ${fmtSummary(r.serverDownMs)}; ` +
        `failed re-opens ${JSON.stringify(r.failedReopenAttempts)}`,
    ]);
    table.push([
      `reconnect ${name(r.library)}: after a ${OUTAGE_MS / 1000} s outage, SERVING → all re-opened`,
      r.outage?.servingToAllReopenedMs != null ? `${r.outage.servingToAllReopenedMs} ms` : "NEVER / not run",
      r.outage ? `server down ${r.outage.serverDownMs} ms` : "",
    ]);
  }
  for (const r of keepalive) {
    table.push([
      `keepalive ${name(r.library)}: ${r.case}`,
      r.endedAfterMs === null ? `open after ${IDLE_WATCH_MS / 1000} s` : `ended after ${r.endedAfterMs} ms: ${r.endCode} "${r.endMessage}"`,
      r.fault === "idle" ? `${r.bytesClientToServerAfterUp} B client→server while idle (PING = 17 B)` : "proxy frozen after open",
    ]);
  }
  for (const c of THROUGHPUT_CONCURRENCY) {
    table.push([
      `unary Health/Check, ${c} in flight, ${THROUGHPUT_MS / 1000} s`,
      pair(throughput, (r) => `${r.callsPerSec}/s`, (r) => r.concurrency === c),
      `client CPU/call ${pair(throughput, (r) => `${r.clientCpuUsPerCall} µs`, (r) => r.concurrency === c)}; ` +
        `server CPU ${pair(throughput, (r) => `${Math.round((r.serverCpuShare ?? NaN) * 100)}%`, (r) => r.concurrency === c)}`,
    ]);
  }

  const conclusion = concludeFrom({ memory, reconnect, keepalive, throughput });
  printTable("agent stream client: connect-node vs grpc-js", table);
  console.log("\nconclusion:");
  for (const line of conclusion) console.log(`  - ${line}`);
  const file = writeResult({
    benchmark: "agent_stream_client",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - began) / 1000),
    table,
    conclusion,
    details: {
      settings: {
        memoryStreams: MEMORY_STREAMS,
        reconnectStreams: RECONNECT_STREAMS,
        retryDelayMs: RETRY_DELAY_MS,
        keepalive: KEEPALIVE,
        proxyIdleMs: PROXY_IDLE_MS,
        idleWatchMs: IDLE_WATCH_MS,
        throughputMs: THROUGHPUT_MS,
      },
      keepaliveOptions: KEEPALIVE_OPTIONS,
      memory,
      reconnect,
      keepalive,
      throughput,
    },
  });
  console.log(`results: ${file}`);
});
