// The scheduling benchmark's load process: simulated agents on real
// FleetService.Connect streams (TestAgent, each on its own HTTP/2
// connection, as drover-agent does) and SubmitJob callers, kept apart from
// the measured processes so they do not share an event loop with them.
//
//   node --import tsx bench/scheduling/load.ts   (driven by bench/scheduling.ts)
//
// Each agent bids on every offer, and on an Assignment reports the attempt
// RUNNING and SUCCEEDED at once (EVENTS=succeeded: SUCCEEDED alone, which
// lifecycle.ts accepts from "assigned"). Like drover-agent it acknowledges
// messages in batches every ACK_FLUSH_MS and heartbeats at Welcome's interval.
// A job counts as done when Fleet's EventAck for its SUCCEEDED event
// arrives: Fleet sends it only after the Scheduler committed the event.
//
// Input (env): FLEET_URL, SCHEDULER_URL, ADMIN_TOKEN, AGENTS (50), EVENTS
// ("running+succeeded" or "succeeded"), ACK_FLUSH_MS (50), NO_DELAY ("0": agents'
// and submitters' sockets keep Nagle's algorithm, as connect-node's default transport does),
// CLIENT ("drover": Drover's transport, lib/grpc_transport.ts, as drover-agent, the
// services, the CLI and the TypeScript SDK use; "connect": connect-node's, as a plain
// Connect client would, and as this process did until session 14).
// Commands (stdin, one JSON object a line), each answered by one stdout line
// {"id": <id>, "result": {...}} (or {"id", "error"}):
//   {"id", "cmd": "throughput", "jobs": N, "concurrency": C}  N jobs, C SubmitJob calls in flight
//     (with "batch": B, SubmitJobs calls of B jobs, C of them in flight)
//   {"id", "cmd": "latency", "rate": R, "sec": S}             R jobs/s on a fixed schedule for S seconds
//   {"id", "cmd": "unfinished"}                               jobs not in a final state (ListJobs)
// Times are performance.now() of this process; `clock` gives the CLOCK_MONOTONIC
// window (µs) of a run, to cut other processes' CPU profiles to it.

import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, type GrpcTransportOptions } from "@connectrpc/connect-node";
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { AttemptState as Reported, type ConnectResponse } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../../lib/clients.ts";
import { createDroverTransport } from "../../lib/grpc_transport.ts";
import { TestAgent } from "../../services/fleet/testing.ts";

const FLEET_URL = process.env.FLEET_URL!;
const SCHEDULER_URL = process.env.SCHEDULER_URL!;
const ADMIN_TOKEN = process.env.ADMIN_TOKEN!;
const AGENTS = Number(process.env.AGENTS ?? 50);
const SUCCEED_ONLY = process.env.EVENTS === "succeeded";
const ACK_FLUSH_MS = Number(process.env.ACK_FLUSH_MS ?? 50);
const NO_DELAY = process.env.NO_DELAY !== "0";
const CLIENT = process.env.CLIENT === "connect" ? "connect" : "drover";

function transport(options: Pick<GrpcTransportOptions, "baseUrl" | "interceptors" | "nodeOptions">) {
  return CLIENT === "connect" ? createGrpcTransport(options) : createDroverTransport(options);
}

/**
 * Each agent's own HTTP/2 connection. With NO_DELAY (the default) its socket
 * sends small frames at once: without it, Nagle's algorithm holds a Bid
 * written right after another until the first is acknowledged, and the
 * receiver's delayed ACK (~40 ms on Linux) makes bids miss the 50 ms window.
 */
function agentTransport() {
  if (!NO_DELAY) return transport({ baseUrl: FLEET_URL });
  const { hostname, port } = new URL(FLEET_URL);
  return transport({ baseUrl: FLEET_URL, nodeOptions: { createConnection: () => connect({ host: hostname, port: Number(port), noDelay: true }) } });
}

// The submitters' connections too, as the services' own clients (services/split.ts): with
// Nagle's algorithm a SubmitJob's DATA frame, written after its HEADERS, waits for
// the server's delayed ACK (~40 ms) before the job even reaches the Scheduler.
const adminOptions = NO_DELAY ? { nodeOptions: { noDelay: true } as import("node:http2").SecureClientSessionOptions } : {};
const fleet = createClient(FleetService, transport({ baseUrl: FLEET_URL, interceptors: [bearer(ADMIN_TOKEN)], ...adminOptions }));
const scheduler = createClient(SchedulerService, transport({ baseUrl: SCHEDULER_URL, interceptors: [bearer(ADMIN_TOKEN)], ...adminOptions }));

/** What the agents saw of one job, by job id (performance.now() times). */
interface Seen {
  offerAt?: number;
  assignedAt?: number;
  succeededAt?: number;
}

/** One run's jobs: submit times by sequence number, and what the agents saw by job id. */
class Run {
  readonly submitAt: number[] = [];
  readonly respondedAt: number[] = [];
  readonly jobIds: string[] = [];
  readonly seen = new Map<string, Seen>();
  readonly assignedBySeq = new Map<number, number>();
  errors: Record<string, number> = {};
  done = 0;
  private onDone: (() => void) | undefined;

  constructor(readonly prefix: string) {}

  seenOf(jobId: string): Seen {
    let s = this.seen.get(jobId);
    if (!s) this.seen.set(jobId, (s = {}));
    return s;
  }

  succeeded(jobId: string, at: number): void {
    const s = this.seenOf(jobId);
    if (s.succeededAt !== undefined) return;
    s.succeededAt = at;
    this.done++;
    if (this.done >= this.submitAt.length && this.onDone) this.onDone();
  }

  /** Resolves when every submitted job succeeded, or false after ms. */
  whenDone(total: number, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      const check = () => {
        if (this.done >= total) {
          clearTimeout(timer);
          this.onDone = undefined;
          resolve(true);
        }
      };
      this.onDone = check;
      check();
    });
  }

  error(err: unknown): void {
    const key = String((err as Error).message ?? err).slice(0, 120);
    this.errors[key] = (this.errors[key] ?? 0) + 1;
  }
}

let current: Run | undefined;
/** attempt id → job id, for the EventAck of a SUCCEEDED event. */
const attempts = new Map<string, { jobId: string; run: Run }>();

/** A simulated agent: bids on every offer, runs every assignment instantly. */
class Agent {
  private readonly pendingAcks: string[] = [];
  private ackTimer: NodeJS.Timeout | undefined;
  private sequence = 0;

  constructor(readonly stream: TestAgent) {
    const ms = Number(stream.welcome?.heartbeatInterval?.seconds ?? 5n) * 1000 + (stream.welcome?.heartbeatInterval?.nanos ?? 0) / 1e6;
    setInterval(() => stream.heartbeat(++this.sequence), ms || 5000).unref();
    void this.serve();
  }

  private async serve(): Promise<void> {
    for (;;) {
      let m: ConnectResponse;
      try {
        m = await this.stream.next(3_600_000);
      } catch (err) {
        console.error(`agent ${this.stream.agentId}: stream ended: ${String(err)}`);
        return;
      }
      const now = performance.now();
      if (m.messageId) this.ack(m.messageId);
      const run = current;
      switch (m.message.case) {
        case "offer": {
          const offer = m.message.value;
          if (run) {
            const s = run.seenOf(offer.jobId);
            s.offerAt ??= now;
          }
          this.stream.send({ message: { case: "bid", value: { offerId: offer.offerId, score: 0.5 } } });
          break;
        }
        case "assignment": {
          const a = m.message.value;
          const tag = a.exec?.commands[0]?.argv[1] ?? "";
          const owner = run && tag.startsWith(run.prefix) ? run : undefined;
          if (owner) {
            owner.seenOf(a.jobId).assignedAt = now;
            owner.assignedBySeq.set(Number(tag.slice(owner.prefix.length)), now);
            attempts.set(a.attemptId, { jobId: a.jobId, run: owner });
          }
          if (!SUCCEED_ONLY) this.report(a.attemptId, Reported.RUNNING, "running");
          this.report(a.attemptId, Reported.SUCCEEDED, "succeeded");
          break;
        }
        case "eventAck":
          for (const id of m.message.value.eventIds) {
            if (!id.endsWith(":succeeded")) continue;
            const attemptId = id.slice(0, -":succeeded".length);
            const x = attempts.get(attemptId);
            if (x) {
              attempts.delete(attemptId);
              x.run.succeeded(x.jobId, now);
            }
          }
          break;
        case "cancel":
          this.report(m.message.value.attemptId, Reported.CANCELLED, "cancelled");
          break;
      }
    }
  }

  private report(attemptId: string, state: Reported, name: string): void {
    this.stream.send({ message: { case: "jobEvent", value: { eventId: `${attemptId}:${name}`, attemptId, state, exitCode: 0 } } });
  }

  // As drover-agent does: acknowledgements go out in batches.
  private ack(id: string): void {
    this.pendingAcks.push(id);
    this.ackTimer ??= setTimeout(() => {
      this.ackTimer = undefined;
      this.stream.ack(...this.pendingAcks.splice(0));
    }, ACK_FLUSH_MS);
  }
}

const spec = (prefix: string, seq: number) => ({ spec: { name: "bench", exec: { commands: [{ argv: ["true", `${prefix}${seq}`] }] } } });

function submit(run: Run, seq: number): Promise<void> {
  run.submitAt[seq] = performance.now();
  return scheduler.submitJob(spec(run.prefix, seq)).then(
    (res) => {
      run.respondedAt[seq] = performance.now();
      run.jobIds[seq] = res.job!.id;
    },
    (err) => {
      run.respondedAt[seq] = performance.now();
      run.error(err);
    },
  );
}

/** Jobs seq .. seq+n-1 in one SubmitJobs call. */
function submitMany(run: Run, seq: number, n: number): Promise<void> {
  const at = performance.now();
  const seqs = Array.from({ length: n }, (_, i) => seq + i);
  for (const q of seqs) run.submitAt[q] = at;
  return scheduler.submitJobs({ jobs: seqs.map((q) => spec(run.prefix, q)) }).then(
    (res) => {
      const now = performance.now();
      seqs.forEach((q, i) => {
        run.respondedAt[q] = now;
        run.jobIds[q] = res.jobs[i]!.job!.id;
      });
    },
    (err) => {
      for (const q of seqs) run.respondedAt[q] = performance.now();
      run.error(err);
    },
  );
}

function percentiles(values: number[]) {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN);
  const r = (v: number) => Math.round(v * 100) / 100;
  return { n: s.length, p50: r(at(0.5)), p90: r(at(0.9)), p99: r(at(0.99)), max: r(s.at(-1) ?? NaN) };
}

/** Per-hop latencies of a run's jobs, as the agents saw them. */
function hops(run: Run) {
  const submitResponse: number[] = [];
  const submitOffer: number[] = [];
  const offerAssignment: number[] = [];
  const assignmentSucceeded: number[] = [];
  const submitSucceeded: number[] = [];
  run.jobIds.forEach((jobId, seq) => {
    const s = run.seen.get(jobId);
    const t0 = run.submitAt[seq]!;
    submitResponse.push(run.respondedAt[seq]! - t0);
    if (!s) return;
    if (s.offerAt !== undefined) submitOffer.push(s.offerAt - t0);
    if (s.offerAt !== undefined && s.assignedAt !== undefined) offerAssignment.push(s.assignedAt - s.offerAt);
    if (s.assignedAt !== undefined && s.succeededAt !== undefined) assignmentSucceeded.push(s.succeededAt - s.assignedAt);
    if (s.succeededAt !== undefined) submitSucceeded.push(s.succeededAt - t0);
  });
  return {
    submitToResponse: percentiles(submitResponse),
    submitToOffer: percentiles(submitOffer),
    offerToAssignment: percentiles(offerAssignment),
    assignmentToSucceededAck: percentiles(assignmentSucceeded),
    submitToSucceededAck: percentiles(submitSucceeded),
  };
}

const clockUs = () => Number(process.hrtime.bigint() / 1000n);
let runs = 0;

/** `batch` > 1: SubmitJobs calls of that many jobs, `concurrency` calls in flight. */
async function throughput(jobs: number, concurrency: number, batch = 1) {
  const run = (current = new Run(`r${++runs}:`));
  const cpu0 = process.cpuUsage();
  const clockStart = clockUs();
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs) {
        if (batch > 1) {
          const n = Math.min(batch, jobs - next);
          next += n;
          await submitMany(run, next - n, n);
        } else await submit(run, next++);
      }
    }),
  );
  const submitted = performance.now();
  const complete = await run.whenDone(jobs, 60_000);
  const last = Math.max(...[...run.seen.values()].map((s) => s.succeededAt ?? -Infinity));
  const clockEnd = clockUs();
  const cpu = process.cpuUsage(cpu0);
  const ms = last - t0;
  return {
    jobs,
    concurrency,
    batch,
    complete,
    succeeded: run.done,
    ms: Math.round(ms),
    jobsPerSec: Math.round((run.done / ms) * 1000),
    submitPerSec: Math.round((jobs / (submitted - t0)) * 1000),
    errors: run.errors,
    hops: hops(run),
    clock: { startUs: clockStart, endUs: clockEnd },
    loadCpuMs: Math.round((cpu.user + cpu.system) / 1000),
  };
}

async function latency(rate: number, sec: number) {
  const run = (current = new Run(`r${++runs}:`));
  const total = Math.round(rate * sec);
  const interval = 1000 / rate;
  const t0 = performance.now();
  const calls: Promise<void>[] = [];
  let lateMs = 0;
  for (let i = 0; i < total; ) {
    const now = performance.now();
    const due = t0 + i * interval;
    if (due > now) {
      await new Promise((r) => setTimeout(r, Math.max(0, due - now - 0.5)));
      continue;
    }
    lateMs = Math.max(lateMs, now - due);
    // Open loop: jobs go out on schedule whether or not earlier ones have answered.
    calls.push(submit(run, i++));
  }
  const sent = performance.now();
  await Promise.all(calls);
  const complete = await run.whenDone(total, 30_000);
  const submitToAssignment: number[] = [];
  for (let seq = 0; seq < total; seq++) {
    const at = run.assignedBySeq.get(seq);
    if (at !== undefined) submitToAssignment.push(at - run.submitAt[seq]!);
  }
  return {
    rate,
    sec,
    jobs: total,
    complete,
    succeeded: run.done,
    offeredRate: Math.round((total / (sent - t0)) * 1000),
    maxScheduleLagMs: Math.round(lateMs * 10) / 10,
    submitToAssignment: percentiles(submitToAssignment),
    errors: run.errors,
    hops: hops(run),
  };
}

/** How many jobs are not in a final state, per state (at most 1000 counted per state). */
async function unfinished() {
  const out: Record<string, number> = {};
  for (const state of [JobState.PENDING, JobState.OFFERED, JobState.ASSIGNED, JobState.RUNNING]) {
    const { jobs } = await scheduler.listJobs({ state, pageSize: 1000 });
    if (jobs.length) out[JobState[state]] = jobs.length;
  }
  return out;
}

// ---- Start: register the agents, then take commands ----------------------------

const { secret } = await fleet.createAgentToken({ name: "bench scheduling", labels: { bench: "scheduling" } });
const agents: Agent[] = [];
for (let i = 0; i < AGENTS; i += 10) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(10, AGENTS - i) }, (_, j) =>
      TestAgent.register(FLEET_URL, secret, {
        hostname: `sim-${i + j}`,
        drivers: ["process"],
        total: { cpuMillis: 4000, memoryBytes: 8n << 30n, diskBytes: 100n << 30n },
        free: { cpuMillis: 4000, memoryBytes: 8n << 30n, diskBytes: 100n << 30n },
      }, { transport: agentTransport() }),
    ),
  );
  agents.push(...batch.map((stream) => new Agent(stream)));
}
console.log(JSON.stringify({ ready: true, agents: agents.length }));


let queue = Promise.resolve();
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line) as { id: string; cmd: string; jobs?: number; concurrency?: number; batch?: number; rate?: number; sec?: number };
  // One command at a time, in order.
  queue = queue.then(async () => {
    try {
      const result =
        command.cmd === "throughput"
          ? await throughput(command.jobs!, command.concurrency!, command.batch)
          : command.cmd === "latency"
            ? await latency(command.rate!, command.sec!)
            : command.cmd === "unfinished"
              ? await unfinished()
              : (() => {
                  throw new Error(`unknown command ${command.cmd}`);
                })();
      console.log(JSON.stringify({ id: command.id, result }));
    } catch (err) {
      console.log(JSON.stringify({ id: command.id, error: String(err) }));
    } finally {
      current = undefined;
    }
  });
});
process.stdin.on("end", () => process.exit(0));
