// What the raw gRPC paths share: the 5-byte envelope (flags, big-endian
// length) around a message, a unary call's one envelope read back, headers
// as node:http2 gives them, and the node stream's listeners. The server's
// calls (grpc_stream.ts, grpc_unary.ts) hang on their stream under one
// symbol, and the listeners are module functions that find the call there,
// so no closures are made per call.

import type * as http2 from "node:http2";
import { fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

export const FRAME_HEADER = 5;

/** `body` in an uncompressed gRPC envelope. */
export function envelope(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, FRAME_HEADER);
  return frame;
}

/**
 * A unary call's one message (`side`: the request or the answer), undefined
 * when there is none; throws the ConnectError Connect's gRPC protocol gives
 * for an incomplete, extra, compressed or undecodable one.
 */
export function decodeUnary<T extends DescMessage>(schema: T, data: Buffer, side: "input" | "output"): MessageShape<T> | undefined {
  if (data.length === 0) return undefined;
  if (data.length < FRAME_HEADER) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  const end = FRAME_HEADER + data.readUInt32BE(1);
  if (data.length < end) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  if (data.length > end) throw new ConnectError(`protocol error: received extra ${side} message for unary method`, Code.Unimplemented);
  return decodeEnvelope(schema, data.subarray(0, end));
}

/** The message in one whole envelope; throws the ConnectError Connect gives for a compressed or undecodable one. */
export function decodeEnvelope<T extends DescMessage>(schema: T, frame: Buffer): MessageShape<T> {
  if ((frame[0]! & 1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  try {
    return fromBinary(schema, frame.subarray(FRAME_HEADER));
  } catch (err) {
    throw new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
  }
}

/** A stream's DATA as it comes, taken out one gRPC envelope at a time. */
export class EnvelopeBuffer {
  private chunks: Buffer[] = [];
  /** Bytes held. */
  buffered = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** Header plus payload of the next envelope, once its 5-byte header is here. */
  frameSize(): number | undefined {
    if (this.buffered < FRAME_HEADER) return undefined;
    if (this.chunks[0]!.length < FRAME_HEADER) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return FRAME_HEADER + this.chunks[0]!.readUInt32BE(1);
  }

  /** Takes the first `size` bytes held (a view when they lie in one chunk). */
  consume(size: number): Buffer {
    if (this.chunks[0]!.length < size) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    const first = this.chunks[0]!;
    const taken = first.subarray(0, size);
    if (first.length === size) this.chunks.shift();
    else this.chunks[0] = first.subarray(size);
    this.buffered -= size;
    return taken;
  }

  clear(): void {
    this.chunks = [];
    this.buffered = 0;
  }
}

/** A header as one string (repeated ones joined), as Headers.get() gives it. */
export function headerValue(headers: http2.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/** What a server-side raw call handles of its node stream's events. */
export interface StreamEvents {
  received(chunk: Buffer): void;
  /** The client closed its side (END_STREAM). */
  inputDone(): void;
  drained(): void;
  sendTrailers(): void;
  /** The stream is gone, however. */
  closed(): void;
  failed(err: unknown): void;
}

const kCall = Symbol("drover.rawGrpcCall");
type CallStream = http2.ServerHttp2Stream & { [kCall]: StreamEvents };

/** Hangs `call` on `stream` and lets it hear the stream's events. */
export function listen(stream: http2.ServerHttp2Stream, call: StreamEvents): void {
  (stream as CallStream)[kCall] = call;
  stream.on("data", onData);
  stream.on("end", onEnd);
  stream.on("drain", onDrain);
  stream.on("wantTrailers", onWantTrailers);
  stream.on("close", onClose);
  stream.on("error", onError);
}

function onData(this: CallStream, chunk: Buffer): void {
  this[kCall].received(chunk);
}
function onEnd(this: CallStream): void {
  this[kCall].inputDone();
}
function onDrain(this: CallStream): void {
  this[kCall].drained();
}
function onWantTrailers(this: CallStream): void {
  this[kCall].sendTrailers();
}
function onClose(this: CallStream): void {
  this[kCall].closed();
}
function onError(this: CallStream, err: unknown): void {
  this[kCall].failed(err);
}
