// A TCP port for a process that will bind it later: a service replica's
// $PORT (the agent's PortBook), a test's or benchmark's server that must come
// back on the same port after a restart.
//
// Not port 0. The kernel picks port 0 from its ephemeral range, which every
// outgoing connection draws its local port from too: between the check and
// the bind, a connection to PostgreSQL, Redis or anything else could take
// it, and the bind failed with EADDRINUSE (a split-mode integration test in
// CI, 2026-12-05). The port is picked at random below that range, where only
// explicit binds go, and checked by binding it. A port this process handed
// out recently is not handed out again, so callers asking one after the
// other before binding get different ones.

import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** The lowest port picked. */
const LOWEST = 10_000;
/** Ports remembered as handed out (the oldest are forgotten first). */
const REMEMBERED = 4_096;
const TRIES = 64;

const handedOut = new Set<number>();

/** A TCP port nothing listens on now, on `host` (default: every interface), outside the kernel's ephemeral range. */
export async function freePort(host?: string): Promise<number> {
  const below = ephemeralLow();
  if (below - LOWEST >= 1_000) {
    for (let i = 0; i < TRIES; i++) {
      const port = LOWEST + Math.floor(Math.random() * (below - LOWEST));
      if (handedOut.has(port) || !(await bindable(port, host))) continue;
      remember(port);
      return port;
    }
  }
  // No room below the ephemeral range, or nothing free there in TRIES picks: port 0, as before.
  const port = await listenOn(0, host);
  remember(port);
  return port;
}

/** The first port of the kernel's ephemeral range (Linux's setting; elsewhere IANA's 49152). */
export function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 49_152;
  } catch {
    return 49_152;
  }
}

function remember(port: number): void {
  handedOut.add(port);
  if (handedOut.size > REMEMBERED) handedOut.delete(handedOut.values().next().value!);
}

async function bindable(port: number, host: string | undefined): Promise<boolean> {
  try {
    await listenOn(port, host);
    return true;
  } catch {
    return false;
  }
}

/** Listens on port (0: the kernel picks), closes, and resolves the port that was bound. */
function listenOn(port: number, host: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === "object" && address ? address.port : 0;
      server.close(() => (bound ? resolve(bound) : reject(new Error("the system gave no port"))));
    });
  });
}
