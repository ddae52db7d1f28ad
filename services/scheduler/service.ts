import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import {
  JobSchema,
  JobSpecSchema,
  JobState,
  SchedulerService,
  type GetJobRequest,
  type Job,
  type SubmitJobRequest,
} from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { isUniqueViolation } from "../../lib/db/errors.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";

/** Who may call what on SchedulerService (methods not listed: admin and operator). */
export const schedulerAccess: Record<string, AccessRule> = {};

type JobRow = { id: string; state: string; spec: unknown; idempotencyKey: string | null; createdAt: Date; updatedAt: Date };

// Stored state names are the enum's names in lower case ("pending", "timed_out").
function stateName(state: JobState): string {
  return JobState[state].toLowerCase();
}

function stateOf(name: string): JobState {
  const value = JobState[name.toUpperCase() as keyof typeof JobState];
  return typeof value === "number" ? value : JobState.UNSPECIFIED;
}

function job(row: JobRow): Job {
  return create(JobSchema, {
    id: row.id,
    state: stateOf(row.state),
    spec: fromJson(JobSpecSchema, row.spec as JsonValue),
    idempotencyKey: row.idempotencyKey ?? "",
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
  });
}

/**
 * SchedulerService: accepts jobs and stores them as pending. Placement,
 * leases, retries, runs and schedules arrive with the scheduling issue.
 */
export class SchedulerServiceImpl implements Partial<ServiceImpl<typeof SchedulerService>> {
  constructor(private readonly db: PrismaClient) {}

  async submitJob(req: SubmitJobRequest) {
    const key = req.idempotencyKey || null;
    if (key) {
      const existing = await this.db.job.findUnique({ where: { idempotencyKey: key } });
      if (existing) return { job: job(existing), created: false };
    }
    const spec = toJson(JobSpecSchema, req.spec!) as object;
    try {
      const row = await this.db.job.create({
        data: { state: stateName(JobState.PENDING), spec, priority: req.spec!.priority, idempotencyKey: key },
      });
      return { job: job(row), created: true };
    } catch (err) {
      // Two submissions with one key raced; the other one won and its job is the answer.
      if (key && isUniqueViolation(err)) {
        const winner = await this.db.job.findUnique({ where: { idempotencyKey: key } });
        if (winner) return { job: job(winner), created: false };
      }
      throw err;
    }
  }

  async getJob(req: GetJobRequest) {
    const row = await this.db.job.findUnique({ where: { id: req.id } });
    if (!row) throw new ConnectError(`job ${req.id} not found`, Code.NotFound);
    return { job: job(row) };
  }
}

export function schedulerRoutes(impl: SchedulerServiceImpl) {
  return (router: ConnectRouter) => router.service(SchedulerService, impl);
}
