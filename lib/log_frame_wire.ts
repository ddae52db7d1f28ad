// The messages that carry agents' log output, written by hand straight into
// their gRPC envelope: an agent's ConnectRequest with a LogFrame (up to
// 256 KiB of output each), and Fleet's IngestLogsRequest.
//
// For each of them protobuf-es's writer grew its buffer by doubling (a
// 256 KiB frame: a zero-filled 512 KiB allocation), copied the result out,
// and the envelope copied it again. In Fleet's profile during bench/logs's
// ingestion those copies and allocations took ~1.1 s of 8.9 s busy, in the
// agent's ~1 s of 6.1 s, with more in the garbage collector that freed
// them. Here a message is sized first and written once into a buffer that
// starts with the envelope's 5 bytes.
//
// The bytes are protobuf-es's own (fields by number, proto3 defaults left
// out, unknown fields last, so a frame from a newer agent keeps what this
// Fleet does not know); log_frame_wire.test.ts compares them byte for byte.

import { WireType } from "@bufbuild/protobuf/wire";
import type { ConnectRequest, LogFrame } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { IngestLogsRequest } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { FRAME_HEADER } from "./host/grpc_wire.ts";
import { delimitedFieldSize, int32Size, int64Size, ProtoWriter, stringFieldSize, timestampSize, unknownSize, varintSize } from "./proto_writer.ts";

/** ConnectRequest.log_frame. */
const CONNECT_REQUEST_LOG_FRAME = 6;

/** The fields written here, number and name; a test holds them to the generated schemas. */
export const CONNECT_REQUEST_LOG_FRAME_FIELD: readonly [number, string] = [CONNECT_REQUEST_LOG_FRAME, "log_frame"];
export const INGEST_LOGS_REQUEST_FIELDS: ReadonlyArray<readonly [number, string]> = [
  [1, "agent_id"],
  [2, "frames"],
];
export const LOG_FRAME_FIELDS: ReadonlyArray<readonly [number, string]> = [
  [1, "attempt_id"],
  [2, "command_index"],
  [3, "stream"],
  [4, "offset"],
  [5, "data"],
  [6, "time"],
  [7, "source_length"],
  [8, "final"],
];

/**
 * An agent's ConnectRequest carrying a LogFrame, in an uncompressed gRPC
 * envelope: the bytes `envelope(toBinary(ConnectRequestSchema, req))` gives.
 * Undefined for the other kinds of request (protobuf-es writes those).
 */
export function connectRequestEnvelope(req: ConnectRequest): Buffer | undefined {
  if (req.message.case !== "logFrame") return undefined;
  const frame = req.message.value;
  const inner = frameSize(frame);
  const size = delimitedFieldSize(CONNECT_REQUEST_LOG_FRAME, inner) + unknownSize(req.$unknown);
  const w = envelopeWriter(size);
  w.tag(CONNECT_REQUEST_LOG_FRAME, WireType.LengthDelimited).varint(inner);
  writeFrame(w, frame);
  w.unknown(req.$unknown);
  return written(w, "connectRequestEnvelope");
}

/** The request in an uncompressed gRPC envelope: the bytes `envelope(toBinary(IngestLogsRequestSchema, req))` gives. */
export function ingestLogsRequestEnvelope(req: IngestLogsRequest): Buffer {
  const sizes = req.frames.map(frameSize);
  let size = stringFieldSize(1, req.agentId) + unknownSize(req.$unknown);
  for (const s of sizes) size += delimitedFieldSize(2, s);
  const w = envelopeWriter(size);
  w.string(1, req.agentId);
  req.frames.forEach((frame, i) => {
    w.tag(2, WireType.LengthDelimited).varint(sizes[i]!);
    writeFrame(w, frame);
  });
  w.unknown(req.$unknown);
  return written(w, "ingestLogsRequestEnvelope");
}

/** A writer over a new envelope for a message of `size` bytes, past the envelope's header. */
function envelopeWriter(size: number): ProtoWriter {
  const buf = Buffer.allocUnsafe(FRAME_HEADER + size);
  buf[0] = 0;
  buf.writeUInt32BE(size, 1);
  return new ProtoWriter(buf, FRAME_HEADER);
}

/** The envelope, once all of it is written (a mismatch would be a bug here: it would corrupt the stream). */
function written(w: ProtoWriter, what: string): Buffer {
  if (w.pos !== w.buf.length) throw new Error(`${what}: sized ${w.buf.length} bytes, wrote ${w.pos}`);
  return w.buf;
}

function frameSize(f: LogFrame): number {
  let n = stringFieldSize(1, f.attemptId);
  if (f.commandIndex !== 0) n += 1 + varintSize(f.commandIndex);
  if (f.stream !== 0) n += 1 + int32Size(f.stream);
  if (f.offset !== 0n) n += 1 + int64Size(f.offset);
  if (f.data.length > 0) n += delimitedFieldSize(5, f.data.length);
  if (f.time) n += delimitedFieldSize(6, timestampSize(f.time));
  if (f.sourceLength !== 0n) n += 1 + int64Size(f.sourceLength);
  if (f.final) n += 2;
  return n + unknownSize(f.$unknown);
}

function writeFrame(w: ProtoWriter, f: LogFrame): void {
  w.string(1, f.attemptId);
  if (f.commandIndex !== 0) w.tag(2, WireType.Varint).varint(f.commandIndex);
  if (f.stream !== 0) w.tag(3, WireType.Varint).int32(f.stream);
  if (f.offset !== 0n) w.tag(4, WireType.Varint).int64(f.offset);
  if (f.data.length > 0) w.tag(5, WireType.LengthDelimited).varint(f.data.length).bytes(f.data);
  if (f.time) w.timestamp(6, f.time);
  if (f.sourceLength !== 0n) w.tag(7, WireType.Varint).int64(f.sourceLength);
  if (f.final) w.tag(8, WireType.Varint).varint(1);
  w.unknown(f.$unknown);
}
