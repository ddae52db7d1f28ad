import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { WireType } from "@bufbuild/protobuf/wire";

import { ConnectRequestSchema, LogFrameSchema, LogStream } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { IngestLogsRequestSchema, type IngestLogsRequest } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { envelope } from "./host/grpc_wire.ts";
import { CONNECT_REQUEST_LOG_FRAME_FIELD, connectRequestEnvelope, INGEST_LOGS_REQUEST_FIELDS, ingestLogsRequestEnvelope, LOG_FRAME_FIELDS } from "./log_frame_wire.ts";

const enc = (s: string) => new TextEncoder().encode(s);

const full = create(LogFrameSchema, {
  attemptId: "0b7c6a1e-5d1f-4c8e-9a57-3f1d2c4b5a69",
  commandIndex: 300,
  stream: LogStream.STDERR,
  offset: 2n ** 40n + 7n,
  data: enc("line one\nline ü ✓\n"),
  time: timestampFromMs(1_764_000_000_123),
  sourceLength: 129n,
  final: true,
});

const cases: Array<[string, IngestLogsRequest]> = [
  ["one frame with every field set", create(IngestLogsRequestSchema, { agentId: "agent-1", frames: [full] })],
  ["frames at their defaults, and an empty request", create(IngestLogsRequestSchema, { agentId: "", frames: [create(LogFrameSchema, {})] })],
  ["no frames", create(IngestLogsRequestSchema, { agentId: "agent-ü" })],
  [
    "many frames, a time before 1970, offsets past 2^53 and 2^63, an unknown enum value",
    create(IngestLogsRequestSchema, {
      agentId: "a".repeat(64),
      frames: [
        create(LogFrameSchema, { attemptId: "a", stream: LogStream.STDOUT, offset: 2n ** 63n + 5n, time: timestampFromMs(-1_500), data: new Uint8Array(70_000).fill(0x61) }),
        create(LogFrameSchema, { attemptId: "a", stream: 99 as LogStream, offset: 2n ** 53n + 1n, time: { seconds: 5n, nanos: 0 } }),
        create(LogFrameSchema, { attemptId: "b", stream: -3 as LogStream, sourceLength: 2n ** 64n - 1n, final: true }),
        full,
      ],
    }),
  ],
];

// What a newer agent may send: fields this Fleet does not know, on the frame, its time and the request.
const fromNewer = (() => {
  const frame = create(LogFrameSchema, { attemptId: "a", stream: LogStream.STDOUT, offset: 10n, data: enc("x\n"), time: timestampFromMs(5) });
  frame.$unknown = [{ no: 40, wireType: WireType.LengthDelimited, data: Uint8Array.from([3, 0x61, 0x62, 0x63]) }];
  frame.time!.$unknown = [{ no: 9, wireType: WireType.Varint, data: Uint8Array.from([0x96, 0x01]) }];
  const req = create(IngestLogsRequestSchema, { agentId: "agent-1", frames: [frame, full] });
  req.$unknown = [{ no: 2000, wireType: WireType.Bit32, data: Uint8Array.from([1, 2, 3, 4]) }];
  return req;
})();

describe("log_frame_wire: an agent's ConnectRequest with a LogFrame, encoded without protobuf-es", () => {
  const frames = [...cases, ["from a newer agent", fromNewer] as [string, IngestLogsRequest]].flatMap(([name, req]) => req.frames.map((f, i) => [`${name}, frame ${i}`, f] as const));
  for (const [name, frame] of frames) {
    it(`writes the envelope protobuf-es and envelope() write: ${name}`, () => {
      const req = create(ConnectRequestSchema, { message: { case: "logFrame", value: frame } });
      assert.deepEqual(connectRequestEnvelope(req), envelope(toBinary(ConnectRequestSchema, req)));
    });
  }

  it("keeps the request's own unknown fields", () => {
    const req = create(ConnectRequestSchema, { message: { case: "logFrame", value: full } });
    req.$unknown = [{ no: 99, wireType: WireType.Varint, data: Uint8Array.from([7]) }];
    assert.deepEqual(connectRequestEnvelope(req), envelope(toBinary(ConnectRequestSchema, req)));
  });

  it("leaves the other kinds of request to protobuf-es", () => {
    assert.equal(connectRequestEnvelope(create(ConnectRequestSchema, { message: { case: "heartbeat", value: {} } })), undefined);
    assert.equal(connectRequestEnvelope(create(ConnectRequestSchema, {})), undefined);
  });

  it("knows ConnectRequest.log_frame by number and name", () => {
    const field = ConnectRequestSchema.fields.find((f) => f.number === CONNECT_REQUEST_LOG_FRAME_FIELD[0]);
    assert.equal(field?.name, CONNECT_REQUEST_LOG_FRAME_FIELD[1]);
  });
});

describe("log_frame_wire: IngestLogsRequest encoded without protobuf-es", () => {
  for (const [name, req] of [...cases, ["unknown fields of a newer agent, kept", fromNewer] as [string, IngestLogsRequest]]) {
    it(`writes the envelope protobuf-es and envelope() write: ${name}`, () => {
      const mine = ingestLogsRequestEnvelope(req);
      assert.deepEqual(mine, envelope(toBinary(IngestLogsRequestSchema, req)));
      const back = fromBinary(IngestLogsRequestSchema, mine.subarray(5));
      assert.equal(back.frames.length, req.frames.length);
      assert.deepEqual(Buffer.from(toBinary(IngestLogsRequestSchema, back)), mine.subarray(5));
    });
  }

  it("copies a frame's data out of the buffer it came in (the caller may reuse that buffer)", () => {
    const data = enc("abc\n");
    const out = ingestLogsRequestEnvelope(create(IngestLogsRequestSchema, { agentId: "a", frames: [create(LogFrameSchema, { attemptId: "x", data })] }));
    data.fill(0);
    assert.equal(Buffer.from(fromBinary(IngestLogsRequestSchema, out.subarray(5)).frames[0]!.data).toString("utf8"), "abc\n");
  });

  it("knows every field of IngestLogsRequest and LogFrame, by number and name (a new field must be added to log_frame_wire.ts)", () => {
    const fields = (schema: typeof LogFrameSchema | typeof IngestLogsRequestSchema) =>
      schema.fields.map((f) => [f.number, f.name]).sort((a, b) => (a[0] as number) - (b[0] as number));
    assert.deepEqual(fields(IngestLogsRequestSchema), INGEST_LOGS_REQUEST_FIELDS.map(([n, name]) => [n, name]));
    assert.deepEqual(fields(LogFrameSchema), LOG_FRAME_FIELDS.map(([n, name]) => [n, name]));
  });
});
