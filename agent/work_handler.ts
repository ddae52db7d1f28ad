// The dispatch point for work: what the agent does with the Offers,
// Assignments, Cancels and LogAcks that arrive on its stream.
//
// AgentWorker owns the connection and the protocol around these messages
// (acknowledging ids, dropping redeliveries, declining while draining,
// sending and resending JobEvents); a WorkHandler only decides and acts.
// The implementation is JobHandler (job_handler.ts).

import type { MessageInitShape } from "@bufbuild/protobuf";

import type {
  Assignment,
  BidSchema,
  Cancel,
  DeclineSchema,
  LogAck,
  Offer,
  RunningAttemptSchema,
} from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";

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
  /** The attempts running now, for Hello.running on every (re)connect. */
  running(): MessageInitShape<typeof RunningAttemptSchema>[];
}
