// A bidi-streaming method served straight on node:http2's core API, for
// gRPC clients, without Connect's handler pipeline. Meant for streams that are
// many and long-lived: Fleet's agent streams (one per agent, open for days),
// where Connect's pipeline (a dozen async-generator layers, node:http2's
// compatibility request and response, their AbortSignals) cost ~48 KiB per
// stream (bench/README.md, "fleet_load").
//
// What it serves: POST to the method's path with content-type
// application/grpc or application/grpc+proto, uncompressed (no grpc-encoding
// but identity), without grpc-timeout. Everything else, on the same path too
// (Connect and gRPC-Web protocols, JSON, compression, deadlines, the HTTP/1.1
// listener), stays with the Connect adapter, which implements the same method.
//
// What a call does, in order:
//   1. a request id (x-request-id, or a new one) and the call's logger, as the
//      logging interceptor gives them;
//   2. the route's handler gets the call (requests, signal, logger) and the
//      request headers; it authenticates and resolves to the messages to
//      send, or rejects with the ConnectError that ends the call;
//   3. requests: 5-byte gRPC frames (flags, big-endian length) are cut from
//      the HTTP/2 DATA as the handler asks for the next message, decoded
//      with protobuf-es and checked with protovalidate exactly as the
//      validation interceptor checks stream messages; a frame over
//      `maxMessageBytes` ends the call (RESOURCE_EXHAUSTED). While a whole
//      frame waits unread, the HTTP/2 stream is paused, so flow control
//      holds the client back;
//   4. responses: each message is framed and written; when write() says the
//      buffer is full, the next message waits for 'drain';
//   5. the end: the messages ran out (grpc-status 0) or failed (the
//      ConnectError's code and percent-encoded message, as Connect writes
//      them; any other error is logged and becomes INTERNAL, as the error
//      interceptor does); headers go out first if no message did, then the
//      trailers. One log line ("stream ok" / "call failed") as the logging
//      interceptor writes it. The call's signal is aborted: normally
//      without a reason, with CANCELED when the client reset the stream or
//      went away, and with the server's reason (UNAVAILABLE) on shutdown,
//      which is how the handler learns to end its messages.
//
// Unlike the Connect adapter it never compresses responses, and once the
// call has ended, what the client still sends is read and dropped until it
// closes its side (agents close at once).
//
// Per stream there is one GrpcStream object, an AbortController and the
// suspended pump(); the event listeners on the node stream are module
// functions (grpc_wire.ts) that find their GrpcStream through a symbol, so no
// closures are made per stream.

import type * as http2 from "node:http2";
import { randomUUID } from "node:crypto";
import { toBinary, type DescMessage, type DescMethodBiDiStreaming, type MessageShape } from "@bufbuild/protobuf";
import type { Validator } from "@bufbuild/protovalidate";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { grpcStatusOk, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { encodedBefore } from "../encode_once.ts";
import type { Logger } from "../logger.ts";
import { REQUEST_ID_HEADER, callFailed, elapsed, sanitizeRequestId, validateMessage, type AccessPolicy } from "./interceptors.ts";
import { EnvelopeBuffer, FRAME_HEADER, decodeEnvelope, envelope, headerValue, listen, type StreamEvents } from "./grpc_wire.ts";

/** What a handler sees of one call. */
export interface GrpcStreamCall<I> {
  /** The request messages, decoded and validated, in order; done when the client closes its side. One reader at a time. */
  readonly requests: AsyncIterator<I>;
  /** Aborted when the call ends, however it ends (see the file's header). */
  readonly signal: AbortSignal;
  /** A logger with the call's request id, service and method; made on each access, so nothing of it stays per stream. */
  readonly log: Logger;
}

/** Serves one method: promises the messages to send, or rejects with the ConnectError that ends the call. */
export type GrpcStreamHandler<I, O> = (call: GrpcStreamCall<I>, header: (name: string) => string | undefined) => Promise<AsyncIterator<O>>;

/** A method served by this module rather than by the Connect adapter. */
export interface GrpcStreamRoute {
  method: DescMethodBiDiStreaming;
  handler: GrpcStreamHandler<unknown, unknown>;
}

const routesOf = new WeakMap<ConnectRouter, GrpcStreamRoute[]>();

/**
 * Serves `method` for gRPC clients with `handler` on the server this router
 * is given to (lib/host/server.ts), beside the router's own implementation
 * of the same method, which serves every other protocol. Routers that are
 * not given to a server (in-memory transports) just ignore it.
 */
export function serveGrpcStream<I extends DescMessage, O extends DescMessage>(
  router: ConnectRouter,
  method: DescMethodBiDiStreaming<I, O>,
  handler: GrpcStreamHandler<MessageShape<I>, MessageShape<O>>,
): void {
  const routes = routesOf.get(router) ?? [];
  routes.push({ method, handler } as unknown as GrpcStreamRoute);
  routesOf.set(router, routes);
}

/** The routes serveGrpcStream() registered on a router. */
export function grpcStreamRoutes(router: ConnectRouter): readonly GrpcStreamRoute[] {
  return routesOf.get(router) ?? [];
}

export interface GrpcStreamOptions {
  routes: readonly GrpcStreamRoute[];
  logger: Logger;
  validator: Validator;
  /** The server's access policy: every route must be "open" (its handler authenticates). */
  policy: AccessPolicy;
  /** Largest request message accepted; a larger one ends the call with RESOURCE_EXHAUSTED. */
  maxMessageBytes?: number;
}

/** gRPC's customary default: 4 MiB. Agent messages are far smaller (a LogFrame carries ≤ 1 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 2 ** 20;

const CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;
const RESPONSE_CONTENT_TYPE = "application/grpc+proto";
const NGHTTP2_CANCEL = 8;

/** The calls of one server: which streams are theirs, and ending them all at shutdown. */
export class GrpcStreams {
  private readonly byPath = new Map<string, Route>();
  private readonly open = new Set<GrpcStream>();
  private closing: ConnectError | undefined;

  constructor(opts: GrpcStreamOptions) {
    for (const { method, handler } of opts.routes) {
      if (opts.policy(method) !== "open") {
        throw new Error(`${method.parent.typeName}/${method.name}: served as a raw gRPC stream, it must be "open" in the access policy and authenticate itself`);
      }
      this.byPath.set(`/${method.parent.typeName}/${method.name}`, {
        method,
        handler,
        validator: opts.validator,
        log: opts.logger,
        maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
        open: this.open,
      });
    }
  }

  /** Takes the stream if it is a gRPC call of one of these methods; false leaves it to others. */
  serve(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    const route = this.routeOf(headers);
    if (!route) return false;
    const call = new GrpcStream(route, stream, headers);
    if (this.closing) call.abort(this.closing);
    return true;
  }

  /** Shutdown: aborts every open call with `reason`, and every call opened from now on. */
  abortAll(reason: ConnectError): void {
    this.closing = reason;
    for (const call of this.open) call.abort(reason);
  }

  private routeOf(headers: http2.IncomingHttpHeaders): Route | undefined {
    const route = this.byPath.get(headers[":path"] ?? "");
    if (!route || headers[":method"] !== "POST") return undefined;
    if (!CONTENT_TYPE.test(headers["content-type"] ?? "")) return undefined;
    const encoding = headers["grpc-encoding"];
    if ((encoding !== undefined && encoding !== "identity") || headers["grpc-timeout"] !== undefined) return undefined;
    return route;
  }
}

/** Takes a stream (true) or leaves it (false). */
export type RawGrpcServer = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

/**
 * Puts the raw gRPC paths (`serve`) in front of node:http2's compatibility
 * API on `server`. That API is itself the server's one 'stream' listener (it
 * wraps each stream in Http2ServerRequest/Response and emits 'request'); it
 * is taken off and called only for the streams `serve` leaves, so those cost
 * nothing of it.
 */
export function installRawGrpc(server: http2.Http2Server, serve: RawGrpcServer): void {
  const listeners = server.listeners("stream");
  if (listeners.length !== 1) throw new Error(`expected node:http2's compatibility 'stream' listener alone, found ${listeners.length}`);
  const compat = listeners[0] as (...args: unknown[]) => void;
  server.removeAllListeners("stream");
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (!serve(stream, headers)) compat.call(server, stream, headers, flags, rawHeaders);
  });
}

/** What every call of one method shares. */
interface Route {
  method: DescMethodBiDiStreaming;
  handler: GrpcStreamHandler<unknown, unknown>;
  validator: Validator;
  log: Logger;
  maxMessageBytes: number;
  /** The server's open calls. */
  open: Set<GrpcStream>;
}

/** One call: reads requests, writes responses, ends with trailers. */
class GrpcStream implements GrpcStreamCall<unknown>, AsyncIterator<unknown>, StreamEvents {
  private readonly controller = new AbortController();
  private readonly started = performance.now();
  private readonly requestId: string;

  // The request side.
  /** DATA received and not yet cut into messages. */
  private readonly input = new EnvelopeBuffer();
  /** The client closed its side (END_STREAM). */
  private inputEnded = false;
  /** Set once reading fails or stops; every later read fails with it. */
  private inputError: ConnectError | undefined;
  private reader: { resolve(r: IteratorResult<unknown>): void; reject(err: unknown): void } | undefined;

  // The response side.
  private headersSent = false;
  private wakeWriter: (() => void) | undefined;
  /** Set when the call finishes; sent when node:http2 asks for them. */
  private trailers: http2.OutgoingHttpHeaders | undefined;
  private finished = false;

  constructor(
    private readonly route: Route,
    private readonly stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
  ) {
    this.requestId = sanitizeRequestId(headerValue(headers, REQUEST_ID_HEADER) ?? null) ?? randomUUID();
    listen(stream, this);
    route.open.add(this);
    route.handler(this, (name) => headerValue(headers, name))
      .then(
        (responses) => this.pump(responses),
        (err: unknown) => this.finish(err),
      )
      // A failure here must not become an unhandled rejection: that ends the process, and every other stream with it.
      .catch((err: unknown) => this.failed(err));
  }

  get requests(): AsyncIterator<unknown> {
    return this;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get log(): Logger {
    return this.route.log.child({ requestId: this.requestId, service: this.route.method.parent.typeName, method: this.route.method.name });
  }

  /** Aborts the call's signal (the first reason wins); the handler ends its messages in answer. */
  abort(reason?: ConnectError): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  // ---- Requests ------------------------------------------------------------

  next(): Promise<IteratorResult<unknown>> {
    if (this.reader) return Promise.reject(new Error("a read of this stream is already pending"));
    try {
      const result = this.read();
      if (result) return Promise.resolve(result);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      this.reader = { resolve, reject };
      this.stream.resume();
    });
  }

  /** The reader is done with the requests: what arrives from now on is dropped. */
  return(): Promise<IteratorResult<unknown>> {
    this.stopReading(new ConnectError("the requests were closed by the server", Code.Canceled));
    return Promise.resolve({ done: true, value: undefined });
  }

  /** DATA from the client. */
  received(chunk: Buffer): void {
    if (this.inputError) return; // nobody will read it
    this.input.push(chunk);
    this.offer();
  }

  /** The client closed its side. */
  inputDone(): void {
    this.inputEnded = true;
    this.offer();
  }

  /**
   * Settles a waiting read if it can be now. With nobody waiting and a whole
   * frame (or an oversized header) buffered, pauses the stream: HTTP/2 flow
   * control then holds the client back until the handler reads.
   */
  private offer(): void {
    const reader = this.reader;
    if (!reader) {
      const size = this.input.frameSize();
      if (size !== undefined && (this.input.buffered >= size || size > FRAME_HEADER + this.route.maxMessageBytes)) this.stream.pause();
      return;
    }
    let result: IteratorResult<unknown> | undefined;
    try {
      result = this.read();
    } catch (err) {
      this.reader = undefined;
      reader.reject(err);
      return;
    }
    if (!result) return;
    this.reader = undefined;
    reader.resolve(result);
  }

  /** The next message if a whole one is buffered, done at the end, undefined if more DATA is needed; throws what ends reading. */
  private read(): IteratorResult<unknown> | undefined {
    if (this.inputError) throw this.inputError;
    const size = this.input.frameSize();
    if (size !== undefined && size > FRAME_HEADER + this.route.maxMessageBytes) {
      throw this.stopReading(
        new ConnectError(`message size ${size - FRAME_HEADER} is larger than configured readMaxBytes ${this.route.maxMessageBytes}`, Code.ResourceExhausted),
      );
    }
    if (size === undefined || this.input.buffered < size) {
      if (!this.inputEnded) return undefined;
      if (this.input.buffered > 0) throw this.stopReading(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument));
      return { done: true, value: undefined };
    }
    const { method, validator } = this.route;
    let message: unknown;
    try {
      message = decodeEnvelope(method.input, this.input.consume(size));
      validateMessage(validator, method.input, message);
    } catch (err) {
      throw this.stopReading(ConnectError.from(err));
    }
    return { done: false, value: message };
  }

  /** Reading is over (the error says why): drops what is buffered, fails a waiting read. Returns the error. */
  private stopReading(error: ConnectError): ConnectError {
    this.inputError ??= error;
    this.input.clear();
    // Unread DATA would hold the client back for nothing: let it flow (and be dropped).
    if (!this.stream.destroyed) this.stream.resume();
    const reader = this.reader;
    this.reader = undefined;
    reader?.reject(this.inputError);
    return this.inputError;
  }

  // ---- Responses -----------------------------------------------------------

  private async pump(responses: AsyncIterator<unknown>): Promise<void> {
    try {
      for (;;) {
        const result = await responses.next();
        if (result.done) break;
        if (!this.write(result.value)) await new Promise<void>((resolve) => (this.wakeWriter = resolve));
      }
    } catch (err) {
      return this.finish(err);
    }
    this.finish(undefined);
  }

  /** Writes one message; false when the stream's buffer is full (wait for 'drain'). */
  private write(message: unknown): boolean {
    if (this.stream.destroyed || this.stream.closed) return true; // gone: the signal is aborted, the messages end
    const output = this.route.method.output;
    const frame = envelope(encodedBefore(output, message as object) ?? toBinary(output, message as MessageShape<DescMessage>));
    this.sendHeaders();
    return this.stream.write(frame);
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond({ ":status": 200, "content-type": RESPONSE_CONTENT_TYPE, [REQUEST_ID_HEADER]: this.requestId }, { waitForTrailers: true });
  }

  /** The call is over: `reason` undefined for success, else the error to end it with. Logs it, aborts the signal, ends the stream. */
  private finish(reason: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.route.open.delete(this);
    const log = this.log;
    let error: ConnectError | undefined;
    if (reason === undefined) {
      log.debug({ ms: elapsed(this.started) }, "stream ok");
    } else {
      error = reason instanceof ConnectError ? reason : this.unexpected(log, reason);
      callFailed(log, this.requestId, this.started, error);
    }
    this.abort(error);
    this.stopReading(error ?? new ConnectError("the call has ended", Code.Canceled));
    if (this.stream.destroyed || this.stream.closed) return;
    const trailers = new Headers({ "grpc-status": grpcStatusOk });
    if (error) setTrailerStatus(trailers, error);
    this.trailers = Object.fromEntries(trailers);
    try {
      this.sendHeaders();
      this.stream.end();
    } catch (err) {
      this.failed(err); // the stream went meanwhile
    }
  }

  /** As the error interceptor: an error that is not a ConnectError is logged and becomes INTERNAL, without its message. */
  private unexpected(log: Logger, err: unknown): ConnectError {
    log.error({ err, service: this.route.method.parent.typeName, method: this.route.method.name }, "unexpected error");
    return new ConnectError("internal error", Code.Internal);
  }

  // ---- Events of the node stream --------------------------------------------

  drained(): void {
    const wake = this.wakeWriter;
    this.wakeWriter = undefined;
    wake?.();
  }

  sendTrailers(): void {
    try {
      this.stream.sendTrailers(this.trailers ?? { "grpc-status": grpcStatusOk });
    } catch (err) {
      this.failed(err); // the stream went meanwhile
    }
  }

  /** The stream is gone. Before the call finished, that is the client cancelling (RST_STREAM) or its connection going. */
  closed(): void {
    this.route.open.delete(this);
    if (!this.finished) {
      const code = this.stream.rstCode;
      const reason =
        code === undefined || code === 0 || code === NGHTTP2_CANCEL
          ? new ConnectError("the call was cancelled", Code.Canceled)
          : new ConnectError(`http/2 stream closed with error code ${code}`, Code.Canceled);
      this.abort(reason);
      this.stopReading(reason);
    }
    this.drained();
  }

  failed(err: unknown): void {
    this.route.log.debug({ err, requestId: this.requestId }, "http2 stream error");
  }
}
