// The Scheduler's doorbells and its due poll: claimers waiting in
// ClaimPlaceableJobs are woken by a placeable doorbell at once, and without
// one, a waiting claimer is woken DUE_POLL_MS after the replica's last claim
// (jobs whose not_before passes come due silently), one claimer at a time.
// What goes on the bus is coalesced: one message for the rings and changes
// of a few milliseconds. A claim that found the queue drained lets the next
// long poll skip its look until a wake-up comes, and a job that ends with a
// follow-up wakes this replica's follow-up loop alone.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import type { Bus } from "../../lib/bus/bus.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { createLogger } from "../../lib/logger.ts";
import { CHANGES_COALESCE_MS, DUE_POLL_MS, PLACEABLE_COALESCE_MS, SchedulerSignals } from "./signals.ts";

/** Waits as a claimer does; resolves how long it waited (ms). */
async function wait(signals: SchedulerSignals, ms: number): Promise<number> {
  const t0 = performance.now();
  await signals.untilPlaceable(ms);
  return performance.now() - t0;
}

/** Collects the job ids of every job-changes doorbell on the bus, as Deploy's controller hears them. */
function listenForChanges(bus: Bus, into: string[][]) {
  return bus.subscribe("scheduler:job-changes", (bytes) => into.push(JSON.parse(new TextDecoder().decode(bytes)) as string[]));
}

describe("SchedulerSignals", () => {
  let bus: Bus;
  let signals: SchedulerSignals;

  beforeEach(async () => {
    bus = createMemoryBus();
    signals = new SchedulerSignals(bus, createLogger("silent"));
    await signals.start();
  });

  afterEach(async () => {
    await signals.stop();
  });

  it("wakes one waiting claimer at once on a placeable doorbell", async () => {
    signals.claiming(); // as a claim would: the due poll stays away for DUE_POLL_MS
    const woken: number[] = [];
    const waits = [0, 1].map((i) => wait(signals, 2_000).then((ms) => (woken.push(i), ms)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    signals.placeable();
    const first = await waits[0]!;
    assert.ok(first < DUE_POLL_MS, `woken after ${first} ms`);
    assert.deepEqual(woken, [0], "only one claimer is woken");
    signals.placeable();
    await waits[1];
  });

  it("wakes one waiting claimer DUE_POLL_MS after the last claim, not every waiter", async () => {
    signals.claiming();
    const woken: number[] = [];
    const waits = [0, 1, 2].map((i) => wait(signals, 5_000).then((ms) => (woken.push(i), ms)));
    const first = await Promise.race(waits);
    assert.ok(first >= DUE_POLL_MS - 5 && first < DUE_POLL_MS * 4, `woken after ${first} ms`);
    assert.equal(woken.length, 1, "one claimer per poll");
    // The woken claimer claims (claiming()), and the next poll comes DUE_POLL_MS after that.
    signals.claiming();
    const claimedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, DUE_POLL_MS / 2));
    // (Unless this process stalled past the poll meanwhile, which a loaded machine may do.)
    if (performance.now() - claimedAt < DUE_POLL_MS) assert.equal(woken.length, 1, "no second claimer within DUE_POLL_MS of a claim");
    await Promise.race(waits.filter((_, i) => !woken.includes(i)));
    assert.equal(woken.length, 2);
    signals.placeable();
    await Promise.all(waits);
  });

  it("does not poll while claims keep running (doorbells under load)", async () => {
    let woken = false;
    const waiting = wait(signals, 60_000).then(() => (woken = true));
    const until = Date.now() + DUE_POLL_MS * 3;
    while (Date.now() < until) {
      signals.claiming();
      await new Promise((resolve) => setTimeout(resolve, DUE_POLL_MS / 5));
    }
    assert.equal(woken, false, "a replica whose claims run needs no poll");
    const stopped = performance.now();
    await waiting;
    const after = performance.now() - stopped;
    assert.ok(after < DUE_POLL_MS * 4, `the waiter is polled once the claims stop, here after ${after} ms`);
  });

  it("puts one placeable doorbell on the bus for the rings of PLACEABLE_COALESCE_MS, and wakes this replica's claimer at once", async () => {
    let heard = 0;
    const unsubscribe = await bus.subscribe("scheduler:placeable", () => heard++);
    signals.claiming();
    const waiting = wait(signals, 5_000);
    for (let i = 0; i < 5; i++) signals.placeable();
    const waited = await waiting;
    assert.ok(waited < PLACEABLE_COALESCE_MS, `this replica's claimer woken after ${waited} ms`);
    await new Promise((resolve) => setTimeout(resolve, PLACEABLE_COALESCE_MS * 5));
    assert.equal(heard, 1, "one message for five rings");
    signals.placeable();
    await new Promise((resolve) => setTimeout(resolve, PLACEABLE_COALESCE_MS * 5));
    assert.equal(heard, 2, "a later ring has its own");
    await unsubscribe();
  });

  it("puts the job ids changed within CHANGES_COALESCE_MS in one message", async () => {
    const messages: string[][] = [];
    const unsubscribe = await listenForChanges(bus, messages);
    signals.changed(["a", "b"]);
    signals.changed(["b", "c"]);
    await new Promise((resolve) => setTimeout(resolve, CHANGES_COALESCE_MS * 5));
    assert.deepEqual(messages, [["a", "b", "c"]]);
    await unsubscribe();
  });

  it("sends what it holds back when it stops", async () => {
    let placeable = 0;
    const messages: string[][] = [];
    const unsubscribe = await bus.subscribe("scheduler:placeable", () => placeable++);
    const changes = await listenForChanges(bus, messages); // as another replica or Deploy hears them
    signals.placeable();
    signals.changed(["a"]);
    await signals.stop();
    await new Promise((resolve) => setImmediate(resolve)); // well before the coalescing timers would have fired
    assert.equal(placeable, 1);
    assert.deepEqual(messages, [["a"]]);
    await changes();
    await unsubscribe();
  });

  it("says the queue is drained from a claim that took less than it could until a wake-up comes, including one that came during the claim", async () => {
    assert.equal(signals.drainedSinceLastRing, false, "no claim yet");
    signals.drained(signals.claiming());
    assert.equal(signals.drainedSinceLastRing, true);
    signals.placeable();
    assert.equal(signals.drainedSinceLastRing, false, "a doorbell of this replica");
    const during = signals.claiming();
    await bus.publish("scheduler:placeable", new TextEncoder().encode("another replica"));
    await new Promise((resolve) => setTimeout(resolve, 10));
    signals.drained(during);
    assert.equal(signals.drainedSinceLastRing, false, "another replica's doorbell rang while the claim looked");
    signals.drained(signals.claiming());
    assert.equal(signals.drainedSinceLastRing, true);
    signals.nudge();
    assert.equal(signals.drainedSinceLastRing, false, "a full claim's nudge");
  });

  it("wakes this replica's follow-up loop when a job with a follow-up ends here, and puts nothing on the bus", async () => {
    const other = new SchedulerSignals(bus, createLogger("silent"));
    await other.start();
    let here = 0;
    let there = 0;
    signals.onFollowupsDue(() => here++);
    other.onFollowupsDue(() => there++);
    signals.followupsDue();
    await new Promise((resolve) => setTimeout(resolve, CHANGES_COALESCE_MS * 5));
    assert.deepEqual([here, there], [1, 0]);
    await other.stop();
  });
});
