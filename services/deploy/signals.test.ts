// Deploy's doorbells over a real Redis, between two buses as two Deploy
// replicas would hold them: a change on one wakes the other's watchers, the
// Scheduler's job changes reach the controller's listener, and a waiter
// still wakes by its own deadline when no doorbell comes.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, describe, it } from "node:test";
import type { Bus } from "../../lib/bus/bus.ts";
import { createRedisBus } from "../../lib/bus/redis.ts";
import { createLogger } from "../../lib/logger.ts";
import { requireRedis } from "../../lib/testing/services.ts";
import { DeploySignals } from "./signals.ts";

const url = await requireRedis();

if (url === null) {
  it("Deploy's doorbells travel over Redis", (t) => requireRedis(t).then(() => {}));
} else {
  describe("Deploy signals", () => {
    const keyPrefix = `drover-test:${randomUUID()}:`;
    const buses: Bus[] = [];
    const logger = createLogger("silent");
    const replica = async (onJobs: (ids: string[]) => void = () => {}) => {
      const bus = createRedisBus({ url, keyPrefix });
      buses.push(bus);
      const signals = new DeploySignals(bus, logger);
      await signals.start(onJobs);
      return { bus, signals };
    };
    after(async () => {
      await Promise.all(buses.map((b) => b.close()));
    });

    it("a change on one replica wakes the other's watcher of that deployment, not of another", async () => {
      const a = await replica();
      const b = await replica();
      const began = performance.now();
      const other = b.signals.untilChanged("dep-2", 3_000).then(() => performance.now() - began);
      const woken = b.signals.untilChanged("dep-1", 3_000).then(() => performance.now() - began);
      a.signals.changed(["dep-1"]);
      assert.ok((await woken) < 1_000, `woken after ${await woken} ms`);
      assert.ok((await other) >= 2_900, `the other deployment's watcher woke after ${await other} ms`);
    });

    it("wakes this replica's own watchers without the bus, and ends a wait when its signal aborts", async () => {
      const a = await replica();
      await a.bus.close(); // the publish fails; the local watcher is woken all the same
      const began = performance.now();
      const woken = a.signals.untilChanged("dep-1", 3_000);
      a.signals.changed(["dep-1"]);
      await woken;
      assert.ok(performance.now() - began < 500);
      const abort = new AbortController();
      const waiting = a.signals.untilChanged("dep-1", 3_000, abort.signal);
      abort.abort();
      await waiting;
      assert.ok(performance.now() - began < 1_000);
    });

    it("hands the Scheduler's job changes to the listener and ignores malformed doorbells", async () => {
      const heard: string[][] = [];
      await replica((ids) => heard.push(ids));
      const scheduler = createRedisBus({ url, keyPrefix });
      buses.push(scheduler);
      await scheduler.publish("scheduler:job-changes", new TextEncoder().encode("not json"));
      await scheduler.publish("scheduler:job-changes", new TextEncoder().encode('{"id":1}'));
      await scheduler.publish("scheduler:job-changes", new TextEncoder().encode(JSON.stringify(["job-1", "job-2"])));
      const deadline = Date.now() + 2_000;
      while (heard.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(heard, [["job-1", "job-2"]]);
    });
  });
}
