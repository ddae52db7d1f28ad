import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { heldBackLength, redact, secretPatterns } from "./redact.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("redact", () => {
  const patterns = secretPatterns(["hunter2", "hunter2-long", "x", ""]);

  it("replaces every occurrence, the longest value first, and leaves values under 3 characters alone", () => {
    assert.equal(dec(redact(enc("pw=hunter2-long and hunter2, x stays"), patterns)), "pw=[REDACTED] and [REDACTED], x stays");
  });

  it("returns the same bytes when nothing matches", () => {
    const data = enc("nothing secret here");
    assert.equal(redact(data, patterns), data);
  });

  it("holds back a tail that could begin a value, and nothing otherwise", () => {
    assert.equal(heldBackLength(enc("token: hunt"), patterns), 4);
    assert.equal(heldBackLength(enc("token: hunter2-lo"), patterns), 10);
    assert.equal(heldBackLength(enc("line done\n"), patterns), 0);
    // A whole value at the end is complete: redact replaces it, nothing waits.
    assert.equal(heldBackLength(enc("pw hunter2"), secretPatterns(["hunter2"])), 0);
  });
});
