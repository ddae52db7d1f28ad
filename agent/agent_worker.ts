// AgentWorker keeps the agent's one stream to Fleet (FleetService.Connect)
// open for as long as the agent runs.
//
// One session is one stream on one fresh HTTP/2 connection:
//
//   dial → Hello (with the attempts running) → Welcome (store a new
//        credential; send every unconfirmed JobEvent again, in order)
//        → heartbeats every interval; JobEvents as attempts change state;
//          LogFrames from the LogShipper, a few at a time (below)
//        ↘ server messages: Ack their ids, drop redeliveries, Drain, hand
//          Offer/Assignment/Cancel/LogAck to the WorkHandler, EventAck to
//          the outbox
//   the stream ends (Fleet restarts, link dies, credential refused)
//        → wait a full-jitter backoff → dial again
//
// Between sessions the connection is discarded, so a dead link, a Fleet that
// never answered Hello or a load balancer that would send us to another
// replica all get a fresh dial. stop() half-closes the stream and lets Fleet
// end its side; it is the only way out of run().
//
// Log frames share the stream with everything else, and the request queue
// is first in, first out: the shipper may have at most LOG_QUEUE_BYTES of
// frames waiting in it (the link says when it is full and when it has room
// again), so a heartbeat or a JobEvent never waits behind more than that.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";

import {
  ConnectRequestSchema,
  type ConnectResponse,
  type Drain,
  type EventAck,
  type JobEvent,
  type Offer,
  type Welcome,
} from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { createDroverTransport } from "../lib/grpc_transport.ts";
import { onEachSession } from "../lib/http2_sessions.ts";
import type { Logger } from "../lib/logger.ts";
import { backoffDelayMs, nextAttempt, type BackoffPolicy } from "./backoff.ts";
import type { AgentIdentity, CredentialStore } from "./credentials.ts";
import { JobEventOutbox } from "./job_events.ts";
import { MessageQueue } from "./message_queue.ts";
import type { LogFrameInit, LogLink, LogShipper } from "./log_shipper.ts";
import type { MachineProbe } from "./metrics.ts";
import type { OfferAnswer, WorkHandler } from "./work_handler.ts";

type Request = MessageInitShape<typeof ConnectRequestSchema>;

/** Heartbeat interval when Welcome does not set one. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
/** Fastest heartbeat the agent agrees to, whatever Welcome says. */
const MIN_HEARTBEAT_INTERVAL_MS = 50;
/** Message ids remembered to recognise redeliveries. */
const REMEMBERED_MESSAGES = 4_096;
/** Ack.message_ids holds at most this many (the proto's rule). */
const MAX_IDS_PER_ACK = 1_024;
/** Log frame bytes that may wait in the request queue; past it the shipper waits (one frame always fits). */
const LOG_QUEUE_BYTES = 512 * 1024;
/** Counted per frame beyond its data. */
const LOG_FRAME_OVERHEAD = 64;

export interface AgentWorkerOptions {
  /** Fleet's h2c or TLS base URL. */
  server: string;
  /** Presented in Hello only while the agent has no credential. */
  registrationToken: string;
  /** The agent's identity, in its state directory. */
  credentials: CredentialStore;
  /** Reported in Hello. */
  hostname: string;
  /** The agent's version, reported in Hello. */
  version: string;
  /** Labels reported in Hello. */
  labels: Record<string, string>;
  /** Drivers reported in Hello. */
  drivers: string[];
  /** Resources for Hello, metrics for heartbeats. */
  machine: MachineProbe;
  /** Where Offers, Assignments, Cancels and LogAcks go; it also says what runs, for Hello. */
  work: WorkHandler;
  /** JobEvents to send and keep until Fleet confirms them; the WorkHandler adds to it. Default: a new, empty one. */
  events?: JobEventOutbox;
  /** Ships attempts' output: Hello.log_offsets, and frames on every welcomed session. LogAcks reach it through the WorkHandler. None: no frames. */
  logs?: LogShipper;
  logger: Logger;
  /** Backoff between sessions; capMs is DROVER_RECONNECT_MAX_MS. */
  backoff: BackoffPolicy;
  /** A welcomed session that lasted this long resets the backoff. Default 10 000. */
  stableSessionMs?: number;
  /** A session without Welcome this long after dialling is abandoned. Default 15 000. */
  welcomeTimeoutMs?: number;
  /** How long stop() waits for Fleet to end the stream after the half-close. Default 1 000. */
  stopGraceMs?: number;
  /** Acks are batched for this long. Default 50. */
  ackFlushMs?: number;
  /** HTTP/2 keepalive: a PING after this much silence from Fleet... Default 15 000. */
  pingIntervalMs?: number;
  /** ...that must be answered within this, or the connection is dead. Default 10 000. */
  pingTimeoutMs?: number;
  /** [0, 1), for the backoff's jitter. */
  random?: () => number;
}

/** One stream, from dial to end. */
interface Session {
  readonly queue: MessageQueue<Request>;
  readonly abort: AbortController;
  readonly startedAt: number;
  log: Logger;
  welcomed: boolean;
  /** True once the unconfirmed JobEvents went out after Welcome: new ones may follow directly. */
  eventsFlowing: boolean;
  ended: boolean;
  sequence: bigint;
  /** Bytes of log frames in the queue, not yet taken by the transport. */
  logBytesQueued: number;
  heartbeatTimer?: NodeJS.Timeout;
  graceTimer?: NodeJS.Timeout;
}

/** How a session ended, for the backoff and the log. */
interface SessionEnd {
  welcomed: boolean;
  durationMs: number;
  /** Why the stream broke; undefined when Fleet ended it cleanly. */
  error?: unknown;
  /** The session's logger (it carries the agent and session ids). */
  log: Logger;
  /** The identity the session presented, if any. */
  presented: AgentIdentity | undefined;
}

/** Keeps the agent connected to Fleet until stop(); run() resolves only after stop(). */
export class AgentWorker {
  private readonly o: Required<Omit<AgentWorkerOptions, "random" | "events" | "logs">> & { random: () => number; logs?: LogShipper };
  private readonly events: JobEventOutbox;
  private readonly log: Logger;
  private readonly connection: Http2SessionManager;
  private readonly client: Client<typeof FleetService>;
  /** Ids handled recently, with the answer sent for each (Offers), to replay on redelivery. */
  private readonly handled = new Map<string, Request | undefined>();
  private pendingAcks = new Set<string>();
  private ackTimer: NodeJS.Timeout | undefined;
  private session: Session | undefined;
  private running: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private isDraining = false;

  constructor(options: AgentWorkerOptions) {
    this.o = {
      stableSessionMs: 10_000,
      welcomeTimeoutMs: 15_000,
      stopGraceMs: 1_000,
      ackFlushMs: 50,
      pingIntervalMs: 15_000,
      pingTimeoutMs: 10_000,
      random: Math.random,
      ...options,
    };
    this.log = options.logger.child({ component: "agent_worker" });
    this.events = options.events ?? new JobEventOutbox();
    this.events.onAdd((event) => this.sendJobEvent(event));
    // Owning the session manager (rather than passing ping options to the
    // transport) lets the worker drop the connection between sessions and
    // close it on stop, so nothing keeps the process alive afterwards.
    //
    // pingIdleConnection stays off: a session always has its stream open, so
    // PINGs run whenever they matter. With it on, connect-node 2.2 re-arms
    // the PING timer when a stream closes after its connection was already
    // destroyed (our abort() at the end of a session can come first), and 15 s
    // later ping() on the destroyed session throws from a timer and kills the
    // agent (seen in integration/agent_netns.test.ts).
    this.connection = guardSessions(
      new Http2SessionManager(
        this.o.server,
        {
          pingIntervalMs: this.o.pingIntervalMs,
          pingTimeoutMs: this.o.pingTimeoutMs,
          pingIdleConnection: false,
        },
        // No Nagle: a bid is a small write that must not wait ~40 ms for the
        // server's delayed ACK of the previous one (bids have a 50 ms window).
        { noDelay: true } as import("node:http2").SecureClientSessionOptions,
      ),
    );
    // Drover's transport: its streams skip Connect's per-message pipeline, and
    // log frames are written straight into their envelope (lib/grpc_transport.ts).
    this.client = createClient(FleetService, createDroverTransport({ baseUrl: this.o.server, sessionManager: this.connection }));
  }

  /** True while Fleet has told the agent to take no new work. */
  get draining(): boolean {
    return this.isDraining;
  }

  /** The agent's id, once it has registered. */
  get agentId(): string | undefined {
    return this.o.credentials.current()?.agentId;
  }

  /** Runs the connection loop; resolves after stop() has ended it. Calling it twice returns the same promise. */
  run(): Promise<void> {
    this.running ??= this.loop();
    return this.running;
  }

  /**
   * Stops gracefully: no more heartbeats, pending acks flushed, the request
   * stream half-closed; Fleet then ends its side (or the stream is cut after
   * stopGraceMs). Resolves when run() has returned. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.log.info("stopping: half-closing the stream");
      this.wake?.();
      const session = this.session;
      this.o.logs?.disconnect();
      if (session && !session.ended) {
        clearTimeout(session.heartbeatTimer);
        this.flushAcks();
        session.queue.close();
        session.graceTimer = setTimeout(() => session.abort.abort(new ConnectError("agent stopping", Code.Canceled)), this.o.stopGraceMs);
      }
    }
    await this.running;
  }

  private async loop(): Promise<void> {
    // The loop exits only after stop(): each pass is one session, and every
    // way a session can end (Fleet shutting down with UNAVAILABLE, a dead
    // link, a refused credential, a protocol error, a bug in a handler) is
    // logged and followed by a backoff and a new dial. Nothing but stop()
    // gives up, because an agent that exits needs a human to come back.
    let attempt: number | undefined;
    while (!this.stopping) {
      const summary = await this.runSession();
      if (this.stopping) break;
      attempt = nextAttempt(attempt, summary, this.o.stableSessionMs);
      const delayMs = Math.round(backoffDelayMs(attempt, this.o.backoff, this.o.random));
      this.logSessionEnd(summary, { attempt, delayMs });
      await this.sleep(delayMs);
    }
    clearTimeout(this.ackTimer);
    this.connection.abort();
    this.log.info("stopped");
  }

  private async runSession(): Promise<SessionEnd> {
    const identity = this.o.credentials.current();
    const session: Session = {
      queue: new MessageQueue<Request>(),
      abort: new AbortController(),
      startedAt: Date.now(),
      log: this.log.child(identity ? { agentId: identity.agentId } : {}),
      welcomed: false,
      eventsFlowing: false,
      ended: false,
      sequence: 0n,
      logBytesQueued: 0,
    };
    this.session = session;
    let error: unknown;
    // The deadline covers the dial too. Aborting only the call would not end a
    // TCP connect stuck in SYN retries (a cut link): connect-node awaits the
    // connection before it looks at the call's signal, for minutes. Aborting
    // the connection manager rejects that connect at once.
    const welcomeTimer = setTimeout(() => {
      const timeout = new ConnectError(`no Welcome within ${this.o.welcomeTimeoutMs} ms of dialling`, Code.DeadlineExceeded);
      session.abort.abort(timeout);
      this.connection.abort(timeout);
    }, this.o.welcomeTimeoutMs);
    try {
      const sample = await this.o.machine.sample();
      if (this.stopping) return { welcomed: false, durationMs: Date.now() - session.startedAt, log: session.log, presented: identity };
      session.queue.push({
        message: {
          case: "hello",
          value: {
            agentId: identity?.agentId ?? "",
            registrationToken: identity ? "" : this.o.registrationToken,
            hostname: this.o.hostname,
            version: this.o.version,
            labels: this.o.labels,
            drivers: this.o.drivers,
            total: sample.total,
            free: sample.free,
            running: this.o.work.running(),
            logOffsets: this.o.logs?.offsets() ?? [],
          },
        },
      });
      session.log.debug({ server: this.o.server, registering: !identity }, "dialling Fleet");
      const headers: Record<string, string> = identity ? { authorization: `Bearer ${identity.credential}` } : {};
      for await (const response of this.client.connect(this.requests(session), { headers, signal: session.abort.signal })) {
        if (!session.welcomed) {
          if (response.message.case !== "welcome") {
            throw new ConnectError(`Fleet sent ${response.message.case ?? "an unknown message"} before Welcome`, Code.Internal);
          }
          clearTimeout(welcomeTimer);
          await this.welcome(session, response.message.value, identity);
          continue;
        }
        await this.dispatch(session, response);
      }
    } catch (err) {
      error = err;
    } finally {
      session.ended = true;
      this.o.logs?.disconnect();
      clearTimeout(welcomeTimer);
      clearTimeout(session.heartbeatTimer);
      clearTimeout(session.graceTimer);
      session.queue.close();
      session.abort.abort();
      // A fresh dial next time: the old connection may be dead, half-open or
      // pinned to a replica that is going away.
      this.connection.abort();
      this.session = undefined;
    }
    return { welcomed: session.welcomed, durationMs: Date.now() - session.startedAt, error, log: session.log, presented: identity };
  }

  private async welcome(session: Session, welcome: Welcome, presented: AgentIdentity | undefined): Promise<void> {
    session.welcomed = true;
    this.resendJobEvents(session);
    // After the events: the shipper starts every stream again from its last ack.
    if (!this.stopping) this.o.logs?.connect(this.logLink(session));
    const identity = this.identityFrom(welcome, presented, session.log);
    session.log = this.log.child({ agentId: identity?.agentId ?? welcome.agentId, sessionId: welcome.sessionId });
    if (identity && (identity.agentId !== presented?.agentId || identity.credential !== presented?.credential)) {
      try {
        await this.o.credentials.save(identity);
        session.log.info({ path: this.o.credentials.path }, presented ? "stored the agent's new credential" : "registered; stored the agent's credential");
      } catch (err) {
        // Kept in memory, so this process stays connected; a restart would
        // find no credential and need the registration token again.
        session.log.error({ err, path: this.o.credentials.path }, "could not store the agent's credential");
      }
    }
    const requested = welcome.heartbeatInterval ? durationMs(welcome.heartbeatInterval) : 0;
    const intervalMs = requested > 0 ? Math.max(MIN_HEARTBEAT_INTERVAL_MS, requested) : DEFAULT_HEARTBEAT_INTERVAL_MS;
    session.log.info({ heartbeatIntervalMs: intervalMs, server: this.o.server }, "connected to Fleet");
    this.scheduleHeartbeat(session, intervalMs, Date.now() + intervalMs);
    // Acks left over from the previous stream: Fleet may already have
    // redelivered those messages, and a second ack is harmless.
    this.flushAcks();
  }

  /** The identity to keep after welcome: a new credential, a new id, or what was presented. */
  private identityFrom(welcome: Welcome, presented: AgentIdentity | undefined, log: Logger): AgentIdentity | undefined {
    const agentId = welcome.agentId || presented?.agentId || "";
    if (welcome.agentCredential) return { agentId, credential: welcome.agentCredential };
    if (!presented) {
      log.error({ agentId }, "Fleet accepted the registration token but sent no credential; the agent will register again on the next connection");
      return undefined;
    }
    if (agentId !== presented.agentId) log.warn({ agentId, storedAgentId: presented.agentId }, "Fleet calls this agent by another id; keeping Fleet's");
    return { agentId, credential: presented.credential };
  }

  /** The session's queue as the shipper sees it: full at LOG_QUEUE_BYTES of frames. */
  private logLink(session: Session): LogLink {
    return {
      ready: () => !session.ended && !this.stopping && session.logBytesQueued < LOG_QUEUE_BYTES,
      send: (frame: LogFrameInit) => {
        if (session.queue.push({ message: { case: "logFrame", value: frame } })) session.logBytesQueued += logFrameBytes(frame);
      },
    };
  }

  /** The request side of the stream: the session's queue, counting log frames out as the transport takes them. */
  private async *requests(session: Session): AsyncIterable<Request> {
    for await (const request of session.queue) {
      if (request.message?.case === "logFrame") {
        const wasFull = session.logBytesQueued >= LOG_QUEUE_BYTES;
        session.logBytesQueued = Math.max(0, session.logBytesQueued - logFrameBytes(request.message.value));
        if (wasFull && session.logBytesQueued < LOG_QUEUE_BYTES) this.o.logs?.writable();
      }
      yield request;
    }
  }

  /** Heartbeats keep to a cadence of intervalMs from Welcome; a slow sample skips beats rather than bunching them. */
  private scheduleHeartbeat(session: Session, intervalMs: number, dueAt: number): void {
    session.heartbeatTimer = setTimeout(async () => {
      if (session.ended || this.stopping) return;
      try {
        const sample = await this.o.machine.sample();
        if (session.ended || this.stopping) return;
        session.sequence += 1n;
        session.queue.push({ message: { case: "heartbeat", value: { sequence: session.sequence, metrics: sample.metrics, free: sample.free } } });
      } catch (err) {
        session.log.warn({ err }, "could not sample the machine for a heartbeat");
      }
      if (session.ended || this.stopping) return;
      let next = dueAt + intervalMs;
      const now = Date.now();
      if (next <= now) next = now + intervalMs - ((now - dueAt) % intervalMs);
      this.scheduleHeartbeat(session, intervalMs, next);
    }, Math.max(0, dueAt - Date.now()));
  }

  private async dispatch(session: Session, response: ConnectResponse): Promise<void> {
    const id = response.messageId;
    const kind = response.message.case;
    if (id !== "" && this.handled.has(id)) {
      // Delivered again after a reconnect: handled already, so only ack it
      // (and answer again, in case the answer was lost with the old stream).
      const answer = this.handled.get(id);
      if (answer) session.queue.push(answer);
      session.log.debug({ messageId: id, kind }, "redelivered message acknowledged again");
      this.ack(id);
      return;
    }
    if (id !== "") this.remember(id, undefined);
    let answer: Request | undefined;
    try {
      switch (kind) {
        case "drain":
          this.drain(session, response.message.value);
          break;
        case "offer":
          answer = { message: await this.answerOffer(response.message.value) };
          break;
        case "assignment":
          await this.o.work.assignment(response.message.value);
          break;
        case "cancel":
          await this.o.work.cancel(response.message.value);
          break;
        case "logAck":
          this.o.work.logAck(response.message.value);
          break;
        case "eventAck":
          this.confirmJobEvents(session, response.message.value);
          break;
        case "welcome":
          session.log.warn({ messageId: id }, "ignoring a second Welcome on the same stream");
          break;
        default:
          session.log.warn({ messageId: id }, "ignoring a message this agent does not know (is Fleet newer?)");
      }
    } catch (err) {
      // Acked anyway: a message that breaks a handler would break it again
      // on every redelivery. The handler reports failures in its own terms
      // (a JobEvent, a Decline).
      session.log.error({ err, messageId: id, kind }, "handling a message failed");
    }
    if (answer) {
      session.queue.push(answer);
      if (id !== "") this.remember(id, answer);
    }
    if (id !== "") this.ack(id);
  }

  private async answerOffer(offer: Offer): Promise<OfferAnswer> {
    if (this.isDraining) {
      this.log.info({ offerId: offer.offerId, jobId: offer.jobId }, "offer received while draining; declining");
      return { case: "decline", value: { offerId: offer.offerId, reason: "the agent is draining" } };
    }
    return this.o.work.offer(offer);
  }

  /**
   * Sends every JobEvent Fleet has not confirmed, oldest first, as the first
   * thing after Welcome: events written on the previous stream may have been
   * lost with it, and Fleet applies each event id once.
   */
  private resendJobEvents(session: Session): void {
    const events = this.events.unconfirmed();
    for (const event of events) session.queue.push({ message: { case: "jobEvent", value: event } });
    session.eventsFlowing = true;
    if (events.length > 0) session.log.info({ events: events.length }, "sent the job events Fleet has not confirmed");
  }

  /** An attempt changed state: send it now if a session is up; otherwise the next Welcome does. */
  private sendJobEvent(event: JobEvent): void {
    const session = this.session;
    if (!session || !session.eventsFlowing || session.ended || this.stopping) return;
    session.queue.push({ message: { case: "jobEvent", value: event } });
  }

  private confirmJobEvents(session: Session, ack: EventAck): void {
    const confirmed = this.events.confirm(ack.eventIds);
    session.log.debug({ confirmed, listed: ack.eventIds.length, pending: this.events.size }, "Fleet confirmed job events");
  }

  private drain(session: Session, drain: Drain): void {
    this.isDraining = drain.draining;
    const deadline = drain.deadline ? timestampDate(drain.deadline).toISOString() : undefined;
    if (drain.draining) session.log.info({ reason: drain.reason, deadline }, "draining: declining new work");
    else session.log.info({ reason: drain.reason }, "drain lifted: taking new work again");
  }

  private remember(id: string, answer: Request | undefined): void {
    this.handled.delete(id);
    this.handled.set(id, answer);
    if (this.handled.size > REMEMBERED_MESSAGES) {
      const oldest = this.handled.keys().next().value;
      if (oldest !== undefined) this.handled.delete(oldest);
    }
  }

  private ack(id: string): void {
    this.pendingAcks.add(id);
    this.ackTimer ??= setTimeout(() => this.flushAcks(), this.o.ackFlushMs);
  }

  /** Sends pending acks on the current stream; without a welcomed stream they wait for the next Welcome. */
  private flushAcks(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    const session = this.session;
    if (!session || !session.welcomed || session.ended || this.pendingAcks.size === 0) return;
    const ids = [...this.pendingAcks];
    this.pendingAcks = new Set();
    for (let i = 0; i < ids.length; i += MAX_IDS_PER_ACK) {
      session.queue.push({ message: { case: "ack", value: { messageIds: ids.slice(i, i + MAX_IDS_PER_ACK) } } });
    }
  }

  /** One line per ended session, saying why and when the agent dials again. */
  private logSessionEnd(end: SessionEnd, retry: { attempt: number; delayMs: number }): void {
    if (end.error === undefined) {
      end.log.info({ welcomed: end.welcomed, ...retry }, "Fleet ended the stream; reconnecting");
      return;
    }
    const error = ConnectError.from(end.error);
    const fields = { code: Code[error.code], error: error.rawMessage, welcomed: end.welcomed, ...retry };
    if (error.code === Code.Unauthenticated) {
      if (end.presented) {
        end.log.error(
          { ...fields, path: this.o.credentials.path },
          "Fleet refused this agent's credential (revoked, or the agent was deleted); retrying. To register again as a new agent, remove the credential file and restart with a registration token",
        );
      } else {
        end.log.error(fields, "Fleet refused the registration token (wrong, revoked or expired); retrying");
      }
    } else if (error.code === Code.Aborted) {
      // Another process presented this agent's credential and took over its
      // stream: two agents share one state directory (or a copied one).
      end.log.error(fields, "another stream of this same agent replaced this one: is a second drover-agent running with a copy of this state directory?");
    } else if (error.code === Code.Unavailable) {
      // Fleet shutting down (or restarting, or not reachable yet): the normal
      // signal to dial again.
      end.log.info(fields, "stream to Fleet ended; reconnecting");
    } else {
      end.log.warn(fields, "stream to Fleet failed; reconnecting");
    }
  }

  /** Waits ms, or until stop(). */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
  }
}

function logFrameBytes(frame: LogFrameInit): number {
  return (frame.data?.length ?? 0) + LOG_FRAME_OVERHEAD;
}

/**
 * Gives every HTTP/2 session the manager opens a permanent 'error' listener.
 *
 * connect-node 2.2 destroys a session whose PING goes unanswered with an
 * error, but by the time Node emits that 'error' (when the socket closes)
 * the manager has already removed its own listeners, so the unhandled event
 * kills the process: an agent would die on the first dead link (seen in
 * integration/agent_netns.test.ts). The manager's state machine still sees
 * the failure through its own listeners and the stream's end; this listener
 * only keeps the late event from being fatal.
 */
function guardSessions(manager: Http2SessionManager): Http2SessionManager {
  return onEachSession(manager, (session) => session.on("error", () => {}));
}
