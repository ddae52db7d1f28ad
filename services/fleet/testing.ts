// Test helpers for Fleet: a real Fleet server on port 0 (real gRPC over a
// real socket, embedded PGlite or a given database, the in-process bus or a
// given one), and a simulated agent that drives FleetService.Connect through
// the generated client, the way drover-agent does.
//
//   const fleet = await startTestFleet({ settings: { heartbeatIntervalMs: 100 } });
//   try {
//     const agent = await TestAgent.register(fleet.grpcUrl, secret);
//     ...
//   } finally { await fleet.close(); }

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  ConnectRequestSchema,
  HelloSchema,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  type Welcome,
} from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService, Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { bearer } from "../../lib/clients.ts";
import { defaultFleetSettings, type FleetSettings } from "../../lib/config.ts";
import { openPglite, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { accessPolicy } from "../../lib/host/interceptors.ts";
import { startServer, type RunningServer } from "../../lib/host/server.ts";
import { createLogger, type Logger } from "../../lib/logger.ts";
import { accessTables } from "../registry.ts";
import { createFleet, type Fleet } from "./fleet.ts";
import type { AgentMessageSink } from "./sink.ts";

/** A Fleet server for one test file. */
export interface TestFleet {
  fleet: Fleet;
  server: RunningServer;
  grpcUrl: string;
  db: Database;
  bus: Bus;
  settings: FleetSettings;
  /** An admin's client of this server. */
  admin: Client<typeof FleetService>;
  adminSecret: string;
  /** Stops the server and Fleet; closes the bus and database only if this helper opened them. */
  close(): Promise<void>;
}

export async function startTestFleet(
  opts: { settings?: Partial<FleetSettings>; db?: Database; bus?: Bus; logger?: Logger; replica?: string; sink?: AgentMessageSink } = {},
): Promise<TestFleet> {
  const ownDb = opts.db === undefined;
  const db = opts.db ?? (await openPglite("memory://"));
  const ownBus = opts.bus === undefined;
  const bus = opts.bus ?? createMemoryBus();
  const logger = opts.logger ?? createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent");
  const settings = { ...defaultFleetSettings(), ...opts.settings };
  await migrate(db.executor, "fleet");
  const fleet = createFleet({ db: db.prismaFor("fleet"), sql: db.executor, bus, settings, logger, replica: opts.replica, sink: opts.sink });
  const { secret: adminSecret } = await fleet.tokens.create("test admin", Role.ADMIN);
  await fleet.start();
  const server = await startServer({
    services: [FleetService],
    routes: fleet.routes,
    listen: { host: "127.0.0.1", grpcPort: 0, httpPort: 0 },
    logger,
    authenticator: fleet.tokens,
    policy: accessPolicy(accessTables(["fleet"])),
    shutdownGraceMs: 200,
  });
  const admin = createClient(FleetService, createGrpcTransport({ baseUrl: server.grpcUrl, interceptors: [bearer(adminSecret)] }));
  let closing: Promise<void> | undefined;
  return {
    fleet,
    server,
    grpcUrl: server.grpcUrl,
    db,
    bus,
    settings,
    admin,
    adminSecret,
    close: () =>
      (closing ??= (async () => {
        await server.close();
        await fleet.stop();
        if (ownBus) await bus.close();
        if (ownDb) await db.close();
      })()),
  };
}

// The object form of a Hello (not a Hello message itself), so it can be spread and completed.
type HelloInit = Exclude<MessageInitShape<typeof HelloSchema>, Hello>;

/**
 * One simulated agent stream. Requests are pushed with send(); responses are
 * taken in order with next(); `ended` settles with the error the stream
 * ended with (null: it ended cleanly).
 */
export class TestAgent {
  private readonly outgoing: ConnectRequest[] = [];
  private wakeOutgoing: (() => void) | undefined;
  private closedOutgoing = false;
  private readonly incoming: ConnectResponse[] = [];
  private wakeIncoming: (() => void) | undefined;
  private endedWith: ConnectError | null | undefined;
  private readonly abort = new AbortController();
  /** Settles when the response stream ends: null when cleanly, else its error. */
  readonly ended: Promise<ConnectError | null>;
  welcome: Welcome | undefined;

  /**
   * Opens the stream, on its own HTTP/2 connection unless a transport is
   * given. With closeOnEnd false the agent misbehaves: it keeps its side
   * open (and can keep sending) after the server ended the stream.
   */
  constructor(baseUrl: string, credential?: string, opts: { transport?: Transport; closeOnEnd?: boolean } = {}) {
    const transport = opts.transport ?? createGrpcTransport({ baseUrl });
    const client = createClient(FleetService, transport);
    const headers: Record<string, string> = credential ? { authorization: `Bearer ${credential}` } : {};
    const responses = client.connect(this.requests(), { signal: this.abort.signal, headers });
    this.ended = (async () => {
      try {
        for await (const response of responses) {
          this.incoming.push(response);
          this.poke();
        }
        this.endedWith = null;
      } catch (err) {
        this.endedWith = ConnectError.from(err);
      }
      // As drover-agent does: a stream the server ended is closed on our side
      // too, or the server keeps reading a request side nobody writes to.
      if (opts.closeOnEnd !== false) this.closeSend();
      this.poke();
      return this.endedWith;
    })();
  }

  /** Opens a stream and sends Hello; resolves after Welcome. Rejects with the stream's error if it ends instead. */
  static async open(baseUrl: string, hello: HelloInit, credential?: string, opts: { transport?: Transport; closeOnEnd?: boolean } = {}): Promise<TestAgent> {
    const agent = new TestAgent(baseUrl, credential, opts);
    agent.send({ message: { case: "hello", value: hello } });
    const first = await agent.next();
    if (first.message.case !== "welcome") throw new Error(`expected Welcome, got ${first.message.case}`);
    agent.welcome = first.message.value;
    return agent;
  }

  /** Registers a new agent with a registration token. */
  static register(
    baseUrl: string,
    registrationToken: string,
    hello: Partial<HelloInit> = {},
    opts: { transport?: Transport; closeOnEnd?: boolean } = {},
  ): Promise<TestAgent> {
    return TestAgent.open(baseUrl, { hostname: "test-host", version: "0.0.1", ...hello, registrationToken }, undefined, opts);
  }

  /** Reconnects as an agent with its credential. */
  static reconnect(baseUrl: string, agentId: string, credential: string, hello: Partial<HelloInit> = {}): Promise<TestAgent> {
    return TestAgent.open(baseUrl, { hostname: "test-host", version: "0.0.1", ...hello, agentId }, credential);
  }

  get agentId(): string {
    return this.welcome?.agentId ?? "";
  }

  send(request: MessageInitShape<typeof ConnectRequestSchema>): void {
    this.outgoing.push(create(ConnectRequestSchema, request));
    const wake = this.wakeOutgoing;
    this.wakeOutgoing = undefined;
    wake?.();
  }

  heartbeat(sequence: number, init: { cpuPercent?: number; freeMemory?: bigint } = {}): void {
    this.send({
      message: {
        case: "heartbeat",
        value: {
          sequence: BigInt(sequence),
          metrics: { cpuPercent: init.cpuPercent ?? 12.5, memoryUsedBytes: 1n << 30n, memoryTotalBytes: 4n << 30n },
          free: { cpuMillis: 2000, memoryBytes: init.freeMemory ?? 3n << 30n },
        },
      },
    });
  }

  ack(...messageIds: string[]): void {
    this.send({ message: { case: "ack", value: { messageIds } } });
  }

  /** The next message from the server; rejects if none comes within timeoutMs or the stream ends first. */
  async next(timeoutMs = 5000): Promise<ConnectResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = this.incoming.shift();
      if (message) return message;
      if (this.endedWith !== undefined) {
        throw this.endedWith ?? new Error("the stream ended without another message");
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message from the server within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wakeIncoming = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Resolves no message arrived within ms (and fails if one did). */
  async nothingWithin(ms: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    if (this.incoming.length > 0) throw new Error(`unexpected message: ${this.incoming[0]!.message.case}`);
  }

  /** The code the stream ended with, waiting up to timeoutMs; null for a clean end. */
  async endCode(timeoutMs = 5000): Promise<Code | null> {
    const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), timeoutMs).unref());
    const result = await Promise.race([this.ended, timeout]);
    if (result === "timeout") throw new Error(`the stream did not end within ${timeoutMs} ms`);
    return result === null ? null : result.code;
  }

  /** Closes the agent's side; the server then ends the stream. */
  closeSend(): void {
    this.closedOutgoing = true;
    const wake = this.wakeOutgoing;
    this.wakeOutgoing = undefined;
    wake?.();
  }

  /** Cancels the call, as a vanishing agent would (RST_STREAM). */
  async cancel(): Promise<void> {
    this.abort.abort();
    this.closeSend();
    await this.ended;
  }

  private async *requests(): AsyncGenerator<ConnectRequest> {
    for (;;) {
      const request = this.outgoing.shift();
      if (request) {
        yield request;
        continue;
      }
      if (this.closedOutgoing || this.abort.signal.aborted) return;
      await new Promise<void>((resolve) => (this.wakeOutgoing = resolve));
    }
  }

  private poke(): void {
    const wake = this.wakeIncoming;
    this.wakeIncoming = undefined;
    wake?.();
  }
}

/** Polls `check` every 20 ms until it returns a value other than undefined, or fails after timeoutMs. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 5000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
