// A network namespace joined to the host by a veth pair, for tests that put
// a drover-agent on "another machine" and cut its link:
//
//   host: 10.(214+index).X.1 ── veth dvh<id> ══ dvn<id> ── netns drover-<tag>-<id>: 10.(214+index).X.2
//
// One namespace, pair and /30 per (process, index), so test files running at
// the same time do not collide. Needs root and `ip` (iproute2):
// netnsUnavailable says why not, and requireNetnsInCi makes a test skip
// locally and fail in CI (CI=true), like the tests that need PostgreSQL and
// Redis.

import { execFileSync } from "node:child_process";

export function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Why network namespaces cannot be used here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (process.platform !== "linux") return `network namespaces need Linux, this is ${process.platform}`;
  if (process.getuid?.() !== 0) return "creating a network namespace needs root";
  try {
    ip("netns", "list");
  } catch (err) {
    return `\`ip netns\` does not work: ${(err as Error).message.split("\n")[0]}`;
  }
  return null;
}

/** Throws in CI when namespaces cannot be used; returns the reason to skip otherwise (null: usable). */
export function requireNetnsInCi(what: string): string | null {
  const unavailable = netnsUnavailable();
  if (unavailable !== null && process.env.CI === "true") throw new Error(`${what} is required in CI but cannot run: ${unavailable}`);
  return unavailable;
}

export class Netns {
  readonly name: string;
  readonly hostAddress: string;
  readonly agentAddress: string;
  private readonly hostVeth: string;
  private readonly nsVeth: string;

  /** `tag` (a few letters) and `index` (0-9) tell apart the namespaces of one process. */
  constructor(tag: string, index = 0) {
    const id = (process.pid % 100_000) * 10 + index;
    this.name = `drover-${tag}-${id}`;
    this.hostVeth = `dvh${id}`;
    this.nsVeth = `dvn${id}`;
    const subnet = `10.${214 + index}.${(process.pid % 250) + 1}`;
    this.hostAddress = `${subnet}.1`;
    this.agentAddress = `${subnet}.2`;
  }

  /** Creates the namespace and the link, up. */
  create(): void {
    // Left by a run that died (same pid, unlikely): `add` would fail.
    this.teardown();
    ip("netns", "add", this.name);
    ip("link", "add", this.hostVeth, "type", "veth", "peer", "name", this.nsVeth, "netns", this.name);
    ip("addr", "add", `${this.hostAddress}/30`, "dev", this.hostVeth);
    ip("link", "set", this.hostVeth, "up");
    ip("-n", this.name, "addr", "add", `${this.agentAddress}/30`, "dev", this.nsVeth);
    ip("-n", this.name, "link", "set", this.nsVeth, "up");
    ip("-n", this.name, "link", "set", "lo", "up");
  }

  /** The command prefix that runs a program inside the namespace. */
  get prefix(): string[] {
    return ["ip", "netns", "exec", this.name];
  }

  /** Cuts the link on the namespace's side: nothing leaves it, nothing reaches it. */
  cut(): void {
    ip("-n", this.name, "link", "set", this.nsVeth, "down");
  }

  restore(): void {
    ip("-n", this.name, "link", "set", this.nsVeth, "up");
  }

  /** The pids of the processes inside the namespace. */
  pids(): number[] {
    return ip("netns", "pids", this.name).split("\n").filter(Boolean).map(Number);
  }

  /** Deleting the namespace deletes the pair with it; the host end is deleted too in case the pair was half made. */
  teardown(): void {
    for (const args of [["netns", "del", this.name], ["link", "del", this.hostVeth]]) {
      try {
        ip(...args);
      } catch {
        // Not there: nothing to remove.
      }
    }
  }
}
