// The bus contract against a real Redis, plus what only a shared server can
// show: buses in different processes meeting, and connections really closed.
//
// Redis is REDIS_URL or 127.0.0.1:6379. Without it these tests skip on a
// laptop and fail in CI (see lib/testing/services.ts).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { after, describe, it } from "node:test";
import { Redis } from "ioredis";
import { requireRedis } from "../testing/services.ts";
import { BusClosedError } from "./bus.ts";
import { busContract } from "./bus.contract.ts";
import { createRedisBus } from "./redis.ts";

const url = await requireRedis();

if (url === null) {
  it("the Redis bus passes the bus contract", (t) => requireRedis(t).then(() => {}));
} else {
  // Everything this run writes lives under one random prefix, removed at the end.
  const runPrefix = `drover-test:${randomUUID()}:`;
  const admin = new Redis(url);

  after(async () => {
    try {
      const stream = admin.scanStream({ match: `${runPrefix}*`, count: 500 });
      for await (const keys of stream as AsyncIterable<string[]>) {
        if (keys.length > 0) await admin.unlink(...keys);
      }
    } finally {
      await admin.quit();
    }
  });

  busContract("the Redis bus", async () => createRedisBus({ url, keyPrefix: runPrefix }));

  describe("the Redis bus, between processes", () => {
    it("two buses on one prefix share channels, streams, locks and presence", async () => {
      const here = createRedisBus({ url, keyPrefix: runPrefix });
      const there = createRedisBus({ url, keyPrefix: runPrefix });
      try {
        const received: string[] = [];
        await there.subscribe("routing", (m) => received.push(Buffer.from(m).toString()));
        await here.publish("routing", Buffer.from("to whoever holds it"));

        const id = await here.append("logs", Buffer.from("line"), { maxLen: 10 });
        assert.deepEqual((await there.read("logs", "0")).map((e) => e.id), [id]);

        const lock = await here.tryLock("leader", 10_000);
        assert.ok(lock);
        assert.equal(await there.tryLock("leader", 10_000), null, "another process took a held lock");
        await lock.release();

        await here.setPresence("agent:1", "process-a", 10_000);
        assert.equal(await there.getPresence("agent:1"), "process-a");
        assert.deepEqual([...(await there.listPresence("agent:"))], [["agent:1", "process-a"]]);

        await waitUntil(() => received.length > 0, "the message never crossed between buses");
        assert.deepEqual(received, ["to whoever holds it"]);
      } finally {
        await Promise.all([here.close(), there.close()]);
      }
    });

    it("buses with different prefixes do not see each other", async () => {
      const blue = createRedisBus({ url, keyPrefix: `${runPrefix}blue:` });
      const green = createRedisBus({ url, keyPrefix: `${runPrefix}green:` });
      try {
        const greenHeard: Uint8Array[] = [];
        const blueHeard: Uint8Array[] = [];
        await green.subscribe("routing", (m) => greenHeard.push(m));
        await blue.subscribe("routing", (m) => blueHeard.push(m));

        await blue.setPresence("agent:1", "blue", 10_000);
        await blue.append("logs", Buffer.from("blue"), { maxLen: 10 });
        const lock = await blue.tryLock("leader", 10_000);
        await blue.publish("routing", Buffer.from("blue"));

        assert.equal(await green.getPresence("agent:1"), null);
        assert.equal((await green.listPresence("")).size, 0);
        assert.deepEqual(await green.read("logs", "0"), []);
        const greenLock = await green.tryLock("leader", 10_000);
        assert.ok(lock && greenLock, "one prefix's lock blocked another's");
        await waitUntil(() => blueHeard.length > 0, "blue never heard its own message");
        assert.equal(greenHeard.length, 0);
      } finally {
        await Promise.all([blue.close(), green.close()]);
      }
    });

    it("abort leaves no blocked connection on the server", async () => {
      const keyPrefix = `${runPrefix}abort-${randomUUID()}:`;
      const bus = createRedisBus({ url, keyPrefix });
      try {
        const controller = new AbortController();
        const reading = bus.read("logs", "$", { blockMs: 10_000, signal: controller.signal });
        await waitUntil(
          async () => (await clientsNamed(keyPrefix)).some((c) => c.flags.includes("b")),
          "the read never blocked on the server",
        );

        controller.abort();
        await assert.rejects(reading, { name: "AbortError" });

        await waitUntil(
          async () => !(await clientsNamed(keyPrefix)).some((c) => c.flags.includes("b")),
          "a blocked connection outlived its aborted read",
        );
      } finally {
        await bus.close();
      }
    });

    it("close leaves no connection to Redis open", async () => {
      const keyPrefix = `${runPrefix}close-${randomUUID()}:`;
      const bus = createRedisBus({ url, keyPrefix });
      let reading: Promise<unknown> | undefined;
      try {
        await bus.subscribe("routing", () => {});
        // Two blocked reads, then one: a blocking connection idle in the
        // pool and one blocked at close, beside commands and subscriber.
        const both = [bus.read("logs", "$", { blockMs: 10_000 }), bus.read("logs", "$", { blockMs: 10_000 })];
        await waitUntil(async () => (await clientsNamed(keyPrefix)).length === 4, "the reads never blocked");
        await bus.append("logs", Buffer.from("x"), { maxLen: 10 });
        await Promise.all(both);
        reading = bus.read("logs", "$", { blockMs: 10_000 }).catch((err: unknown) => err);
        await waitUntil(
          async () => (await clientsNamed(keyPrefix)).filter((c) => c.flags.includes("b")).length === 1,
          "the last read never blocked",
        );
        assert.equal((await clientsNamed(keyPrefix)).length, 4);
      } finally {
        await bus.close();
      }

      assert.ok((await reading) instanceof BusClosedError);
      await waitUntil(async () => (await clientsNamed(keyPrefix)).length === 0, "a connection outlived close");
    });

    it("a bus reconnects and resubscribes after Redis drops its connections", async () => {
      const keyPrefix = `${runPrefix}dropped-${randomUUID()}:`;
      const bus = createRedisBus({ url, keyPrefix });
      try {
        const received: string[] = [];
        await bus.subscribe("routing", (m) => received.push(Buffer.from(m).toString()));
        await bus.setPresence("agent:1", "before", 10_000);
        const before = await clientsNamed(keyPrefix);
        assert.ok(before.length >= 2);

        for (const c of before) await admin.client("KILL", "ID", c.id);

        assert.equal(await bus.getPresence("agent:1"), "before");
        // The resubscription lands at an unknown moment; publish until heard.
        await waitUntil(async () => {
          await bus.publish("routing", Buffer.from("after"));
          return received.includes("after");
        }, "the subscription did not survive a dropped connection");
      } finally {
        await bus.close();
      }
    });
  });

  // The server's view of this run's connections: the bus names each one
  // after its key prefix.
  async function clientsNamed(prefix: string): Promise<{ id: string; name: string; flags: string }[]> {
    const list = (await admin.client("LIST")) as string;
    return list
      .split("\n")
      .filter(Boolean)
      .map((line) => Object.fromEntries(line.split(" ").map((field) => field.split("=", 2) as [string, string])))
      .filter((c) => c.name?.startsWith(prefix))
      .map((c) => ({ id: c.id!, name: c.name!, flags: c.flags ?? "" }));
  }
}

// Polls until check holds, failing with why after two seconds.
async function waitUntil(check: () => boolean | Promise<boolean>, why: string): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(why);
    await sleep(20);
  }
}
