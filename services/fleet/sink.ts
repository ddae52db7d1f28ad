// Where the work messages agents send (job events, log frames, and what
// they run when they connect) go. Fleet only carries them: the Scheduler
// takes job events and running attempts (scheduler_sink.ts), the log issue
// plugs Log in. Bids and declines do not come here: they go back to whoever
// sent the offer (offers.ts).

import type { Hello, JobEvent, LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../../lib/logger.ts";

/**
 * Receives agents' work messages in stream order per agent; a slow sink
 * slows that agent (backpressure) and no other. A returned promise is
 * awaited before the stream's next message is read, except for job events:
 * those waiting are handed over together, the next group once the previous
 * one resolved, while the stream is still read (heartbeats must keep
 * counting; see hub.ts jobEvent). A throw ends that agent's stream with
 * the error (a ConnectError keeps its code).
 */
export interface AgentMessageSink {
  /** A stream opened: what the agent says it runs and how far its logs go (Hello.running, Hello.log_offsets). */
  connected(agentId: string, hello: Hello): void | Promise<void>;
  /** An attempt's event; once this resolves the agent is told it is recorded (EventAck). */
  jobEvent(agentId: string, event: JobEvent): void | Promise<void>;
  logFrame(agentId: string, frame: LogFrame): void | Promise<void>;
}

/** A sink that records nothing: counts and logs at debug (Fleet on its own, and tests). */
export class CountingSink implements AgentMessageSink {
  readonly counts = { connected: 0, jobEvent: 0, logFrame: 0 };

  constructor(private readonly log?: Logger) {}

  connected(agentId: string, hello: Hello): void {
    this.counts.connected++;
    this.log?.debug({ agentId, running: hello.running.length, logOffsets: hello.logOffsets.length }, "agent connected");
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
