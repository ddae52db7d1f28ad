// Where the work messages agents send (job events, log frames, and what
// they run when they connect) go. Fleet only carries them: the Scheduler
// takes job events and running attempts (scheduler_sink.ts), the Log
// service takes log frames (log_sink.ts); WorkSink puts the two together.
// Bids and declines do not come here: they go back to whoever sent the
// offer (offers.ts).

import type { ConnectResponse, Hello, JobEvent, LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
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
  /** A frame of an attempt's output; never waits on the Log service (see log_sink.ts). */
  logFrame(agentId: string, frame: LogFrame): void | Promise<void>;
  /** Called once by the hub that reads into this sink, with the way back to its agents (LogAcks). */
  bind?(agents: AgentReplies): void;
}

/** Sends messages that need no acknowledgement to agents whose streams this replica holds. */
export interface AgentReplies {
  /** Queues the message on the agent's current stream here; false (and nothing sent) when this replica holds none. */
  reply(agentId: string, message: ConnectResponse): boolean;
}

/** Job events and running attempts to one sink, log frames to another; what the wirings pass Fleet. */
export class WorkSink implements AgentMessageSink {
  constructor(private readonly parts: { jobs: AgentMessageSink; logs: AgentMessageSink }) {}

  async connected(agentId: string, hello: Hello): Promise<void> {
    await Promise.all([this.parts.jobs.connected(agentId, hello), this.parts.logs.connected(agentId, hello)]);
  }

  jobEvent(agentId: string, event: JobEvent): void | Promise<void> {
    return this.parts.jobs.jobEvent(agentId, event);
  }

  logFrame(agentId: string, frame: LogFrame): void | Promise<void> {
    return this.parts.logs.logFrame(agentId, frame);
  }

  bind(agents: AgentReplies): void {
    this.parts.jobs.bind?.(agents);
    this.parts.logs.bind?.(agents);
  }
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
