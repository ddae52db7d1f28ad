// A prepared statement's run on PGlite, written and read by hand. PGlite's
// execProtocol copies every chunk the backend writes, parses it into message
// objects (a fresh ArrayBuffer for each message, and another for each field
// it decodes), and parseResults then builds each row from those: in dev mode
// at full throughput that was ~8 % of the process's time. Here a statement's
// output is copied once into one buffer, and each DataRow's fields are
// decoded from it in place by the column's own parser (the same parsers
// PGlite's rows get). Its Bind is written the same way, in one buffer sized
// first, rather than by PGlite's serializer (which measures each string in
// a JavaScript loop and copies the parameters twice).

/** A statement's columns, from its RowDescription: names, and how each column's text becomes a value. */
export interface Columns {
  readonly names: readonly string[];
  readonly typeIds: readonly number[];
  readonly parsers: readonly (((text: string, typeId: number) => unknown) | undefined)[];
}

/** Column parsers by type oid, as PGlite keeps them (`PGlite#parsers`). */
export type Parsers = Record<number, ((text: string, typeId: number) => unknown) | undefined>;

/** The Columns of a RowDescription's fields, parsed as PGlite would (an unknown type stays text). */
export function columnsOf(fields: readonly { name: string; dataTypeID: number }[], parsers: Parsers): Columns {
  return {
    names: fields.map((f) => f.name),
    typeIds: fields.map((f) => f.dataTypeID),
    parsers: fields.map((f) => parsers[f.dataTypeID]),
  };
}

/** One statement's output as the backend writes it: chunks of protocol messages, copied into one growing buffer. */
export class WireOutput {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private length = 0;

  /** Takes a chunk (a view of the wasm heap, valid only during the call); returns how much was taken, as PGlite's onRawData expects. */
  readonly push = (chunk: Uint8Array): number => {
    const needed = this.length + chunk.length;
    if (needed > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length = needed;
    return chunk.length;
  };

  /** The bytes taken so far. */
  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** Empties it for the next statement; a buffer grown by a large result is let go. */
  reset(): void {
    this.length = 0;
    if (this.buffer.length > 1024 * 1024) this.buffer = Buffer.allocUnsafe(64 * 1024);
  }
}

/** What readRows found: the rows, or that the backend reported an error (which the caller turns into PGlite's own DatabaseError). */
export type ReadResult = { rows: Record<string, unknown>[]; error: false } | { rows: undefined; error: true };

const DATA_ROW = 0x44; // 'D'
const ERROR_RESPONSE = 0x45; // 'E'

/**
 * Reads the rows of one statement's output (Bind, Execute, Sync answered:
 * BindComplete, DataRows, CommandComplete, ReadyForQuery; notices and
 * anything else are passed over). `columns` is undefined for a statement
 * that returns no rows.
 */
export function readRows(wire: Buffer, columns: Columns | undefined): ReadResult {
  const rows: Record<string, unknown>[] = [];
  let at = 0;
  while (at + 5 <= wire.length) {
    const type = wire[at]!;
    const end = at + 1 + wire.readInt32BE(at + 1);
    if (end > wire.length) throw new Error(`PGlite's output ends inside a message (type ${String.fromCharCode(type)})`);
    if (type === ERROR_RESPONSE) return { rows: undefined, error: true };
    if (type === DATA_ROW) {
      if (!columns) throw new Error("PGlite returned a row for a statement described as returning none");
      rows.push(readRow(wire, at + 5, columns));
    }
    at = end;
  }
  return { rows, error: false };
}

function readRow(wire: Buffer, at: number, columns: Columns): Record<string, unknown> {
  const count = wire.readInt16BE(at);
  at += 2;
  const row: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) {
    const length = wire.readInt32BE(at);
    at += 4;
    if (length < 0) {
      row[columns.names[i]!] = null;
      continue;
    }
    const text = wire.toString("utf8", at, at + length);
    at += length;
    const parse = columns.parsers[i];
    row[columns.names[i]!] = parse ? parse(text, columns.typeIds[i]!) : text;
  }
  return row;
}

const EXECUTE_SYNC = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0x53, 0, 0, 0, 4]); // Execute (unnamed portal, every row), Sync

/**
 * Bind (unnamed portal, `statement`, `values` as text, null as SQL NULL,
 * results as text), Execute and Sync: what PGlite's serialize.bind,
 * serialize.execute and serialize.sync give for text values, in one buffer.
 */
export function bindExecuteSync(statement: string, values: readonly (string | null)[]): Buffer {
  const nameBytes = Buffer.byteLength(statement);
  let valueBytes = 0;
  for (const v of values) valueBytes += 4 + (v === null ? 0 : Buffer.byteLength(v));
  const bindLength = 4 + 1 + nameBytes + 1 + 2 + 2 + valueBytes + 2;
  const out = Buffer.allocUnsafe(1 + bindLength + EXECUTE_SYNC.length);
  let at = out.writeUInt8(0x42, 0); // 'B'
  at = out.writeInt32BE(bindLength, at);
  at = out.writeUInt8(0, at); // the unnamed portal
  at += out.write(statement, at);
  at = out.writeUInt8(0, at);
  at = out.writeInt16BE(0, at); // no parameter format codes: every parameter is text
  at = out.writeInt16BE(values.length, at);
  for (const v of values) {
    if (v === null) {
      at = out.writeInt32BE(-1, at);
    } else {
      const length = out.write(v, at + 4);
      out.writeInt32BE(length, at);
      at += 4 + length;
    }
  }
  at = out.writeInt16BE(0, at); // no result format codes: every column is text
  EXECUTE_SYNC.copy(out, at);
  return out;
}
