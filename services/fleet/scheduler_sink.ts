// Fleet's sink in both wirings: job events and what agents run go to the
// Scheduler through its generated client. Events from every stream are
// batched into one ReportJobEvents call; each agent's stream waits for its
// events' batch (so their EventAck follows the Scheduler's commit), and
// events of one agent stay in order because its stream hands them over a
// group at a time, in order, the next group after the previous one's batch
// (hub.ts jobEvent). A group can only be split when it straddles this
// batcher's size limit; the Scheduler's lifecycle ignores an event that
// comes after the attempt already ended.

import type { Hello, JobEvent } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { Batcher } from "../../lib/batcher.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { Logger } from "../../lib/logger.ts";
import type { AgentMessageSink } from "./sink.ts";

/** Forwards work messages to their owners; promises a job event is acknowledged only after the Scheduler applied it. */
export class SchedulerSink implements AgentMessageSink {
  private readonly events: Batcher<{ agentId: string; event: JobEvent }, void>;

  constructor(
    private readonly scheduler: DroverClients["scheduler"],
    private readonly log: Logger,
  ) {
    this.events = new Batcher<{ agentId: string; event: JobEvent }, void>(
      async (events) => {
        await scheduler.reportJobEvents({ events }, { timeoutMs: 30_000 });
        return events.map(() => undefined);
      },
      { maxSize: 1000, concurrency: 4 },
    );
  }

  async connected(agentId: string, hello: Hello): Promise<void> {
    if (hello.running.length === 0) return;
    try {
      const { cancelledAttemptIds } = await this.scheduler.reportRunningAttempts({ agentId, running: hello.running }, { timeoutMs: 30_000 });
      if (cancelledAttemptIds.length > 0) this.log.info({ agentId, attempts: cancelledAttemptIds }, "told a returning agent to cancel attempts given away");
    } catch (err) {
      // The agent still runs them; their events will be answered with Cancels.
      this.log.warn({ err, agentId }, "could not check a returning agent's attempts");
    }
  }

  jobEvent(agentId: string, event: JobEvent): Promise<void> {
    return this.events.add({ agentId, event });
  }

  logFrame(): void {
    // Not the Scheduler's: LogSink takes them (WorkSink in sink.ts puts the two together).
  }
}
