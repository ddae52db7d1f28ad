import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { ConnectRequestSchema, ConnectResponseSchema } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { encodedBefore, encodeOnce } from "./encode_once.ts";

describe("encodeOnce", () => {
  const message = () => create(ConnectResponseSchema, { messageId: "m-1", message: { case: "assignment", value: { attemptId: "at-1", jobId: "j-1" } } });

  it("encodes as toBinary does, once: the second call returns the same bytes", () => {
    const m = message();
    const first = encodeOnce(ConnectResponseSchema, m);
    assert.deepEqual(first, toBinary(ConnectResponseSchema, m));
    assert.equal(encodeOnce(ConnectResponseSchema, m), first);
    assert.equal(encodedBefore(ConnectResponseSchema, m), first);
  });

  it("knows nothing of a message it did not encode, nor of another schema's encoding", () => {
    const m = message();
    assert.equal(encodedBefore(ConnectResponseSchema, m), undefined);
    encodeOnce(ConnectResponseSchema, m);
    assert.equal(encodedBefore(ConnectRequestSchema, m), undefined);
    assert.equal(encodedBefore(ConnectResponseSchema, message()), undefined, "an equal message is another message");
  });
});
