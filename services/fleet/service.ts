import { clone, create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { ConnectResponseSchema, type ConnectRequest, type ConnectResponse } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import {
  ApiTokenSchema,
  FleetService,
  Role,
  WatchAgentsResponseSchema,
  WatchAgentsResponse_Kind as Kind,
  type ApiToken,
  type AuthenticateTokenRequest,
  type CordonAgentRequest,
  type CreateAgentTokenRequest,
  type CreateApiTokenRequest,
  type DeleteAgentRequest,
  type DrainAgentRequest,
  type GetAgentRequest,
  type ListAgentTokensRequest,
  type ListAgentsRequest,
  type ListApiTokensRequest,
  type RevokeAgentTokenRequest,
  type RevokeApiTokenRequest,
  type SendToAgentRequest,
  type SetAgentLabelsRequest,
  type UncordonAgentRequest,
  type UndrainAgentRequest,
  type WatchAgentsRequest,
  type WatchAgentsResponse,
  type RequestBidsRequest,
  type SendToAgentsRequest,
} from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import type { FleetSettings } from "../../lib/config.ts";
import { serveGrpcStream, type GrpcStreamHandler } from "../../lib/host/grpc_stream.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { decodePageToken, pageSize, splitPage } from "../../lib/host/paging.ts";
import { durationMs } from "../../lib/host/time.ts";
import type { Logger } from "../../lib/logger.ts";
import type { AgentStore, Schedulability } from "./agent_store.ts";
import type { AgentTokenStore } from "./agent_token_store.ts";
import { agentChannel, encodeCommand, presenceKey } from "./bus_protocol.ts";
import { connectHandler, grpcConnectHandler } from "./connect.ts";
import { agentMessage, agentTokenMessage, livenessOf, ts } from "./convert.ts";
import type { AgentEvents } from "./events.ts";
import type { AgentHub } from "./hub.ts";
import { matchesSelector } from "./labels.ts";
import type { OfferRouter } from "./offers.ts";
import { needsAck, newMessageId, type Outbox } from "./outbox.ts";
import { MessageQueue } from "./queue.ts";
import type { TokenRecord, TokenStore } from "./token_store.ts";

/** Who may call what on FleetService (methods not listed: admin and operator). */
export const fleetAccess: Record<string, AccessRule> = {
  CreateApiToken: [Role.ADMIN],
  ListApiTokens: [Role.ADMIN],
  RevokeApiToken: [Role.ADMIN],
  // Services call it with an admin token; agents do not need it.
  AuthenticateToken: [Role.ADMIN],
  // Agents present a credential or a registration token; the handler checks both.
  Connect: "open",
  // For services (they call with the admin token): raw offers and bulk messages.
  RequestBids: [Role.ADMIN],
  SendToAgents: [Role.ADMIN],
};

// Most events queued for one WatchAgents stream before it is ended as too slow.
const WATCH_QUEUE_LIMIT = 100_000;
// Agents per page of a watch's initial listing.
const WATCH_PAGE = 500;

function apiToken(t: TokenRecord): ApiToken {
  return create(ApiTokenSchema, {
    id: t.id,
    name: t.name,
    role: t.role,
    createTime: ts(t.createdAt),
    expireTime: ts(t.expiresAt),
    revokeTime: ts(t.revokedAt),
  });
}

/** What the agent side of FleetService is built from (see fleet.ts). */
export interface AgentParts {
  agentTokens: AgentTokenStore;
  store: AgentStore;
  outbox: Outbox;
  hub: AgentHub;
  offers: OfferRouter;
  events: AgentEvents;
  bus: Bus;
  settings: FleetSettings;
  log: Logger;
}

/** How long RequestBids collects answers when the request does not say. */
export const DEFAULT_BID_WINDOW_MS = 50;

/**
 * FleetService: bearer tokens, registration tokens, the agent stream and the
 * operator API over agents. Built with the token store alone it serves the
 * token methods only (the others answer UNIMPLEMENTED).
 */
export class FleetServiceImpl implements Partial<ServiceImpl<typeof FleetService>> {
  readonly connect: ServiceImpl<typeof FleetService>["connect"] | undefined;
  /** Connect for gRPC clients on the raw HTTP/2 path (see fleetRoutes). */
  readonly grpcConnect: GrpcStreamHandler<ConnectRequest, ConnectResponse> | undefined;

  constructor(
    private readonly tokens: TokenStore,
    private readonly parts?: AgentParts,
  ) {
    const deps = parts && { tokens, store: parts.store, hub: parts.hub, settings: parts.settings, log: parts.log };
    this.connect = deps && connectHandler(deps);
    this.grpcConnect = deps && grpcConnectHandler(deps);
  }

  private get agents(): AgentParts {
    if (!this.parts) throw new ConnectError("agents are not served by this FleetService", Code.Unimplemented);
    return this.parts;
  }

  // ---- Bearer tokens -------------------------------------------------------

  async createApiToken(req: CreateApiTokenRequest) {
    const { token, secret } = await this.tokens.create(req.name, req.role, req.ttl ? durationMs(req.ttl) : undefined);
    return { token: apiToken(token), secret };
  }

  async listApiTokens(req: ListApiTokensRequest) {
    const size = pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    if (after !== undefined && !(await this.tokens.exists(after))) {
      throw new ConnectError("page_token: does not name a token (was it deleted?)", Code.InvalidArgument);
    }
    const rows = await this.tokens.list(size + 1, after);
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.id);
    return { tokens: page.map(apiToken), nextPageToken };
  }

  async revokeApiToken(req: RevokeApiTokenRequest) {
    const token = await this.tokens.revoke(req.id);
    if (!token) throw new ConnectError(`token ${req.id} not found`, Code.NotFound);
    // An agent's credential: end the stream opened with it, wherever it is held.
    if (token.agentId && this.parts) await this.command(token.agentId, { kind: "revoked", tokenId: token.id });
    return { token: apiToken(token) };
  }

  async authenticateToken(req: AuthenticateTokenRequest) {
    const principal = await this.tokens.authenticate(req.secret);
    if (!principal) throw new ConnectError("token is unknown, revoked or expired", Code.Unauthenticated);
    return { tokenId: principal.tokenId, role: principal.role, name: principal.name };
  }

  // ---- Registration tokens -------------------------------------------------

  async createAgentToken(req: CreateAgentTokenRequest) {
    const { token, secret } = await this.agents.agentTokens.create(req.name, req.labels, req.ttl ? durationMs(req.ttl) : undefined);
    return { token: agentTokenMessage(token), secret };
  }

  async listAgentTokens(req: ListAgentTokensRequest) {
    const { agentTokens } = this.agents;
    const size = pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    if (after !== undefined && !(await agentTokens.exists(after))) {
      throw new ConnectError("page_token: does not name a registration token (was it deleted?)", Code.InvalidArgument);
    }
    const rows = await agentTokens.list(size + 1, after);
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.id);
    return { tokens: page.map(agentTokenMessage), nextPageToken };
  }

  async revokeAgentToken(req: RevokeAgentTokenRequest) {
    const token = await this.agents.agentTokens.revoke(req.id);
    if (!token) throw new ConnectError(`registration token ${req.id} not found`, Code.NotFound);
    return { token: agentTokenMessage(token) };
  }

  // ---- Agents ----------------------------------------------------------------

  async listAgents(req: ListAgentsRequest) {
    const size = pageSize(req.pageSize);
    const rows = await this.agents.store.list({
      status: livenessOf(req.status),
      selector: req.labelSelector,
      after: decodePageToken(req.pageToken),
      limit: size + 1,
    });
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.id);
    return { agents: page.map((row) => agentMessage(row)), nextPageToken };
  }

  async getAgent(req: GetAgentRequest) {
    const { store } = this.agents;
    const row = await this.existing(req.id);
    return { agent: agentMessage(row, await store.history(row.id)) };
  }

  async setAgentLabels(req: SetAgentLabelsRequest) {
    const row = await this.agents.store.setOperatorLabels(req.id, req.labels);
    if (!row) throw notFound(req.id);
    const agent = agentMessage(row);
    await this.agents.events.publish(Kind.UPDATED, agent);
    return { agent };
  }

  async drainAgent(req: DrainAgentRequest) {
    const deadline = req.deadline ? timestampDate(req.deadline) : null;
    const agent = await this.schedulability(req.id, ["eligible", "cordoned", "draining"], "draining", { deadline, reason: req.reason || null });
    // Told every time, so a repeated drain (say, with a new deadline) reaches the agent too.
    await this.deliver(req.id, create(ConnectResponseSchema, { message: { case: "drain", value: { draining: true, deadline: req.deadline, reason: req.reason } } }));
    return { agent };
  }

  async undrainAgent(req: UndrainAgentRequest) {
    const before = await this.existing(req.id);
    const agent = await this.schedulability(req.id, ["draining"], "eligible");
    if (before.schedulability === "draining") {
      await this.deliver(req.id, create(ConnectResponseSchema, { message: { case: "drain", value: { draining: false, reason: "drain ended" } } }));
    }
    return { agent };
  }

  async cordonAgent(req: CordonAgentRequest) {
    // A draining agent stays draining: that already keeps new work away, and the agent knows it.
    return { agent: await this.schedulability(req.id, ["eligible"], "cordoned") };
  }

  async uncordonAgent(req: UncordonAgentRequest) {
    return { agent: await this.schedulability(req.id, ["cordoned"], "eligible") };
  }

  async deleteAgent(req: DeleteAgentRequest) {
    const outcome = await this.agents.store.deleteIfOffline(req.id);
    if ("notFound" in outcome) throw notFound(req.id);
    if ("status" in outcome) {
      throw new ConnectError(`agent ${req.id} is ${outcome.status}: only an offline agent can be deleted`, Code.FailedPrecondition);
    }
    await this.agents.events.publish(Kind.DELETED, agentMessage(outcome.deleted));
    // Its credentials are revoked; a stream still open somewhere (it should not be) ends now.
    await this.command(req.id, { kind: "revoked", tokenId: "" });
    return {};
  }

  async *watchAgents(req: WatchAgentsRequest, ctx: HandlerContext): AsyncGenerator<WatchAgentsResponse> {
    const { events, store } = this.agents;
    const selector = req.labelSelector;
    // Listen before listing, so no change between the two is missed (one may arrive twice).
    const queue = new MessageQueue<WatchAgentsResponse>(WATCH_QUEUE_LIMIT);
    const stopListening = events.listen((event) => {
      if (event.agent && matchesSelector(event.agent.labels, selector)) queue.push(event);
    });
    const onAbort = () => queue.end(ConnectError.from(ctx.signal.reason ?? new ConnectError("the watch was cancelled", Code.Canceled)));
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    try {
      let after: string | undefined;
      for (;;) {
        const page = await store.list({ selector, after, limit: WATCH_PAGE });
        for (const row of page) yield create(WatchAgentsResponseSchema, { kind: Kind.EXISTING, agent: agentMessage(row) });
        if (page.length < WATCH_PAGE) break;
        after = page[page.length - 1]!.id;
      }
      yield create(WatchAgentsResponseSchema, { kind: Kind.SYNCED });
      yield* queue.drain();
    } finally {
      stopListening();
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  async sendToAgent(req: SendToAgentRequest) {
    const message = clone(ConnectResponseSchema, req.message!);
    if (message.message.case === undefined) {
      throw new ConnectError("message: one of offer, assignment, cancel, log_ack or drain must be set", Code.InvalidArgument);
    }
    if (message.message.case === "welcome") {
      throw new ConnectError("message: Welcome is sent by Fleet itself, in answer to Hello", Code.InvalidArgument);
    }
    return this.deliver(req.agentId, message);
  }

  async sendToAgents(req: SendToAgentsRequest) {
    const { outbox, bus, log, hub } = this.agents;
    const messages = req.messages.map((m, i) => {
      // A shallow copy: only message_id is set here, and the request is this call's alone
      // (ConnectResponse is proto3, so every field is the message's own property and the copy has it).
      const message: ConnectResponse = { ...m.message! };
      const c = message.message.case;
      if (c === undefined || c === "welcome") {
        throw new ConnectError(`messages[${i}].message: one of offer, assignment, cancel, log_ack, event_ack or drain must be set`, Code.InvalidArgument);
      }
      if (needsAck(message) && message.messageId === "") message.messageId = newMessageId();
      if (!needsAck(message)) message.messageId = "";
      return { agentId: m.agentId, message };
    });
    const durable = messages.map((m, i) => ({ ...m, i })).filter((m) => needsAck(m.message));
    // An agent whose stream this replica holds gets its messages here and now; the others
    // through the bus, to whichever replica holds them (presence says whether one does).
    const local = (agentId: string) => {
      const session = hub.session(agentId);
      return session?.ready && !session.ended ? session : undefined;
    };
    const storing = outbox.storeMany(durable);
    // An Assignment to a stream held here goes out while it is stored, not after: it is the
    // message a placement waits on, and the store is most of SendToAgents' time. That is safe
    // because the attempt is already durable in the Scheduler (should the store fail, its lease
    // lapses and the job is placed again), an agent acknowledges a message id it has seen
    // without acting twice, and an Ack that outruns the INSERT waits for it (Outbox.ack).
    const early = new Set<number>();
    messages.forEach(({ agentId, message }, i) => {
      const session = message.message.case === "assignment" ? local(agentId) : undefined;
      if (!session) return;
      session.deliver(message);
      early.add(i);
    });
    const outcomes = await storing;
    const skip = new Set<number>(early);
    durable.forEach((m, j) => {
      if (outcomes[j] === "no-agent") throw new ConnectError(`messages[${m.i}].agent_id: agent ${m.agentId} not found`, Code.NotFound);
      if (outcomes[j] === "acked") skip.add(m.i);
    });
    const agents = [...new Set(messages.map((m) => m.agentId))];
    const present = new Map<string, boolean>();
    await Promise.all(
      agents.map(async (agentId) => present.set(agentId, local(agentId) !== undefined || (await bus.getPresence(presenceKey(agentId)).catch(() => null)) !== null)),
    );
    await Promise.all(
      messages.map(({ agentId, message }, i) => {
        if (skip.has(i)) return undefined;
        const session = local(agentId);
        if (session) return void session.deliver(message);
        return bus.publish(agentChannel(agentId), encodeCommand({ kind: "deliver", message })).catch((err) => {
          // Stored ones go out on the agent's next Hello.
          log.warn({ err, agentId, messageId: message.messageId }, "could not publish an agent message");
          if (!needsAck(message)) present.set(agentId, false);
        });
      }),
    );
    return {
      results: messages.map(({ agentId, message }, i) => ({ messageId: message.messageId, delivered: skip.has(i) || (present.get(agentId) ?? false) })),
    };
  }

  async requestBids(req: RequestBidsRequest) {
    const windowMs = req.window ? durationMs(req.window) : DEFAULT_BID_WINDOW_MS;
    return { replies: await this.agents.offers.request(req.offers, windowMs) };
  }

  // ---- Helpers -------------------------------------------------------------------

  /**
   * Sends a server message to an agent: stored in the outbox first when it
   * needs an ack (so it reaches the agent on its next Hello whatever
   * happens), then published on the agent's channel, where the replica
   * holding its stream (if any) picks it up.
   */
  private async deliver(agentId: string, message: ConnectResponse): Promise<{ messageId: string; delivered: boolean }> {
    const { outbox, store, bus, log } = this.agents;
    if (needsAck(message)) {
      if (message.messageId === "") message.messageId = newMessageId();
      const outcome = await outbox.store(agentId, message);
      if (outcome === "no-agent") throw notFound(agentId);
      // Acknowledged before: the agent has it; sending it again would make it act twice.
      if (outcome === "acked") return { messageId: message.messageId, delivered: true };
    } else {
      message.messageId = "";
      if (!(await store.get(agentId))) throw notFound(agentId);
    }
    try {
      await bus.publish(agentChannel(agentId), encodeCommand({ kind: "deliver", message }));
      return { messageId: message.messageId, delivered: (await bus.getPresence(presenceKey(agentId))) !== null };
    } catch (err) {
      if (!needsAck(message)) throw new ConnectError("cannot reach the bus to deliver the message; retry", Code.Unavailable, undefined, undefined, err);
      // Stored: it goes out on the agent's next Hello.
      log.warn({ err, agentId, messageId: message.messageId }, "could not publish a stored agent message; it waits for the agent's next Hello");
      return { messageId: message.messageId, delivered: false };
    }
  }

  private async command(agentId: string, command: Parameters<typeof encodeCommand>[0]): Promise<void> {
    try {
      await this.agents.bus.publish(agentChannel(agentId), encodeCommand(command));
    } catch (err) {
      this.agents.log.warn({ err, agentId, kind: command.kind }, "could not tell the replica holding the agent's stream");
    }
  }

  private async existing(id: string) {
    const row = await this.agents.store.get(id);
    if (!row) throw notFound(id);
    return row;
  }

  private async schedulability(
    id: string,
    from: readonly Schedulability[],
    to: Schedulability,
    drain?: { deadline: Date | null; reason: string | null },
  ) {
    const result = await this.agents.store.setSchedulability(id, from, to, drain);
    if (!result) throw notFound(id);
    const agent = agentMessage(result.agent);
    if (result.changed) await this.agents.events.publish(Kind.UPDATED, agent);
    return agent;
  }
}

function notFound(agentId: string): ConnectError {
  return new ConnectError(`agent ${agentId} not found`, Code.NotFound);
}

/** FleetService on the router; on a server, Connect's gRPC streams (agents) are served straight on node:http2 (connect.ts). */
export function fleetRoutes(impl: FleetServiceImpl) {
  return (router: ConnectRouter) => {
    router.service(FleetService, impl);
    if (impl.grpcConnect) serveGrpcStream(router, FleetService.method.connect, impl.grpcConnect);
  };
}
