// The bundle's Headers (web_headers.ts) against Node's own (undici's): the
// same operations must leave the same fields, in the same order.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Headers as LightHeaders } from "./web_headers.ts";

type AnyHeaders = InstanceType<typeof globalThis.Headers> | LightHeaders;

/** Runs `script` on a fresh pair built from `init` and compares everything observable. */
function same(init: ConstructorParameters<typeof globalThis.Headers>[0], script: (h: AnyHeaders) => unknown = () => undefined): void {
  const real = new globalThis.Headers(init);
  const light = new LightHeaders(init as never);
  const a = script(real);
  const b = script(light);
  assert.deepEqual(b, a);
  assert.deepEqual([...light], [...real]);
  const seen: string[][] = [];
  light.forEach((value, name) => seen.push([name, value]));
  assert.deepEqual(seen, [...real]);
  assert.deepEqual(light.getSetCookie(), real.getSetCookie());
}

describe("the bundle's Headers", () => {
  it("reads names case-insensitively and lists them lower-cased, sorted by name", () => {
    same({ "Content-Type": "application/grpc", "X-Request-Id": "r-1", authorization: "Bearer x" }, (h) => [h.get("content-type"), h.get("X-REQUEST-ID"), h.has("Authorization"), h.get("missing")]);
  });

  it("joins appended values with a comma and keeps set-cookie values apart", () => {
    same([["a", "1"], ["A", "2"], ["set-cookie", "x=1"], ["Set-Cookie", "y=2"]], (h) => {
      h.append("b", " 3 ");
      return [h.get("a"), h.get("set-cookie"), h.get("b")];
    });
  });

  it("replaces with set(), removes with delete(), and copies another Headers", () => {
    same({ a: "1", b: "2" }, (h) => {
      h.set("A", "9");
      h.delete("b");
      return [...new (h.constructor as typeof LightHeaders)(h as never)];
    });
  });

  it("refuses invalid names and values as Node does", () => {
    for (const [name, value] of [["bad name", "v"], ["ok", "a\r\nb"], ["", "v"]] as const) {
      assert.throws(() => new globalThis.Headers([[name, value]]), TypeError);
      assert.throws(() => new LightHeaders([[name, value]]), TypeError);
    }
  });
});
