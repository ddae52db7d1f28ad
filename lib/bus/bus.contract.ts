// What every Bus must do, as tests both implementations run (memory.test.ts,
// redis.test.ts). Each test gets a fresh bus from `make` and closes it however
// the test ends, and names its channels, streams and keys uniquely, so tests
// never see each other's traffic even when buses share a Redis.
//
// Durations are short (100–300 ms TTLs) to keep the suite fast, but every
// wait for something that should happen has a generous deadline, and every
// wait for something that should not happen follows a later event that did.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { BusClosedError, parseStreamId, type Bus, type MessageHandler } from "./bus.ts";

/** Registers the contract's tests for one implementation, under `name`. */
export function busContract(name: string, make: () => Promise<Bus>): void {
  // Runs fn with a fresh bus and closes it whatever fn does.
  async function withBus(fn: (bus: Bus) => Promise<void>): Promise<void> {
    const bus = await make();
    try {
      await fn(bus);
    } finally {
      await bus.close();
    }
  }

  describe(name, () => {
    describe("publish and subscribe", () => {
      it("a message published on a channel reaches every subscriber", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const first = inbox();
          const second = inbox();
          await bus.subscribe(channel, first.handler);
          await bus.subscribe(channel, second.handler);

          await bus.publish(channel, text("hello"));

          assert.equal(str(await first.next()), "hello");
          assert.equal(str(await second.next()), "hello");
        }));

      it("a message published on one channel does not reach subscribers of another", () =>
        withBus(async (bus) => {
          const [one, other] = [unique("channel"), unique("channel")];
          const onOne = inbox();
          const onOther = inbox();
          await bus.subscribe(one, onOne.handler);
          await bus.subscribe(other, onOther.handler);

          await bus.publish(one, text("for one"));
          await bus.publish(other, text("for other"));

          assert.equal(str(await onOther.next()), "for other");
          assert.equal(str(await onOne.next()), "for one");
          await sleep(50);
          assert.deepEqual(onOne.received.map(str), ["for one"]);
          assert.deepEqual(onOther.received.map(str), ["for other"]);
        }));

      it("messages on a channel arrive in the order they were published", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const got = inbox();
          await bus.subscribe(channel, got.handler);

          for (let i = 0; i < 20; i++) await bus.publish(channel, text(`m${i}`));

          await got.waitFor(20);
          assert.deepEqual(got.received.map(str), Array.from({ length: 20 }, (_, i) => `m${i}`));
        }));

      it("publish returns before any handler runs", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const got = inbox();
          await bus.subscribe(channel, got.handler);

          const published = bus.publish(channel, text("later"));
          assert.equal(got.received.length, 0, "a handler ran inside publish");
          await published;

          assert.equal(str(await got.next()), "later");
        }));

      it("unsubscribe stops delivery", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const leaving = inbox();
          const staying = inbox();
          const unsubscribe = await bus.subscribe(channel, leaving.handler);
          await bus.subscribe(channel, staying.handler);

          await unsubscribe();
          await unsubscribe(); // a second call is harmless
          await bus.publish(channel, text("after"));

          assert.equal(str(await staying.next()), "after");
          await sleep(50);
          assert.equal(leaving.received.length, 0);
        }));

      it("a handler is not called once its unsubscribe has been called", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const leaving = inbox();
          const staying = inbox();
          const unsubscribe = await bus.subscribe(channel, leaving.handler);
          await bus.subscribe(channel, staying.handler);

          // Published first, but not yet delivered when unsubscribe is called.
          const published = bus.publish(channel, text("in flight"));
          const left = unsubscribe();
          await Promise.all([published, left]);

          assert.equal(str(await staying.next()), "in flight");
          await sleep(50);
          assert.equal(leaving.received.length, 0);
        }));

      it("a channel whose last subscriber left can be subscribed to again", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const before = inbox();
          await (await bus.subscribe(channel, before.handler))();
          const again = inbox();
          await bus.subscribe(channel, again.handler);

          await bus.publish(channel, text("back"));

          assert.equal(str(await again.next()), "back");
          assert.equal(before.received.length, 0);
        }));

      it("a handler that throws does not stop delivery to other subscribers", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const got = inbox();
          await bus.subscribe(channel, () => {
            throw new Error("handler failure the bus must contain");
          });
          await bus.subscribe(channel, got.handler);

          await bus.publish(channel, text("one"));
          await bus.publish(channel, text("two"));

          await got.waitFor(2);
          assert.deepEqual(got.received.map(str), ["one", "two"]);
        }));

      it("binary payloads roundtrip through publish unchanged", () =>
        withBus(async (bus) => {
          const channel = unique("channel");
          const got = inbox();
          await bus.subscribe(channel, got.handler);

          for (const payload of binaryPayloads()) await bus.publish(channel, payload);

          await got.waitFor(binaryPayloads().length);
          assert.deepEqual(got.received.map(bytes), binaryPayloads().map(bytes));
        }));
    });

    describe("streams", () => {
      it("entries come back in append order with increasing ids", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          const ids: string[] = [];
          for (let i = 0; i < 5; i++) ids.push(await bus.append(stream, text(`e${i}`), { maxLen: 100 }));

          const entries = await bus.read(stream, "0");

          assert.deepEqual(entries.map((e) => e.id), ids);
          assert.deepEqual(entries.map((e) => str(e.data)), ["e0", "e1", "e2", "e3", "e4"]);
          for (let i = 1; i < ids.length; i++) {
            assert.ok(compareIds(ids[i - 1]!, ids[i]!) < 0, `${ids[i - 1]} is not before ${ids[i]}`);
            assert.match(ids[i]!, /^\d+-\d+$/);
          }
        }));

      it("read after an id returns only later entries", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          await bus.append(stream, text("a"), { maxLen: 100 });
          const b = await bus.append(stream, text("b"), { maxLen: 100 });
          await bus.append(stream, text("c"), { maxLen: 100 });
          const d = await bus.append(stream, text("d"), { maxLen: 100 });

          assert.deepEqual((await bus.read(stream, b)).map((e) => str(e.data)), ["c", "d"]);
          assert.deepEqual(await bus.read(stream, d), []);
        }));

      it("count limits how many entries a read returns", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          for (const s of ["a", "b", "c", "d"]) await bus.append(stream, text(s), { maxLen: 100 });

          const firstTwo = await bus.read(stream, "0", { count: 2 });
          const rest = await bus.read(stream, firstTwo.at(-1)!.id, { count: 10 });

          assert.deepEqual(firstTwo.map((e) => str(e.data)), ["a", "b"]);
          assert.deepEqual(rest.map((e) => str(e.data)), ["c", "d"]);
        }));

      it("a read of a stream that does not exist returns no entries", () =>
        withBus(async (bus) => {
          assert.deepEqual(await bus.read(unique("stream"), "0"), []);
        }));

      it("a blocked read returns the entry appended while it waits", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          const first = await bus.append(stream, text("before"), { maxLen: 100 });

          const reading = bus.read(stream, first, { blockMs: 5_000 });
          await sleep(50);
          const started = Date.now();
          const id = await bus.append(stream, text("while waiting"), { maxLen: 100 });
          const entries = await reading;

          assert.deepEqual(entries.map((e) => [e.id, str(e.data)]), [[id, "while waiting"]]);
          assert.ok(Date.now() - started < 2_000, "the read waited for its timeout instead of the entry");
        }));

      it("a blocked read returns no entries when nothing arrives in time", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          const started = Date.now();

          const entries = await bus.read(stream, "$", { blockMs: 150 });

          assert.deepEqual(entries, []);
          assert.ok(Date.now() - started >= 120, `returned after ${Date.now() - started} ms, before blockMs`);
        }));

      it("a blocked read returns at once when entries are already there", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          await bus.append(stream, text("ready"), { maxLen: 100 });
          const started = Date.now();

          const entries = await bus.read(stream, "0", { blockMs: 5_000 });

          assert.deepEqual(entries.map((e) => str(e.data)), ["ready"]);
          assert.ok(Date.now() - started < 1_000);
        }));

      it("reading from $ skips entries appended before the read", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          await bus.append(stream, text("old"), { maxLen: 100 });

          assert.deepEqual(await bus.read(stream, "$"), []);
          const reading = bus.read(stream, "$", { blockMs: 5_000 });
          await sleep(50);
          await bus.append(stream, text("new"), { maxLen: 100 });

          assert.deepEqual((await reading).map((e) => str(e.data)), ["new"]);
        }));

      it("a stream keeps at most about maxLen entries", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          const maxLen = 10;
          const ids: string[] = [];
          for (let i = 0; i < 250; i++) ids.push(await bus.append(stream, text(`e${i}`), { maxLen }));

          const kept = await bus.read(stream, "0");

          // Redis trims whole radix-tree nodes (stream-node-max-entries,
          // 100 by default), so it may keep up to one node more than asked.
          assert.ok(kept.length >= maxLen, `kept ${kept.length}, fewer than maxLen`);
          assert.ok(kept.length <= maxLen + 100, `kept ${kept.length}, far more than maxLen`);
          assert.equal(kept.at(-1)!.id, ids.at(-1), "the newest entry was dropped");
          assert.notEqual(kept[0]!.id, ids[0], "the oldest entry was kept");
          assert.deepEqual(kept.map((e) => e.id), ids.slice(-kept.length), "kept entries are not the newest ones");
        }));

      it("binary payloads roundtrip through streams unchanged", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          for (const payload of binaryPayloads()) await bus.append(stream, payload, { maxLen: 100 });

          const entries = await bus.read(stream, "0");

          assert.deepEqual(entries.map((e) => bytes(e.data)), binaryPayloads().map(bytes));
        }));

      it("abort ends a blocked read", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          const controller = new AbortController();
          const started = Date.now();

          const reading = bus.read(stream, "$", { blockMs: 5_000, signal: controller.signal });
          await sleep(50);
          controller.abort();

          await assert.rejects(reading, { name: "AbortError" });
          assert.ok(Date.now() - started < 2_000, "the read ran on after abort");
        }));

      it("a bus keeps serving blocked reads after one was aborted", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          const controller = new AbortController();
          const aborted = bus.read(stream, "$", { blockMs: 5_000, signal: controller.signal });
          await sleep(50);
          controller.abort();
          await assert.rejects(aborted, { name: "AbortError" });

          const reading = bus.read(stream, "$", { blockMs: 5_000 });
          await sleep(50);
          await bus.append(stream, text("still here"), { maxLen: 100 });

          assert.deepEqual((await reading).map((e) => str(e.data)), ["still here"]);
        }));

      it("a read with an already aborted signal is refused at once", () =>
        withBus(async (bus) => {
          const stream = unique("stream");
          await bus.append(stream, text("present"), { maxLen: 100 });
          const reason = new Error("gave up before asking");

          await assert.rejects(bus.read(stream, "0", { blockMs: 5_000, signal: AbortSignal.abort(reason) }), reason);
        }));

      it("a read after an id that is not a stream id is refused", () =>
        withBus(async (bus) => {
          await assert.rejects(bus.read(unique("stream"), "yesterday"), RangeError);
        }));
    });

    describe("locks", () => {
      it("a lock is held by one owner until it expires", () =>
        withBus(async (bus) => {
          const name = unique("lock");
          const first = await bus.tryLock(name, 200);
          assert.ok(first, "a free lock was refused");

          assert.equal(await bus.tryLock(name, 200), null, "a held lock was granted twice");
          await sleep(300);
          const second = await bus.tryLock(name, 200);

          assert.ok(second, "an expired lock was not granted");
          assert.notEqual(second.token, first.token);
          await second.release();
        }));

      it("a released lock can be taken again at once", () =>
        withBus(async (bus) => {
          const name = unique("lock");
          const lock = await bus.tryLock(name, 10_000);
          assert.ok(lock);

          await lock.release();

          const again = await bus.tryLock(name, 10_000);
          assert.ok(again, "a released lock was refused");
          await again.release();
        }));

      it("extend keeps a lock past its original TTL", () =>
        withBus(async (bus) => {
          const name = unique("lock");
          const lock = await bus.tryLock(name, 150);
          assert.ok(lock);

          assert.equal(await lock.extend(1_000), true);
          await sleep(250);

          assert.equal(await bus.tryLock(name, 1_000), null, "the lock expired despite extend");
          await lock.release();
        }));

      it("an expired lock cannot be extended or released by its former owner", () =>
        withBus(async (bus) => {
          const name = unique("lock");
          const former = await bus.tryLock(name, 100);
          assert.ok(former);
          await sleep(200);
          const current = await bus.tryLock(name, 10_000);
          assert.ok(current, "an expired lock was not granted");

          assert.equal(await former.extend(10_000), false);
          await former.release();

          assert.equal(await bus.tryLock(name, 10_000), null, "the former owner freed the current owner's lock");
          assert.equal(await current.extend(10_000), true);
          await current.release();
        }));

      it("extending an expired lock that nobody took reports it lost", () =>
        withBus(async (bus) => {
          const lock = await bus.tryLock(unique("lock"), 100);
          assert.ok(lock);
          await sleep(200);

          assert.equal(await lock.extend(1_000), false);
        }));
    });

    describe("presence", () => {
      it("a presence key reads back its value until deleted", () =>
        withBus(async (bus) => {
          const key = unique("agent");
          await bus.setPresence(key, "process-1", 10_000);

          assert.equal(await bus.getPresence(key), "process-1");
          await bus.deletePresence(key);
          assert.equal(await bus.getPresence(key), null);
          await bus.deletePresence(key); // deleting again is harmless
        }));

      it("an expired presence key reads as absent", () =>
        withBus(async (bus) => {
          const prefix = unique("agents") + ":";
          const key = `${prefix}a`;
          await bus.setPresence(key, "here", 100);
          assert.equal(await bus.getPresence(key), "here");

          await sleep(200);

          assert.equal(await bus.getPresence(key), null);
          assert.equal((await bus.listPresence(prefix)).size, 0, "an expired key was listed");
        }));

      it("setting presence again replaces its value and restarts its TTL", () =>
        withBus(async (bus) => {
          const key = unique("agent");
          await bus.setPresence(key, "first", 150);
          await sleep(100);
          await bus.setPresence(key, "second", 300);
          await sleep(100);

          assert.equal(await bus.getPresence(key), "second", "the refreshed key expired on its first TTL");
          await bus.deletePresence(key);
        }));

      it("listPresence returns every live key with the prefix and no other", () =>
        withBus(async (bus) => {
          const prefix = unique("agents") + ":";
          const sibling = prefix.slice(0, -1) + "x"; // shares all but the last character
          await bus.setPresence(`${prefix}a`, "1", 10_000);
          await bus.setPresence(`${prefix}b`, "2", 10_000);
          await bus.setPresence(`${sibling}c`, "3", 10_000);

          const listed = await bus.listPresence(prefix);

          assert.deepEqual(
            [...listed].sort(),
            [
              [`${prefix}a`, "1"],
              [`${prefix}b`, "2"],
            ],
          );
          for (const key of [`${prefix}a`, `${prefix}b`, `${sibling}c`]) await bus.deletePresence(key);
        }));

      it("listPresence treats pattern characters in the prefix literally", () =>
        withBus(async (bus) => {
          const base = unique("agents");
          const prefix = `${base}:*[a]?\\`;
          await bus.setPresence(`${prefix}1`, "literal", 10_000);
          await bus.setPresence(`${base}:xa!\\2`, "would match as a pattern", 10_000);

          const listed = await bus.listPresence(prefix);

          assert.deepEqual([...listed], [[`${prefix}1`, "literal"]]);
          await bus.deletePresence(`${prefix}1`);
          await bus.deletePresence(`${base}:xa!\\2`);
        }));

      it("listPresence finds every key when there are many", () =>
        withBus(async (bus) => {
          const prefix = unique("agents") + ":";
          const keys = Array.from({ length: 300 }, (_, i) => `${prefix}${i}`);
          await Promise.all(keys.map((k) => bus.setPresence(k, k, 10_000)));

          const listed = await bus.listPresence(prefix);

          assert.equal(listed.size, keys.length);
          assert.ok(keys.every((k) => listed.get(k) === k));
          await Promise.all(keys.map((k) => bus.deletePresence(k)));
        }));

      it("a presence set holds each member until its own mark lapses", () =>
        withBus(async (bus) => {
          const key = unique("followers");
          const other = unique("followers");
          assert.deepEqual(await bus.getPresenceMembers([key]), [[]], "a set never marked");
          await bus.setPresenceMember(key, "replica-a", 150);
          await bus.setPresenceMember(key, "replica-b", 10_000);
          await bus.setPresenceMember(other, "replica-c", 10_000);
          const [members, others, none] = await bus.getPresenceMembers([key, other, unique("followers")]);
          assert.deepEqual(members!.sort(), ["replica-a", "replica-b"]);
          assert.deepEqual(others, ["replica-c"]);
          assert.deepEqual(none, []);
          assert.deepEqual(await bus.getPresenceMembers([]), []);

          await sleep(250);

          assert.deepEqual(await bus.getPresenceMembers([key, other]), [["replica-b"], ["replica-c"]], "replica-a's mark lapsed, the others did not");
        }));

      it("marking a member again restarts its TTL, and the set lapses with its last member", () =>
        withBus(async (bus) => {
          const key = unique("followers");
          await bus.setPresenceMember(key, "replica-a", 200);
          await sleep(120);
          await bus.setPresenceMember(key, "replica-a", 200);
          await sleep(120);
          assert.deepEqual(await bus.getPresenceMembers([key]), [["replica-a"]], "the refreshed mark lapsed on its first TTL");

          await sleep(150);

          assert.deepEqual(await bus.getPresenceMembers([key]), [[]]);
          assert.equal(await bus.getPresence(key), null, "a presence set is not a presence key");
        }));
    });

    describe("close", () => {
      it("close is idempotent", async () => {
        const bus = await make();
        try {
          await bus.setPresence(unique("agent"), "x", 1_000);
        } finally {
          await bus.close();
        }
        await bus.close();
        await Promise.all([bus.close(), bus.close()]);
      });

      it("every operation after close is refused with BusClosedError", async () => {
        const bus = await make();
        await bus.close();

        const refused = [
          bus.publish("c", text("x")),
          bus.subscribe("c", () => {}),
          bus.append("s", text("x"), { maxLen: 1 }),
          bus.read("s", "0"),
          bus.tryLock("l", 1_000),
          bus.setPresence("p", "x", 1_000),
          bus.getPresence("p"),
          bus.deletePresence("p"),
          bus.listPresence("p"),
          bus.setPresenceMember("p", "m", 1_000),
          bus.getPresenceMembers(["p"]),
        ];
        for (const operation of refused) await assert.rejects(operation, BusClosedError);
      });

      it("close ends a blocked read", async () => {
        const bus = await make();
        const started = Date.now();
        const reading = bus.read(unique("stream"), "$", { blockMs: 5_000 });
        // Handled from the start: the read may reject while close() is still
        // running, before anything else would be awaiting it.
        const refused = assert.rejects(reading, BusClosedError);
        try {
          await sleep(50);
        } finally {
          await bus.close();
        }

        await refused;
        assert.ok(Date.now() - started < 2_000, "the read ran on after close");
      });

      it("a lock held at close cannot be used afterwards", async () => {
        const bus = await make();
        const lock = await bus.tryLock(unique("lock"), 200).finally(() => bus.close());
        assert.ok(lock);

        await assert.rejects(lock.extend(1_000), BusClosedError);
        await assert.rejects(lock.release(), BusClosedError);
      });
    });
  });
}

// Unique per test and per run, so parallel runs on one Redis never meet.
function unique(kind: string): string {
  return `${kind}-${randomUUID()}`;
}

// Collects what a subscriber receives, and waits for it with a deadline so a
// lost message fails the test instead of hanging it.
function inbox(timeoutMs = 2_000) {
  const received: Uint8Array[] = [];
  let taken = 0;
  let wake: (() => void) | undefined;
  const handler: MessageHandler = (message) => {
    received.push(message);
    wake?.();
  };
  async function waitFor(count: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (received.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`expected ${count} messages within ${timeoutMs} ms, got ${received.length}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }
  // The next message not yet taken.
  async function next(): Promise<Uint8Array> {
    await waitFor(taken + 1);
    return received[taken++]!;
  }
  return { handler, received, waitFor, next };
}

function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function str(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

// Buffers and plain Uint8Arrays differ to deepEqual; their bytes do not.
function bytes(data: Uint8Array): number[] {
  return Array.from(data);
}

// Every byte value, invalid UTF-8, an empty payload, and a view into the
// middle of a larger buffer (which must send only its own bytes).
function binaryPayloads(): Uint8Array[] {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  return [all, Uint8Array.of(0xff, 0xfe, 0x00, 0xc3), new Uint8Array(0), all.subarray(10, 20)];
}

function compareIds(a: string, b: string): number {
  const [am, as] = parseStreamId(a);
  const [bm, bs] = parseStreamId(b);
  return am - bm || as - bs;
}
