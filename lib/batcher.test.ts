import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Batcher } from "./batcher.ts";

describe("Batcher", () => {
  it("runs items added in one turn of the event loop as one batch, each caller getting its own result", async () => {
    const batches: number[][] = [];
    const b = new Batcher<number, number>(async (items) => {
      batches.push(items);
      return items.map((i) => i * 10);
    }, { maxSize: 100 });
    const results = await Promise.all([1, 2, 3].map((i) => b.add(i)));
    assert.deepEqual(results, [10, 20, 30]);
    assert.deepEqual(batches, [[1, 2, 3]]);
  });

  it("never puts more than maxSize items in a batch", async () => {
    const sizes: number[] = [];
    const b = new Batcher<number, number>(async (items) => {
      sizes.push(items.length);
      return items;
    }, { maxSize: 4 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => b.add(i)));
    assert.ok(sizes.every((s) => s <= 4), `sizes ${sizes}`);
    assert.equal(sizes.reduce((a, s) => a + s, 0), 10);
  });

  it("gathers items that arrive while a batch runs into the next batch", async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new Batcher<number, number>(async (items) => {
      batches.push(items);
      if (batches.length === 1) await gate;
      return items;
    }, { maxSize: 100, concurrency: 1 });
    const first = b.add(0);
    await new Promise((r) => setImmediate(r));
    const rest = [1, 2, 3].map((i) => b.add(i));
    release();
    await Promise.all([first, ...rest]);
    assert.deepEqual(batches, [[0], [1, 2, 3]]);
  });

  it("fails every item of a batch whose run throws, and keeps serving later ones", async () => {
    let fail = true;
    const b = new Batcher<number, number>(async (items) => {
      if (fail) throw new Error("database down");
      return items;
    }, { maxSize: 10 });
    const failed = await Promise.allSettled([b.add(1), b.add(2)]);
    assert.deepEqual(failed.map((r) => r.status), ["rejected", "rejected"]);
    fail = false;
    assert.equal(await b.add(3), 3);
  });

  it("rejects a batch whose runner returns the wrong number of results", async () => {
    const b = new Batcher<number, number>(async () => [], { maxSize: 10 });
    await assert.rejects(b.add(1), /returned 0 results/);
  });
});
