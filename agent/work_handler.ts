// The dispatch point for work: what the agent does with the Offers,
// Assignments, Cancels and LogAcks that arrive on its stream.
//
// AgentWorker owns the connection and the protocol around these messages
// (acknowledging ids, dropping redeliveries, declining while draining);
// a WorkHandler only decides and acts. Today the agent runs nothing, so the
// one implementation logs and declines; the job runner and the log streamer
// replace it.

import type { MessageInitShape } from "@bufbuild/protobuf";

import type {
  Assignment,
  BidSchema,
  Cancel,
  DeclineSchema,
  LogAck,
  Offer,
} from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../lib/logger.ts";

/** An answer to an Offer. */
export type OfferAnswer =
  | { case: "bid"; value: MessageInitShape<typeof BidSchema> }
  | { case: "decline"; value: MessageInitShape<typeof DeclineSchema> };

/**
 * Decides about work. Each method is called once per message id (AgentWorker
 * filters redeliveries), in stream order, and must return promptly: work that
 * takes long (running an attempt) continues after the promise resolves.
 */
export interface WorkHandler {
  /** Answers an offer; never called while the agent is draining (the worker declines those itself). */
  offer(offer: Offer): Promise<OfferAnswer>;
  /** Takes an attempt to run. */
  assignment(assignment: Assignment): Promise<void>;
  /** Stops an attempt (SIGTERM, then SIGKILL after the grace period). */
  cancel(cancel: Cancel): Promise<void>;
  /** Learns that log bytes are durable up to an offset. */
  logAck(ack: LogAck): void;
}

export const NO_JOBS_YET = "this agent does not run jobs yet";

/** The agent before it has a job runner: logs every message and declines every offer. */
export class DecliningWorkHandler implements WorkHandler {
  constructor(private readonly logger: Logger) {}

  async offer(offer: Offer): Promise<OfferAnswer> {
    this.logger.info({ offerId: offer.offerId, jobId: offer.jobId, driver: offer.driver }, "offer received; declining");
    return { case: "decline", value: { offerId: offer.offerId, reason: NO_JOBS_YET } };
  }

  async assignment(assignment: Assignment): Promise<void> {
    this.logger.info({ attemptId: assignment.attemptId, jobId: assignment.jobId, driver: assignment.driver }, "assignment received; this agent does not run jobs yet");
  }

  async cancel(cancel: Cancel): Promise<void> {
    this.logger.info({ attemptId: cancel.attemptId, reason: cancel.reason }, "cancel received; nothing is running");
  }

  logAck(ack: LogAck): void {
    this.logger.debug({ attemptId: ack.attemptId, stream: ack.stream, offset: ack.offset.toString() }, "log ack received");
  }
}
