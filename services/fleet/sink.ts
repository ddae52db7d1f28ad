// Where the work messages agents send (bids, declines, job events, log
// frames) go. Fleet only carries them: the scheduling issue plugs Bid and
// the Scheduler in here, the log issue plugs Log in. Until then they are
// counted and logged at debug level.

import type { Bid, Decline, Hello, JobEvent, LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../../lib/logger.ts";

/**
 * Receives agents' work messages in stream order per agent. A returned
 * promise is awaited before the stream's next message is read, so a slow
 * sink slows that agent (backpressure) and no other. A throw ends that
 * agent's stream with the error (a ConnectError keeps its code).
 */
export interface AgentMessageSink {
  /** A stream opened: what the agent says it runs and how far its logs go (Hello.running, Hello.log_offsets). */
  connected(agentId: string, hello: Hello): void | Promise<void>;
  bid(agentId: string, bid: Bid): void | Promise<void>;
  decline(agentId: string, decline: Decline): void | Promise<void>;
  jobEvent(agentId: string, event: JobEvent): void | Promise<void>;
  logFrame(agentId: string, frame: LogFrame): void | Promise<void>;
}

/** The sink until the scheduling and log issues: counts and logs at debug. */
export class CountingSink implements AgentMessageSink {
  readonly counts = { connected: 0, bid: 0, decline: 0, jobEvent: 0, logFrame: 0 };

  constructor(private readonly log?: Logger) {}

  connected(agentId: string, hello: Hello): void {
    this.counts.connected++;
    this.log?.debug({ agentId, running: hello.running.length, logOffsets: hello.logOffsets.length }, "agent connected");
  }

  bid(agentId: string, bid: Bid): void {
    this.counts.bid++;
    this.log?.debug({ agentId, offerId: bid.offerId, score: bid.score }, "bid received (not forwarded yet)");
  }

  decline(agentId: string, decline: Decline): void {
    this.counts.decline++;
    this.log?.debug({ agentId, offerId: decline.offerId }, "decline received (not forwarded yet)");
  }

  jobEvent(agentId: string, event: JobEvent): void {
    this.counts.jobEvent++;
    this.log?.debug({ agentId, eventId: event.eventId, attemptId: event.attemptId }, "job event received (not forwarded yet)");
  }

  logFrame(agentId: string, frame: LogFrame): void {
    this.counts.logFrame++;
    this.log?.debug({ agentId, attemptId: frame.attemptId, offset: frame.offset, bytes: frame.data.length }, "log frame received (not forwarded yet)");
  }
}
