// A gRPC transport whose unary calls go straight over node:http2, the client
// side of lib/host/grpc_unary.ts. connect-node's gRPC transport runs each
// unary call through the same async-iterable pipeline as a stream (request
// body, envelope transforms, response body, for-await): ~350 µs of client CPU
// per call on the EPYC machine, against ~60 µs this way (bench/README.md,
// "scheduling"). Streams are left to connect-node's transport, on the same
// HTTP/2 connection.
//
// What stays Connect's: the interceptors, the call's signal and deadline
// (runUnaryCall), the request headers (grpc-timeout, te, user agent), and
// the reading of the answer's status (validateResponse, validateTrailer), so
// a caller sees the same messages, errors, codes and metadata either way.
// Uncompressed only: no grpc-encoding is sent or accepted.

import type * as http2 from "node:http2";
import { create, isMessage, toBinary, type DescMessage, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type ContextValues,
  type Interceptor,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createMethodUrl, runUnaryCall } from "@connectrpc/connect/protocol";
import { requestHeader, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import { IngestLogsRequestSchema, type IngestLogsRequest } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { decodeUnary, envelope } from "./host/grpc_wire.ts";
import { ingestLogsRequestEnvelope } from "./log_frame_wire.ts";

export interface DroverTransportOptions {
  /** Base URL of a Drover gRPC port (h2c or TLS). */
  baseUrl: string;
  interceptors?: Interceptor[];
  /** Options for the HTTP/2 session (noDelay, TLS). */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
  /** An existing session manager to share (its connection carries both kinds of call). */
  sessionManager?: Http2SessionManager;
}

const NGHTTP2_CANCEL = 8;

/**
 * Requests written by hand into their envelope rather than by protobuf-es:
 * those that carry the bulk of the bytes a client sends (Fleet forwarding
 * agents' log output). The same bytes, without protobuf-es's growing buffer
 * and two copies; see lib/log_frame_wire.ts.
 */
const handEncoded = new Map<string, (message: never) => Buffer>([
  [IngestLogsRequestSchema.typeName, (message: IngestLogsRequest) => ingestLogsRequestEnvelope(message)],
]);

/** A gRPC transport: unary calls on node:http2 directly, streams through connect-node. */
export function createDroverTransport(options: DroverTransportOptions): Transport {
  const manager = options.sessionManager ?? new Http2SessionManager(options.baseUrl, undefined, options.nodeOptions);
  const streams = createGrpcTransport({ baseUrl: options.baseUrl, interceptors: options.interceptors, sessionManager: manager, acceptCompression: [] });
  const interceptors = options.interceptors ?? [];
  const pathOf = new Map<DescMethodUnary, { url: string; path: string }>();
  const route = (method: DescMethodUnary) => {
    let r = pathOf.get(method);
    if (!r) {
      const url = createMethodUrl(options.baseUrl, method);
      pathOf.set(method, (r = { url, path: new URL(url).pathname }));
    }
    return r;
  };

  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      message: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const { url, path } = route(method as unknown as DescMethodUnary);
      timeoutMs = timeoutMs !== undefined && timeoutMs <= 0 ? undefined : timeoutMs;
      return runUnaryCall<I, O>({
        interceptors,
        signal,
        timeoutMs,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: "POST",
          url,
          header: requestHeader(true, timeoutMs, header),
          contextValues: contextValues ?? createContextValues(),
          message,
        },
        next: (req) => call(manager, path, req),
      });
    },
    stream: (...args) => streams.stream(...args),
  };
}

/** One unary call on the wire: the request's envelope out, the answer's headers, envelope and trailers in. */
async function call<I extends DescMessage, O extends DescMessage>(manager: Http2SessionManager, path: string, req: UnaryRequest<I, O>): Promise<UnaryResponse<I, O>> {
  const input = req.method.input;
  const request = isMessage(req.message, input) ? req.message : create(input, req.message as MessageInitShape<I>);
  const encode = handEncoded.get(input.typeName) as ((message: typeof request) => Buffer) | undefined;
  const frame = encode ? encode(request) : envelope(toBinary(input, request));
  const headers: http2.OutgoingHttpHeaders = {};
  req.header.forEach((value, name) => (headers[name] = value));

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
    req.signal.addEventListener("abort", onAbort);
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
      req.signal.removeEventListener("abort", onAbort);
      reject(streamError(err, stream.rstCode));
    });
    stream.on("close", () => {
      req.signal.removeEventListener("abort", onAbort);
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
