import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/deploy/client.ts";
import {
  DeployService,
  DeploymentSchema,
  RevisionSchema,
  ServiceSpecSchema,
  type ApplyDeploymentRequest,
  type Deployment,
  type GetDeploymentRequest,
} from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { isUniqueViolation } from "../../lib/db/errors.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { specHash } from "./spec_hash.ts";

/** Who may call what on DeployService (methods not listed: admin and operator). */
export const deployAccess: Record<string, AccessRule> = {};

type DeploymentRow = { id: string; name: string; currentRevision: number; createdAt: Date; updatedAt: Date };
type RevisionRow = { number: number; spec: unknown; specHash: string; createdAt: Date };

function deployment(row: DeploymentRow, rev: RevisionRow): Deployment {
  return create(DeploymentSchema, {
    id: row.id,
    name: row.name,
    currentRevision: create(RevisionSchema, {
      number: rev.number,
      spec: fromJson(ServiceSpecSchema, rev.spec as JsonValue),
      specHash: rev.specHash,
      createTime: timestampFromDate(rev.createdAt),
    }),
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
  });
}

/**
 * DeployService: deployments and their revisions. Rollouts, health and
 * remediation arrive with the Deploy issue.
 */
export class DeployServiceImpl implements Partial<ServiceImpl<typeof DeployService>> {
  constructor(private readonly db: PrismaClient) {}

  async applyDeployment(req: ApplyDeploymentRequest) {
    const spec = req.spec!;
    const hash = specHash(spec);
    const json = toJson(ServiceSpecSchema, spec) as object;
    // Concurrent applies of one name race on the unique (name) and
    // (deployment_id, number) keys; the loser re-reads and tries again.
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.db.$transaction(async (tx) => {
          const current = await tx.deployment.findUnique({ where: { name: req.name } });
          if (!current) {
            const row = await tx.deployment.create({ data: { name: req.name, currentRevision: 1 } });
            const rev = await tx.revision.create({ data: { deploymentId: row.id, number: 1, spec: json, specHash: hash } });
            return { deployment: deployment(row, rev), changed: true };
          }
          const rev = await tx.revision.findUniqueOrThrow({
            where: { deploymentId_number: { deploymentId: current.id, number: current.currentRevision } },
          });
          if (rev.specHash === hash) return { deployment: deployment(current, rev), changed: false };
          const last = await tx.revision.aggregate({ where: { deploymentId: current.id }, _max: { number: true } });
          const number = (last._max.number ?? 0) + 1;
          const next = await tx.revision.create({ data: { deploymentId: current.id, number, spec: json, specHash: hash } });
          const row = await tx.deployment.update({ where: { id: current.id }, data: { currentRevision: number } });
          return { deployment: deployment(row, next), changed: true };
        });
      } catch (err) {
        if (!isUniqueViolation(err) || attempt >= 3) throw err;
      }
    }
  }

  async getDeployment(req: GetDeploymentRequest) {
    const row = await this.db.deployment.findUnique({ where: { name: req.name } });
    if (!row) throw new ConnectError(`deployment ${req.name} not found`, Code.NotFound);
    const rev = await this.db.revision.findUniqueOrThrow({
      where: { deploymentId_number: { deploymentId: row.id, number: row.currentRevision } },
    });
    return { deployment: deployment(row, rev) };
  }
}

export function deployRoutes(impl: DeployServiceImpl) {
  return (router: ConnectRouter) => router.service(DeployService, impl);
}
