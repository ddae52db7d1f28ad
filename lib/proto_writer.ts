// Protobuf's wire format written by hand, for the few messages that carry
// the bulk of Drover's bytes (log lines and log frames), where protobuf-es's
// reflective writer costs more than the bytes: it grows its buffer by
// doubling (each step a fresh zero-filled allocation and a copy), then copies
// the result out, and the caller copies it once more into a gRPC envelope.
// Here the caller sizes the message first (the *Size helpers), allocates
// once, and writes each field in place; data is copied exactly once.
//
// The encoders built on this must write the bytes protobuf-es writes
// (fields by number, defaults left out as proto3 does, unknown fields last);
// their tests compare the two byte for byte.

import { WireType } from "@bufbuild/protobuf/wire";

/** An unknown field as protobuf-es keeps it on a message ($unknown). */
export interface UnknownField {
  no: number;
  wireType: WireType;
  data: Uint8Array;
}

// Strings whose bytes are kept (ids repeat on every line of an attempt); past this many the cache starts over.
const MAX_CACHED_STRINGS = 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const utf8Cache = new Map<string, Buffer>();

/** The UTF-8 bytes of s, cached (the strings written here are mostly ids that repeat). */
export function utf8(s: string): Buffer {
  let b = utf8Cache.get(s);
  if (!b) {
    if (utf8Cache.size >= MAX_CACHED_STRINGS) utf8Cache.clear();
    b = Buffer.from(s, "utf8");
    utf8Cache.set(s, b);
  }
  return b;
}

/** Bytes of a varint of a non-negative safe integer. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Bytes of a tag (field number and wire type). */
export function tagSize(field: number): number {
  return varintSize(field << 3);
}

/** Bytes of an int64 or uint64 varint (a negative int64 takes ten). */
export function int64Size(v: bigint): number {
  if (v >= 0n && v <= MAX_SAFE) return varintSize(Number(v));
  let u = BigInt.asUintN(64, v);
  let size = 1;
  while (u >= 128n) {
    u >>= 7n;
    size++;
  }
  return size;
}

/** Bytes of an int32 or enum varint: a negative one is sign-extended to ten bytes, as protobuf does. */
export function int32Size(n: number): number {
  return n < 0 ? 10 : varintSize(n);
}

/** Bytes of a string field (tag, length, UTF-8), 0 for "" (proto3 leaves it out). */
export function stringFieldSize(field: number, s: string): number {
  if (s === "") return 0;
  const n = utf8(s).length;
  return tagSize(field) + varintSize(n) + n;
}

/** Bytes of a length-delimited field whose content is `length` bytes. */
export function delimitedFieldSize(field: number, length: number): number {
  return tagSize(field) + varintSize(length) + length;
}

/** A google.protobuf.Timestamp as protobuf-es holds it. */
export interface Timestamp {
  seconds: bigint;
  nanos: number;
  $unknown?: UnknownField[];
}

/** Bytes of a Timestamp's content (seconds, nanos, unknown fields). */
export function timestampSize(t: Timestamp): number {
  return (t.seconds !== 0n ? 1 + int64Size(t.seconds) : 0) + (t.nanos !== 0 ? 1 + int32Size(t.nanos) : 0) + unknownSize(t.$unknown);
}

/** Bytes of unknown fields as protobuf-es writes them (tag, then the kept data). */
export function unknownSize(unknown: readonly UnknownField[] | undefined): number {
  if (!unknown) return 0;
  let n = 0;
  for (const u of unknown) n += tagSize(u.no) + u.data.length;
  return n;
}

/** Writes into a buffer already sized for what is written. */
export class ProtoWriter {
  pos: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  tag(field: number, type: WireType): this {
    return this.varint((field << 3) | type);
  }

  /** A varint of a non-negative safe integer. */
  varint(n: number): this {
    const buf = this.buf;
    while (n >= 128) {
      buf[this.pos++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    buf[this.pos++] = n;
    return this;
  }

  int64(v: bigint): this {
    if (v >= 0n && v <= MAX_SAFE) return this.varint(Number(v));
    let u = BigInt.asUintN(64, v);
    while (u >= 128n) {
      this.buf[this.pos++] = Number(u & 127n) | 128;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
    return this;
  }

  int32(n: number): this {
    return n < 0 ? this.int64(BigInt(n)) : this.varint(n);
  }

  bytes(data: Uint8Array): this {
    this.buf.set(data, this.pos);
    this.pos += data.length;
    return this;
  }

  /** A string field; nothing for "". */
  string(field: number, s: string): this {
    if (s === "") return this;
    const b = utf8(s);
    return this.tag(field, WireType.LengthDelimited).varint(b.length).bytes(b);
  }

  /** A Timestamp field (present: proto3 writes a set message field even when it is empty). */
  timestamp(field: number, t: Timestamp): this {
    this.tag(field, WireType.LengthDelimited).varint(timestampSize(t));
    if (t.seconds !== 0n) this.tag(1, WireType.Varint).int64(t.seconds);
    if (t.nanos !== 0) this.tag(2, WireType.Varint).int32(t.nanos);
    return this.unknown(t.$unknown);
  }

  unknown(unknown: readonly UnknownField[] | undefined): this {
    if (!unknown) return this;
    for (const u of unknown) this.tag(u.no, u.wireType).bytes(u.data);
    return this;
  }
}
