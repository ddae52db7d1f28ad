import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { CREDENTIAL_FILE, CredentialStore, ensureStateDir } from "./credentials.ts";

/** Runs fn with a fresh state directory and always removes it. */
async function withStateDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "drover-credentials-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("CredentialStore", () => {
  it("has no identity in a new state directory", async () => {
    await withStateDir(async (dir) => {
      const store = await CredentialStore.open(dir);
      assert.equal(store.current(), undefined);
      assert.equal(await store.mode(), undefined);
    });
  });

  it("saves the identity with mode 0600 and reads it back after a restart", async () => {
    await withStateDir(async (dir) => {
      const store = await CredentialStore.open(dir);
      await store.save({ agentId: "agent-1", credential: "secret-1" });
      assert.deepEqual(store.current(), { agentId: "agent-1", credential: "secret-1" });
      assert.equal((await stat(join(dir, CREDENTIAL_FILE))).mode & 0o777, 0o600);
      assert.equal(await store.mode(), 0o600);
      const reopened = await CredentialStore.open(dir);
      assert.deepEqual(reopened.current(), { agentId: "agent-1", credential: "secret-1" });
    });
  });

  it("replaces the identity without leaving a temporary file behind", async () => {
    await withStateDir(async (dir) => {
      const store = await CredentialStore.open(dir);
      await store.save({ agentId: "agent-1", credential: "secret-1" });
      await store.save({ agentId: "agent-1", credential: "secret-2" });
      assert.deepEqual(await readdir(dir), [CREDENTIAL_FILE]);
      assert.deepEqual(JSON.parse(await readFile(join(dir, CREDENTIAL_FILE), "utf8")), { agentId: "agent-1", credential: "secret-2" });
    });
  });

  it("overwrites a temporary file left by a crash instead of writing through it", async () => {
    await withStateDir(async (dir) => {
      await writeFile(join(dir, `${CREDENTIAL_FILE}.${process.pid}.tmp`), "half a write", { mode: 0o644 });
      const store = await CredentialStore.open(dir);
      await store.save({ agentId: "agent-1", credential: "secret-1" });
      assert.deepEqual(await readdir(dir), [CREDENTIAL_FILE]);
      assert.equal((await stat(join(dir, CREDENTIAL_FILE))).mode & 0o777, 0o600);
    });
  });

  it("refuses a file that is not an identity, naming the file", async () => {
    await withStateDir(async (dir) => {
      await writeFile(join(dir, CREDENTIAL_FILE), "{not json");
      await assert.rejects(CredentialStore.open(dir), new RegExp(`${CREDENTIAL_FILE} is not an agent identity`));
      await writeFile(join(dir, CREDENTIAL_FILE), JSON.stringify({ agentId: "agent-1" }));
      await assert.rejects(CredentialStore.open(dir), /is not an agent identity/);
    });
  });
});

describe("ensureStateDir", () => {
  it("creates the state directory with mode 0700, and accepts one that exists", async () => {
    await withStateDir(async (dir) => {
      const stateDir = join(dir, "nested", "state");
      await ensureStateDir(stateDir);
      assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
      await ensureStateDir(stateDir);
    });
  });
});
