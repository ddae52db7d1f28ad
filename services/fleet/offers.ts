// Offers out, bids back: the scatter-gather behind RequestBids.
//
//   Bid service ──RequestBids──▶ replica A (the gatherer)
//       A: for each offer: the agent's stream is here? queue it on the session;
//          otherwise publish {offer, replyTo: A} on the agent's channel
//   replica B (holds the agent's stream): queues the offer, remembers replyTo
//   agent ──Bid/Decline──▶ B: replyTo is A? publish the reply on
//          fleet:offer-replies:A (or hand it over in-process when B is A)
//       A: the reply joins its gather; the call returns when every offer is
//          answered or the window ends
//
// Nothing here is stored: an offer or a reply lost on the way is an offer
// without an answer, and the auction treats it so. That is what lets an
// offer cost a publish rather than a database write.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConnectResponseSchema, type Bid, type ConnectResponse, type Decline } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { OfferReplySchema, type OfferReply, type OfferTo } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Bus, Unsubscribe } from "../../lib/bus/bus.ts";
import type { Logger } from "../../lib/logger.ts";
import { agentChannel, encodeCommand, offerRepliesChannel } from "./bus_protocol.ts";
import type { AgentSession } from "./session.ts";

/** A round of offers waiting for its answers. */
interface Gather {
  waiting: Set<string>;
  replies: OfferReply[];
  done: () => void;
}

// Remembered offers per session before expired ones are swept out.
const SWEEP_AT = 256;

// An agent with more than this many messages waiting on its stream is not
// sent offers: it could not answer within the window anyway, and offers
// piling up behind a slow reader would end its stream (MAX_QUEUED_PER_AGENT).
// The offer goes unanswered; Bid tries again later, elsewhere or here.
export const MAX_OFFER_BACKLOG = 200;

export interface OfferRouterDeps {
  bus: Bus;
  /** This replica's name: where answers to its offers come back. */
  replica: string;
  /** The session this replica holds for an agent, if any. */
  session: (agentId: string) => AgentSession | undefined;
  log: Logger;
}

/** Sends offers to agents wherever their streams are and gathers the answers; promises nothing is stored. */
export class OfferRouter {
  private readonly gathers = new Map<string, Gather>();
  private unsubscribe?: Unsubscribe;

  constructor(private readonly deps: OfferRouterDeps) {}

  async start(): Promise<void> {
    this.unsubscribe = await this.deps.bus.subscribe(offerRepliesChannel(this.deps.replica), (bytes) => {
      let reply: OfferReply;
      try {
        reply = fromBinary(OfferReplySchema, bytes);
      } catch (err) {
        this.deps.log.warn({ err }, "dropped an offer reply that does not decode");
        return;
      }
      this.receive(reply);
    });
  }

  /** Stops listening; rounds still open return what they have. */
  async stop(): Promise<void> {
    await this.unsubscribe?.();
    for (const gather of new Set(this.gathers.values())) gather.done();
  }

  /**
   * Sends the offers and resolves with the answers that arrive within the
   * window, as soon as every offer has one. Offer ids must be unique among
   * the offers open on this replica.
   */
  async request(offers: readonly OfferTo[], windowMs: number): Promise<OfferReply[]> {
    const { bus, replica, log } = this.deps;
    const ids = new Set<string>();
    for (const [i, o] of offers.entries()) {
      const id = o.offer!.offerId;
      if (ids.has(id) || this.gathers.has(id)) {
        throw new ConnectError(`offers[${i}].offer.offer_id: ${id} is used by another open offer`, Code.InvalidArgument);
      }
      ids.add(id);
    }
    const deadline = Date.now() + windowMs;
    let timer: NodeJS.Timeout | undefined;
    const gather: Gather = { waiting: ids, replies: [], done: () => {} };
    const finished = new Promise<void>((resolve) => {
      gather.done = resolve;
      timer = setTimeout(resolve, windowMs);
    });
    for (const id of ids) this.gathers.set(id, gather);
    try {
      const publishes: Promise<void>[] = [];
      for (const { agentId, offer } of offers) {
        const message = create(ConnectResponseSchema, { message: { case: "offer", value: { ...offer!, deadline: offer!.deadline ?? timestampFromMs(deadline) } } });
        const local = this.deps.session(agentId);
        if (local?.ready && !local.ended) {
          if (local.backlog > MAX_OFFER_BACKLOG) {
            // Not sent, so not waited for: the others may still close the round early.
            gather.waiting.delete(offer!.offerId);
            continue;
          }
          this.hold(local, offer!.offerId, replica, deadline);
          local.deliver(message);
        } else {
          publishes.push(
            bus.publish(agentChannel(agentId), encodeCommand({ kind: "offer", replyTo: replica, message })).catch((err) => {
              log.debug({ err, agentId }, "could not publish an offer; it goes unanswered");
            }),
          );
        }
      }
      await Promise.all(publishes);
      if (gather.waiting.size > 0) await finished;
      return gather.replies;
    } finally {
      clearTimeout(timer);
      for (const id of ids) this.gathers.delete(id);
    }
  }

  /** On the replica holding the agent: an offer arrived through the bus. */
  deliver(session: AgentSession, replyTo: string, message: ConnectResponse): void {
    if (message.message.case !== "offer") return;
    const offer = message.message.value;
    const until = offer.deadline ? timestampMs(offer.deadline) : Date.now() + 10_000;
    if (session.backlog > MAX_OFFER_BACKLOG || until <= Date.now()) return; // unanswered: see MAX_OFFER_BACKLOG
    this.hold(session, offer.offerId, replyTo, until);
    session.deliver(message);
  }

  /** On the replica holding the agent: it answered an offer. Answers to offers it never got, or too late, are dropped. */
  answer(session: AgentSession, answer: { case: "bid"; value: Bid } | { case: "decline"; value: Decline }): void {
    const offerId = answer.value.offerId;
    const held = session.offers.get(offerId);
    if (!held) {
      this.deps.log.debug({ agentId: session.agentId, offerId }, "an answer to an unknown or expired offer; dropped");
      return;
    }
    session.offers.delete(offerId);
    const reply = create(OfferReplySchema, { agentId: session.agentId, offerId, reply: answer });
    if (held.replyTo === this.deps.replica) {
      this.receive(reply);
      return;
    }
    this.deps.bus.publish(offerRepliesChannel(held.replyTo), toBinary(OfferReplySchema, reply)).catch((err) => {
      this.deps.log.debug({ err, offerId }, "could not route an offer reply; the offer goes unanswered");
    });
  }

  private hold(session: AgentSession, offerId: string, replyTo: string, until: number): void {
    const offers = session.offers;
    if (offers.size >= SWEEP_AT) {
      const now = Date.now();
      for (const [id, o] of offers) if (o.until < now) offers.delete(id);
    }
    offers.set(offerId, { replyTo, until });
  }

  private receive(reply: OfferReply): void {
    const gather = this.gathers.get(reply.offerId);
    if (!gather || !gather.waiting.delete(reply.offerId)) return;
    gather.replies.push(reply);
    if (gather.waiting.size === 0) gather.done();
  }
}
