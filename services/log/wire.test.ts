import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

import { FollowLogsResponseSchema, LogLineSchema, Stream, type LogLine } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { encodedResponse, encodeLogLine, isBinaryContentType, LOG_LINE_FIELDS } from "./wire.ts";

const enc = (s: string) => new TextEncoder().encode(s);

const full = create(LogLineSchema, {
  attemptId: "0b7c6a1e-5d1f-4c8e-9a57-3f1d2c4b5a69",
  jobId: "job-ü-✓",
  stageName: "build",
  commandIndex: 300,
  stream: Stream.SYSTEM,
  offset: 2n ** 40n + 7n,
  time: timestampFromMs(1_764_000_000_123),
  data: enc("a line\n"),
  partial: true,
  marker: "truncated",
  replicaId: "replica-1",
  replicaSlot: "2",
  revision: 129,
});

const cases: Array<[string, LogLine]> = [
  ["every field set", full],
  ["every field at its default", create(LogLineSchema, {})],
  ["a time with only seconds, and an empty line", create(LogLineSchema, { attemptId: "a", time: { seconds: 5n, nanos: 0 }, data: new Uint8Array() })],
  ["a time before 1970", create(LogLineSchema, { attemptId: "a", time: timestampFromMs(-1_500) })],
  ["an offset past 2^53", create(LogLineSchema, { attemptId: "a", offset: 2n ** 63n + 5n })],
  ["data longer than 127 bytes (a two-byte length)", create(LogLineSchema, { data: new Uint8Array(70_000).fill(0x61) })],
];

describe("wire: LogLines encoded without protobuf-es", () => {
  for (const [name, line] of cases) {
    it(`writes the bytes protobuf-es writes: ${name}`, () => {
      assert.deepEqual(Buffer.from(encodeLogLine(line)), Buffer.from(toBinary(LogLineSchema, line)));
    });
  }

  it("sends a response whose lines any client decodes as the lines given, in order", () => {
    const lines = cases.map(([, l]) => l);
    const bytes = toBinary(FollowLogsResponseSchema, encodedResponse(lines));
    assert.deepEqual(Buffer.from(bytes), Buffer.from(toBinary(FollowLogsResponseSchema, create(FollowLogsResponseSchema, { lines }))));
    const back = fromBinary(FollowLogsResponseSchema, bytes);
    assert.equal(back.lines.length, lines.length);
    back.lines.forEach((l, i) => assert.ok(equals(LogLineSchema, l, lines[i]!), `line ${i} differs`));
  });

  it("sends an empty response as one without lines", () => {
    assert.equal(toBinary(FollowLogsResponseSchema, encodedResponse([])).length, 0);
  });

  it("knows every field of LogLine, by number and name (a new field must be added to wire.ts)", () => {
    assert.deepEqual(
      LogLineSchema.fields.map((f) => [f.number, f.name]).sort((a, b) => (a[0] as number) - (b[0] as number)),
      LOG_LINE_FIELDS.map(([n, name]) => [n, name]),
    );
    assert.equal(FollowLogsResponseSchema.fields.find((f) => f.name === "lines")?.number, 1);
  });

  it("encodes for binary codecs only: JSON clients and calls in the same process get plain messages", () => {
    for (const ct of ["application/grpc", "application/grpc+proto", "application/grpc-web+proto", "application/connect+proto"]) assert.equal(isBinaryContentType(ct), true, ct);
    for (const ct of ["application/grpc+json", "application/grpc-web+json", "application/connect+json", "application/json"]) assert.equal(isBinaryContentType(ct), false, ct);
    assert.equal(isBinaryContentType(null), false);
  });
});
