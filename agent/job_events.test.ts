import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { AttemptState, type JobEvent } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { jobEventId, JobEventOutbox, MAX_PENDING_EVENTS } from "./job_events.ts";

describe("JobEventOutbox", () => {
  it("names events after their attempt and state, so a resend has the same id", () => {
    assert.equal(jobEventId("attempt-1", AttemptState.SUCCEEDED), "attempt-1:SUCCEEDED");
  });

  it("keeps events in the order they were added until each is confirmed", () => {
    const outbox = new JobEventOutbox();
    outbox.add({ attemptId: "a", state: AttemptState.STARTING });
    outbox.add({ attemptId: "b", state: AttemptState.STARTING });
    outbox.add({ attemptId: "a", state: AttemptState.RUNNING });
    assert.deepEqual(outbox.unconfirmed().map((e) => e.eventId), ["a:STARTING", "b:STARTING", "a:RUNNING"]);
    assert.equal(outbox.confirm(["b:STARTING", "unknown"]), 1);
    assert.deepEqual(outbox.unconfirmed().map((e) => e.eventId), ["a:STARTING", "a:RUNNING"]);
  });

  it("tells its listener of each new event once, and does not add an id that is already waiting", () => {
    const outbox = new JobEventOutbox();
    const heard: JobEvent[] = [];
    outbox.onAdd((e) => heard.push(e));
    outbox.add({ attemptId: "a", state: AttemptState.FAILED, exitCode: 3, signal: "", message: "command 1 (x) exited with code 3" });
    outbox.add({ attemptId: "a", state: AttemptState.FAILED, message: "again" });
    assert.equal(heard.length, 1);
    assert.equal(heard[0]!.exitCode, 3);
    assert.equal(outbox.size, 1);
  });

  it("cuts a message to the 4096 characters the proto allows", () => {
    const event = new JobEventOutbox().add({ attemptId: "a", state: AttemptState.FAILED, message: "x".repeat(5_000) });
    assert.equal(event.message.length, 4_096);
  });

  it("drops the oldest events when a Fleet that never confirms lets too many pile up", () => {
    const outbox = new JobEventOutbox();
    for (let i = 0; i <= MAX_PENDING_EVENTS; i++) outbox.add({ attemptId: `a-${i}`, state: AttemptState.STARTING });
    assert.equal(outbox.size, MAX_PENDING_EVENTS);
    assert.equal(outbox.droppedCount, 1);
    assert.equal(outbox.unconfirmed()[0]!.eventId, "a-1:STARTING");
  });
});
