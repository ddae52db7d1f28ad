// FollowLogsResponses with their lines written here, in LogLine's wire
// format, rather than by protobuf-es.
//
// A follow sends one LogLine per line of output: at 10 MiB/s of 100-byte
// lines that is 100 000 messages a second. In the Log service's profile
// while followed, protobuf-es building and encoding them (reflective, every
// int64 through a BigInt) took ~4.4 s of ~19 s busy, second only to gzip.
// encodedResponse() writes the same bytes with a few arithmetic steps per
// field (strings that repeat on every line, like the attempt and job ids,
// are encoded once), and the response carries them as an unknown field
// numbered like FollowLogsResponse.lines, which protobuf-es writes verbatim:
// on the wire they are the response's `lines`, and any client decodes them so.
//
// Binary codecs only: the JSON codec skips unknown fields, so follow.ts sends
// plain messages to a client that asked for JSON.

import { WireType } from "@bufbuild/protobuf/wire";
import type { FollowLogsResponse, LogLine } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { delimitedFieldSize, int64Size, ProtoWriter, stringFieldSize, timestampSize, varintSize } from "../../lib/proto_writer.ts";

/** LogLine's fields as this file writes them: number, name (log_service.proto). A test holds it to the generated schema. */
export const LOG_LINE_FIELDS: ReadonlyArray<readonly [number, string]> = [
  [1, "attempt_id"],
  [2, "job_id"],
  [3, "stage_name"],
  [4, "command_index"],
  [5, "stream"],
  [6, "offset"],
  [7, "time"],
  [8, "data"],
  [9, "partial"],
  [10, "marker"],
  [11, "replica_id"],
  [12, "replica_slot"],
  [13, "revision"],
];

/** FollowLogsResponse.lines. */
const LINES_FIELD = 1;
// Its tag is one byte.
const LINES_TAG_SIZE = 1;

/**
 * Whether a request's content type names a binary codec ("application/grpc",
 * "application/grpc-web+proto", "application/connect+proto"; the JSON ones
 * end in "json"). None (a call made in the same process, not through a
 * codec): false, the response objects are read as they are.
 */
export function isBinaryContentType(contentType: string | null): boolean {
  return contentType !== null && !contentType.includes("json");
}

/** A FollowLogsResponse carrying `lines` already encoded, for a binary codec; see the top of this file. */
export function encodedResponse(lines: readonly LogLine[]): FollowLogsResponse {
  if (lines.length === 0) return { $typeName: "drover.log.v1.FollowLogsResponse", lines: [] };
  const sizes = lines.map(lineSize);
  let total = 0;
  for (const size of sizes) total += LINES_TAG_SIZE + varintSize(size) + size;
  const w = new ProtoWriter(Buffer.allocUnsafe(total - LINES_TAG_SIZE));
  lines.forEach((line, i) => {
    if (i > 0) w.tag(LINES_FIELD, WireType.LengthDelimited);
    w.varint(sizes[i]!);
    writeLine(w, line);
  });
  // One unknown field holds them all: protobuf-es writes its tag, then its
  // data as it is, which here is the first line (length first, as a
  // length-delimited field's data always is) and then each further line
  // with its own tag. Written one field per line, protobuf-es's writer cost
  // 3 µs a line again.
  return { $typeName: "drover.log.v1.FollowLogsResponse", lines: [], $unknown: [{ no: LINES_FIELD, wireType: WireType.LengthDelimited, data: w.buf }] };
}

/** The bytes of one LogLine, as protobuf would encode it (for tests). */
export function encodeLogLine(line: LogLine): Uint8Array {
  const w = new ProtoWriter(Buffer.allocUnsafe(lineSize(line)));
  writeLine(w, line);
  return w.buf;
}

// Fields at their default value are left out, as proto3 does; time is a message (present or not).
function lineSize(l: LogLine): number {
  let n = stringSize(l.attemptId) + stringSize(l.jobId) + stringSize(l.stageName);
  if (l.commandIndex !== 0) n += 1 + varintSize(l.commandIndex);
  if (l.stream !== 0) n += 1 + varintSize(l.stream);
  if (l.offset !== 0n) n += 1 + int64Size(l.offset);
  if (l.time) n += delimitedFieldSize(7, timestampSize(l.time));
  if (l.data.length > 0) n += 1 + varintSize(l.data.length) + l.data.length;
  if (l.partial) n += 2;
  n += stringSize(l.marker) + stringSize(l.replicaId) + stringSize(l.replicaSlot);
  if (l.revision !== 0) n += 1 + varintSize(l.revision);
  return n;
}

function writeLine(w: ProtoWriter, l: LogLine): void {
  w.string(1, l.attemptId);
  w.string(2, l.jobId);
  w.string(3, l.stageName);
  if (l.commandIndex !== 0) w.tag(4, WireType.Varint).varint(l.commandIndex);
  if (l.stream !== 0) w.tag(5, WireType.Varint).varint(l.stream);
  if (l.offset !== 0n) w.tag(6, WireType.Varint).int64(l.offset);
  if (l.time) w.timestamp(7, l.time);
  if (l.data.length > 0) w.tag(8, WireType.LengthDelimited).varint(l.data.length).bytes(l.data);
  if (l.partial) w.tag(9, WireType.Varint).varint(1);
  w.string(10, l.marker);
  w.string(11, l.replicaId);
  w.string(12, l.replicaSlot);
  if (l.revision !== 0) w.tag(13, WireType.Varint).varint(l.revision);
}

function stringSize(s: string): number {
  return stringFieldSize(1, s); // LogLine's string fields all have one-byte tags
}
