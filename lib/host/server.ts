// The host every Drover process uses to serve its services: the same Connect
// router on two listeners (see README, "Ports"), with health, reflection and
// the standard interceptors, and a graceful shutdown.
//
// Shutdown, in order:
//   1. health turns NOT_SERVING and both listeners stop accepting connections;
//      HTTP/2 clients get GOAWAY, so they open new calls elsewhere;
//   2. in-flight unary calls get up to `shutdownGraceMs` to finish;
//   3. streams still open are ended with UNAVAILABLE, which clients (agents)
//      treat as "reconnect" (Connect's streams and the raw gRPC ones alike);
//   4. connections still open after that are destroyed.
// The caller closes its database and bus after close() resolves.
//
// Plain gRPC calls on the HTTP/2 listener bypass Connect's pipeline: every
// unary method (grpc_unary.ts) and a route's bidi method that asked for it
// (serveGrpcStream, grpc_stream.ts) are served on node:http2 directly;
// everything else goes through the Connect adapter.

import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { setMaxListeners } from "node:events";
import type { DescService } from "@bufbuild/protobuf";
import { createValidator, type Validator } from "@bufbuild/protovalidate";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { ListenConfig } from "../config.ts";
import type { Logger } from "../logger.ts";
import type { Authenticator } from "../auth/tokens.ts";
import { HealthState, ServingStatus, healthRoutes } from "./health.ts";
import { reflectionRoutes } from "./reflection.ts";
import { GrpcStreams, grpcStreamRoutes, installRawGrpc } from "./grpc_stream.ts";
import { GrpcUnary, collectUnaryRoutes, type CallCounter, type UnaryRoute } from "./grpc_unary.ts";
import { authInterceptor, errorInterceptor, loggingInterceptor, validationInterceptor, type AccessPolicy } from "./interceptors.ts";

/** What a server serves and how. */
export interface ServerOptions {
  /** Drover services served, for health and reflection (their routes come from `routes`). */
  services: readonly DescService[];
  /** Registers the services' implementations. */
  routes: (router: ConnectRouter) => void;
  listen: ListenConfig;
  logger: Logger;
  authenticator: Authenticator;
  policy: AccessPolicy;
  /** How long close() waits for in-flight unary calls. */
  shutdownGraceMs: number;
  /**
   * How often to PING each HTTP/2 connection; a connection that does not
   * answer within the same time is destroyed, ending its streams. 0: never.
   * Without it, the stream of an agent whose machine vanished stays open
   * until TCP gives up, minutes later.
   */
  keepaliveMs?: number;
}

/** A listening server. */
export interface RunningServer {
  /** Base URL of the HTTP/2 cleartext listener (gRPC, Connect, gRPC-Web). */
  grpcUrl: string;
  /** Base URL of the HTTP/1.1 listener (Connect, gRPC-Web). */
  httpUrl: string;
  health: HealthState;
  /** Aborted when shutdown begins; long-running loops of the process watch it. */
  shutdownSignal: AbortSignal;
  /** Shuts down as described above. Idempotent. */
  close(): Promise<void>;
}

/** The standard interceptors, outermost first (see interceptors.ts). */
export function standardInterceptors(logger: Logger, authenticator: Authenticator, policy: AccessPolicy, validator?: Validator): Interceptor[] {
  return [loggingInterceptor(logger), errorInterceptor(logger), authInterceptor(authenticator, policy), validationInterceptor(validator)];
}

/** Counts calls in flight, so shutdown knows when unary calls are done: Connect's (the interceptor) and the raw gRPC path's. */
class InFlight implements CallCounter {
  unary = 0;
  private idle: (() => void)[] = [];

  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (req.stream) return next(req);
      this.enter();
      try {
        return await next(req);
      } finally {
        this.leave();
      }
    };
  }

  enter(): void {
    this.unary++;
  }

  leave(): void {
    this.unary--;
    if (this.unary === 0) for (const wake of this.idle.splice(0)) wake();
  }

  /** Resolves when no unary call is in flight, or after `ms`. */
  drained(ms: number): Promise<void> {
    if (this.unary === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** HTTP/2 receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE). */
const STREAM_WINDOW_BYTES = 1 << 20;
/** HTTP/2 receive window per connection (all of its streams together). */
const CONNECTION_WINDOW_BYTES = 4 << 20;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const log = opts.logger.child({ component: "server" });
  const health = new HealthState(opts.services.map((s) => s.typeName));
  const shutdown = new AbortController();
  // connect-node adds a listener per call; many calls are normal, not a leak.
  setMaxListeners(0, shutdown.signal);
  const inFlight = new InFlight();
  const validator = createValidator();

  // connectNodeAdapter calls `routes` at once with the router it builds;
  // kept, to learn which methods asked for the raw gRPC stream path on it,
  // and which unary methods it serves (each also served on the raw path).
  let router: ConnectRouter | undefined;
  const unaryRoutes: UnaryRoute[] = [];
  const handler = connectNodeAdapter({
    routes: (r) => {
      router = collectUnaryRoutes(r, unaryRoutes);
      opts.routes(router);
      healthRoutes(health)(router);
      reflectionRoutes(opts.services)(router);
    },
    interceptors: [inFlight.interceptor(), ...standardInterceptors(opts.logger, opts.authenticator, opts.policy, validator)],
    shutdownSignal: shutdown.signal,
  });
  const grpcStreams = new GrpcStreams({ routes: grpcStreamRoutes(router!), logger: opts.logger, validator, policy: opts.policy });
  const grpcUnary = new GrpcUnary({
    routes: unaryRoutes,
    logger: opts.logger,
    authenticator: opts.authenticator,
    policy: opts.policy,
    validator,
    calls: inFlight,
    shutdownSignal: shutdown.signal,
  });

  // Receive windows larger than HTTP/2's 64 KiB: a sender has at most a
  // window in flight until the receiver's event loop answers, so with both
  // processes busy (5 ms stalls every 10 ms) the default windows took
  // ~5 MiB/s into a server over one connection, these ~45 MiB/s; an agent's
  // log stream and Fleet's IngestLogs calls each carry 10+ MiB/s. Memory: at
  // most a window per connection waits for a handler that is slow to read.
  const h2 = http2.createServer({ settings: { initialWindowSize: STREAM_WINDOW_BYTES } }, handler);
  installRawGrpc(h2, (stream, headers) => grpcStreams.serve(stream, headers) || grpcUnary.serve(stream, headers));
  // No Nagle: gRPC writes small frames (an offer, a bid, an ack) that must
  // not wait for the peer's delayed ACK (~40 ms) behind an earlier one.
  h2.on("connection", (socket: import("node:net").Socket) => socket.setNoDelay(true));
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    session.on("close", () => sessions.delete(session));
    // A client that vanishes mid-stream must not take the process with it.
    session.on("error", (err) => log.debug({ err }, "http2 session error"));
    if (opts.keepaliveMs) keepAlive(session, opts.keepaliveMs);
  });
  const h1 = http.createServer(handler);

  await Promise.all([listen(h2, opts.listen.host, opts.listen.grpcPort), listen(h1, opts.listen.host, opts.listen.httpPort)]);
  const grpcUrl = urlOf(h2, opts.listen.host);
  const httpUrl = urlOf(h1, opts.listen.host);

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      log.info("shutting down");
      health.setAll(ServingStatus.NOT_SERVING);
      const h2Closed = new Promise<void>((resolve) => h2.close(() => resolve()));
      const h1Closed = new Promise<void>((resolve) => h1.close(() => resolve()));
      for (const session of sessions) session.close();
      h1.closeIdleConnections();
      await inFlight.drained(opts.shutdownGraceMs);
      const reason = new ConnectError("server is shutting down", Code.Unavailable);
      shutdown.abort(reason);
      grpcStreams.abortAll(reason);
      // Give ended streams a moment to flush their trailers before cutting what remains.
      await Promise.race([Promise.all([h2Closed, h1Closed]), delay(500)]);
      for (const session of sessions) session.destroy();
      h1.closeAllConnections();
      await Promise.all([h2Closed, h1Closed]);
      log.info("stopped");
    })();
    return closing;
  };

  log.info({ grpcUrl, httpUrl }, "listening");
  return { grpcUrl, httpUrl, health, shutdownSignal: shutdown.signal, close };
}

/** PINGs the session every `ms`; no answer within `ms` destroys it. */
function keepAlive(session: http2.ServerHttp2Session, ms: number): void {
  const timer = setInterval(() => {
    if (session.closed || session.destroyed) return;
    const deadline = setTimeout(() => session.destroy(new Error("keepalive PING not answered")), ms);
    deadline.unref();
    const sent = session.ping((err) => {
      clearTimeout(deadline);
      if (err && !session.destroyed) session.destroy(err);
    });
    if (!sent) clearTimeout(deadline);
  }, ms);
  timer.unref();
  session.once("close", () => clearInterval(timer));
}

function listen(server: http.Server | http2.Http2Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function urlOf(server: http.Server | http2.Http2Server, host: string): string {
  const { port } = server.address() as AddressInfo;
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  return `http://${shown.includes(":") ? `[${shown}]` : shown}:${port}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Runs `close` once on SIGTERM or SIGINT, then exits; a second signal exits at once. */
export function closeOnSignals(close: () => Promise<void>, logger: Logger): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "signal received");
    close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
