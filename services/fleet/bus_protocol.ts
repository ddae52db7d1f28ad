// What Fleet keeps on the bus, and how its messages are encoded. All of it
// may be lost; see README.md for what happens then.
//
//   presence  fleet:agent:<id>      JSON Presence, TTL 2 x presence refresh,
//                                   kept by the replica that holds the stream
//   channel   fleet:agent:<id>      AgentCommand, to whichever replica holds
//                                   the agent's stream (it subscribes while it does)
//   channel   fleet:agent-events    WatchAgentsResponse (binary): every change
//                                   of an agent, to every replica's watchers
//   channel   fleet:offer-replies:<replica>
//                                   OfferReply (binary): an agent's bid or
//                                   decline, to the replica that sent the offer
//   lock      fleet:sweeper         held by the replica that runs the sweeper

import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { encodedBefore } from "../../lib/encode_once.ts";
import { ConnectResponseSchema, type ConnectResponse } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";

export const AGENT_EVENTS_CHANNEL = "fleet:agent-events";
export const SWEEPER_LOCK = "fleet:sweeper";
export const PRESENCE_PREFIX = "fleet:agent:";

export function agentChannel(agentId: string): string {
  return `fleet:agent:${agentId}`;
}

/** Where a replica hears the answers to the offers it sent (RequestBids). */
export function offerRepliesChannel(replica: string): string {
  return `fleet:offer-replies:${replica}`;
}

export function presenceKey(agentId: string): string {
  return `${PRESENCE_PREFIX}${agentId}`;
}

/** The value of an agent's presence key. */
export interface Presence {
  /** The replica holding the stream. */
  replica: string;
  sessionId: string;
  /** When its last heartbeat arrived, in ms since the epoch (as of the last refresh). */
  lastHeartbeat: number;
}

export function parsePresence(value: string): Presence | null {
  try {
    const p = JSON.parse(value) as Partial<Presence>;
    if (typeof p.replica === "string" && typeof p.sessionId === "string" && typeof p.lastHeartbeat === "number") {
      return p as Presence;
    }
  } catch {
    // fall through
  }
  return null;
}

/** A message to whichever replica holds an agent's stream. */
export type AgentCommand =
  /** Send this to the agent. */
  | { kind: "deliver"; message: ConnectResponse }
  /** The agent opened a stream (this session, at this time) elsewhere: end older ones. */
  | { kind: "takeover"; sessionId: string; connectedAt: number; replica: string }
  /** A credential of the agent was revoked: end a stream opened with it (any stream when tokenId is empty). */
  | { kind: "revoked"; tokenId: string }
  /** Send this Offer to the agent and route its answer to replica `replyTo`. */
  | { kind: "offer"; replyTo: string; message: ConnectResponse };

// One byte of kind, then the body: a ConnectResponse for deliver (the hot
// path, no JSON), JSON for the rest.
const DELIVER = 1;
const TAKEOVER = 2;
const REVOKED = 3;
const OFFER = 4;

export function encodeCommand(command: AgentCommand): Uint8Array {
  if (command.kind === "deliver") {
    const body = encodedBefore(ConnectResponseSchema, command.message) ?? toBinary(ConnectResponseSchema, command.message);
    const out = new Uint8Array(body.length + 1);
    out[0] = DELIVER;
    out.set(body, 1);
    return out;
  }
  if (command.kind === "offer") {
    // kind, replyTo's length (one byte: replica names are short), replyTo, the message.
    const replyTo = new TextEncoder().encode(command.replyTo);
    if (replyTo.length > 255) throw new Error("encodeCommand: replyTo is longer than 255 bytes");
    const body = toBinary(ConnectResponseSchema, command.message);
    const out = new Uint8Array(2 + replyTo.length + body.length);
    out[0] = OFFER;
    out[1] = replyTo.length;
    out.set(replyTo, 2);
    out.set(body, 2 + replyTo.length);
    return out;
  }
  const { kind, ...rest } = command;
  const body = new TextEncoder().encode(JSON.stringify(rest));
  const out = new Uint8Array(body.length + 1);
  out[0] = kind === "takeover" ? TAKEOVER : REVOKED;
  out.set(body, 1);
  return out;
}

/** Decodes a command; throws on bytes that are not one. */
export function decodeCommand(bytes: Uint8Array): AgentCommand {
  const body = bytes.subarray(1);
  switch (bytes[0]) {
    case DELIVER:
      return { kind: "deliver", message: fromBinary(ConnectResponseSchema, body) };
    case TAKEOVER: {
      const t = JSON.parse(new TextDecoder().decode(body)) as { sessionId: string; connectedAt: number; replica: string };
      return { kind: "takeover", sessionId: String(t.sessionId), connectedAt: Number(t.connectedAt), replica: String(t.replica) };
    }
    case OFFER: {
      const end = 2 + (bytes[1] ?? 0);
      if (end > bytes.length) throw new Error("offer command: truncated");
      const replyTo = new TextDecoder().decode(bytes.subarray(2, end));
      return { kind: "offer", replyTo, message: fromBinary(ConnectResponseSchema, bytes.subarray(end)) };
    }
    case REVOKED: {
      const r = JSON.parse(new TextDecoder().decode(body)) as { tokenId: string };
      return { kind: "revoked", tokenId: String(r.tokenId ?? "") };
    }
    default:
      throw new Error(`unknown agent command kind ${bytes[0]}`);
  }
}
