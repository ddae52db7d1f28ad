// The rules on a service replica's health check that protovalidate cannot
// say alone. Deploy checks them on a ServiceSpec (ApplyDeployment) and the
// Scheduler on a JobSpec's service (SubmitJob, where Deploy's replicas
// arrive too), so one spec is refused with the same words at either door.

import type { HealthCheck } from "../gen/ts/drover/common/v1/service_pb.ts";

/** What is wrong: the field (a path under the spec that holds the check) and why. */
export interface HealthCheckProblem {
  field: string;
  why: string;
}

/**
 * The first problem of a replica's health check, or undefined: a tcp or
 * http check needs a port or assign_port; a docker replica is reachable on
 * its assigned port only (the agent publishes that one); a check command
 * is an argv like any other, without NUL bytes.
 */
export function healthCheckProblem(check: HealthCheck | undefined, assignPort: boolean, driver: string): HealthCheckProblem | undefined {
  const c = check?.check;
  switch (c?.case) {
    case "tcp":
    case "http": {
      const field = `health_check.${c.case}.port`;
      if (c.value.port === 0 && !assignPort) return { field, why: "a port is required (or set assign_port to check the replica's own port)" };
      if (c.value.port !== 0 && driver === "docker") {
        return { field, why: "a docker replica is checked on its assigned port: set 0 with assign_port (the container listens on $PORT, published on the host)" };
      }
      return undefined;
    }
    case "command": {
      const i = c.value.argv.findIndex((a) => a.includes("\0"));
      return i < 0 ? undefined : { field: `health_check.command.argv[${i}]`, why: "contains a NUL byte" };
    }
    default:
      return undefined;
  }
}
