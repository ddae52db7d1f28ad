// A scriptable Fleet for the agent's tests: a real connect-node HTTP/2
// server on a free port that implements only FleetService.Connect and lets
// the test play the server's side of each stream, so the agent's requests
// really cross a network.
//
//   const fleet = await FakeFleet.start();
//   ... start an AgentWorker against fleet.url ...
//   const stream = await fleet.nextStream();
//   const hello = await stream.next("hello");
//   stream.send({ message: { case: "welcome", value: { sessionId: "s-1" } } });
//   stream.end(new ConnectError("restarting", Code.Unavailable));
//   await fleet.close();

import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { pino } from "pino";

import type { ConnectRequest, ConnectResponseSchema } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Logger } from "../../lib/logger.ts";
import { MessageQueue } from "../message_queue.ts";

type Response = MessageInitShape<typeof ConnectResponseSchema>;
export type RequestCase = NonNullable<ConnectRequest["message"]["case"]>;
export type RequestOf<K extends RequestCase> = Extract<ConnectRequest["message"], { case: K }>["value"];

const DEFAULT_WAIT_MS = 5_000;

/** Resolves when check() returns a value, polling every few ms; rejects after timeoutMs naming what. */
export async function eventually<T>(what: string, check: () => T | undefined, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** One agent stream as the server sees it. */
export class FakeStream {
  /** Every request received, in order. */
  readonly received: ConnectRequest[] = [];
  /** When the agent's request arrived. */
  readonly openedAt = Date.now();
  /** When each received request arrived (same index as received). */
  readonly receivedAt: number[] = [];
  /** Resolves when the agent half-closes (ends its requests) or the stream breaks. */
  readonly requestsEnded: Promise<void>;
  /** True once requestsEnded has resolved. */
  requestsDone = false;
  private readonly outgoing = new MessageQueue<Response>();
  private readonly consumed = new Map<RequestCase, number>();
  private markRequestsEnded!: () => void;

  constructor(
    /** The authorization header the agent sent, or null. */
    readonly authorization: string | null,
  ) {
    this.requestsEnded = new Promise((resolve) => (this.markRequestsEnded = resolve));
  }

  /** Sends a message to the agent. */
  send(response: Response): void {
    this.outgoing.push(response);
  }

  /** Sends Welcome (heartbeat interval in ms), as Fleet answers Hello. */
  welcome(value: { sessionId?: string; agentId?: string; agentCredential?: string; heartbeatIntervalMs?: number } = {}): void {
    const { heartbeatIntervalMs, ...rest } = value;
    this.send({
      message: {
        case: "welcome",
        value: {
          sessionId: "session-1",
          ...rest,
          ...(heartbeatIntervalMs === undefined ? {} : { heartbeatInterval: durationFromMs(heartbeatIntervalMs) }),
        },
      },
    });
  }

  /** Confirms job events, as Fleet does once it has recorded them. */
  eventAck(eventIds: string[]): void {
    this.send({ message: { case: "eventAck", value: { eventIds } } });
  }

  /** Ends the server's side: cleanly, or with error as the gRPC status. */
  end(error?: ConnectError): void {
    this.outgoing.close(error);
  }

  /** The next request of this kind not yet returned by next(), waiting for it if needed. */
  async next<K extends RequestCase>(kind: K, timeoutMs = DEFAULT_WAIT_MS): Promise<RequestOf<K>> {
    const from = this.consumed.get(kind) ?? 0;
    const index = await eventually(`a ${kind} from the agent`, () => {
      const i = this.received.findIndex((r, n) => n >= from && r.message.case === kind);
      return i === -1 ? undefined : i;
    }, timeoutMs);
    this.consumed.set(kind, index + 1);
    return this.received[index]!.message.value as RequestOf<K>;
  }

  /** Every received request of this kind. */
  all<K extends RequestCase>(kind: K): RequestOf<K>[] {
    return this.received.filter((r) => r.message.case === kind).map((r) => r.message.value as RequestOf<K>);
  }

  /** Every message id the agent acknowledged on this stream, in order. */
  acked(): string[] {
    return this.all("ack").flatMap((a) => a.messageIds);
  }

  /** @internal */
  receive(request: ConnectRequest): void {
    this.received.push(request);
    this.receivedAt.push(Date.now());
  }

  /** @internal */
  requestsFinished(): void {
    this.requestsDone = true;
    this.markRequestsEnded();
  }

  /** @internal */
  responses(): AsyncIterable<Response> {
    return this.outgoing;
  }
}

export interface FakeFleetOptions {
  /** End the server's side as soon as the agent half-closes, as Fleet does. Default true. */
  endOnHalfClose?: boolean;
}

/** A connect-node server that serves FleetService.Connect and hands each stream to the test. */
export class FakeFleet {
  /** Every stream opened, in order. */
  readonly streams: FakeStream[] = [];
  private taken = 0;

  private constructor(
    private readonly server: http2.Http2Server,
    private readonly sessions: Set<http2.ServerHttp2Session>,
    /** The base URL agents dial. */
    readonly url: string,
  ) {}

  static async start(options: FakeFleetOptions = {}): Promise<FakeFleet> {
    const endOnHalfClose = options.endOnHalfClose ?? true;
    let fleet!: FakeFleet;
    const handler = connectNodeAdapter({
      routes: (router) =>
        router.service(FleetService, {
          async *connect(requests, ctx) {
            const stream = new FakeStream(ctx.requestHeader.get("authorization"));
            fleet.streams.push(stream);
            ctx.signal.addEventListener("abort", () => stream.end(), { once: true });
            void (async () => {
              try {
                for await (const request of requests) stream.receive(request);
              } catch {
                // The agent went away without a half-close.
              } finally {
                stream.requestsFinished();
                if (endOnHalfClose) stream.end();
              }
            })();
            yield* stream.responses();
          },
        }),
    });
    const server = http2.createServer(handler);
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (session) => {
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fleet = new FakeFleet(server, sessions, `http://127.0.0.1:${port}`);
    return fleet;
  }

  /** The next stream not yet returned by nextStream(), waiting for the agent to open it. */
  async nextStream(timeoutMs = DEFAULT_WAIT_MS): Promise<FakeStream> {
    const index = this.taken;
    const stream = await eventually(`agent stream #${index + 1}`, () => this.streams[index], timeoutMs);
    this.taken = index + 1;
    return stream;
  }

  /**
   * Ends the streams opened so far and skips them in nextStream(): what a
   * stopped agent dialed before it stopped (a retry after a refusal, say)
   * does not become the next test's stream.
   */
  dropOpened(): void {
    for (const stream of this.streams.slice(this.taken)) stream.end();
    this.taken = this.streams.length;
  }

  /** Waits for the next stream, expects Hello, answers Welcome; returns both. */
  async accept(welcome: Parameters<FakeStream["welcome"]>[0] = {}): Promise<{ stream: FakeStream; hello: RequestOf<"hello"> }> {
    const stream = await this.nextStream();
    const hello = await stream.next("hello");
    stream.welcome(welcome);
    return { stream, hello };
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const stream of this.streams) stream.end();
    for (const session of this.sessions) session.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A pino logger that keeps its records in memory, for tests that check what the agent says. */
export function memoryLogger(level = "debug"): { logger: Logger; records: Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) records.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level }, sink), records };
}
