// Simulated agents for split-mode scheduling tests: the real agent protocol
// (AgentWorker: Hello, heartbeats, acks, redeliveries dropped, JobEvents kept
// and resent after every reconnect until Fleet confirms them) around a
// simulated runner that bids for what fits in its free capacity and "runs"
// an attempt by waiting, then reporting how it ended. Many of them fit in the test
// process, and every Assignment they get is written to a shared Ledger, so a
// test can hold what the agents did against what the Scheduler recorded.
//
// What an attempt does is read from its job's first command:
//
//   ["sim", "ok", "<ms>"]          running, then succeeded after ms
//   ["sim", "fail-once", "<ms>"]   the first run of the job to finish (on
//                                  any agent) exits 1, later runs succeed
//   ["sim", "hang-first", "<ms>"]  the job's first attempt runs until it is
//                                  cancelled or its agent killed; later ones
//                                  succeed after ms
//   a service replica (Assignment.service), any argv ["sim", _, "<ms>"]:
//                                  reports itself healthy after ms, then runs
//                                  until cancelled
//
// Each agent reaches Fleet through its own TCP relay, so kill() can cut the
// connection the way a killed process or a dead link does, with no goodbye.
//
//   const ledger = new Ledger();
//   const agent = await SimulatedAgent.start({ fleetUrl, registrationToken, ledger });
//   try { ... } finally { await agent.stop(); }

import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentWorker } from "../agent/agent_worker.ts";
import { CredentialStore } from "../agent/credentials.ts";
import { JobEventOutbox } from "../agent/job_events.ts";
import type { MachineProbe, MachineSample } from "../agent/metrics.ts";
import type { OfferAnswer, WorkHandler } from "../agent/work_handler.ts";
import { ResourcesSchema } from "../gen/ts/drover/common/v1/resources_pb.ts";
import { HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import { AttemptState, MetricsSchema, type Assignment, type Cancel, type Offer } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createLogger, type Logger } from "../lib/logger.ts";
import { eventually } from "../services/fleet/testing.ts";

/** What one agent did with one attempt. */
export interface AttemptRecord {
  attemptId: string;
  jobId: string;
  agentId: string;
  /** When the Assignment arrived (ms since the epoch). */
  receivedAt: number;
  /** How many times the runner was handed this attempt (redeliveries are dropped before it: 1). */
  handed: number;
  /** How the run ended here; undefined while it runs, or if its agent was killed first. */
  outcome?: "succeeded" | "failed" | "cancelled";
  endedAt?: number;
}

/** Every Assignment every simulated agent got, and a hook on offers; shared by the agents of one test file. */
export class Ledger {
  readonly attempts = new Map<string, AttemptRecord>();
  /** Called on every offer an agent gets, before it answers. */
  onOffer?: (offer: Offer, agentId: string) => void;
  private readonly finishedJobs = new Set<string>();

  /** The records of one job, in the order the Assignments arrived. */
  ofJob(jobId: string): AttemptRecord[] {
    return [...this.attempts.values()].filter((a) => a.jobId === jobId);
  }

  /** Assignments received so far. */
  get size(): number {
    return this.attempts.size;
  }

  /** Records an Assignment; resolves its record (a second hand-over of one attempt is counted, not replaced). */
  received(a: Assignment, agentId: string): { record: AttemptRecord; first: boolean } {
    const known = this.attempts.get(a.attemptId);
    if (known) {
      known.handed += 1;
      return { record: known, first: false };
    }
    const record: AttemptRecord = { attemptId: a.attemptId, jobId: a.jobId, agentId, receivedAt: Date.now(), handed: 1 };
    this.attempts.set(a.attemptId, record);
    return { record, first: true };
  }

  /** Whether some run of the job already finished (for fail-once), marking that one did. */
  finishOnce(jobId: string): boolean {
    const before = this.finishedJobs.has(jobId);
    this.finishedJobs.add(jobId);
    return before;
  }

  /** Whether this record is the job's first Assignment on any agent (for hang-first). */
  isFirstOfJob(record: AttemptRecord): boolean {
    return this.ofJob(record.jobId)[0] === record;
  }
}

const GiB = 1024n ** 3n;
/** Each simulated agent's machine: 8 cores, 16 GiB, 100 GiB of disk. */
export const CAPACITY = { cpuMillis: 8000, memoryBytes: 16n * GiB, diskBytes: 100n * GiB };

type Amounts = typeof CAPACITY;
const ZERO: Amounts = { cpuMillis: 0, memoryBytes: 0n, diskBytes: 0n };

/**
 * Runs attempts by waiting. Like a real agent it bids only for what fits in
 * what its running attempts leave free, and the emptier it is the higher it
 * bids, so that work spreads over the agents.
 */
class SimulatedWork implements WorkHandler {
  private readonly inFlight = new Map<string, { jobId: string; reserved: Amounts; timer?: NodeJS.Timeout }>();
  private silent = false;
  agentId = "";

  constructor(
    private readonly ledger: Ledger,
    private readonly events: JobEventOutbox,
  ) {}

  /** Capacity that the running attempts leave. */
  free(): Amounts {
    const free = { ...CAPACITY };
    for (const { reserved } of this.inFlight.values()) {
      free.cpuMillis -= reserved.cpuMillis;
      free.memoryBytes -= reserved.memoryBytes;
      free.diskBytes -= reserved.diskBytes;
    }
    // Bids answered at once can win more than fits (the agent does not hold
    // what it bid for): never report less than nothing.
    free.cpuMillis = Math.max(0, free.cpuMillis);
    if (free.memoryBytes < 0n) free.memoryBytes = 0n;
    if (free.diskBytes < 0n) free.diskBytes = 0n;
    return free;
  }

  async offer(offer: Offer): Promise<OfferAnswer> {
    this.ledger.onOffer?.(offer, this.agentId);
    const free = this.free();
    const need = offer.resources ?? ZERO;
    if (need.cpuMillis > free.cpuMillis || need.memoryBytes > free.memoryBytes || need.diskBytes > free.diskBytes) {
      return { case: "decline", value: { offerId: offer.offerId, reason: "not enough free capacity" } };
    }
    return { case: "bid", value: { offerId: offer.offerId, score: free.cpuMillis / CAPACITY.cpuMillis, free } };
  }

  async assignment(a: Assignment): Promise<void> {
    const { record, first } = this.ledger.received(a, this.agentId);
    if (!first || this.silent) return;
    const [tool, behaviour = "ok", ms = "50"] = a.exec?.commands[0]?.argv ?? [];
    const r = a.resources;
    const attempt: { jobId: string; reserved: Amounts; timer?: NodeJS.Timeout } = {
      jobId: a.jobId,
      reserved: r ? { cpuMillis: r.cpuMillis, memoryBytes: r.memoryBytes, diskBytes: r.diskBytes } : ZERO,
    };
    this.inFlight.set(a.attemptId, attempt);
    this.events.add({ attemptId: a.attemptId, state: AttemptState.RUNNING });
    if (tool !== "sim") return this.finish(record, "failed", 127, `not a simulated command: ${tool}`);
    if (behaviour === "hang-first" && this.ledger.isFirstOfJob(record)) return; // until cancelled or killed
    if (a.service) {
      // A service replica: healthy after ms, then runs until cancelled.
      attempt.timer = setTimeout(() => {
        if (this.silent) return;
        this.events.add({ attemptId: a.attemptId, state: AttemptState.RUNNING, health: { n: 1, state: HealthState.HEALTHY, message: "", since: new Date(), restarts: 0, port: 0 } });
      }, Number(ms));
      return;
    }
    attempt.timer = setTimeout(() => {
      if (behaviour === "fail-once" && !this.ledger.finishOnce(a.jobId)) this.finish(record, "failed", 1, "exited with code 1");
      else this.finish(record, "succeeded", 0, "");
    }, Number(ms));
  }

  async cancel(c: Cancel): Promise<void> {
    const record = this.ledger.attempts.get(c.attemptId);
    if (!record || !this.inFlight.has(c.attemptId)) return;
    clearTimeout(this.inFlight.get(c.attemptId)!.timer);
    this.finish(record, "cancelled", 0, c.reason);
  }

  logAck(): void {}

  running(): { attemptId: string; jobId: string; state: AttemptState }[] {
    return [...this.inFlight].map(([attemptId, { jobId }]) => ({ attemptId, jobId, state: AttemptState.RUNNING }));
  }

  /** From now on nothing runs and nothing is reported, as if the process had died. */
  silence(): void {
    this.silent = true;
    for (const { timer } of this.inFlight.values()) clearTimeout(timer);
  }

  private finish(record: AttemptRecord, outcome: NonNullable<AttemptRecord["outcome"]>, exitCode: number, message: string): void {
    if (this.silent) return;
    this.inFlight.delete(record.attemptId);
    record.outcome = outcome;
    record.endedAt = Date.now();
    const state = outcome === "succeeded" ? AttemptState.SUCCEEDED : outcome === "failed" ? AttemptState.FAILED : AttemptState.CANCELLED;
    this.events.add({ attemptId: record.attemptId, state, exitCode, message });
  }
}

/** The simulated machine: its capacity, less what the running attempts hold. */
function machineOf(work: SimulatedWork): MachineProbe {
  return {
    async sample(): Promise<MachineSample> {
      const free = work.free();
      return {
        metrics: create(MetricsSchema, {
          cpuPercent: (100 * (CAPACITY.cpuMillis - free.cpuMillis)) / CAPACITY.cpuMillis,
          memoryTotalBytes: CAPACITY.memoryBytes,
          memoryUsedBytes: CAPACITY.memoryBytes - free.memoryBytes,
          diskTotalBytes: CAPACITY.diskBytes,
          diskUsedBytes: CAPACITY.diskBytes - free.diskBytes,
        }),
        total: create(ResourcesSchema, CAPACITY),
        free: create(ResourcesSchema, free),
      };
    },
  };
}

/** A TCP relay to one address; cut() drops every connection at once and refuses new ones. */
export class TcpRelay {
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  url = "";

  private constructor(target: URL) {
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port), target.hostname);
      for (const [from, to] of [[client, upstream], [upstream, client]] as const) {
        this.sockets.add(from);
        from.on("error", () => to.destroy());
        from.on("close", () => {
          this.sockets.delete(from);
          to.destroy();
        });
        from.pipe(to);
      }
    });
  }

  static async open(targetUrl: string): Promise<TcpRelay> {
    const relay = new TcpRelay(new URL(targetUrl));
    await new Promise<void>((resolve, reject) => relay.server.once("error", reject).listen(0, "127.0.0.1", resolve));
    relay.url = `http://127.0.0.1:${(relay.server.address() as AddressInfo).port}`;
    return relay;
  }

  /** Resets every connection (no HTTP/2 GOAWAY, no clean end of stream) and stops listening. */
  cut(): void {
    this.server.close();
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
  }
}

/** One simulated agent: AgentWorker, a SimulatedWork runner, and its relay. */
export class SimulatedAgent {
  private constructor(
    private readonly worker: AgentWorker,
    private readonly work: SimulatedWork,
    private readonly relay: TcpRelay,
    private readonly stateDir: string,
    private readonly done: Promise<void>,
  ) {}

  /** Starts an agent on fleetUrl and resolves once it has registered. */
  static async start(opts: { fleetUrl: string; registrationToken: string; ledger: Ledger; labels?: Record<string, string>; name?: string; logger?: Logger }): Promise<SimulatedAgent> {
    const stateDir = await mkdtemp(join(tmpdir(), "drover-sim-agent-"));
    const relay = await TcpRelay.open(opts.fleetUrl);
    const events = new JobEventOutbox();
    const work = new SimulatedWork(opts.ledger, events);
    const credentials = await CredentialStore.open(stateDir);
    const worker = new AgentWorker({
      server: relay.url,
      registrationToken: opts.registrationToken,
      credentials,
      hostname: opts.name ?? "sim",
      version: "0.0.1",
      labels: opts.labels ?? {},
      drivers: ["process"],
      machine: machineOf(work),
      work,
      events,
      logger: opts.logger ?? createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent"),
      backoff: { baseMs: 20, capMs: 200 },
      welcomeTimeoutMs: 5_000,
      stopGraceMs: 300,
      ackFlushMs: 10,
    });
    const agent = new SimulatedAgent(worker, work, relay, stateDir, worker.run());
    try {
      work.agentId = await eventually(() => credentials.current()?.agentId, 15_000, `simulated agent ${opts.name ?? ""} registered`);
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  get id(): string {
    return this.work.agentId;
  }

  /** Dies on the spot: the connection is reset, nothing more runs or is reported, and it never dials again. */
  async kill(): Promise<void> {
    this.work.silence();
    this.relay.cut();
    await this.stop();
  }

  /** Stops the worker and removes its state directory. Idempotent. */
  async stop(): Promise<void> {
    await this.worker.stop();
    await this.done;
    this.relay.cut();
    await rm(this.stateDir, { recursive: true, force: true });
  }
}
