import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { LogService, type FollowLogsRequest, type IngestLogsRequest, type ReadLogsRequest } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import type { LogFollower } from "./follow.ts";
import type { Ingest } from "./ingest.ts";
import type { LogReader } from "./read.ts";

/** Who may call what on LogService (methods not listed: admin and operator). */
export const logAccess: Record<string, AccessRule> = {
  // For Fleet, which calls with the admin token.
  IngestLogs: [Role.ADMIN],
};

/** LogService: the RPCs, each handed to the part that does it (log.ts assembles them). */
export class LogServiceImpl implements ServiceImpl<typeof LogService> {
  constructor(private readonly parts: { ingest: Ingest; reader: LogReader; follower: LogFollower }) {}

  ingestLogs(req: IngestLogsRequest) {
    return this.parts.ingest.ingestLogs(req);
  }

  readLogs(req: ReadLogsRequest) {
    return this.parts.reader.readLogs(req);
  }

  followLogs(req: FollowLogsRequest, ctx: HandlerContext) {
    return this.parts.follower.followLogs(req, ctx);
  }
}

export function logRoutes(impl: LogServiceImpl) {
  return (router: ConnectRouter) => router.service(LogService, impl);
}
