import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { BidService } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { DeployService } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { LogService } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { ServiceName } from "./config.ts";
import type { Authenticator, Principal } from "./auth/tokens.ts";

/** The generated client of every Drover service: the only way one service reaches another. */
export interface DroverClients {
  fleet: Client<typeof FleetService>;
  scheduler: Client<typeof SchedulerService>;
  bid: Client<typeof BidService>;
  deploy: Client<typeof DeployService>;
  log: Client<typeof LogService>;
}

/**
 * Clients for every service, each over the transport the wiring chose:
 * in-memory in dev mode, HTTP/2 in split mode. Transports are created on
 * first use, so a service that never calls another needs no address for it.
 */
export function createClients(transportFor: (service: ServiceName) => Transport): DroverClients {
  const cache = new Map<ServiceName, Transport>();
  const transport = (name: ServiceName): Transport => {
    const lazy: Transport = {
      unary: (...args) => get().unary(...args),
      stream: (...args) => get().stream(...args),
    };
    const get = () => {
      let t = cache.get(name);
      if (!t) cache.set(name, (t = transportFor(name)));
      return t;
    };
    return lazy;
  };
  return {
    fleet: createClient(FleetService, transport("fleet")),
    scheduler: createClient(SchedulerService, transport("scheduler")),
    bid: createClient(BidService, transport("bid")),
    deploy: createClient(DeployService, transport("deploy")),
    log: createClient(LogService, transport("log")),
  };
}

/** Sends a bearer token with every call. */
export function bearer(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** Checks tokens by asking Fleet: how every service but Fleet authenticates its callers. */
export class FleetAuthenticator implements Authenticator {
  constructor(private readonly fleet: DroverClients["fleet"]) {}

  async authenticate(secret: string): Promise<Principal | null> {
    try {
      const res = await this.fleet.authenticateToken({ secret }, { timeoutMs: 5000 });
      return { tokenId: res.tokenId, role: res.role, name: res.name };
    } catch (err) {
      const error = ConnectError.from(err);
      if (error.code === Code.Unauthenticated) return null;
      // The caller may well be right; we just cannot tell now. Retry later.
      throw new ConnectError(`cannot check the token now: fleet answered ${Code[error.code]}`, Code.Unavailable);
    }
  }
}
