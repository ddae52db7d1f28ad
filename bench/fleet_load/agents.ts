// The load tool's client process: simulated agents, each with its own
// FleetService.Connect stream (real gRPC through the generated connect-node
// client), as drover-agent speaks it: Hello with a registration token →
// Welcome → a Heartbeat every interval, an Ack for any server message with
// an id. Kept apart from Fleet so that the two processes' CPU and memory can
// be told apart.
//
//   node --import tsx bench/fleet_load/agents.ts   (driven by bench/fleet_load.ts)
//
// Input (env): FLEET_URL, REGISTRATION_TOKENS (comma-separated; agents use
// them round-robin, so registrations do not all update one token row),
// HEARTBEAT_MS, CONNECTIONS ("per-agent": one HTTP/2 connection per agent,
// as real agents do; "shared": one for all).
// Commands (stdin, one JSON object a line): {"target": N} opens streams
// until N are open (at most OPEN_CONCURRENCY registering at a time).
// Output (stdout, one JSON object a line, every second): how many streams
// are open, opening, failed and ended, heartbeats sent, errors by code.

import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createInterface } from "node:readline";
import { ConnectRequestSchema, type ConnectRequest } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";

const FLEET_URL = process.env.FLEET_URL!;
const TOKENS = process.env.REGISTRATION_TOKENS!.split(",");
const HEARTBEAT_MS = Number(process.env.HEARTBEAT_MS ?? 5000);
const PER_AGENT = (process.env.CONNECTIONS ?? "per-agent") === "per-agent";
const OPEN_CONCURRENCY = Number(process.env.OPEN_CONCURRENCY ?? 100);

const counts = { open: 0, opening: 0, failed: 0, ended: 0, heartbeats: 0, acks: 0 };
const errors: Record<string, number> = {};
let target = 0;
let started = 0;

const shared: Transport | undefined = PER_AGENT ? undefined : createGrpcTransport({ baseUrl: FLEET_URL });
const sharedClient = shared ? createClient(FleetService, shared) : undefined;

/** One simulated agent: a request queue feeding its stream, a heartbeat timer. */
class SimAgent {
  private readonly queue: ConnectRequest[] = [];
  private wake: (() => void) | undefined;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private sequence = 0n;

  constructor(private readonly index: number) {}

  async run(): Promise<void> {
    const client: Client<typeof FleetService> = sharedClient ?? createClient(FleetService, createGrpcTransport({ baseUrl: FLEET_URL }));
    const hello = {
      registrationToken: TOKENS[this.index % TOKENS.length]!,
      hostname: `sim-${this.index}`,
      version: "bench",
      drivers: ["exec"],
      total: { cpuMillis: 4000, memoryBytes: 8n << 30n, diskBytes: 100n << 30n },
      free: { cpuMillis: 4000, memoryBytes: 8n << 30n, diskBytes: 100n << 30n },
    };
    this.push({ message: { case: "hello", value: hello } });
    let welcomed = false;
    try {
      for await (const response of client.connect(this.requests())) {
        if (!welcomed) {
          if (response.message.case !== "welcome") throw new Error(`expected Welcome, got ${response.message.case}`);
          welcomed = true;
          counts.opening--;
          counts.open++;
          // Spread evenly: a random phase, then a fixed interval.
          this.timer = setTimeout(() => this.beat(), Math.random() * HEARTBEAT_MS);
        }
        if (response.messageId) {
          counts.acks++;
          this.push({ message: { case: "ack", value: { messageIds: [response.messageId] } } });
        }
      }
    } catch (err) {
      const code = ConnectError.from(err).code;
      errors[code] = (errors[code] ?? 0) + 1;
    } finally {
      clearTimeout(this.timer);
      this.closed = true;
      this.wake?.();
      if (welcomed) {
        counts.open--;
        counts.ended++;
      } else {
        counts.opening--;
        counts.failed++;
      }
    }
  }

  private beat(): void {
    this.sequence++;
    counts.heartbeats++;
    this.push({
      message: {
        case: "heartbeat",
        value: {
          sequence: this.sequence,
          metrics: { cpuPercent: 12.5, memoryUsedBytes: 2n << 30n, memoryTotalBytes: 8n << 30n, load1: 0.4, uptimeSeconds: 3600n },
          free: { cpuMillis: 3500, memoryBytes: 6n << 30n, diskBytes: 90n << 30n },
        },
      },
    });
    this.timer = setTimeout(() => this.beat(), HEARTBEAT_MS);
  }

  private push(init: Parameters<typeof create<typeof ConnectRequestSchema>>[1]): void {
    this.queue.push(create(ConnectRequestSchema, init));
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async *requests(): AsyncGenerator<ConnectRequest> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

function fill(): void {
  while (started < target && counts.opening < OPEN_CONCURRENCY) {
    counts.opening++;
    void new SimAgent(started++).run().finally(fill);
  }
}

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line) as { target?: number };
  if (command.target !== undefined) {
    target = command.target;
    fill();
  }
});
process.stdin.on("end", () => process.exit(0));

setInterval(() => {
  fill();
  console.log(JSON.stringify({ ...counts, target, started, errors, rss: process.memoryUsage.rss() }));
}, 1000);
