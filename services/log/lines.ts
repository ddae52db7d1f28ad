// Stored output is bytes in chunks; readers want lines. A LineSplitter takes
// one stream's chunks in offset order and cuts them into lines at "\n",
// carrying an unfinished line over to the next chunk so that a line stored
// across two chunks still comes out as one. Each line keeps the time of the
// frame that held its first byte, so lines of different streams can be
// merged the way a terminal showed them.
//
// Offsets: a line's offset is its chunk's start_offset plus the index of its
// first byte in the chunk's data. Redaction can make data shorter than the
// stream bytes it covers, so inside a redacted chunk offsets are close, not
// exact; they still increase and never reach the chunk's end_offset, which
// is all a cursor needs.

import type { StreamName } from "./types.ts";

/** Longest line piece; longer lines are cut, every piece but the last marked partial. */
export const MAX_LINE_BYTES = 64 * 1024;

const NEWLINE = 0x0a;

/** What the splitter needs of a stored chunk (or of a piece just ingested). */
export interface ChunkInput {
  startOffset: bigint;
  /** Where the chunk ends in the stream (covers startOffset + data, or more after redaction). */
  endOffset: bigint;
  data: Uint8Array;
  commandIndex: number;
  /** [offset within data, epoch ms] per frame, in order. */
  times: ReadonlyArray<readonly [number, number]>;
}

/** One line of one stream, before it is named for a response. */
export interface Line {
  stream: StreamName;
  offset: bigint;
  /** Epoch ms of the frame holding the first byte. */
  timeMs: number;
  data: Uint8Array;
  partial: boolean;
  commandIndex: number;
  /** Set on lines the Log service writes itself ("truncated"). */
  marker?: string;
}

/** The time of the frame holding byte `index` of a chunk: the last frame starting at or before it. */
export function timeAt(times: ReadonlyArray<readonly [number, number]>, index: number, fallback = 0): number {
  if (times.length === 0) return fallback;
  let lo = 0;
  let hi = times.length - 1;
  if (times[0]![0] > index) return times[0]![1];
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid]![0] <= index) lo = mid;
    else hi = mid - 1;
  }
  return times[lo]![1];
}

/** The chunk from data index `from` on (and before `to`), its times moved to match. */
export function sliceChunk(chunk: ChunkInput, from: number, to = chunk.data.length): ChunkInput {
  from = Math.max(0, Math.min(from, chunk.data.length));
  to = Math.max(from, Math.min(to, chunk.data.length));
  if (from === 0 && to === chunk.data.length) return chunk;
  const times: Array<[number, number]> = [];
  for (const [pos, ms] of chunk.times) {
    if (pos >= to) break;
    if (pos <= from) times[0] = [0, ms];
    else times.push([pos - from, ms]);
  }
  return {
    startOffset: chunk.startOffset + BigInt(from),
    endOffset: to === chunk.data.length ? chunk.endOffset : chunk.startOffset + BigInt(to),
    data: chunk.data.subarray(from, to),
    commandIndex: chunk.commandIndex,
    times,
  };
}

interface Carry {
  offset: bigint;
  timeMs: number;
  commandIndex: number;
  parts: Uint8Array[];
  length: number;
}

/**
 * Cuts one stream's chunks into lines. push() returns the lines a chunk
 * completes and keeps the unfinished rest; flush() hands the rest out when
 * the caller knows no more is coming for now.
 */
export class LineSplitter {
  private carry: Carry | undefined;
  // Where the last pushed chunk ended: a chunk starting elsewhere is not a continuation.
  private expected: bigint | undefined;

  constructor(readonly stream: StreamName) {}

  /** Where the unfinished line starts, if one is held. */
  get pendingOffset(): bigint | undefined {
    return this.carry?.offset;
  }

  /** The lines this chunk completes (long lines cut at MAX_LINE_BYTES). */
  push(chunk: ChunkInput): Line[] {
    const out: Line[] = [];
    // A gap, or the next command's output, ends the held line: it will not go on.
    if (this.carry && (this.expected !== chunk.startOffset || this.carry.commandIndex !== chunk.commandIndex)) {
      out.push(this.take(false));
    }
    this.expected = chunk.endOffset;
    const { data } = chunk;
    let start = 0;
    while (start < data.length) {
      const nl = data.indexOf(NEWLINE, start);
      const end = nl === -1 ? data.length : nl + 1;
      this.append(chunk, start, end, out);
      if (nl !== -1) out.push(this.take(false));
      start = end;
    }
    return out;
  }

  /** The held unfinished line, if any, marked partial when the stream may continue. */
  flush(mayContinue: boolean): Line[] {
    return this.carry ? [this.take(mayContinue)] : [];
  }

  // Adds data[start, end) to the held line, cutting full MAX_LINE_BYTES pieces off as partial lines.
  private append(chunk: ChunkInput, start: number, end: number, out: Line[]): void {
    while (start < end) {
      if (!this.carry) {
        this.carry = {
          offset: chunk.startOffset + BigInt(start),
          timeMs: timeAt(chunk.times, start),
          commandIndex: chunk.commandIndex,
          parts: [],
          length: 0,
        };
      }
      const room = MAX_LINE_BYTES - this.carry.length;
      const take = Math.min(room, end - start);
      this.carry.parts.push(chunk.data.subarray(start, start + take));
      this.carry.length += take;
      start += take;
      // A full piece with more of the line to come is cut here.
      if (this.carry.length === MAX_LINE_BYTES && (start < end || chunk.data[start - 1] !== NEWLINE)) {
        if (chunk.data[start - 1] === NEWLINE) break;
        out.push(this.take(true));
      }
    }
  }

  private take(partial: boolean): Line {
    const c = this.carry!;
    this.carry = undefined;
    const data = c.parts.length === 1 ? c.parts[0]! : concat(c.parts, c.length);
    return { stream: this.stream, offset: c.offset, timeMs: c.timeMs, data, partial, commandIndex: c.commandIndex };
  }
}

/** Splits one chunk on its own: its unfinished end comes out as a partial line when mayContinue. */
export function splitChunk(stream: StreamName, chunk: ChunkInput, mayContinue: boolean): Line[] {
  const splitter = new LineSplitter(stream);
  return [...splitter.push(chunk), ...splitter.flush(mayContinue)];
}

function concat(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
