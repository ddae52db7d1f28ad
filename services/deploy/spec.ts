// What a deployment's stored spec means: the strategy with its defaults,
// the checks ApplyDeployment makes beyond protovalidate, and the job that
// runs one replica.

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { ServiceSpec } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { JobSpecSchema, type JobSpec } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { healthCheckProblem } from "../../lib/health_check_rules.ts";
import { durationMs } from "../../lib/host/time.ts";
import { DEFAULT_STRATEGY, type Strategy } from "./rollout.ts";

export function strategyOf(spec: ServiceSpec): Strategy {
  const u = spec.update;
  const ms = (d: { seconds: bigint; nanos: number } | undefined, fallback: number) => (d ? durationMs(d) : fallback);
  return {
    maxParallel: u?.maxParallel ?? DEFAULT_STRATEGY.maxParallel,
    minHealthyMs: ms(u?.minHealthyTime, DEFAULT_STRATEGY.minHealthyMs),
    healthyDeadlineMs: ms(u?.healthyDeadline, DEFAULT_STRATEGY.healthyDeadlineMs),
    autoRevert: u?.autoRevert ?? DEFAULT_STRATEGY.autoRevert,
    canary: u?.canary ?? 0,
    autoPromote: u?.autoPromote ?? false,
    replaceUnhealthyMs: ms(spec.replaceUnhealthyAfter, DEFAULT_STRATEGY.replaceUnhealthyMs),
  };
}

/**
 * The rules protovalidate cannot say alone, each refused with the field's
 * path: a count or a selector, a health check that can work
 * (lib/health_check_rules.ts, which the Scheduler applies too), an image
 * for docker only, no more canaries than replicas.
 */
export function checkServiceSpec(spec: ServiceSpec, path = "spec"): void {
  const bad = (field: string, why: string) => new ConnectError(`${path}.${field}: ${why}`, Code.InvalidArgument);
  if (!spec.perAgent && spec.replicas === 0) throw bad("replicas", "must be at least 1 (or set per_agent)");
  if (spec.perAgent && spec.replicas !== 0) throw bad("replicas", "must be 0 with per_agent (one replica per matching agent)");
  const driver = spec.driver || "process";
  const problem = healthCheckProblem(spec.healthCheck, spec.assignPort, driver);
  if (problem) throw bad(problem.field, problem.why);
  if (driver === "docker" && !spec.exec?.image) throw bad("exec.image", "the docker driver needs an image");
  if (driver === "process" && spec.exec?.image) throw bad("exec.image", "only the docker driver runs an image");
  const s = strategyOf(spec);
  if (s.canary > 0 && spec.replicas > 0 && s.canary > spec.replicas) throw bad("update.canary", `more canaries (${s.canary}) than replicas (${spec.replicas})`);
}

export interface ReplicaJob {
  deployment: string;
  revision: number;
  replicaId: string;
  slot: string;
  pinAgent: string | null;
  avoidAgents: readonly string[];
}

/** The Scheduler job that runs one replica: no retries (Deploy replaces a replica whose job ends), no timeout. */
export function replicaJobSpec(spec: ServiceSpec, r: ReplicaJob): JobSpec {
  return create(JobSpecSchema, {
    name: `${r.deployment}/${r.slot}`.slice(0, 128),
    exec: spec.exec,
    driver: spec.driver,
    resources: spec.resources,
    constraints: {
      labels: spec.constraints?.labels ?? {},
      drivers: spec.constraints?.drivers ?? [],
      agentIds: r.pinAgent ? [r.pinAgent] : [],
      avoidAgentIds: [...r.avoidAgents].slice(0, 64),
    },
    retry: { maxRetries: 0 },
    service: {
      deployment: r.deployment,
      revision: r.revision,
      replicaId: r.replicaId,
      healthCheck: spec.healthCheck,
      restart: spec.restart,
      assignPort: spec.assignPort,
    },
  });
}
