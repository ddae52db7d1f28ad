import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Alarm } from "./timers.ts";

describe("Alarm", () => {
  it("cuts a sleep short on ring, and remembers a ring that came while awake", async () => {
    const alarm = new Alarm();
    const started = performance.now();
    setTimeout(() => alarm.ring(), 20);
    await alarm.sleep(10_000);
    assert.ok(performance.now() - started < 5_000, "woken by the ring, not the timeout");
    assert.equal(alarm.rang(), false, "a sleep consumes the ring that ended it");

    alarm.ring();
    assert.equal(alarm.rang(), true);
    assert.equal(alarm.rang(), false, "rang() resets");
    alarm.ring();
    alarm.reset();
    assert.equal(alarm.rang(), false);
  });

  it("ends a sleep when the signal aborts, and does not sleep at all on an aborted signal", async () => {
    const alarm = new Alarm();
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 20);
    const started = performance.now();
    await alarm.sleep(10_000, stop.signal);
    await alarm.sleep(10_000, stop.signal);
    assert.ok(performance.now() - started < 5_000);
  });
});
