// A message that goes several ways is encoded once. Fleet stores each
// assignment in its outbox and writes it to the agent's stream (or publishes
// it on the bus for another replica): the same bytes each time. encodeOnce
// keeps the bytes beside the message (a WeakMap: they go when the message
// goes), and the stream writer (grpc_stream.ts) asks encodedBefore before
// encoding a response itself.
//
// The contract: a message given to encodeOnce is not changed afterwards.

import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

const encodings = new WeakMap<object, { schema: DescMessage; bytes: Uint8Array }>();

/** The message's binary encoding, made on the first call and kept for the next; the message must not change after. */
export function encodeOnce<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  const kept = encodings.get(message);
  if (kept?.schema === schema) return kept.bytes;
  const bytes = toBinary(schema, message);
  encodings.set(message, { schema, bytes });
  return bytes;
}

/** The bytes encodeOnce made for this message with this schema, if it did; never encodes. */
export function encodedBefore(schema: DescMessage, message: object): Uint8Array | undefined {
  const kept = encodings.get(message);
  return kept?.schema === schema ? kept.bytes : undefined;
}
