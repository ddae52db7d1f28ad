import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { livenessAt, livenessReason, type Liveness } from "./liveness.ts";

const thresholds = { staleAfterMs: 15_000, offlineAfterMs: 90_000 };
const last = 1_700_000_000_000;
const at = (silenceMs: number) => livenessAt(last, last + silenceMs, thresholds);

describe("livenessAt", () => {
  it("is online while the silence is shorter than the stale threshold", () => {
    for (const silence of [0, 1, 5_000, 14_999]) assert.equal(at(silence), "online", `${silence} ms`);
  });

  it("is stale from exactly the stale threshold until just before the offline threshold", () => {
    for (const silence of [15_000, 15_001, 60_000, 89_999]) assert.equal(at(silence), "stale", `${silence} ms`);
  });

  it("is offline from exactly the offline threshold on", () => {
    for (const silence of [90_000, 90_001, 3_600_000, Number.MAX_SAFE_INTEGER]) assert.equal(at(silence), "offline", `${silence} ms`);
  });

  it("counts a heartbeat from the future (clock skew) as no silence at all", () => {
    assert.equal(at(-1), "online");
    assert.equal(at(-3_600_000), "online");
  });

  it("treats an unknown last heartbeat (NaN) as no evidence of silence", () => {
    assert.equal(livenessAt(Number.NaN, last, thresholds), "online");
  });

  it("walks online, stale, offline as silence grows, whatever the thresholds", () => {
    for (const t of [
      { staleAfterMs: 1, offlineAfterMs: 2 },
      { staleAfterMs: 300, offlineAfterMs: 900 },
      { staleAfterMs: 15_000, offlineAfterMs: 90_000 },
    ]) {
      const seen: Liveness[] = [];
      for (let silence = 0; silence <= t.offlineAfterMs + 1; silence += Math.max(1, Math.floor(t.staleAfterMs / 3))) {
        const liveness = livenessAt(0, silence, t);
        if (seen.at(-1) !== liveness) seen.push(liveness);
      }
      if (seen.at(-1) !== "offline") seen.push(livenessAt(0, t.offlineAfterMs, t));
      assert.deepEqual(seen, ["online", "stale", "offline"], JSON.stringify(t));
    }
  });

  it("is exact at every boundary, one millisecond either side", () => {
    const t = { staleAfterMs: 300, offlineAfterMs: 900 };
    const cases: [number, Liveness][] = [
      [299, "online"],
      [300, "stale"],
      [301, "stale"],
      [899, "stale"],
      [900, "offline"],
      [901, "offline"],
    ];
    for (const [silence, expected] of cases) assert.equal(livenessAt(1000, 1000 + silence, t), expected, `${silence} ms`);
  });
});

describe("livenessReason", () => {
  it("says heartbeats arrive for online", () => {
    assert.equal(livenessReason("online", last, last + 20_000), "heartbeats arrive");
  });

  it("says how long the agent was silent, in tenths under ten seconds and whole seconds above", () => {
    assert.equal(livenessReason("stale", last, last + 1_234), "no heartbeat for 1.2s");
    assert.equal(livenessReason("stale", last, last + 15_400), "no heartbeat for 15s");
    assert.equal(livenessReason("offline", last, last + 90_600), "no heartbeat for 91s");
    assert.equal(livenessReason("offline", last, last - 5), "no heartbeat for 0.0s");
  });
});
