import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import {
  announceRevocation,
  CachingAuthenticator,
  hashSecret,
  newSecret,
  roleFromName,
  roleName,
  type Authenticator,
  type Principal,
} from "./tokens.ts";

describe("newSecret", () => {
  it("makes unique secrets behind the drv_ prefix", () => {
    const secrets = Array.from({ length: 200 }, newSecret);
    assert.equal(new Set(secrets).size, secrets.length);
    for (const secret of secrets) {
      // 32 random bytes are 43 base64url characters.
      assert.match(secret, /^drv_[A-Za-z0-9_-]{43}$/);
    }
  });
});

describe("hashSecret", () => {
  it("is the SHA-256 of the secret in lowercase hex", () => {
    assert.equal(hashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  it("is stable for one secret and differs between secrets", () => {
    const secret = newSecret();
    assert.equal(hashSecret(secret), hashSecret(secret));
    assert.notEqual(hashSecret(secret), hashSecret(newSecret()));
    assert.match(hashSecret(secret), /^[0-9a-f]{64}$/);
  });
});

describe("role names", () => {
  it("round-trip between the stored name and the proto enum", () => {
    for (const role of [Role.ADMIN, Role.OPERATOR, Role.AGENT]) assert.equal(roleFromName(roleName(role)), role);
    assert.equal(roleName(Role.OPERATOR), "operator");
  });

  it("map an unknown stored name to ROLE_UNSPECIFIED and refuse to name it", () => {
    assert.equal(roleFromName("root"), Role.UNSPECIFIED);
    assert.throws(() => roleName(Role.UNSPECIFIED), /has no name/);
  });
});

/** An authenticator whose answers the test changes, counting the questions it gets. */
class FakeAuthenticator implements Authenticator {
  calls = 0;
  readonly principals = new Map<string, Principal>();

  async authenticate(secret: string): Promise<Principal | null> {
    this.calls++;
    return this.principals.get(secret) ?? null;
  }
}

const alice: Principal = { tokenId: "t-alice", role: Role.OPERATOR, name: "alice" };

describe("CachingAuthenticator", () => {
  it("remembers a known secret for ttlMs, then asks again", async () => {
    const inner = new FakeAuthenticator();
    inner.principals.set("s1", alice);
    let now = 1_000;
    const cache = new CachingAuthenticator(inner, 5_000, 500, 10_000, () => now);

    assert.deepEqual(await cache.authenticate("s1"), alice);
    now += 3_999;
    assert.deepEqual(await cache.authenticate("s1"), alice);
    assert.equal(inner.calls, 1);

    // Revoked meanwhile: the cache still answers until the ttl is over (or, from its last
    // fifth on, until a background check comes back; see the next test).
    inner.principals.delete("s1");
    assert.deepEqual(await cache.authenticate("s1"), alice);
    assert.equal(inner.calls, 1);
    now += 1_001;
    assert.equal(await cache.authenticate("s1"), null);
    assert.equal(inner.calls, 2);
  });

  it("checks a known secret again in the background in the last fifth of its ttl, so no call waits for it", async () => {
    let release!: (p: Principal | null) => void;
    let calls = 0;
    const inner: Authenticator = {
      authenticate: () => {
        calls++;
        return calls === 1 ? Promise.resolve(alice) : new Promise((resolve) => (release = resolve));
      },
    };
    let now = 0;
    const cache = new CachingAuthenticator(inner, 5_000, 500, 10_000, () => now);
    assert.deepEqual(await cache.authenticate("s6"), alice);
    now = 3_999;
    assert.deepEqual(await cache.authenticate("s6"), alice);
    assert.equal(calls, 1, "not yet in the last fifth");
    now = 4_500;
    // Answered from the cache at once while the check is still out.
    assert.deepEqual(await cache.authenticate("s6"), alice);
    assert.deepEqual(await cache.authenticate("s6"), alice);
    assert.equal(calls, 2, "one background check for both calls");
    // The check says the token is gone: refused from then on, before the old ttl would have ended.
    release(null);
    await new Promise((r) => setImmediate(r));
    assert.equal(await cache.authenticate("s6"), null);
    assert.equal(calls, 2);
  });

  it("remembers an unknown secret only for the shorter negative ttl", async () => {
    const inner = new FakeAuthenticator();
    let now = 0;
    const cache = new CachingAuthenticator(inner, 5_000, 500, 10_000, () => now);

    assert.equal(await cache.authenticate("s2"), null);
    // Created just now: still refused from the cache within the negative ttl...
    inner.principals.set("s2", alice);
    now = 499;
    assert.equal(await cache.authenticate("s2"), null);
    assert.equal(inner.calls, 1);
    // ...and accepted once it is over, long before a positive ttl would end.
    now = 500;
    assert.deepEqual(await cache.authenticate("s2"), alice);
    assert.equal(inner.calls, 2);
  });

  it("asks once for a burst of calls with one secret, and asks again after a failed check", async () => {
    let release!: (p: Principal | null) => void;
    let fail = false;
    let calls = 0;
    const inner: Authenticator = {
      authenticate: () => {
        calls++;
        if (fail) return Promise.reject(new Error("fleet unavailable"));
        return new Promise((resolve) => (release = resolve));
      },
    };
    const cache = new CachingAuthenticator(inner, 5_000, 500, 10_000, () => 0);
    const burst = Array.from({ length: 50 }, () => cache.authenticate("s3"));
    release(alice);
    assert.deepEqual(await Promise.all(burst), Array.from({ length: 50 }, () => alice));
    assert.equal(calls, 1);

    fail = true;
    const other = Array.from({ length: 3 }, () => cache.authenticate("s4"));
    for (const call of other) await assert.rejects(call, /fleet unavailable/);
    assert.equal(calls, 2, "the failing check was shared too");
    await assert.rejects(cache.authenticate("s4"), /fleet unavailable/);
    assert.equal(calls, 3, "and not cached");
  });

  it("forgets everything when this process revokes a token, so the revoked token is refused at once", async () => {
    const inner = new FakeAuthenticator();
    inner.principals.set("s5", alice);
    const cache = new CachingAuthenticator(inner, 60_000, 500, 10_000, () => 0);
    assert.deepEqual(await cache.authenticate("s5"), alice);
    inner.principals.delete("s5");
    assert.deepEqual(await cache.authenticate("s5"), alice, "remembered");
    announceRevocation();
    assert.equal(await cache.authenticate("s5"), null);
    assert.equal(inner.calls, 2);
  });

  it("keeps one entry per secret", async () => {
    const inner = new FakeAuthenticator();
    const bob: Principal = { tokenId: "t-bob", role: Role.ADMIN, name: "bob" };
    inner.principals.set("a", alice).set("b", bob);
    const cache = new CachingAuthenticator(inner, 5_000, 500, 10_000, () => 0);
    assert.deepEqual(await cache.authenticate("a"), alice);
    assert.deepEqual(await cache.authenticate("b"), bob);
    assert.deepEqual(await cache.authenticate("a"), alice);
    assert.equal(inner.calls, 2);
  });

  it("forgets everything rather than grow past maxEntries", async () => {
    const inner = new FakeAuthenticator();
    const cache = new CachingAuthenticator(inner, 5_000, 5_000, 2, () => 0);
    await cache.authenticate("x");
    await cache.authenticate("y");
    await cache.authenticate("z"); // clears x and y, keeps z
    assert.equal(inner.calls, 3);
    await cache.authenticate("z");
    assert.equal(inner.calls, 3);
    await cache.authenticate("x");
    assert.equal(inner.calls, 4);
  });
});
