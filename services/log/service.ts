import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import {
  LogChunkSchema,
  LogService,
  Stream,
  type LogChunk,
  type ReadLogsRequest,
} from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";

/** Who may call what on LogService (methods not listed: admin and operator). */
export const logAccess: Record<string, AccessRule> = {};

/** Bytes returned when a request leaves limit_bytes at 0. */
const DEFAULT_LIMIT = 1 << 20;

// Stored stream names are the enum's names in lower case ("stdout").
function streamName(stream: Stream): string {
  return Stream[stream].toLowerCase();
}

function streamOf(name: string): Stream {
  const value = Stream[name.toUpperCase() as keyof typeof Stream];
  return typeof value === "number" ? value : Stream.UNSPECIFIED;
}

/**
 * LogService: reads stored chunks by byte range. Ingestion over the agent
 * stream, query by job, follow and retention arrive with the Log issue.
 */
export class LogServiceImpl implements Partial<ServiceImpl<typeof LogService>> {
  constructor(private readonly db: PrismaClient) {}

  async readLogs(req: ReadLogsRequest) {
    const limit = req.limitBytes || DEFAULT_LIMIT;
    const offset = BigInt(req.offset);
    const rows = await this.db.logChunk.findMany({
      where: { attemptId: req.attemptId, ...(req.stream ? { stream: streamName(req.stream) } : {}) },
      orderBy: [{ stream: "asc" }, { startOffset: "asc" }],
    });
    const chunks: LogChunk[] = [];
    let budget = limit;
    let truncated = false;
    for (const row of rows) {
      const end = row.startOffset + BigInt(row.data.length);
      if (end <= offset) continue;
      if (budget === 0) {
        truncated = true;
        break;
      }
      const skip = offset > row.startOffset ? Number(offset - row.startOffset) : 0;
      const data = row.data.subarray(skip, skip + budget);
      budget -= data.length;
      if (skip + data.length < row.data.length) truncated = true;
      chunks.push(
        create(LogChunkSchema, {
          stream: streamOf(row.stream),
          offset: row.startOffset + BigInt(skip),
          data,
          time: timestampFromDate(row.createdAt),
        }),
      );
    }
    return { chunks, truncated };
  }
}

export function logRoutes(impl: LogServiceImpl) {
  return (router: ConnectRouter) => router.service(LogService, impl);
}
