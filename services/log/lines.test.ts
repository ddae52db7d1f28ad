import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { LineSplitter, MAX_LINE_BYTES, sliceChunk, splitChunk, timeAt, type ChunkInput } from "./lines.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function chunk(start: number, text: string, times: Array<[number, number]> = [[0, 1000]], commandIndex = 0): ChunkInput {
  const data = enc(text);
  return { startOffset: BigInt(start), endOffset: BigInt(start + data.length), data, commandIndex, times };
}

describe("LineSplitter", () => {
  it("cuts at newlines and gives each line the time of the frame holding its first byte", () => {
    // Frames: "a\nb" at 1000, "b\nc\n" at 2000 (starting at index 3).
    const lines = splitChunk("stdout", chunk(10, "a\nbbb\nc\n", [[0, 1000], [3, 2000]]), true);
    assert.deepEqual(
      lines.map((l) => [dec(l.data), l.offset, l.timeMs, l.partial]),
      [
        ["a\n", 10n, 1000, false],
        ["bbb\n", 12n, 1000, false],
        ["c\n", 16n, 2000, false],
      ],
    );
  });

  it("marks trailing bytes without a newline partial only when the stream may continue", () => {
    assert.equal(splitChunk("stdout", chunk(0, "x\ny"), true).at(-1)!.partial, true);
    assert.equal(splitChunk("stdout", chunk(0, "x\ny"), false).at(-1)!.partial, false);
  });

  it("joins a line that spans two chunks into one", () => {
    const s = new LineSplitter("stderr");
    assert.deepEqual(s.push(chunk(0, "hel", [[0, 5]])), []);
    assert.equal(s.pendingOffset, 0n);
    const lines = s.push(chunk(3, "lo\nnext", [[0, 9]]));
    assert.deepEqual(lines.map((l) => [dec(l.data), l.offset, l.timeMs]), [["hello\n", 0n, 5]]);
    assert.deepEqual(s.flush(true).map((l) => [dec(l.data), l.offset, l.partial]), [["next", 6n, true]]);
  });

  it("does not join across a gap or across commands", () => {
    const s = new LineSplitter("stdout");
    s.push(chunk(0, "abc"));
    const gap = s.push(chunk(10, "def\n"));
    assert.deepEqual(gap.map((l) => [dec(l.data), l.partial]), [["abc", false], ["def\n", false]]);
    s.push(chunk(14, "one", [[0, 1]], 0));
    const next = s.push(chunk(17, "two\n", [[0, 1]], 1));
    assert.deepEqual(next.map((l) => [dec(l.data), l.commandIndex]), [["one", 0], ["two\n", 1]]);
  });

  it("cuts lines longer than 64 KiB, every piece but the last partial", () => {
    const long = "x".repeat(MAX_LINE_BYTES * 2 + 5) + "\n";
    const lines = splitChunk("stdout", chunk(0, long), true);
    assert.deepEqual(
      lines.map((l) => [l.data.length, l.offset, l.partial]),
      [
        [MAX_LINE_BYTES, 0n, true],
        [MAX_LINE_BYTES, BigInt(MAX_LINE_BYTES), true],
        [6, BigInt(2 * MAX_LINE_BYTES), false],
      ],
    );
  });

  it("keeps a line of exactly 64 KiB including its newline whole", () => {
    const lines = splitChunk("stdout", chunk(0, "y".repeat(MAX_LINE_BYTES - 1) + "\n"), true);
    assert.deepEqual(lines.map((l) => [l.data.length, l.partial]), [[MAX_LINE_BYTES, false]]);
  });
});

describe("timeAt and sliceChunk", () => {
  it("finds the frame holding a byte", () => {
    const times: Array<[number, number]> = [[0, 1], [5, 2], [9, 3]];
    assert.deepEqual([0, 4, 5, 8, 9, 100].map((i) => timeAt(times, i)), [1, 1, 2, 2, 3, 3]);
  });

  it("slices a chunk and moves its times", () => {
    const c = sliceChunk(chunk(100, "0123456789", [[0, 1], [5, 2]]), 3, 8);
    assert.equal(dec(c.data), "34567");
    assert.equal(c.startOffset, 103n);
    assert.equal(c.endOffset, 108n);
    assert.deepEqual(c.times, [[0, 1], [2, 2]]);
  });
});
