// One agent stream as the replica holding it sees it: what the agent said,
// when it was last heard from, and the queue of messages going to it.
// Everything here is plain fields so that a heartbeat costs a few
// assignments and nothing else (see hub.ts).

import type { ConnectError } from "@connectrpc/connect";
import type { Resources } from "../../gen/ts/drover/common/v1/resources_pb.ts";
import type { ConnectResponse, JobEvent, Metrics } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Liveness } from "./liveness.ts";
import { MessageQueue } from "./queue.ts";

/** Most messages queued for one agent before its stream is ended as too slow. */
export const MAX_QUEUED_PER_AGENT = 10_000;

export class AgentSession {
  /** Stored status as this replica last knew it. */
  status: Liveness;
  /** When the last heartbeat (or the Hello) arrived, ms since the epoch. */
  lastHeartbeatMs: number;
  /** Heartbeat.sequence of the last heartbeat. */
  lastSequence = 0n;
  heartbeats = 0;
  /** Of the last heartbeat that carried them. */
  metrics: Metrics | undefined;
  free: Resources | undefined;
  /** Heartbeat data changed since the last snapshot. */
  dirty = false;
  snapshotAt: number;
  presenceAt = 0;
  /** Attached: Welcome queued, outbox replayed; the monitor looks after it from now on. */
  ready = false;
  /** A newer stream of the same agent took over; this one must not clean up after itself. */
  takenOver = false;
  /** A status write for it is in flight. */
  transitioning = false;
  detached = false;
  /** Job events read and not yet handed to the sink, in stream order (hub.ts jobEvent). */
  readonly eventsWaiting: JobEvent[] = [];
  /** Job events are being handed to the sink; `events` settles when none wait any more. */
  passingEvents = false;
  events: Promise<void> = Promise.resolve();
  /** Acks read and not yet written, one after another in stream order (hub.ts ack); `acks` settles when all are. */
  acksWaiting = 0;
  acks: Promise<void> = Promise.resolve();
  /** Offers sent on this stream and not yet answered: where each answer goes, and until when (ms). */
  readonly offers = new Map<string, { replyTo: string; until: number }>();

  private readonly out = new MessageQueue<ConnectResponse>(MAX_QUEUED_PER_AGENT);
  // Live deliveries that arrive while the outbox is replayed wait here, so
  // that the agent sees messages in the order they were stored.
  private held: ConnectResponse[] | undefined = [];

  constructor(
    readonly id: string,
    readonly agentId: string,
    /** The credential the stream was opened with (an api token id). */
    readonly tokenId: string,
    /** When the stream was attached, ms since the epoch. */
    readonly connectedAt: number,
    status: Liveness,
  ) {
    this.status = status;
    this.lastHeartbeatMs = connectedAt;
    this.snapshotAt = connectedAt;
  }

  get ended(): boolean {
    return this.out.ended;
  }

  /** Messages waiting to be written to the stream. */
  get backlog(): number {
    return this.out.size + (this.held?.length ?? 0);
  }

  /** Queues a message in order (Welcome, the replayed outbox). */
  send(message: ConnectResponse): void {
    this.out.push(message);
  }

  /** Queues a message that arrived through the bus; held back while the outbox is replayed. */
  deliver(message: ConnectResponse): void {
    if (this.held) this.held.push(message);
    else this.out.push(message);
  }

  /** The outbox has been replayed (those ids were sent): release held deliveries not among them. */
  finishReplay(replayed: ReadonlySet<string>): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const m of held) if (!m.messageId || !replayed.has(m.messageId)) this.out.push(m);
  }

  /** Ends the stream: normally after what is queued, or at once with an error. The first call wins. */
  end(error?: ConnectError): void {
    this.out.end(error);
  }

  /** The messages to write to the stream, until it ends. */
  messages(): AsyncGenerator<ConnectResponse, void, undefined> {
    return this.out.drain();
  }
}
