import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { MessageQueue } from "./message_queue.ts";

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

describe("MessageQueue", () => {
  it("yields what was pushed, in order, and ends after close()", async () => {
    const queue = new MessageQueue<number>();
    queue.push(1);
    queue.push(2);
    const collected = collect(queue);
    queue.push(3);
    queue.close();
    assert.deepEqual(await collected, [1, 2, 3]);
  });

  it("waits for a push when it is empty", async () => {
    const queue = new MessageQueue<string>();
    const iterator = queue[Symbol.asyncIterator]();
    const next = iterator.next();
    let settled = false;
    void next.then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(settled, false, "nothing to yield yet");
    queue.push("hello");
    assert.deepEqual(await next, { value: "hello", done: false });
  });

  it("delivers what was pushed before close(error), then throws the error", async () => {
    const queue = new MessageQueue<number>();
    const failure = new Error("stream broken");
    queue.push(1);
    queue.close(failure);
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const item of queue) seen.push(item);
    }, failure);
    assert.deepEqual(seen, [1]);
  });

  it("refuses pushes after close()", async () => {
    const queue = new MessageQueue<number>();
    queue.close();
    assert.equal(queue.push(1), false);
    assert.deepEqual(await collect(queue), []);
  });

  it("closes itself and drops what is queued when the consumer stops early", async () => {
    const queue = new MessageQueue<number>();
    queue.push(1);
    queue.push(2);
    for await (const item of queue) {
      assert.equal(item, 1);
      break;
    }
    assert.equal(queue.isClosed, true);
    assert.equal(queue.size, 0);
    assert.equal(queue.push(3), false);
  });

  it("can be iterated only once", async () => {
    const queue = new MessageQueue<number>();
    queue.close();
    await collect(queue);
    await assert.rejects(collect(queue), /only once/);
  });
});
