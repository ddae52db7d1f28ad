// Following Fleet's view of the agents from another service: WatchAgents,
// held open for as long as the service runs, reopened after any failure.

import type { WatchAgentsResponse } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { DroverClients } from "./clients.ts";
import type { Logger } from "./logger.ts";
import { sleep } from "./timers.ts";

export interface AgentWatchHandlers {
  /** Every response in order: the listing (EXISTING), SYNCED, then changes. Awaited before the next. */
  onEvent(res: WatchAgentsResponse): void | Promise<void>;
  /** The watch broke: what was learnt may be stale until the next SYNCED. */
  onLost(): void;
}

/**
 * Watches agents until the signal aborts, reopening the watch with a capped
 * exponential backoff (100 ms to 5 s, reset by any response); promises
 * onLost() between a broken watch and its replacement.
 */
export async function followAgents(fleet: DroverClients["fleet"], handlers: AgentWatchHandlers, signal: AbortSignal, log: Logger): Promise<void> {
  let backoff = 100;
  while (!signal.aborted) {
    try {
      for await (const res of fleet.watchAgents({}, { signal })) {
        backoff = 100;
        await handlers.onEvent(res);
      }
    } catch (err) {
      if (signal.aborted) return;
      log.warn({ err }, "lost the agent watch; reconnecting");
    }
    handlers.onLost();
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, 5000);
  }
}
