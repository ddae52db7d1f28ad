// Values of a spec's secret_env are never shown back by the API (exec.proto
// says so). They stay in the stored spec, which the agent needs; every
// message built for a caller goes through these first.

import type { ExecSpec } from "../../gen/ts/drover/common/v1/exec_pb.ts";
import type { JobSpec, RunSpec } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";

export const REDACTED = "[REDACTED]";

/** Replaces, in place, the values of exec's secret_env names in its env and every command's env. */
export function redactExec(exec: ExecSpec | undefined): void {
  if (!exec || exec.secretEnv.length === 0) return;
  for (const name of exec.secretEnv) {
    if (name in exec.env) exec.env[name] = REDACTED;
    for (const c of exec.commands) if (name in c.env) c.env[name] = REDACTED;
  }
}

/** The values of exec's secret_env names, from its env and every command's env: what the Log service redacts from output. */
export function secretValues(exec: ExecSpec | undefined): string[] {
  if (!exec || exec.secretEnv.length === 0) return [];
  const values = new Set<string>();
  for (const name of exec.secretEnv) {
    if (name in exec.env) values.add(exec.env[name]!);
    for (const c of exec.commands) if (name in c.env) values.add(c.env[name]!);
  }
  return [...values];
}

export function redactJobSpec(spec: JobSpec | undefined): JobSpec | undefined {
  redactExec(spec?.exec);
  return spec;
}

export function redactRunSpec(spec: RunSpec | undefined): RunSpec | undefined {
  for (const stage of spec?.stages ?? []) redactJobSpec(stage.job);
  return spec;
}
