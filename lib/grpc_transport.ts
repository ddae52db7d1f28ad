// A gRPC transport whose unary calls go straight over node:http2, the client
// side of lib/host/grpc_unary.ts. connect-node's gRPC transport runs each
// unary call through the same async-iterable pipeline as a stream (request
// body, envelope transforms, response body, for-await): ~350 µs of client CPU
// per call on the EPYC machine, against ~60 µs this way (bench/README.md,
// "scheduling"). Streams are left to connect-node's transport, on the same
// HTTP/2 connection.
//
// What stays Connect's: the interceptors, the call's signal and deadline
// (runUnaryCall, for a call that has either), the request headers (grpc-timeout, te, user agent), and
// the reading of the answer's status (validateResponse, validateTrailer), so
// a caller sees the same messages, errors, codes and metadata either way.
// Uncompressed only: no grpc-encoding is sent or accepted.

import type * as http2 from "node:http2";
import {
  create,
  isMessage,
  toBinary,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { createMethodUrl, runStreamingCall, runUnaryCall } from "@connectrpc/connect/protocol";
import { requestHeader, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { ConnectRequestSchema, type ConnectRequest } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { IngestLogsRequestSchema, type IngestLogsRequest } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { decodeEnvelope, decodeUnary, envelope, EnvelopeBuffer } from "./host/grpc_wire.ts";
import { onEachSession } from "./http2_sessions.ts";
import { connectRequestEnvelope, ingestLogsRequestEnvelope } from "./log_frame_wire.ts";

export interface DroverTransportOptions {
  /** Base URL of a Drover gRPC port (h2c or TLS). */
  baseUrl: string;
  interceptors?: Interceptor[];
  /** Options for the HTTP/2 session (noDelay, TLS). */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
  /** An existing session manager to share (its connection carries both kinds of call); its windows are the caller's. */
  sessionManager?: Http2SessionManager;
}

/**
 * The receive windows of a connection this transport opens: each stream's
 * (an HTTP/2 setting) and the connection's. Node's default keeps both at
 * 64 KiB, and a follow of a busy log then waits for a window update, a round
 * trip through both event loops, every 64 KiB (bench/logs: seconds of
 * latency with ten follows at 1 MiB/s). Unread data is bounded by them.
 */
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 4 << 20;

const NGHTTP2_CANCEL = 8;

/** The signal of a call that nothing can abort (see createDroverTransport's unary). */
const NEVER: AbortSignal = new AbortController().signal;

type HeadersInit = ConstructorParameters<typeof Headers>[0];

/**
 * Requests written by hand into their envelope rather than by protobuf-es:
 * those that carry the bulk of the bytes a client sends (agents' log output,
 * and Fleet forwarding it). The same bytes, without protobuf-es's growing
 * buffer and two copies; see lib/log_frame_wire.ts. An encoder may decline
 * a message (undefined): protobuf-es writes it.
 */
const handEncoded = new Map<string, (message: never) => Buffer | undefined>([
  [IngestLogsRequestSchema.typeName, (message: IngestLogsRequest) => ingestLogsRequestEnvelope(message)],
  [ConnectRequestSchema.typeName, (message: ConnectRequest) => connectRequestEnvelope(message)],
]);

/** A request in its envelope. */
function encodeRequest<I extends DescMessage>(input: I, message: MessageShape<I>): Buffer {
  const encode = handEncoded.get(input.typeName) as ((message: MessageShape<I>) => Buffer | undefined) | undefined;
  return encode?.(message) ?? envelope(toBinary(input, message));
}

/** A gRPC transport on node:http2 directly, unary calls and streams. */
export function createDroverTransport(options: DroverTransportOptions): Transport {
  const manager =
    options.sessionManager ??
    onEachSession(
      new Http2SessionManager(options.baseUrl, undefined, { ...options.nodeOptions, settings: { initialWindowSize: STREAM_WINDOW, ...options.nodeOptions?.settings } }),
      (session) => session.setLocalWindowSize(CONNECTION_WINDOW),
    );
  const interceptors = options.interceptors ?? [];
  const pathOf = new Map<DescMethodUnary | DescMethodStreaming, { url: string; path: string }>();
  const route = (method: DescMethodUnary | DescMethodStreaming) => {
    let r = pathOf.get(method);
    if (!r) {
      const url = createMethodUrl(options.baseUrl, method);
      pathOf.set(method, (r = { url, path: new URL(url).pathname }));
    }
    return r;
  };

  // What a call's request holds besides its kind, method and message; a timeout of 0 or less is none.
  const prepare = (method: DescMethodUnary | DescMethodStreaming, timeoutMs: number | undefined, header: HeadersInit | undefined, contextValues: ContextValues | undefined) => {
    const { url, path } = route(method);
    const timeout = timeoutMs !== undefined && timeoutMs <= 0 ? undefined : timeoutMs;
    const req = { service: method.parent, requestMethod: "POST", url, header: requestHeader(true, timeout, header), contextValues: contextValues ?? createContextValues() };
    return { path, timeoutMs: timeout, req };
  };

  // A call with neither the caller's signal nor a deadline has nothing that
  // could abort it: it runs through the interceptors (wrapped once, here) with
  // a signal that never aborts, not through runUnaryCall, whose signal linked
  // to the caller's, aborted with a DOMException when the call ends, was a
  // tenth of a SubmitJob caller's CPU (bench/README.md, "scheduling").
  const unaryChain = interceptors.reduceRight<(req: UnaryRequest) => Promise<UnaryResponse>>(
    (next, interceptor) => interceptor(next as never) as never,
    (req) => call(manager, route(req.method).path, req),
  );

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      message: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const c = prepare(method as unknown as DescMethodUnary, timeoutMs, header, contextValues);
      if (signal === undefined && c.timeoutMs === undefined) {
        const input = isMessage(message, method.input) ? message : create(method.input, message);
        const req = { ...c.req, stream: false as const, method, message: input, signal: NEVER };
        return (unaryChain(req as unknown as UnaryRequest) as Promise<UnaryResponse<I, O>>).catch((error: unknown) => {
          throw ConnectError.from(error);
        });
      }
      return runUnaryCall<I, O>({
        interceptors,
        signal,
        timeoutMs: c.timeoutMs,
        req: { ...c.req, stream: false, method, message },
        next: (req) => call(manager, c.path, req),
      });
    },
    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const c = prepare(method as unknown as DescMethodStreaming, timeoutMs, header, contextValues);
      return runStreamingCall<I, O>({
        interceptors,
        signal,
        timeoutMs: c.timeoutMs,
        req: { ...c.req, stream: true, method, message: input },
        next: (req) => openStream(manager, c.path, req),
      });
    },
  };
}

function outgoing(header: Headers): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = {};
  header.forEach((value, name) => (headers[name] = value));
  return headers;
}

/** One unary call on the wire: the request's envelope out, the answer's headers, envelope and trailers in. */
async function call<I extends DescMessage, O extends DescMessage>(manager: Http2SessionManager, path: string, req: UnaryRequest<I, O>): Promise<UnaryResponse<I, O>> {
  const input = req.method.input;
  const frame = encodeRequest(input, isMessage(req.message, input) ? req.message : create(input, req.message as MessageInitShape<I>));
  const headers = outgoing(req.header);

  if (req.signal.aborted) throw ConnectError.from(req.signal.reason, Code.Canceled);
  const stream = await manager.request("POST", path, headers, {});
  const answer = await new Promise<{ status: number; header: Headers; trailer: Headers; data: Buffer }>((resolve, reject) => {
    let status = 0;
    let header = new Headers();
    let trailer = new Headers();
    const chunks: Buffer[] = [];
    const onAbort = () => {
      if (!stream.closed) stream.close(NGHTTP2_CANCEL);
      reject(ConnectError.from(req.signal.reason, Code.Canceled));
    };
    // Listeners on the one shared NEVER would pile up (and warn past ten).
    const abortable = req.signal !== NEVER;
    if (abortable) req.signal.addEventListener("abort", onAbort);
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      header = toHeaders(h);
    });
    stream.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      manager.notifyResponseByteRead(stream);
    });
    let trailersSeen = false;
    stream.on("trailers", (t) => {
      trailersSeen = true;
      trailer = toHeaders(t);
    });
    stream.on("error", (err) => {
      if (abortable) req.signal.removeEventListener("abort", onAbort);
      reject(streamError(err, stream.rstCode));
    });
    stream.on("close", () => {
      if (abortable) req.signal.removeEventListener("abort", onAbort);
      // Cut before the answer, or reset after its headers but before its trailers.
      if (status === 0 || (stream.rstCode && !trailersSeen && !header.has("grpc-status"))) reject(streamError(undefined, stream.rstCode));
      else resolve({ status, header, trailer, data: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
    });
    stream.end(frame);
  });

  const { headerError } = validateResponse(answer.status, answer.header);
  if (answer.header.has("grpc-encoding") && answer.header.get("grpc-encoding") !== "identity") {
    throw new ConnectError(`unsupported response encoding "${answer.header.get("grpc-encoding")}"`, Code.Internal, answer.header);
  }
  const message = decodeUnary(req.method.output, answer.data, "output");
  validateTrailer(answer.trailer, answer.header);
  if (message === undefined) {
    if (headerError) throw headerError;
    throw new ConnectError("protocol error: missing output message for unary method", answer.trailer.has("grpc-status") ? Code.Unimplemented : Code.Unknown);
  }
  if (headerError) throw new ConnectError("protocol error: received output message for unary method with error status", Code.Unknown);
  return { stream: false, service: req.service, method: req.method, header: answer.header, message, trailer: answer.trailer };
}

/**
 * A streaming call on the wire: the requests' envelopes go out as the
 * caller's iterable yields them (waiting for the stream to drain), and the
 * answer is read once its headers came; see ClientStream.
 */
async function openStream<I extends DescMessage, O extends DescMessage>(
  manager: Http2SessionManager,
  path: string,
  req: StreamRequest<I, O>,
): Promise<StreamResponse<I, O>> {
  if (req.signal.aborted) throw ConnectError.from(req.signal.reason, Code.Canceled);
  const stream = await manager.request("POST", path, outgoing(req.header), {});
  const call = new ClientStream(stream, manager, req.method.output, req.signal);
  void call.send(req.method.input, req.message);
  const { status, header } = await call.response;
  const { foundStatus, headerError } = validateResponse(status, header);
  if (headerError) {
    call.cancel();
    throw headerError;
  }
  if (header.has("grpc-encoding") && header.get("grpc-encoding") !== "identity") {
    call.cancel();
    throw new ConnectError(`unsupported response encoding "${header.get("grpc-encoding")}"`, Code.Internal, header);
  }
  return { stream: true, service: req.service, method: req.method, header, trailer: call.trailer, message: call.messages(foundStatus, header) };
}

/**
 * One streaming call's node stream, read and written without Connect's
 * async-iterable pipeline (what connect-node's transport costs per message,
 * and its envelope copies, were a fifth of an agent's CPU while shipping
 * logs). The answer's messages are decoded as the caller asks for them;
 * while a whole one waits unread, the stream is paused, so HTTP/2 flow
 * control holds the server back.
 */
class ClientStream<O extends DescMessage> {
  readonly response: Promise<{ status: number; header: Headers }>;
  /** Filled when the trailers come. */
  readonly trailer = new Headers();
  private readonly input = new EnvelopeBuffer();
  private ended = false;
  private error: ConnectError | undefined;
  private wake: (() => void) | undefined;
  private answered: ((value: { status: number; header: Headers }) => void) | undefined;
  private refused: ((err: ConnectError) => void) | undefined;

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    manager: Http2SessionManager,
    private readonly output: O,
    signal: AbortSignal,
  ) {
    this.response = new Promise((resolve, reject) => {
      this.answered = resolve;
      this.refused = reject;
    });
    // Not a rejection nobody handles when the call fails before anyone awaits it.
    this.response.catch(() => undefined);
    const onAbort = () => this.fail(ConnectError.from(signal.reason, Code.Canceled));
    signal.addEventListener("abort", onAbort, { once: true });
    stream.on("response", (h) => {
      this.answered?.({ status: Number(h[":status"]), header: toHeaders(h) });
      this.answered = this.refused = undefined;
    });
    stream.on("data", (chunk: Buffer) => {
      this.input.push(chunk);
      manager.notifyResponseByteRead(stream);
      this.poke();
    });
    stream.on("trailers", (t) => {
      for (const [name, value] of toHeaders(t)) this.trailer.append(name, value);
    });
    stream.on("end", () => {
      this.ended = true;
      this.poke();
    });
    stream.on("error", (err) => this.fail(streamError(err, stream.rstCode)));
    stream.on("close", () => {
      signal.removeEventListener("abort", onAbort);
      // Reset before the end of the answer (after its end, "end" came first).
      if (!this.ended) this.fail(streamError(undefined, stream.rstCode));
    });
  }

  /** Writes the requests as they come, then ends the request side; a failing iterable fails the call. Never throws. */
  async send<I extends DescMessage>(input: I, messages: AsyncIterable<MessageShape<I>>): Promise<void> {
    const stream = this.stream;
    try {
      for await (const message of messages) {
        if (this.error || stream.destroyed) return;
        if (!stream.write(encodeRequest(input, message))) await this.drained();
      }
      if (!this.error && !stream.destroyed) stream.end();
    } catch (err) {
      this.fail(ConnectError.from(err));
    }
  }

  /** Closes the stream (CANCEL) if it is still open. */
  cancel(): void {
    if (!this.stream.closed && !this.stream.destroyed) this.stream.close(NGHTTP2_CANCEL);
  }

  /** The answer's messages; at their end, the trailers' status (`foundStatus`: it came in the headers, already read). */
  messages(foundStatus: boolean, header: Headers): AsyncIterable<MessageShape<O>> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: async (): Promise<IteratorResult<MessageShape<O>>> => {
          for (;;) {
            if (this.error) throw this.error;
            const size = this.input.frameSize();
            if (size !== undefined && this.input.buffered >= size) return { done: false, value: this.decode(this.input.consume(size)) };
            if (this.ended) {
              if (this.input.buffered > 0) throw this.fail(new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument));
              if (!foundStatus) validateTrailer(this.trailer, header);
              return { done: true, value: undefined };
            }
            this.stream.resume();
            await new Promise<void>((resolve) => (this.wake = resolve));
          }
        },
      }),
    };
  }

  private decode(frame: Buffer): MessageShape<O> {
    try {
      return decodeEnvelope(this.output, frame);
    } catch (err) {
      throw this.fail(err as ConnectError);
    }
  }

  /** Wakes a waiting read; with nobody waiting and a whole message here, pauses the stream. */
  private poke(): void {
    const wake = this.wake;
    if (wake) {
      this.wake = undefined;
      wake();
      return;
    }
    const size = this.input.frameSize();
    if (size !== undefined && this.input.buffered >= size && !this.ended) this.stream.pause();
  }

  /** Fails the call with `error` (the first error wins), closes the stream. Returns the call's error. */
  private fail(error: ConnectError): ConnectError {
    if (!this.error) {
      this.error = error;
      this.input.clear();
      this.refused?.(error);
      this.answered = this.refused = undefined;
      this.cancel();
      this.poke();
    }
    return this.error;
  }

  /** Resolves when the stream takes writes again, or is gone. */
  private drained(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.stream.destroyed) return resolve();
      const done = () => {
        this.stream.off("drain", done);
        this.stream.off("close", done);
        resolve();
      };
      this.stream.on("drain", done);
      this.stream.on("close", done);
    });
  }
}

function toHeaders(h: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const name in h) {
    if (name.startsWith(":")) continue;
    const value = h[name];
    if (Array.isArray(value)) for (const v of value) out.append(name, v);
    else if (value !== undefined) out.set(name, value);
  }
  return out;
}

/**
 * A stream that failed or closed before its answer, with the codes
 * connect-node gives (node-error.ts): by the HTTP/2 reset code, else by the
 * node error; a stream refused or cut before any answer is UNAVAILABLE.
 */
function streamError(err: unknown, rstCode: number | undefined): ConnectError {
  if (err instanceof ConnectError) return err;
  const byReset = rstCode ? RESET_CODES[rstCode] : undefined;
  const message = err instanceof Error ? err.message : `http/2 stream closed with error code ${rstCode ?? 0} before an answer`;
  let code = byReset ?? Code.Unavailable;
  const nodeCode = (err as { code?: unknown } | undefined)?.code;
  if (byReset === undefined && (nodeCode === "ECONNRESET" || nodeCode === "ERR_STREAM_DESTROYED" || nodeCode === "ERR_HTTP2_INVALID_STREAM")) code = Code.Aborted;
  return new ConnectError(message, code, undefined, undefined, err);
}

/** HTTP/2 reset codes (RFC 9113) as gRPC codes, as connect-node maps them. */
const RESET_CODES: Record<number, Code> = {
  1: Code.Internal, // PROTOCOL_ERROR
  2: Code.Internal, // INTERNAL_ERROR
  3: Code.Internal, // FLOW_CONTROL_ERROR
  4: Code.Internal, // SETTINGS_TIMEOUT
  6: Code.Internal, // FRAME_SIZE_ERROR
  7: Code.Unavailable, // REFUSED_STREAM
  8: Code.Canceled, // CANCEL
  9: Code.Internal, // COMPRESSION_ERROR
  10: Code.Internal, // CONNECT_ERROR
  11: Code.ResourceExhausted, // ENHANCE_YOUR_CALM
  12: Code.PermissionDenied, // INADEQUATE_SECURITY
  13: Code.PermissionDenied, // HTTP_1_1_REQUIRED
};
