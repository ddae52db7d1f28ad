// Unary methods served straight on node:http2's core API for gRPC clients,
// beside the Connect adapter, which keeps every other protocol. Connect's
// unary pipeline (async-generator layers, node:http2's compatibility request
// and response, two AbortControllers and three Headers per call, a
// DOMException when the call ends) cost ~440 µs of server CPU per call on
// the EPYC machine for Health/Check, against ~30 µs answering the same call
// on node:http2 directly; a service's own work for a SubmitJob is far less
// than that (bench/README.md, "scheduling").
//
// Every unary method a router registers with router.service() is served
// here when the request is gRPC: POST, content-type application/grpc or
// application/grpc+proto, no grpc-encoding but identity. Everything else
// (Connect and gRPC-Web protocols, JSON, compression, the HTTP/1.1
// listener) goes to the Connect adapter, which runs the same implementation.
//
// A call does what the Connect adapter and the standard interceptors
// (interceptors.ts) do, in their order:
//   1. the request id (x-request-id, or a new one);
//   2. the body: one 5-byte gRPC envelope, decoded with protobuf-es
//      (Connect's messages and codes for a missing, extra, incomplete,
//      compressed or undecodable message); a bad grpc-timeout is
//      INVALID_ARGUMENT;
//   3. auth (authorize(), as the auth interceptor), then protovalidate;
//   4. the implementation, with a HandlerContext whose signal aborts when the
//      call ends, the client cancels (CANCELED), the grpc-timeout passes
//      (DEADLINE_EXCEEDED) or the server shuts down (its reason);
//   5. the answer: headers (x-request-id and what the implementation set),
//      the message, trailers (grpc-status, the implementation's trailers);
//      a ConnectError's code, message, details and metadata as Connect
//      writes them; any other error is logged and becomes INTERNAL "internal
//      error"; one log line for a failure ("call failed"), "call ok" at debug.
//
// What makes it cheap: the context's signal, headers and logger are made
// only when the implementation asks for them (most never do), and the node
// stream's listeners are module functions (grpc_wire.ts), so no closures
// are made per call.

import type * as http2 from "node:http2";
import { randomUUID } from "node:crypto";
import { create, isMessage, toBinary, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import type { Validator } from "@bufbuild/protovalidate";
import { Code, ConnectError, type ConnectRouter, type ContextKey, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { grpcStatusOk, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Authenticator } from "../auth/tokens.ts";
import type { Logger } from "../logger.ts";
import { kLogger, kPrincipal } from "./context.ts";
import { decodeUnary, envelope, headerValue, listen, type StreamEvents } from "./grpc_wire.ts";
import { REQUEST_ID_HEADER, authorize, callFailed, elapsed, sanitizeRequestId, validateMessage, type AccessPolicy, type AccessRule } from "./interceptors.ts";

/** A unary method's implementation, as a router was given it. */
export interface UnaryRoute {
  method: DescMethodUnary;
  impl: (request: unknown, context: HandlerContext) => unknown;
}

/**
 * A router that registers on `router` and also collects, into `into`, the
 * unary methods each router.service() call implements. A service registered
 * with handler options of its own (interceptors, limits) is left to Connect.
 */
export function collectUnaryRoutes(router: ConnectRouter, into: UnaryRoute[]): ConnectRouter {
  const collecting = Object.create(router) as ConnectRouter;
  collecting.service = ((service, implementation, options) => {
    router.service(service, implementation, options);
    if (options) return collecting;
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      const fn = (implementation as Record<string, unknown>)[method.localName];
      if (typeof fn === "function") into.push({ method: method as DescMethodUnary, impl: fn.bind(implementation) as UnaryRoute["impl"] });
    }
    return collecting;
  }) as ConnectRouter["service"];
  return collecting;
}

/** Counts the unary calls in flight, for a graceful shutdown. */
export interface CallCounter {
  enter(): void;
  leave(): void;
}

export interface GrpcUnaryOptions {
  routes: readonly UnaryRoute[];
  logger: Logger;
  authenticator: Authenticator;
  policy: AccessPolicy;
  validator: Validator;
  calls: CallCounter;
  /** Aborted when the server shuts down: every call's signal follows it. */
  shutdownSignal: AbortSignal;
}

const CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;
const RESPONSE_CONTENT_TYPE = "application/grpc+proto";
const OK_TRAILERS = { "grpc-status": grpcStatusOk };
const MAX_TIMER_MS = 2 ** 31 - 1;

/** What every call of one method shares. */
interface Route extends UnaryRoute {
  rule: AccessRule;
  path: string;
  server: GrpcUnary;
}

/** The unary methods of one server, by path. */
export class GrpcUnary {
  private readonly byPath = new Map<string, Route>();
  readonly logger: Logger;
  readonly authenticator: Authenticator;
  readonly validator: Validator;
  readonly calls: CallCounter;
  readonly shutdownSignal: AbortSignal;

  constructor(opts: GrpcUnaryOptions) {
    this.logger = opts.logger;
    this.authenticator = opts.authenticator;
    this.validator = opts.validator;
    this.calls = opts.calls;
    this.shutdownSignal = opts.shutdownSignal;
    for (const route of opts.routes) {
      const path = `/${route.method.parent.typeName}/${route.method.name}`;
      this.byPath.set(path, { ...route, rule: opts.policy(route.method), path, server: this });
    }
  }

  /** Takes the stream if it is a gRPC call of one of these methods; false leaves it to the Connect adapter. */
  serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    const route = this.byPath.get(headers[":path"] ?? "");
    if (!route || headers[":method"] !== "POST" || !CONTENT_TYPE.test(headers["content-type"] ?? "")) return false;
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    new UnaryCall(route, stream, headers);
    return true;
  }
}

/** Whether a call came by the raw gRPC unary path (rather than the Connect adapter). */
export function isRawGrpcCall(context: HandlerContext): boolean {
  return context instanceof UnaryCall;
}

/** One call, and the HandlerContext its implementation gets. */
class UnaryCall implements HandlerContext, StreamEvents {
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  readonly values: ContextValues = new CallValues(this);
  private readonly started = performance.now();
  private readonly requestId: string;
  private chunks: Buffer[] = [];
  private size = 0;
  /** Set once the call ended or was cut short: why (undefined: it succeeded). */
  private ended: { reason: unknown } | undefined;
  private controller: AbortController | undefined;
  /** Made with the signal: aborts it when the server shuts down. */
  private onShutdown: (() => void) | undefined;
  private deadline: NodeJS.Timeout | undefined;
  private deadlineAt: number | undefined;
  private timeoutError: ConnectError | undefined;
  private logger: Logger | undefined;
  private requestHeaders: Headers | undefined;
  private responseHeaders: Headers | undefined;
  private responseTrailers: Headers | undefined;
  private trailers: http2.OutgoingHttpHeaders = OK_TRAILERS;
  private finished = false;

  constructor(
    private readonly route: Route,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
  ) {
    this.requestId = sanitizeRequestId(headerValue(headers, REQUEST_ID_HEADER) ?? null) ?? randomUUID();
    const timeout = headers["grpc-timeout"];
    if (timeout !== undefined) {
      const parsed = parseTimeout(headerValue(headers, "grpc-timeout")!, Number.MAX_SAFE_INTEGER);
      this.timeoutError = parsed.error;
      if (parsed.timeoutMs !== undefined && !parsed.error) {
        this.deadlineAt = Date.now() + parsed.timeoutMs;
        // Past setTimeout's range (~24.8 days) a timer would fire at once: such a deadline never comes in a call's life.
        if (parsed.timeoutMs <= MAX_TIMER_MS) this.deadline = setTimeout(onDeadline, parsed.timeoutMs, this);
      }
    }
    listen(stream, this);
  }

  // ---- HandlerContext ------------------------------------------------------

  get method(): DescMethodUnary {
    return this.route.method;
  }

  get service() {
    return this.route.method.parent;
  }

  get url(): string {
    return `http://${headerValue(this.headers, ":authority") ?? "localhost"}${this.route.path}`;
  }

  timeoutMs(): number | undefined {
    return this.deadlineAt === undefined ? undefined : this.deadlineAt - Date.now();
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      const shutdown = this.route.server.shutdownSignal;
      if (this.ended) controller.abort(this.ended.reason);
      else if (shutdown.aborted) controller.abort(shutdown.reason);
      else shutdown.addEventListener("abort", (this.onShutdown = () => this.abort(shutdown.reason)));
    }
    return this.controller.signal;
  }

  get requestHeader(): Headers {
    if (!this.requestHeaders) {
      this.requestHeaders = new Headers();
      for (const [name, value] of Object.entries(this.headers)) {
        if (name.startsWith(":") || value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) this.requestHeaders.append(name, v);
        else this.requestHeaders.set(name, value);
      }
    }
    return this.requestHeaders;
  }

  get responseHeader(): Headers {
    return (this.responseHeaders ??= new Headers());
  }

  get responseTrailer(): Headers {
    return (this.responseTrailers ??= new Headers());
  }

  /** The call's logger, as the logging interceptor makes it; made on first use. */
  get log(): Logger {
    return (this.logger ??= this.route.server.logger.child({ requestId: this.requestId, service: this.service.typeName, method: this.method.name }));
  }

  // ---- The call ------------------------------------------------------------

  received(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  inputDone(): void {
    // run() answers every failure itself; a throw past it would be a bug, and must not end the process.
    this.run().catch((err: unknown) => this.failed(err));
  }

  drained(): void {} // the answer is one write: nothing waits for 'drain'

  /** The request is complete: runs the call and answers it. */
  async run(): Promise<void> {
    const { route } = this;
    const { server } = route;
    server.calls.enter();
    let body: Uint8Array | undefined;
    let error: ConnectError | undefined;
    try {
      if (this.timeoutError) throw this.timeoutError;
      const input = this.decode();
      if (route.rule !== "open") this.values.set(kPrincipal, await authorize(server.authenticator, route.rule, route.method, headerValue(this.headers, "authorization")));
      validateMessage(server.validator, route.method.input, input);
      const output = await route.impl(input, this);
      const out = route.method.output;
      body = toBinary(out, isMessage(output, out) ? output : create(out, output as MessageShape<typeof out>));
    } catch (err) {
      error = err instanceof ConnectError ? err : this.unexpected(err);
    } finally {
      server.calls.leave();
    }
    this.finish(body, error);
  }

  /** The one request message; throws the ConnectError Connect's gRPC handler would. */
  private decode(): unknown {
    const data = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    const message = decodeUnary(this.route.method.input, data, "input");
    if (message === undefined) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
    return message;
  }

  /** As the error interceptor: an error that is not a ConnectError is logged and becomes INTERNAL, without its message. */
  private unexpected(err: unknown): ConnectError {
    this.log.error({ err, service: this.service.typeName, method: this.method.name }, "unexpected error");
    return new ConnectError("internal error", Code.Internal);
  }

  /** Logs the outcome, ends the signal, and writes the answer unless the stream is gone. */
  private finish(body: Uint8Array | undefined, error: ConnectError | undefined): void {
    if (this.finished) return;
    this.finished = true;
    if (error) callFailed(this.log, this.requestId, this.started, error);
    else if (this.route.server.logger.isLevelEnabled("debug")) this.log.debug({ ms: elapsed(this.started) }, "call ok");
    this.end(error);
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    // As the logging interceptor: the request id goes in the headers of a success, in the trailers (the error's metadata) of a failure.
    const head: http2.OutgoingHttpHeaders = error
      ? { ":status": 200, "content-type": RESPONSE_CONTENT_TYPE }
      : { ":status": 200, "content-type": RESPONSE_CONTENT_TYPE, [REQUEST_ID_HEADER]: this.requestId };
    if (this.responseHeaders) for (const [name, value] of this.responseHeaders) head[name] = value;
    if (error || this.responseTrailers) {
      const trailers = new Headers(this.responseTrailers);
      setTrailerStatus(trailers, error);
      this.trailers = Object.fromEntries(trailers);
    }
    try {
      stream.respond(head, { waitForTrailers: true });
      if (body) stream.end(envelope(body));
      else stream.end();
    } catch (err) {
      this.failed(err); // the stream went meanwhile
    }
  }

  /** The call is over or cut short (the first reason counts): aborts the signal if one was made, stops the deadline. */
  abort(reason: unknown): void {
    this.ended ??= { reason };
    clearTimeout(this.deadline);
    if (this.controller && !this.controller.signal.aborted) this.controller.abort(reason);
  }

  private end(error: ConnectError | undefined): void {
    this.abort(error);
    if (this.onShutdown) this.route.server.shutdownSignal.removeEventListener("abort", this.onShutdown);
  }

  // ---- Events of the node stream --------------------------------------------

  sendTrailers(): void {
    try {
      this.stream.sendTrailers(this.trailers);
    } catch (err) {
      this.failed(err); // the stream went meanwhile
    }
  }

  /** The stream is gone. Before the call finished, that is the client cancelling (RST_STREAM) or its connection going. */
  closed(): void {
    if (this.finished) return;
    const code = this.stream.rstCode;
    this.abort(
      code === undefined || code === 0 || code === NGHTTP2_CANCEL
        ? new ConnectError("the call was cancelled", Code.Canceled)
        : new ConnectError(`http/2 stream closed with error code ${code}`, Code.Canceled),
    );
  }

  timedOut(): void {
    if (!this.finished) this.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  }

  failed(err: unknown): void {
    this.route.server.logger.debug({ err, requestId: this.requestId }, "http2 stream error");
  }
}

const NGHTTP2_CANCEL = 8;

/** Connect's ContextValues, except that the call's logger (kLogger) is made when first asked for. */
class CallValues implements ContextValues {
  private readonly set_ = new Map<symbol, unknown>();

  constructor(private readonly call: UnaryCall) {}

  get<T>(key: ContextKey<T>): T {
    if (this.set_.has(key.id)) return this.set_.get(key.id) as T;
    return key === (kLogger as ContextKey<unknown>) ? (this.call.log as T) : key.defaultValue;
  }

  set<T>(key: ContextKey<T>, value: T): this {
    this.set_.set(key.id, value);
    return this;
  }

  delete<T>(key: ContextKey<T>): this {
    this.set_.delete(key.id);
    return this;
  }
}

function onDeadline(call: UnaryCall): void {
  call.timedOut();
}
