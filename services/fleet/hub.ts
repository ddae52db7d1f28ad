// The agent streams one replica holds, and everything that keeps them:
//
//   attach    a stream said Hello and was authenticated: take over older
//             streams of the agent (here and, through the bus, elsewhere),
//             record the connect, set presence, queue Welcome, replay the
//             outbox
//   read      the agent's messages: heartbeats update fields in memory,
//             acks go to the outbox, work messages to the sink
//   monitor   every monitor interval: liveness of each stream held here,
//             presence refresh, and snapshots of heartbeat data, batched
//   commands  the agent's bus channel: messages to deliver, takeovers by
//             newer streams elsewhere, revoked credentials
//   detach    the stream ended: a last snapshot, and the presence key goes
//             unless a newer stream took over; from then on the sweeper
//             judges the agent's liveness
//
// The cost of a heartbeat is a handful of field writes. Postgres hears about
// an agent on connect, on a change of status, and at most every snapshot
// interval; the bus, once per presence refresh (see README.md, "Presence").

import { randomUUID } from "node:crypto";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { create, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ResourcesSchema } from "../../gen/ts/drover/common/v1/resources_pb.ts";
import {
  ConnectResponseSchema,
  MetricsSchema,
  type ConnectRequest,
  type ConnectResponse,
  type Heartbeat,
  type Hello,
  type JobEvent,
} from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { WatchAgentsResponse } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Bus, Unsubscribe } from "../../lib/bus/bus.ts";
import type { FleetSettings } from "../../lib/config.ts";
import type { Logger } from "../../lib/logger.ts";
import type { AgentRow, AgentStore, Snapshot } from "./agent_store.ts";
import { agentChannel, decodeCommand, encodeCommand, presenceKey, parsePresence, type AgentCommand } from "./bus_protocol.ts";
import { agentMessage, livenessOf } from "./convert.ts";
import { AgentEventKind, type AgentEvents } from "./events.ts";
import { livenessAt, livenessReason, type Liveness } from "./liveness.ts";
import type { OfferRouter } from "./offers.ts";
import type { Outbox } from "./outbox.ts";
import { AgentSession } from "./session.ts";
import type { AgentMessageSink } from "./sink.ts";
import { sleep } from "../../lib/timers.ts";
import type { Transitions } from "./transitions.ts";

/** Who a stream turned out to be. */
export interface AgentIdentity {
  agent: AgentRow;
  /** The api token the stream is authenticated with. */
  tokenId: string;
  /** The credential's secret, only when it was minted by this very stream (registration). */
  credential?: string;
}

export interface HubDeps {
  store: AgentStore;
  outbox: Outbox;
  events: AgentEvents;
  transitions: Transitions;
  bus: Bus;
  sink: AgentMessageSink;
  /** Routes agents' answers to offers back to the replica that sent them. */
  offers: OfferRouter;
  settings: FleetSettings;
  /** This replica's name, in presence values and takeovers. */
  replica: string;
  log: Logger;
}

// Snapshot rows per statement.
const SNAPSHOT_BATCH = 1000;

// Job events of one stream waiting for the sink before its reading pauses (backpressure).
const MAX_EVENTS_WAITING = 1000;
// Acks of one stream waiting to be written before its reading pauses (an agent sends one every 50 ms at most).
const MAX_ACKS_WAITING = 64;
// Most job events of one stream handed to the sink, and acknowledged, together.
const EVENTS_PER_GROUP = 500;

const CALL_ENDED = Symbol("call ended");
type ReadStep = IteratorResult<ConnectRequest> | typeof CALL_ENDED;

/** Counts for tests and benchmarks. */
export interface HubStats {
  sessions: number;
  heartbeats: number;
  snapshotsWritten: number;
  presenceWrites: number;
  presenceFailures: number;
  readers: number;
  pending: number;
}

export class AgentHub {
  private readonly sessions = new Map<string, AgentSession>();
  private readonly channels: AgentChannels;
  // Work that must finish before the bus and database close: detaches, status writes.
  private readonly pending = new Set<Promise<unknown>>();
  // Attaches of one agent run one after another, so the newest is the one stored.
  private readonly attaching = new Map<string, Promise<unknown>>();
  private readonly stats = { heartbeats: 0, snapshotsWritten: 0, presenceWrites: 0, presenceFailures: 0, readers: 0 };
  private stopEvents?: () => void;
  private monitor?: { stop: AbortController; done: Promise<void> };

  constructor(private readonly deps: HubDeps) {
    this.channels = new AgentChannels(deps.bus, (agentId, bytes) => this.onCommand(agentId, bytes), deps.log);
    deps.sink.bind?.({ reply: (agentId, message) => this.reply(agentId, message) });
  }

  /**
   * Queues a message that needs no acknowledgement (a LogAck) on the
   * agent's current stream here, after Welcome and the outbox replay; false
   * when this replica holds no stream of the agent (it moved elsewhere, or
   * went): such a message is dropped.
   */
  reply(agentId: string, message: ConnectResponse): boolean {
    const session = this.sessions.get(agentId);
    if (!session || session.ended) return false;
    session.deliver(message);
    return true;
  }

  start(): void {
    this.stopEvents = this.deps.events.listen((event) => this.onEvent(event));
    const stop = new AbortController();
    this.monitor = { stop, done: this.monitorLoop(stop.signal) };
  }

  /** Stops the monitor, ends every stream still held (UNAVAILABLE) and waits for their clean-up. */
  async stop(): Promise<void> {
    this.stopEvents?.();
    this.monitor?.stop.abort();
    await this.monitor?.done;
    for (const session of this.sessions.values()) {
      session.end(new ConnectError("fleet is shutting down; reconnect", Code.Unavailable));
    }
    // Ending a stream detaches it once its handler notices; give that a moment.
    const deadline = Date.now() + 2000;
    while ((this.sessions.size > 0 || this.pending.size > 0) && Date.now() < deadline) {
      await Promise.allSettled([...this.pending]);
      if (this.sessions.size > 0) await sleep(10);
    }
    await this.channels.releaseAll();
  }

  getStats(): HubStats {
    return { sessions: this.sessions.size, pending: this.pending.size, ...this.stats };
  }

  /** The session this replica holds for an agent, if any. */
  session(agentId: string): AgentSession | undefined {
    return this.sessions.get(agentId);
  }

  /**
   * Makes an authenticated stream the agent's current one. Resolves once
   * Welcome and the replayed outbox are queued. Throws a ConnectError (and
   * leaves nothing behind) when it cannot.
   */
  attach(identity: AgentIdentity, hello: Hello): Promise<AgentSession> {
    const agentId = identity.agent.id;
    const previous = this.attaching.get(agentId) ?? Promise.resolve();
    const attached = previous.catch(() => {}).then(() => this.attachNow(identity, hello));
    const settled = attached.catch(() => {});
    this.attaching.set(agentId, settled);
    void settled.then(() => {
      if (this.attaching.get(agentId) === settled) this.attaching.delete(agentId);
    });
    return attached;
  }

  private async attachNow(identity: AgentIdentity, hello: Hello): Promise<AgentSession> {
    const { deps } = this;
    const agentId = identity.agent.id;
    const isNew = identity.credential !== undefined;
    const now = Date.now();
    const session = new AgentSession(randomUUID(), agentId, identity.tokenId, now, identity.agent.status as Liveness);

    // The newest stream wins: end an older one held here at once.
    const older = this.sessions.get(agentId);
    if (older) {
      older.takenOver = true;
      older.end(new ConnectError(`replaced by a newer stream of agent ${agentId} (session ${session.id})`, Code.Aborted));
    }
    this.sessions.set(agentId, session);

    let holdsChannel = false;
    try {
      await this.channels.acquire(agentId);
      holdsChannel = true;
      // Storing the session id first makes the row the judge of which stream
      // is current: a replica that hears of a takeover checks it (onCommand).
      const row = await deps.store.connect(agentId, hello, session.id, new Date(now));
      if (!row) throw new ConnectError(`agent ${agentId} was deleted`, Code.Unauthenticated);
      await deps.bus.publish(agentChannel(agentId), encodeCommand({ kind: "takeover", sessionId: session.id, connectedAt: now, replica: deps.replica }));

      const from = await deps.store.transition(agentId, "online", isNew ? "registered" : "connected", new Date(now), { sessionId: session.id });
      if (from !== null) deps.log.info({ agentId, from, to: "online", sessionId: session.id }, "agent status changed");
      session.status = "online";
      row.status = "online";
      await this.refreshPresence(session, now);

      session.send(
        create(ConnectResponseSchema, {
          message: {
            case: "welcome",
            value: {
              sessionId: session.id,
              agentId,
              agentCredential: identity.credential ?? "",
              heartbeatInterval: durationOf(deps.settings.heartbeatIntervalMs),
            },
          },
        }),
      );
      // The agent keeps its drain flag in memory only and acknowledged the
      // Drain long ago, so a draining agent hears it again on every connect.
      // No message_id: it needs no acknowledgement and is not kept.
      if (row.schedulability === "draining") {
        session.send(
          create(ConnectResponseSchema, {
            message: {
              case: "drain",
              value: {
                draining: true,
                deadline: row.drainDeadline ? timestampFromDate(row.drainDeadline) : undefined,
                reason: row.drainReason ?? "",
              },
            },
          }),
        );
      }
      const replayed = new Set<string>();
      for (const message of await deps.outbox.unacked(agentId)) {
        session.send(message);
        replayed.add(message.messageId);
      }
      session.finishReplay(replayed);
      if (replayed.size > 0) deps.log.debug({ agentId, count: replayed.size }, "redelivered unacknowledged messages");

      await deps.events.publish(isNew ? AgentEventKind.ADDED : AgentEventKind.UPDATED, agentMessage(row));
      await deps.sink.connected(agentId, hello);
      session.ready = true;
      deps.log.info({ agentId, sessionId: session.id, hostname: hello.hostname, registered: isNew }, "agent attached");
      return session;
    } catch (err) {
      session.takenOver = true; // nothing of it was published as current; nothing to clean up but the channel
      this.detach(session, holdsChannel);
      throw err instanceof ConnectError ? err : new ConnectError(`cannot attach the agent now: ${String(err)}`, Code.Unavailable, undefined, undefined, err);
    }
  }

  /** Forgets a stream that ended (any way). Safe to call twice. */
  detach(session: AgentSession, holdsChannel = true): void {
    if (session.detached) return;
    session.detached = true;
    session.end();
    const current = this.sessions.get(session.agentId) === session;
    if (current) this.sessions.delete(session.agentId);
    if (holdsChannel) this.channels.release(session.agentId);
    if (!current || session.takenOver || !session.ready) return;
    // The stream ended by itself: leave Postgres the true last heartbeat, and
    // take presence away (if it is still ours) so the sweeper takes over.
    this.track(
      (async () => {
        await this.deps.store.snapshot([this.snapshotOf(session)]);
        const key = presenceKey(session.agentId);
        const value = await this.deps.bus.getPresence(key);
        if (value !== null && parsePresence(value)?.sessionId === session.id) await this.deps.bus.deletePresence(key);
        this.deps.log.info({ agentId: session.agentId, sessionId: session.id }, "agent detached");
      })(),
      "cleaning up after an agent stream",
    );
  }

  /**
   * Reads the agent's messages after Hello until the stream ends, then ends
   * the session: normally when the agent closes its side, with the error
   * when reading fails (a message that breaks a rule, a cancelled call).
   *
   * Every read also watches `callEnded` (the call's signal): connect-node
   * 2.2 never settles a read that is pending when the server ends a stream
   * the agent is still writing to, and a reader stuck there would hold its
   * session until the HTTP/2 connection closes.
   */
  async read(session: AgentSession, requests: AsyncIterator<ConnectRequest>, callEnded: AbortSignal): Promise<void> {
    this.stats.readers++;
    let wake: ((step: ReadStep) => void) | undefined;
    const onEnded = () => wake?.(CALL_ENDED);
    callEnded.addEventListener("abort", onEnded, { once: true });
    try {
      for (;;) {
        const step = await new Promise<ReadStep>((resolve, reject) => {
          if (callEnded.aborted) return resolve(CALL_ENDED);
          wake = resolve;
          requests.next().then(resolve, reject);
        });
        wake = undefined;
        if (step === CALL_ENDED || step.done || session.ended) break;
        await this.handle(session, step.value);
      }
      // The agent closed its side: what it reported is acknowledged, and its acks written, before the stream ends.
      await Promise.all([session.events, session.acks]);
      session.end();
    } catch (err) {
      session.end(ConnectError.from(err));
    } finally {
      callEnded.removeEventListener("abort", onEnded);
      this.stats.readers--;
    }
  }

  private async handle(session: AgentSession, request: ConnectRequest): Promise<void> {
    const { sink } = this.deps;
    const m = request.message;
    switch (m.case) {
      case "heartbeat":
        return this.heartbeat(session, m.value);
      case "ack":
        return this.ack(session, m.value.messageIds);
      case "bid":
      case "decline":
        return this.deps.offers.answer(session, m);
      case "jobEvent":
        return this.jobEvent(session, m.value);
      case "logFrame":
        return sink.logFrame(session.agentId, m.value);
      case "hello":
        throw new ConnectError("Hello may be sent only once, as the first message of a stream", Code.InvalidArgument);
      default:
        // Validation rejects an empty oneof; a case this version does not know is ignored.
        this.deps.log.debug({ agentId: session.agentId }, "ignored a message of a kind this server does not know");
    }
  }

  /**
   * A job event is acknowledged once the sink has it: until then the agent
   * keeps it and sends it again after a reconnect. Reading goes on while
   * events wait for the sink, so that heartbeats behind a burst of events
   * still count. (Waiting for each event in turn, one Scheduler round trip
   * apiece, made a healthy agent that had just finished many short attempts
   * look silent, then offline; and its last assignments went unconfirmed
   * for so long that they were declared lost and run again elsewhere.)
   * Reading pauses only when too many events wait.
   */
  private async jobEvent(session: AgentSession, event: JobEvent): Promise<void> {
    session.eventsWaiting.push(event);
    if (!session.passingEvents) session.events = this.passEvents(session);
    if (session.eventsWaiting.length >= MAX_EVENTS_WAITING) await session.events;
  }

  /**
   * An Ack: written after the ones before it on this stream, while the
   * stream is read on. An ack's UPDATE waits for the outbox INSERT of the
   * messages it names (Outbox.ack), and a bid or a job event read after it
   * must not wait for both (a bid has a 50 ms window). Reading pauses only
   * when too many acks wait. A failed write ends the stream; the messages
   * stay unacknowledged and go out again on the next one, which the agent
   * recognises.
   */
  private async ack(session: AgentSession, messageIds: readonly string[]): Promise<void> {
    session.acksWaiting++;
    session.acks = session.acks.then(async () => {
      try {
        const acked = await this.deps.outbox.ack(session.agentId, messageIds);
        if (acked < messageIds.length) {
          this.deps.log.debug({ agentId: session.agentId, ids: messageIds.length, acked }, "an Ack named messages that are unknown or were acknowledged before; ignored");
        }
      } catch (err) {
        session.end(ConnectError.from(err));
      } finally {
        session.acksWaiting--;
      }
    });
    if (session.acksWaiting >= MAX_ACKS_WAITING) await session.acks;
  }

  /**
   * Hands a stream's waiting job events to the sink until none wait: all
   * that wait at once, in stream order (so they share a batch on the way to
   * the Scheduler), the next group only after the sink has the previous one.
   * A sink that fails ends the stream, and nothing from the failed group on
   * is acknowledged.
   */
  private async passEvents(session: AgentSession): Promise<void> {
    session.passingEvents = true;
    try {
      while (session.eventsWaiting.length > 0 && !session.ended) {
        const group = session.eventsWaiting.splice(0, EVENTS_PER_GROUP);
        try {
          await Promise.all(group.map((event) => this.deps.sink.jobEvent(session.agentId, event)));
        } catch (err) {
          session.end(ConnectError.from(err));
          return;
        }
        session.send(create(ConnectResponseSchema, { message: { case: "eventAck", value: { eventIds: group.map((e) => e.eventId) } } }));
      }
    } finally {
      session.passingEvents = false;
    }
  }

  /** A heartbeat: fields in memory, nothing else (the monitor writes them out). */
  heartbeat(session: AgentSession, hb: Heartbeat): void {
    const now = Date.now();
    this.stats.heartbeats++;
    session.heartbeats++;
    session.lastHeartbeatMs = now;
    session.lastSequence = hb.sequence;
    if (hb.metrics) session.metrics = hb.metrics;
    if (hb.free) session.free = hb.free;
    session.dirty = true;
    // Coming back from stale should not wait for the next monitor tick.
    if (session.status !== "online" && session.ready && !session.transitioning) {
      this.transition(session, "online", livenessReason("online", now, now), now);
    }
  }

  // ---- The monitor ---------------------------------------------------------

  private async monitorLoop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.tick(Date.now());
      } catch (err) {
        this.deps.log.error({ err }, "the agent monitor failed a round; trying again");
      }
      await sleep(this.deps.settings.monitorIntervalMs, signal);
    }
  }

  /** One round of the monitor over the streams held here. */
  async tick(now: number): Promise<void> {
    const { settings } = this.deps;
    const snapshots: Snapshot[] = [];
    const refreshes: Promise<void>[] = [];
    for (const session of this.sessions.values()) {
      if (!session.ready || session.ended) continue;
      const liveness = livenessAt(session.lastHeartbeatMs, now, settings);
      if (liveness !== session.status && !session.transitioning) {
        this.transition(session, liveness, livenessReason(liveness, session.lastHeartbeatMs, now), now);
      }
      if (liveness === "offline") {
        // A stream this silent is dead whatever TCP thinks; the agent reconnects if it can.
        session.end(new ConnectError(`${livenessReason(liveness, session.lastHeartbeatMs, now)}; reconnect`, Code.Unavailable));
        continue;
      }
      if (now - session.presenceAt >= settings.presenceRefreshMs) refreshes.push(this.refreshPresence(session, now));
      if (session.dirty && now - session.snapshotAt >= settings.snapshotIntervalMs) {
        session.dirty = false;
        session.snapshotAt = now;
        snapshots.push(this.snapshotOf(session));
      }
    }
    const writes: Promise<unknown>[] = [...refreshes];
    for (let i = 0; i < snapshots.length; i += SNAPSHOT_BATCH) {
      const batch = snapshots.slice(i, i + SNAPSHOT_BATCH);
      writes.push(
        this.deps.store.snapshot(batch).then(
          () => void (this.stats.snapshotsWritten += batch.length),
          (err) => this.deps.log.warn({ err, agents: batch.length }, "could not write heartbeat snapshots; they are retried on the next change"),
        ),
      );
    }
    await Promise.all(writes);
  }

  private transition(session: AgentSession, to: Liveness, reason: string, now: number): void {
    session.transitioning = true;
    this.track(
      (async () => {
        try {
          const from = await this.deps.transitions.apply(session.agentId, to, reason, new Date(now), { sessionId: session.id });
          if (from !== null) {
            session.status = to;
            return;
          }
          // Nothing changed: the row is already there, or this is no longer the agent's stream.
          const row = await this.deps.store.get(session.agentId);
          if (!row) {
            session.end(new ConnectError(`agent ${session.agentId} was deleted`, Code.Unauthenticated));
          } else if (row.sessionId !== session.id) {
            session.takenOver = true;
            session.end(new ConnectError(`replaced by a newer stream of agent ${session.agentId}`, Code.Aborted));
          } else {
            session.status = row.status as Liveness;
          }
        } finally {
          session.transitioning = false;
        }
      })(),
      "changing an agent's status",
    );
  }

  private async refreshPresence(session: AgentSession, now: number): Promise<void> {
    const { settings, bus, replica } = this.deps;
    session.presenceAt = now;
    const value = JSON.stringify({ replica, sessionId: session.id, lastHeartbeat: session.lastHeartbeatMs });
    try {
      // Twice the refresh period, plus a monitor round of lateness: one lost
      // or late refresh does not make a live agent look gone.
      await bus.setPresence(presenceKey(session.agentId), value, 2 * settings.presenceRefreshMs + settings.monitorIntervalMs);
      this.stats.presenceWrites++;
    } catch (err) {
      this.stats.presenceFailures++;
      // Try again next round rather than in a full period.
      session.presenceAt = 0;
      if (this.stats.presenceFailures % 1000 === 1) this.deps.log.warn({ err }, "could not refresh agent presence");
    }
  }

  private snapshotOf(session: AgentSession): Snapshot {
    return {
      agentId: session.agentId,
      sessionId: session.id,
      lastHeartbeatAt: new Date(session.lastHeartbeatMs),
      metrics: session.metrics ? toJson(MetricsSchema, session.metrics) : null,
      free: session.free ? toJson(ResourcesSchema, session.free) : null,
    };
  }

  // ---- The bus ---------------------------------------------------------------

  private onCommand(agentId: string, bytes: Uint8Array): void {
    const session = this.sessions.get(agentId);
    if (!session) return;
    let command: AgentCommand;
    try {
      command = decodeCommand(bytes);
    } catch (err) {
      this.deps.log.warn({ err, agentId }, "dropped a message on an agent channel that does not decode");
      return;
    }
    switch (command.kind) {
      case "deliver":
        session.deliver(command.message);
        return;
      case "offer":
        this.deps.offers.deliver(session, command.replyTo, command.message);
        return;
      case "revoked":
        if (command.tokenId === "" || command.tokenId === session.tokenId) {
          session.end(new ConnectError("the agent's credential was revoked", Code.Unauthenticated));
        }
        return;
      case "takeover":
        if (command.sessionId === session.id) return;
        // Another stream of this agent attached, somewhere. The row says
        // which of the two is current (each stored its session id before
        // announcing itself), so clocks and message order do not matter.
        this.track(
          this.deps.store.get(agentId).then((row) => {
            if (row?.sessionId === session.id) return;
            session.takenOver = true;
            session.end(new ConnectError(`replaced by a newer stream of agent ${agentId} (on ${command.replica})`, Code.Aborted));
          }),
          "checking a takeover",
        );
        return;
    }
  }

  private onEvent(event: WatchAgentsResponse): void {
    const agent = event.agent;
    if (!agent) return;
    const session = this.sessions.get(agent.id);
    if (!session) return;
    if (event.kind === AgentEventKind.DELETED) {
      session.end(new ConnectError(`agent ${agent.id} was deleted`, Code.Unauthenticated));
      return;
    }
    // Another replica (the sweeper) may have changed the status of an agent
    // held here; knowing it lets the monitor put it right on its next round.
    const status = livenessOf(agent.status);
    if (status && !session.transitioning) session.status = status;
  }

  private track(work: Promise<unknown>, what: string): void {
    const p = work.catch((err) => this.deps.log.warn({ err }, `failed ${what}`));
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}

/**
 * Subscriptions to agents' bus channels, one per agent held here however
 * many streams of it come and go. acquire() resolves once the subscription is
 * live, so nothing sent after it is missed.
 */
class AgentChannels {
  private readonly subs = new Map<string, { count: number; ready: Promise<Unsubscribe> }>();

  constructor(
    private readonly bus: Bus,
    private readonly onMessage: (agentId: string, bytes: Uint8Array) => void,
    private readonly log: Logger,
  ) {}

  async acquire(agentId: string): Promise<void> {
    let entry = this.subs.get(agentId);
    if (!entry) {
      entry = { count: 0, ready: this.bus.subscribe(agentChannel(agentId), (bytes) => this.onMessage(agentId, bytes)) };
      this.subs.set(agentId, entry);
    }
    entry.count++;
    try {
      await entry.ready;
    } catch (err) {
      this.release(agentId);
      throw new ConnectError("cannot reach the bus to route messages to this agent; retry", Code.Unavailable, undefined, undefined, err);
    }
  }

  release(agentId: string): void {
    const entry = this.subs.get(agentId);
    if (!entry || --entry.count > 0) return;
    this.subs.delete(agentId);
    entry.ready.then((unsubscribe) => unsubscribe()).catch((err) => this.log.debug({ err, agentId }, "unsubscribe failed"));
  }

  async releaseAll(): Promise<void> {
    const entries = [...this.subs.values()];
    this.subs.clear();
    await Promise.allSettled(entries.map((e) => e.ready.then((unsubscribe) => unsubscribe())));
  }
}

function durationOf(ms: number) {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}
