// The agent's identity in its state directory.
//
// The first time an agent connects it presents a registration token; Fleet
// answers with the agent's id and its own credential, and the agent keeps
// both in <state dir>/credential.json (mode 0600) and presents the
// credential from then on. The file is replaced atomically (write a
// temporary file, fsync, rename, fsync the directory), so a crash or a full
// disk leaves either the old identity or the new one, never half of one:
// losing it would make the agent register again as a different machine.

import { constants } from "node:fs";
import { mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";

/** Who this agent is to Fleet. */
export interface AgentIdentity {
  /** The id Fleet gave the agent when it registered. */
  agentId: string;
  /** The agent's own secret; sent as `authorization: Bearer <credential>`. */
  credential: string;
}

export const CREDENTIAL_FILE = "credential.json";

/** Creates the state directory (mode 0700) if it does not exist. */
export async function ensureStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
}

/** Keeps the agent's identity in memory and on disk; save() is durable when it resolves. */
export class CredentialStore {
  readonly path: string;
  private identity: AgentIdentity | undefined;

  private constructor(readonly stateDir: string) {
    this.path = join(stateDir, CREDENTIAL_FILE);
  }

  /**
   * Reads the identity kept in stateDir, if any. A file that exists but is
   * not an identity is an error naming the file: guessing would register a
   * second agent for this machine.
   */
  static async open(stateDir: string): Promise<CredentialStore> {
    const store = new CredentialStore(stateDir);
    let text: string;
    try {
      text = await readFile(store.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return store;
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const { agentId, credential } = (parsed ?? {}) as Partial<AgentIdentity>;
    if (typeof agentId !== "string" || typeof credential !== "string" || agentId === "" || credential === "") {
      throw new Error(`${store.path} is not an agent identity (expected {"agentId", "credential"}); move it away to register again`);
    }
    store.identity = { agentId, credential };
    return store;
  }

  /** The identity in use, or undefined before the agent has registered. */
  current(): AgentIdentity | undefined {
    return this.identity;
  }

  /**
   * Makes identity the current one at once (so the next connection uses it
   * even if the disk fails), then writes it to disk atomically.
   */
  async save(identity: AgentIdentity): Promise<void> {
    this.identity = { ...identity };
    const tmp = `${this.path}.${process.pid}.tmp`;
    // O_EXCL: never write through a file (or symlink) someone left there.
    await unlink(tmp).catch(() => {});
    const file = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      // The umask can only remove bits from 0600, but be explicit: this is a secret.
      await file.chmod(0o600);
      await file.writeFile(`${JSON.stringify(this.identity, null, 2)}\n`, "utf8");
      await file.sync();
    } catch (err) {
      await file.close();
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await file.close();
    await rename(tmp, this.path);
    await syncDirectory(this.stateDir);
  }

  /** The file's permission bits, to warn when someone widened them. */
  async mode(): Promise<number | undefined> {
    try {
      return (await stat(this.path)).mode & 0o777;
    } catch {
      return undefined;
    }
  }
}

/** Makes a rename in dir durable. Best effort: some filesystems refuse fsync on a directory. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Windows and a few network filesystems; the rename itself is still atomic.
  }
}
