// One test per protovalidate rule declared in proto/drover, named after the
// field it sits on. Each breaks the rule in one place, expects exactly that
// violation (field path and rule id), and checks that a message next to it
// passes, so a rule that is too strict fails here as well as one that is
// missing. The last test makes sure no rule was left without a test.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create, hasOption, type DescFile, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator } from "@bufbuild/protovalidate";
import * as buf from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

import {
  ExplainPlacementRequestSchema,
  ListAuctionsRequestSchema,
  file_drover_bid_v1_bid_service,
} from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { CommandResultSchema, CommandSchema, ExecSpecSchema, file_drover_common_v1_exec } from "../gen/ts/drover/common/v1/exec_pb.ts";
import {
  ConstraintsSchema,
  ResourcesSchema,
  file_drover_common_v1_resources,
} from "../gen/ts/drover/common/v1/resources_pb.ts";
import {
  CommandCheckSchema,
  HealthCheckSchema,
  HealthState,
  HealthStatusSchema,
  HttpCheckSchema,
  RestartPolicySchema,
  ServiceRunSchema,
  TcpCheckSchema,
  file_drover_common_v1_service,
} from "../gen/ts/drover/common/v1/service_pb.ts";
import {
  ApplyDeploymentRequestSchema,
  DeleteDeploymentRequestSchema,
  GetDeploymentRequestSchema,
  ListDeploymentsRequestSchema,
  ListRevisionsRequestSchema,
  PauseDeploymentRequestSchema,
  PerAgentSchema,
  PromoteDeploymentRequestSchema,
  RestartDeploymentRequestSchema,
  ResumeDeploymentRequestSchema,
  RollbackDeploymentRequestSchema,
  ScaleDeploymentRequestSchema,
  ServiceSpecSchema,
  StopDeploymentRequestSchema,
  UpdateStrategySchema,
  WatchDeploymentRequestSchema,
  file_drover_deploy_v1_deploy_service,
} from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import {
  AckSchema,
  AttemptState,
  BidSchema,
  ConnectRequestSchema,
  DeclineSchema,
  HelloSchema,
  JobEventSchema,
  LogFrameSchema,
  LogStream,
  OfferSchema,
  file_drover_fleet_v1_agent_stream,
} from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import {
  AgentStatus,
  AuthenticateTokenRequestSchema,
  CordonAgentRequestSchema,
  CreateAgentTokenRequestSchema,
  CreateApiTokenRequestSchema,
  DeleteAgentRequestSchema,
  DrainAgentRequestSchema,
  GetAgentRequestSchema,
  ListAgentTokensRequestSchema,
  ListAgentsRequestSchema,
  ListApiTokensRequestSchema,
  OfferToSchema,
  RequestBidsRequestSchema,
  RevokeAgentTokenRequestSchema,
  RevokeApiTokenRequestSchema,
  Role,
  SendToAgentRequestSchema,
  SendToAgentsRequestSchema,
  SetAgentLabelsRequestSchema,
  UncordonAgentRequestSchema,
  UndrainAgentRequestSchema,
  WatchAgentsRequestSchema,
  file_drover_fleet_v1_fleet_service,
} from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import {
  FollowFrom,
  FollowLogsRequestSchema,
  IngestLogsRequestSchema,
  ReadLogsRequestSchema,
  Stream,
  file_drover_log_v1_log_service,
} from "../gen/ts/drover/log/v1/log_service_pb.ts";
import {
  AgentJobEventSchema,
  CancelJobRequestSchema,
  CancelJobsRequestSchema,
  CancelRunRequestSchema,
  ClaimPlaceableJobsRequestSchema,
  CreateScheduleRequestSchema,
  DeleteScheduleRequestSchema,
  GetRunRequestSchema,
  GetScheduleRequestSchema,
  ListRunsRequestSchema,
  ListSchedulesRequestSchema,
  MissedPolicy,
  OverlapPolicy,
  PauseScheduleRequestSchema,
  ResumeScheduleRequestSchema,
  RunModeSchema,
  RunSpecSchema,
  RunState,
  ScheduleSpecSchema,
  StageSpecSchema,
  SubmitRunRequestSchema,
  GetJobRequestSchema,
  JobSpecSchema,
  JobState,
  ListJobsRequestSchema,
  PlacementSchema,
  RecordPlacementsRequestSchema,
  ReportJobEventsRequestSchema,
  ReportRunningAttemptsRequestSchema,
  DescribeAttemptsRequestSchema,
  ResubmitJobRequestSchema,
  RetryPolicySchema,
  SubmitJobRequestSchema,
  SubmitJobsRequestSchema,
  WatchJobRequestSchema,
  file_drover_scheduler_v1_scheduler_service,
} from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";

const droverFiles: DescFile[] = [
  file_drover_common_v1_exec,
  file_drover_common_v1_resources,
  file_drover_common_v1_service,
  file_drover_fleet_v1_agent_stream,
  file_drover_fleet_v1_fleet_service,
  file_drover_scheduler_v1_scheduler_service,
  file_drover_bid_v1_bid_service,
  file_drover_deploy_v1_deploy_service,
  file_drover_log_v1_log_service,
];

const validator = createValidator();

/** A violation as the tests name it; forKey only for map keys. */
interface Found {
  path: string;
  ruleId: string;
  forKey?: true;
}

function violationsOf<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): Found[] {
  const result = validator.validate(schema, create(schema, init));
  if (result.kind === "error") throw result.error;
  if (result.kind === "valid") return [];
  return result.violations.map((v) => ({ path: pathToString(v.field), ruleId: v.ruleId, ...(v.forKey ? { forKey: true } : {}) }));
}

/** One broken message, the violation it must cause (alone, or all of them), and a passing neighbour. */
interface RuleCase<Desc extends DescMessage> {
  invalid: MessageInitShape<Desc>;
  expect: Found | Found[];
  valid: MessageInitShape<Desc>;
}

// "<message type>.<field or oneof>" of every rule a test below covers.
const covered = new Set<string>();

function rule<Desc extends DescMessage>(name: string, schema: Desc, field: string, ...cases: RuleCase<Desc>[]): void {
  // field "(message rules)" names the message's own rules (buf.validate.message).
  covered.add(field === "(message rules)" ? `${schema.typeName} (message rules)` : `${schema.typeName}.${field}`);
  it(name, () => {
    for (const c of cases) {
      assert.deepEqual(violationsOf(schema, c.invalid), [c.expect].flat(), `invalid: ${JSON.stringify(c.invalid, replacer)}`);
      assert.deepEqual(violationsOf(schema, c.valid), [], `valid: ${JSON.stringify(c.valid, replacer)}`);
    }
  });
}

function replacer(_key: string, value: unknown) {
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  if (typeof value === "string" && value.length > 80) return `<${value.length} characters>`;
  if (Array.isArray(value) && value.length > 20) return `<${value.length} items>`;
  return value;
}

// Helpers for the "too many" and "too long" cases.
const chars = (n: number, c = "a") => c.repeat(n);
const items = <T = string>(n: number, item: T = "x" as T): T[] => Array.from({ length: n }, () => item);
const pairs = (n: number, prefix = "K") => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, "v"]));

const exec = { commands: [{ argv: ["true"] }] };
const jobSpec = { exec };
const serviceSpec = { exec };
const uuid = "0b6c6f1e-3a4b-4c5d-8e9f-0a1b2c3d4e5f";

describe("drover.common.v1 rules", () => {
  rule("Command.argv needs at least one item", CommandSchema, "argv", {
    invalid: { argv: [] },
    expect: { path: "argv", ruleId: "repeated.min_items" },
    valid: { argv: ["true"] },
  });
  rule(
    "Command.argv holds at most 4096 items, each 1 to 65536 characters",
    CommandSchema,
    "argv",
    { invalid: { argv: items(4097) }, expect: { path: "argv", ruleId: "repeated.max_items" }, valid: { argv: items(4096) } },
    { invalid: { argv: ["echo", ""] }, expect: { path: "argv[1]", ruleId: "string.min_len" }, valid: { argv: ["echo", " "] } },
    {
      invalid: { argv: ["echo", chars(65537)] },
      expect: { path: "argv[1]", ruleId: "string.max_len" },
      valid: { argv: ["echo", chars(65536)] },
    },
  );
  rule("Command.cwd is at most 4096 characters", CommandSchema, "cwd", {
    invalid: { argv: ["true"], cwd: chars(4097) },
    expect: { path: "cwd", ruleId: "string.max_len" },
    valid: { argv: ["true"], cwd: chars(4096) },
  });
  rule(
    "Command.env keys must be POSIX names, at most 1024 of them",
    CommandSchema,
    "env",
    {
      invalid: { argv: ["true"], env: { "1ST": "v" } },
      expect: { path: 'env["1ST"]', ruleId: "string.pattern", forKey: true },
      valid: { argv: ["true"], env: { _1ST: "v" } },
    },
    {
      invalid: { argv: ["true"], env: { "MY-VAR": "v" } },
      expect: { path: 'env["MY-VAR"]', ruleId: "string.pattern", forKey: true },
      valid: { argv: ["true"], env: { MY_VAR: "" } },
    },
    {
      invalid: { argv: ["true"], env: pairs(1025) },
      expect: { path: "env", ruleId: "map.max_pairs" },
      valid: { argv: ["true"], env: pairs(1024) },
    },
  );
  rule("Command.timeout is at least one second when set", CommandSchema, "timeout", {
    invalid: { argv: ["true"], timeout: { nanos: 999_999_999 } },
    expect: { path: "timeout", ruleId: "duration.gte" },
    valid: { argv: ["true"], timeout: { seconds: 1n } },
  });

  rule(
    "ExecSpec.commands holds 1 to 64 commands",
    ExecSpecSchema,
    "commands",
    { invalid: { commands: [] }, expect: { path: "commands", ruleId: "repeated.min_items" }, valid: exec },
    {
      invalid: { commands: Array.from({ length: 65 }, () => ({ argv: ["true"] })) },
      expect: { path: "commands", ruleId: "repeated.max_items" },
      valid: { commands: Array.from({ length: 64 }, () => ({ argv: ["true"] })) },
    },
  );
  rule(
    "ExecSpec.env keys must be POSIX names, at most 1024 of them",
    ExecSpecSchema,
    "env",
    {
      invalid: { ...exec, env: { "A=B": "v" } },
      expect: { path: 'env["A=B"]', ruleId: "string.pattern", forKey: true },
      valid: { ...exec, env: { A_B: "v" } },
    },
    {
      invalid: { ...exec, env: pairs(1025) },
      expect: { path: "env", ruleId: "map.max_pairs" },
      valid: { ...exec, env: pairs(1024) },
    },
  );
  rule("ExecSpec.secret_env names must be POSIX names", ExecSpecSchema, "secret_env", {
    invalid: { ...exec, secretEnv: ["TOKEN", "api key"] },
    expect: { path: "secret_env[1]", ruleId: "string.pattern" },
    valid: { ...exec, secretEnv: ["TOKEN", "API_KEY"] },
  });

  rule("ExecSpec.image is at most 512 characters", ExecSpecSchema, "image", {
    invalid: { ...exec, image: "a".repeat(513) },
    expect: { path: "image", ruleId: "string.max_len" },
    valid: { ...exec, image: "a".repeat(512) },
  });
  rule("ExecSpec.memory_limit_bytes is at least 1 MiB when set", ExecSpecSchema, "memory_limit_bytes", {
    invalid: { ...exec, memoryLimitBytes: 1_048_575n },
    expect: { path: "memory_limit_bytes", ruleId: "uint64.gte" },
    valid: { ...exec, memoryLimitBytes: 1_048_576n },
  });
  rule(
    "ExecSpec.nice is 0 to 19",
    ExecSpecSchema,
    "nice",
    { invalid: { ...exec, nice: -1 }, expect: { path: "nice", ruleId: "int32.gte_lte" }, valid: { ...exec, nice: 0 } },
    { invalid: { ...exec, nice: 20 }, expect: { path: "nice", ruleId: "int32.gte_lte" }, valid: { ...exec, nice: 19 } },
  );
  rule(
    "ExecSpec.stop_grace_period is 0 to one hour",
    ExecSpecSchema,
    "stop_grace_period",
    {
      invalid: { ...exec, stopGracePeriod: { seconds: -1n } },
      expect: { path: "stop_grace_period", ruleId: "duration.gte_lte" },
      valid: { ...exec, stopGracePeriod: { seconds: 0n } },
    },
    {
      invalid: { ...exec, stopGracePeriod: { seconds: 3601n } },
      expect: { path: "stop_grace_period", ruleId: "duration.gte_lte" },
      valid: { ...exec, stopGracePeriod: { seconds: 3600n } },
    },
  );
  rule("CommandResult.message is at most 4096 characters", CommandResultSchema, "message", {
    invalid: { index: 0, message: "x".repeat(4097) },
    expect: { path: "message", ruleId: "string.max_len" },
    valid: { index: 0, message: "x".repeat(4096) },
  });

  rule("Resources.cpu_millis is at most 4096000", ResourcesSchema, "cpu_millis", {
    invalid: { cpuMillis: 4_096_001 },
    expect: { path: "cpu_millis", ruleId: "uint32.lte" },
    valid: { cpuMillis: 4_096_000 },
  });

  rule(
    "Constraints.labels has at most 64 pairs with label-shaped keys and values of at most 256 characters",
    ConstraintsSchema,
    "labels",
    {
      invalid: { labels: { "-zone": "a" } },
      expect: { path: 'labels["-zone"]', ruleId: "string.pattern", forKey: true },
      valid: { labels: { "topology.kubernetes.io/zone": "a" } },
    },
    {
      invalid: { labels: { [chars(64, "k")]: "a" } },
      expect: { path: `labels["${chars(64, "k")}"]`, ruleId: "string.pattern", forKey: true },
      valid: { labels: { [chars(63, "k")]: "a" } },
    },
    {
      invalid: { labels: { zone: chars(257) } },
      expect: { path: 'labels["zone"]', ruleId: "string.max_len" },
      valid: { labels: { zone: chars(256) } },
    },
    { invalid: { labels: pairs(65) }, expect: { path: "labels", ruleId: "map.max_pairs" }, valid: { labels: pairs(64) } },
  );
  rule(
    "Constraints.drivers holds at most 8 driver names",
    ConstraintsSchema,
    "drivers",
    {
      invalid: { drivers: ["process", "Docker"] },
      expect: { path: "drivers[1]", ruleId: "string.pattern" },
      valid: { drivers: ["process", "docker"] },
    },
    {
      invalid: { drivers: items(9, "process") },
      expect: { path: "drivers", ruleId: "repeated.max_items" },
      valid: { drivers: items(8, "process") },
    },
  );
  for (const [field, key] of [
    ["agent_ids", "agentIds"],
    ["avoid_agent_ids", "avoidAgentIds"],
  ] as const) {
    rule(
      `Constraints.${field} holds at most 64 agent ids of 1 to 64 characters`,
      ConstraintsSchema,
      field,
      { invalid: { [key]: items(65) }, expect: { path: field, ruleId: "repeated.max_items" }, valid: { [key]: items(64) } },
      { invalid: { [key]: ["ag_1", ""] }, expect: { path: `${field}[1]`, ruleId: "string.min_len" }, valid: { [key]: ["ag_1", "a"] } },
      { invalid: { [key]: [chars(65)] }, expect: { path: `${field}[0]`, ruleId: "string.max_len" }, valid: { [key]: [chars(64)] } },
      // Empty: any agent (agent_ids), none avoided (avoid_agent_ids).
      { invalid: { [key]: [" ", chars(65)] }, expect: { path: `${field}[1]`, ruleId: "string.max_len" }, valid: { [key]: [] } },
    );
  }
});

describe("drover.common.v1 service rules", () => {
  rule("ServiceRun.deployment is at most 63 characters", ServiceRunSchema, "deployment", {
    invalid: { deployment: chars(64), revision: 1 },
    expect: { path: "deployment", ruleId: "string.max_len" },
    valid: { deployment: chars(63), revision: 1 },
  });
  rule("ServiceRun.replica_id is at most 64 characters", ServiceRunSchema, "replica_id", {
    invalid: { deployment: "web", replicaId: chars(65) },
    expect: { path: "replica_id", ruleId: "string.max_len" },
    valid: { deployment: "web", replicaId: uuid },
  });

  rule(
    "HealthCheck.interval is 50 ms to one hour when set",
    HealthCheckSchema,
    "interval",
    { invalid: { interval: { nanos: 49_999_999 } }, expect: { path: "interval", ruleId: "duration.gte_lte" }, valid: { interval: { nanos: 50_000_000 } } },
    {
      // Set to zero is not the same as unset (5 s).
      invalid: { interval: {} },
      expect: { path: "interval", ruleId: "duration.gte_lte" },
      valid: {},
    },
    {
      invalid: { interval: { seconds: 3600n, nanos: 1 } },
      expect: { path: "interval", ruleId: "duration.gte_lte" },
      valid: { interval: { seconds: 3600n } },
    },
  );
  rule(
    "HealthCheck.timeout is 10 ms to one hour when set",
    HealthCheckSchema,
    "timeout",
    { invalid: { timeout: { nanos: 9_999_999 } }, expect: { path: "timeout", ruleId: "duration.gte_lte" }, valid: { timeout: { nanos: 10_000_000 } } },
    { invalid: { timeout: { seconds: -2n } }, expect: { path: "timeout", ruleId: "duration.gte_lte" }, valid: { timeout: { seconds: 2n } } },
    { invalid: { timeout: { seconds: 3601n } }, expect: { path: "timeout", ruleId: "duration.gte_lte" }, valid: { timeout: { seconds: 3600n } } },
  );
  rule("HealthCheck.healthy_threshold is at most 100", HealthCheckSchema, "healthy_threshold", {
    invalid: { healthyThreshold: 101 },
    expect: { path: "healthy_threshold", ruleId: "uint32.lte" },
    valid: { healthyThreshold: 100 },
  });
  rule("HealthCheck.unhealthy_threshold is at most 100", HealthCheckSchema, "unhealthy_threshold", {
    invalid: { unhealthyThreshold: 101 },
    expect: { path: "unhealthy_threshold", ruleId: "uint32.lte" },
    // 0 means the default (3).
    valid: { unhealthyThreshold: 0 },
  });
  rule(
    "HealthCheck.initial_delay is zero to one hour",
    HealthCheckSchema,
    "initial_delay",
    { invalid: { initialDelay: { nanos: -1 } }, expect: { path: "initial_delay", ruleId: "duration.gte_lte" }, valid: { initialDelay: {} } },
    { invalid: { initialDelay: { seconds: 3601n } }, expect: { path: "initial_delay", ruleId: "duration.gte_lte" }, valid: { initialDelay: { seconds: 3600n } } },
  );

  rule("TcpCheck.port is at most 65535", TcpCheckSchema, "port", {
    invalid: { port: 65_536 },
    expect: { path: "port", ruleId: "uint32.lte" },
    valid: { port: 65_535 },
  });
  rule("HttpCheck.port is at most 65535", HttpCheckSchema, "port", {
    invalid: { port: 65_536, path: "/healthz" },
    expect: { path: "port", ruleId: "uint32.lte" },
    // 0: the replica's assigned port.
    valid: { port: 0, path: "/healthz" },
  });
  rule(
    "HttpCheck.path is empty or starts with '/', has no whitespace, at most 2048 characters",
    HttpCheckSchema,
    "path",
    { invalid: { port: 8080, path: "healthz" }, expect: { path: "path", ruleId: "string.pattern" }, valid: { port: 8080, path: "/healthz" } },
    { invalid: { port: 8080, path: "/health z" }, expect: { path: "path", ruleId: "string.pattern" }, valid: { port: 8080, path: "/health?z=1&a=%20" } },
    { invalid: { port: 8080, path: "/\n" }, expect: { path: "path", ruleId: "string.pattern" }, valid: { port: 8080, path: "" } },
    { invalid: { port: 8080, path: `/${chars(2048)}` }, expect: { path: "path", ruleId: "string.max_len" }, valid: { port: 8080, path: `/${chars(2047)}` } },
  );
  rule(
    "CommandCheck.argv holds 1 to 256 items of 1 to 4096 characters",
    CommandCheckSchema,
    "argv",
    { invalid: { argv: [] }, expect: { path: "argv", ruleId: "repeated.min_items" }, valid: { argv: ["true"] } },
    { invalid: { argv: items(257) }, expect: { path: "argv", ruleId: "repeated.max_items" }, valid: { argv: items(256) } },
    { invalid: { argv: ["test", ""] }, expect: { path: "argv[1]", ruleId: "string.min_len" }, valid: { argv: ["test", " "] } },
    { invalid: { argv: ["test", chars(4097)] }, expect: { path: "argv[1]", ruleId: "string.max_len" }, valid: { argv: ["test", chars(4096)] } },
  );

  rule(
    "RestartPolicy.initial_delay is zero to one hour",
    RestartPolicySchema,
    "initial_delay",
    { invalid: { initialDelay: { seconds: -1n } }, expect: { path: "initial_delay", ruleId: "duration.gte_lte" }, valid: { initialDelay: {} } },
    { invalid: { initialDelay: { seconds: 3600n, nanos: 1 } }, expect: { path: "initial_delay", ruleId: "duration.gte_lte" }, valid: { initialDelay: { seconds: 3600n } } },
  );
  rule(
    "RestartPolicy.max_delay is zero to one day",
    RestartPolicySchema,
    "max_delay",
    { invalid: { maxDelay: { nanos: -1 } }, expect: { path: "max_delay", ruleId: "duration.gte_lte" }, valid: { maxDelay: {} } },
    { invalid: { maxDelay: { seconds: 86_401n } }, expect: { path: "max_delay", ruleId: "duration.gte_lte" }, valid: { maxDelay: { seconds: 86_400n } } },
  );

  rule("HealthStatus.state must be a defined state", HealthStatusSchema, "state", {
    invalid: { state: 3 as HealthState },
    expect: { path: "state", ruleId: "enum.defined_only" },
    // HEALTH_STATE_UNSPECIFIED is defined: not checked yet.
    valid: { state: HealthState.UNSPECIFIED },
  });
  rule("HealthStatus.message is at most 4096 characters", HealthStatusSchema, "message", {
    invalid: { state: HealthState.UNHEALTHY, message: chars(4097) },
    expect: { path: "message", ruleId: "string.max_len" },
    valid: { state: HealthState.UNHEALTHY, message: chars(4096) },
  });
  rule("HealthStatus.port is at most 65535", HealthStatusSchema, "port", {
    invalid: { state: HealthState.HEALTHY, port: 65_536 },
    expect: { path: "port", ruleId: "uint32.lte" },
    valid: { state: HealthState.HEALTHY, port: 65_535 },
  });

  it("reports a health check rule inside a job's service run with the whole field path", () => {
    assert.deepEqual(
      violationsOf(SubmitJobRequestSchema, { spec: { ...jobSpec, service: { deployment: "web", healthCheck: { check: { case: "tcp", value: { port: 70_000 } } } } } }),
      [{ path: "spec.service.health_check.tcp.port", ruleId: "uint32.lte" }],
    );
    assert.deepEqual(
      violationsOf(SubmitJobRequestSchema, { spec: { ...jobSpec, service: { deployment: "web", restart: { maxDelay: { seconds: 86_401n } } } } }),
      [{ path: "spec.service.restart.max_delay", ruleId: "duration.gte_lte" }],
    );
  });
  it("reports a HealthStatus rule inside a job event with the whole field path", () => {
    const event = { eventId: "e1", attemptId: "a1", state: AttemptState.RUNNING };
    assert.deepEqual(violationsOf(JobEventSchema, { ...event, health: { state: HealthState.HEALTHY, port: 65_536 } }), [
      { path: "health.port", ruleId: "uint32.lte" },
    ]);
    assert.deepEqual(violationsOf(JobEventSchema, { ...event, health: { state: HealthState.HEALTHY, port: 8080 } }), []);
  });
});

describe("drover.scheduler.v1 rules", () => {
  rule("SubmitJobRequest.spec is required", SubmitJobRequestSchema, "spec", {
    invalid: {},
    expect: { path: "spec", ruleId: "required" },
    valid: { spec: jobSpec },
  });
  rule("SubmitJobRequest.idempotency_key is at most 128 characters", SubmitJobRequestSchema, "idempotency_key", {
    invalid: { spec: jobSpec, idempotencyKey: chars(129) },
    expect: { path: "idempotency_key", ruleId: "string.max_len" },
    valid: { spec: jobSpec, idempotencyKey: chars(128) },
  });
  rule(
    "SubmitJobsRequest.jobs holds 1 to 1000 jobs, each checked as a SubmitJob",
    SubmitJobsRequestSchema,
    "jobs",
    { invalid: { jobs: [] }, expect: { path: "jobs", ruleId: "repeated.min_items" }, valid: { jobs: [{ spec: jobSpec }] } },
    { invalid: { jobs: items(1001, { spec: jobSpec }) }, expect: { path: "jobs", ruleId: "repeated.max_items" }, valid: { jobs: items(1000, { spec: jobSpec }) } },
    { invalid: { jobs: [{ spec: jobSpec }, {}] }, expect: { path: "jobs[1].spec", ruleId: "required" }, valid: { jobs: [{ spec: jobSpec }, { spec: jobSpec }] } },
  );
  rule("JobSpec.exec is required", JobSpecSchema, "exec", {
    invalid: { name: "build" },
    expect: { path: "exec", ruleId: "required" },
    valid: { name: "build", exec },
  });
  rule("JobSpec.name is at most 128 characters", JobSpecSchema, "name", {
    invalid: { ...jobSpec, name: chars(129) },
    expect: { path: "name", ruleId: "string.max_len" },
    valid: { ...jobSpec, name: chars(128) },
  });
  rule("JobSpec.driver is empty, process or docker", JobSpecSchema, "driver", {
    invalid: { ...jobSpec, driver: "podman" },
    expect: { path: "driver", ruleId: "string.in" },
    valid: { ...jobSpec, driver: "docker" },
  });
  rule(
    "JobSpec.priority is within -1000..1000",
    JobSpecSchema,
    "priority",
    { invalid: { ...jobSpec, priority: 1001 }, expect: { path: "priority", ruleId: "int32.gte_lte" }, valid: { ...jobSpec, priority: 1000 } },
    { invalid: { ...jobSpec, priority: -1001 }, expect: { path: "priority", ruleId: "int32.gte_lte" }, valid: { ...jobSpec, priority: -1000 } },
  );
  rule("JobSpec.timeout is at least one second when set", JobSpecSchema, "timeout", {
    invalid: { ...jobSpec, timeout: { seconds: 0n } },
    expect: { path: "timeout", ruleId: "duration.gte" },
    valid: { ...jobSpec, timeout: { seconds: 1n } },
  });
  rule("JobSpec.concurrency_key is at most 128 characters", JobSpecSchema, "concurrency_key", {
    invalid: { ...jobSpec, concurrencyKey: chars(129) },
    expect: { path: "concurrency_key", ruleId: "string.max_len" },
    valid: { ...jobSpec, concurrencyKey: chars(128) },
  });
  rule("JobSpec.concurrency_limit is at most 10000", JobSpecSchema, "concurrency_limit", {
    invalid: { ...jobSpec, concurrencyLimit: 10_001 },
    expect: { path: "concurrency_limit", ruleId: "uint32.lte" },
    valid: { ...jobSpec, concurrencyLimit: 10_000 },
  });
  rule("RetryPolicy.max_retries is at most 100", RetryPolicySchema, "max_retries", {
    invalid: { maxRetries: 101 },
    expect: { path: "max_retries", ruleId: "uint32.lte" },
    valid: { maxRetries: 100 },
  });
  rule("RetryPolicy.initial_backoff is not negative", RetryPolicySchema, "initial_backoff", {
    invalid: { initialBackoff: { nanos: -1 } },
    expect: { path: "initial_backoff", ruleId: "duration.gte" },
    valid: { initialBackoff: {} },
  });
  rule("RetryPolicy.max_backoff is not negative", RetryPolicySchema, "max_backoff", {
    invalid: { maxBackoff: { seconds: -1n } },
    expect: { path: "max_backoff", ruleId: "duration.gte" },
    valid: { maxBackoff: { seconds: 300n } },
  });
  rule(
    "RetryPolicy.multiplier is within 1..10 when set",
    RetryPolicySchema,
    "multiplier",
    { invalid: { multiplier: 0.5 }, expect: { path: "multiplier", ruleId: "double.gte_lte" }, valid: { multiplier: 1 } },
    { invalid: { multiplier: 10.01 }, expect: { path: "multiplier", ruleId: "double.gte_lte" }, valid: { multiplier: 10 } },
    { invalid: { multiplier: -2 }, expect: { path: "multiplier", ruleId: "double.gte_lte" }, valid: { multiplier: 2 } },
    // 0 means the default (2), so it is not checked; NaN is not 0.
    { invalid: { multiplier: Number.NaN }, expect: { path: "multiplier", ruleId: "double.gte_lte" }, valid: { multiplier: 0 } },
  );
  rule("RetryPolicy.non_retryable_exit_codes holds at most 64 codes", RetryPolicySchema, "non_retryable_exit_codes", {
    invalid: { nonRetryableExitCodes: Array.from({ length: 65 }, (_, i) => i) },
    expect: { path: "non_retryable_exit_codes", ruleId: "repeated.max_items" },
    // Any int32 is a code, negative ones included.
    valid: { nonRetryableExitCodes: Array.from({ length: 64 }, (_, i) => i - 1) },
  });
  rule(
    "GetJobRequest.id must be a UUID",
    GetJobRequestSchema,
    "id",
    { invalid: { id: "job-1" }, expect: { path: "id", ruleId: "string.uuid" }, valid: { id: uuid } },
    { invalid: { id: "" }, expect: { path: "id", ruleId: "string.uuid_empty" }, valid: { id: uuid.toUpperCase() } },
  );

  rule("ListJobsRequest.state must be a defined state", ListJobsRequestSchema, "state", {
    invalid: { state: 10 as JobState },
    expect: { path: "state", ruleId: "enum.defined_only" },
    // JOB_STATE_UNSPECIFIED is defined: it means all jobs.
    valid: { state: JobState.UNSPECIFIED },
  });
  rule("ListJobsRequest.page_size is at most 1000", ListJobsRequestSchema, "page_size", {
    invalid: { state: JobState.DEAD, pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { state: JobState.DEAD, pageSize: 1000 },
  });
  rule("ListJobsRequest.page_token is at most 256 characters", ListJobsRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });
  rule(
    "ListJobsRequest.ids holds at most 1000 UUIDs",
    ListJobsRequestSchema,
    "ids",
    { invalid: { ids: items(1001, uuid) }, expect: { path: "ids", ruleId: "repeated.max_items" }, valid: { ids: items(1000, uuid) } },
    { invalid: { ids: [uuid, "job-1"] }, expect: { path: "ids[1]", ruleId: "string.uuid" }, valid: { ids: [uuid, uuid.toUpperCase()] } },
    // Empty: no filter by id.
    { invalid: { ids: [""] }, expect: { path: "ids[0]", ruleId: "string.uuid_empty" }, valid: { ids: [] } },
  );

  rule(
    "CancelJobRequest.id must be a UUID",
    CancelJobRequestSchema,
    "id",
    { invalid: { id: "job-1" }, expect: { path: "id", ruleId: "string.uuid" }, valid: { id: uuid } },
    { invalid: { id: "" }, expect: { path: "id", ruleId: "string.uuid_empty" }, valid: { id: uuid.toUpperCase() } },
  );
  rule(
    "CancelJobRequest.grace_period is within 0..1 hour",
    CancelJobRequestSchema,
    "grace_period",
    {
      invalid: { id: uuid, gracePeriod: { nanos: -1 } },
      expect: { path: "grace_period", ruleId: "duration.gte_lte" },
      valid: { id: uuid, gracePeriod: {} },
    },
    {
      invalid: { id: uuid, gracePeriod: { seconds: 3600n, nanos: 1 } },
      expect: { path: "grace_period", ruleId: "duration.gte_lte" },
      valid: { id: uuid, gracePeriod: { seconds: 3600n } },
    },
  );
  rule(
    "CancelJobsRequest.jobs holds 1 to 1000 jobs, each checked as a CancelJob",
    CancelJobsRequestSchema,
    "jobs",
    { invalid: { jobs: [] }, expect: { path: "jobs", ruleId: "repeated.min_items" }, valid: { jobs: [{ id: uuid }] } },
    { invalid: { jobs: items(1001, { id: uuid }) }, expect: { path: "jobs", ruleId: "repeated.max_items" }, valid: { jobs: items(1000, { id: uuid }) } },
    { invalid: { jobs: [{ id: uuid }, { id: "job-2" }] }, expect: { path: "jobs[1].id", ruleId: "string.uuid" }, valid: { jobs: [{ id: uuid }, { id: uuid, reason: "done" }] } },
  );
  rule("CancelJobRequest.reason is at most 1024 characters", CancelJobRequestSchema, "reason", {
    invalid: { id: uuid, reason: chars(1025) },
    expect: { path: "reason", ruleId: "string.max_len" },
    valid: { id: uuid, reason: chars(1024) },
  });

  rule(
    "WatchJobRequest.id must be a UUID",
    WatchJobRequestSchema,
    "id",
    { invalid: { id: `${uuid} ` }, expect: { path: "id", ruleId: "string.uuid" }, valid: { id: uuid } },
    { invalid: { id: "" }, expect: { path: "id", ruleId: "string.uuid_empty" }, valid: { id: uuid.toUpperCase() } },
  );

  rule(
    "ResubmitJobRequest.id must be a UUID",
    ResubmitJobRequestSchema,
    "id",
    { invalid: { id: "job-1" }, expect: { path: "id", ruleId: "string.uuid" }, valid: { id: uuid } },
    { invalid: { id: "" }, expect: { path: "id", ruleId: "string.uuid_empty" }, valid: { id: uuid.toUpperCase() } },
  );
  rule("ResubmitJobRequest.idempotency_key is at most 128 characters", ResubmitJobRequestSchema, "idempotency_key", {
    invalid: { id: uuid, idempotencyKey: chars(129) },
    expect: { path: "idempotency_key", ruleId: "string.max_len" },
    valid: { id: uuid, idempotencyKey: chars(128) },
  });

  const claim = { bidder: "bid-0", maxJobs: 100 };
  rule(
    "ClaimPlaceableJobsRequest.bidder is 1 to 128 characters",
    ClaimPlaceableJobsRequestSchema,
    "bidder",
    { invalid: { ...claim, bidder: "" }, expect: { path: "bidder", ruleId: "string.min_len" }, valid: { ...claim, bidder: "b" } },
    { invalid: { ...claim, bidder: chars(129) }, expect: { path: "bidder", ruleId: "string.max_len" }, valid: { ...claim, bidder: chars(128) } },
  );
  rule(
    "ClaimPlaceableJobsRequest.max_jobs is within 1..1000",
    ClaimPlaceableJobsRequestSchema,
    "max_jobs",
    { invalid: { ...claim, maxJobs: 0 }, expect: { path: "max_jobs", ruleId: "uint32.gte_lte" }, valid: { ...claim, maxJobs: 1 } },
    { invalid: { ...claim, maxJobs: 1001 }, expect: { path: "max_jobs", ruleId: "uint32.gte_lte" }, valid: { ...claim, maxJobs: 1000 } },
  );
  rule(
    "ClaimPlaceableJobsRequest.wait is within 0..30 seconds",
    ClaimPlaceableJobsRequestSchema,
    "wait",
    { invalid: { ...claim, wait: { seconds: -1n } }, expect: { path: "wait", ruleId: "duration.gte_lte" }, valid: { ...claim, wait: {} } },
    {
      invalid: { ...claim, wait: { seconds: 30n, nanos: 1 } },
      expect: { path: "wait", ruleId: "duration.gte_lte" },
      valid: { ...claim, wait: { seconds: 30n } },
    },
  );

  const placement = { jobId: uuid, claimId: "c1" };
  rule(
    "Placement.job_id must be a UUID",
    PlacementSchema,
    "job_id",
    { invalid: { ...placement, jobId: "job-1" }, expect: { path: "job_id", ruleId: "string.uuid" }, valid: placement },
    { invalid: { ...placement, jobId: "" }, expect: { path: "job_id", ruleId: "string.uuid_empty" }, valid: { ...placement, jobId: uuid.toUpperCase() } },
  );
  rule(
    "Placement.claim_id is 1 to 64 characters",
    PlacementSchema,
    "claim_id",
    { invalid: { ...placement, claimId: "" }, expect: { path: "claim_id", ruleId: "string.min_len" }, valid: { ...placement, claimId: "c" } },
    { invalid: { ...placement, claimId: chars(65) }, expect: { path: "claim_id", ruleId: "string.max_len" }, valid: { ...placement, claimId: chars(64) } },
  );
  rule("Placement.agent_id is at most 64 characters", PlacementSchema, "agent_id", {
    invalid: { ...placement, agentId: chars(65) },
    expect: { path: "agent_id", ruleId: "string.max_len" },
    // Empty: no winner.
    valid: { ...placement, agentId: "" },
  });
  rule(
    "Placement.auction_id must be a UUID when set",
    PlacementSchema,
    "auction_id",
    { invalid: { ...placement, auctionId: "auction-1" }, expect: { path: "auction_id", ruleId: "string.uuid" }, valid: { ...placement, auctionId: uuid } },
    // Empty means no auction was recorded, so it is not checked.
    { invalid: { ...placement, auctionId: " " }, expect: { path: "auction_id", ruleId: "string.uuid" }, valid: { ...placement, auctionId: "" } },
  );
  rule("Placement.wait_reason is at most 1024 characters", PlacementSchema, "wait_reason", {
    invalid: { ...placement, waitReason: chars(1025) },
    expect: { path: "wait_reason", ruleId: "string.max_len" },
    valid: { ...placement, waitReason: chars(1024) },
  });
  rule(
    "Placement.retry_after is zero to one hour",
    PlacementSchema,
    "retry_after",
    { invalid: { ...placement, retryAfter: { seconds: -1n } }, expect: { path: "retry_after", ruleId: "duration.gte_lte" }, valid: { ...placement, retryAfter: {} } },
    { invalid: { ...placement, retryAfter: { seconds: 3601n } }, expect: { path: "retry_after", ruleId: "duration.gte_lte" }, valid: { ...placement, retryAfter: { seconds: 3600n } } },
  );
  rule(
    "RecordPlacementsRequest.placements holds 1 to 1000 placements",
    RecordPlacementsRequestSchema,
    "placements",
    { invalid: { placements: [] }, expect: { path: "placements", ruleId: "repeated.min_items" }, valid: { placements: [placement] } },
    {
      invalid: { placements: items(1001, placement) },
      expect: { path: "placements", ruleId: "repeated.max_items" },
      valid: { placements: items(1000, placement) },
    },
  );

  const agentJobEvent = { agentId: "ag_1", event: { eventId: "e1", attemptId: "a1", state: AttemptState.RUNNING } };
  rule(
    "AgentJobEvent.agent_id is 1 to 64 characters",
    AgentJobEventSchema,
    "agent_id",
    { invalid: { ...agentJobEvent, agentId: "" }, expect: { path: "agent_id", ruleId: "string.min_len" }, valid: agentJobEvent },
    { invalid: { ...agentJobEvent, agentId: chars(65) }, expect: { path: "agent_id", ruleId: "string.max_len" }, valid: { ...agentJobEvent, agentId: chars(64) } },
  );
  rule("AgentJobEvent.event is required", AgentJobEventSchema, "event", {
    invalid: { agentId: "ag_1" },
    expect: { path: "event", ruleId: "required" },
    valid: agentJobEvent,
  });
  rule(
    "ReportJobEventsRequest.events holds 1 to 10000 events",
    ReportJobEventsRequestSchema,
    "events",
    { invalid: { events: [] }, expect: { path: "events", ruleId: "repeated.min_items" }, valid: { events: [agentJobEvent] } },
    {
      invalid: { events: items(10_001, agentJobEvent) },
      expect: { path: "events", ruleId: "repeated.max_items" },
      valid: { events: items(10_000, agentJobEvent) },
    },
  );

  rule(
    "ReportRunningAttemptsRequest.agent_id is 1 to 64 characters",
    ReportRunningAttemptsRequestSchema,
    "agent_id",
    { invalid: { agentId: "" }, expect: { path: "agent_id", ruleId: "string.min_len" }, valid: { agentId: "ag_1" } },
    { invalid: { agentId: chars(65) }, expect: { path: "agent_id", ruleId: "string.max_len" }, valid: { agentId: chars(64) } },
  );
  const running = { attemptId: "a1", jobId: uuid, state: AttemptState.RUNNING };
  rule("ReportRunningAttemptsRequest.running holds at most 10000 attempts", ReportRunningAttemptsRequestSchema, "running", {
    invalid: { agentId: "ag_1", running: items(10_001, running) },
    expect: { path: "running", ruleId: "repeated.max_items" },
    // None running is the usual case after a restart.
    valid: { agentId: "ag_1", running: [] },
  });
  rule(
    "DescribeAttemptsRequest.attempt_ids holds 1 to 1000 ids of 1 to 128 characters",
    DescribeAttemptsRequestSchema,
    "attempt_ids",
    { invalid: { attemptIds: [] }, expect: { path: "attempt_ids", ruleId: "repeated.min_items" }, valid: { attemptIds: ["a1"] } },
    { invalid: { attemptIds: items(1001) }, expect: { path: "attempt_ids", ruleId: "repeated.max_items" }, valid: { attemptIds: items(1000) } },
    { invalid: { attemptIds: ["a1", ""] }, expect: { path: "attempt_ids[1]", ruleId: "string.min_len" }, valid: { attemptIds: [chars(128)] } },
    { invalid: { attemptIds: [chars(129)] }, expect: { path: "attempt_ids[0]", ruleId: "string.max_len" }, valid: { attemptIds: ["a1", "a2"] } },
  );

  it("reports a rule broken deep inside a request with the whole field path", () => {
    assert.deepEqual(violationsOf(SubmitJobRequestSchema, { spec: { exec: { commands: [{ argv: [] }] } } }), [
      { path: "spec.exec.commands[0].argv", ruleId: "repeated.min_items" },
    ]);
    assert.deepEqual(violationsOf(SubmitJobRequestSchema, { spec: { retry: { maxRetries: 1 } } }), [
      { path: "spec.exec", ruleId: "required" },
    ]);
  });
});

describe("drover.scheduler.v1 run, run mode and schedule rules", () => {
  rule(
    "RunMode.n_times is 1 to 100000",
    RunModeSchema,
    "n_times",
    { invalid: { mode: { case: "nTimes", value: 0 } }, expect: { path: "n_times", ruleId: "uint32.gte_lte" }, valid: { mode: { case: "nTimes", value: 1 } } },
    { invalid: { mode: { case: "nTimes", value: 100_001 } }, expect: { path: "n_times", ruleId: "uint32.gte_lte" }, valid: { mode: { case: "nTimes", value: 100_000 } } },
  );
  rule("RunMode.forever is true when set", RunModeSchema, "forever", {
    invalid: { mode: { case: "forever", value: false } },
    expect: { path: "forever", ruleId: "bool.const" },
    valid: { mode: { case: "forever", value: true } },
  });
  rule(
    "RunMode.delay is zero to one day",
    RunModeSchema,
    "delay",
    { invalid: { delay: { seconds: -1n } }, expect: { path: "delay", ruleId: "duration.gte_lte" }, valid: { delay: {} } },
    { invalid: { delay: { seconds: 86_401n } }, expect: { path: "delay", ruleId: "duration.gte_lte" }, valid: { delay: { seconds: 86_400n } } },
  );

  const stage = { name: "build", job: jobSpec };
  rule(
    "StageSpec.name is 1 to 64 letters, digits, dots, underscores or dashes",
    StageSpecSchema,
    "name",
    { invalid: { ...stage, name: "" }, expect: [{ path: "name", ruleId: "string.min_len" }, { path: "name", ruleId: "string.pattern" }], valid: { ...stage, name: "b" } },
    { invalid: { ...stage, name: chars(65) }, expect: { path: "name", ruleId: "string.max_len" }, valid: { ...stage, name: chars(64) } },
    { invalid: { ...stage, name: "unit tests" }, expect: { path: "name", ruleId: "string.pattern" }, valid: { ...stage, name: "unit_tests-1.2" } },
  );
  rule(
    "StageSpec.requires holds at most 256 names of 1 to 64 characters",
    StageSpecSchema,
    "requires",
    { invalid: { ...stage, requires: items(257) }, expect: { path: "requires", ruleId: "repeated.max_items" }, valid: { ...stage, requires: items(256) } },
    { invalid: { ...stage, requires: ["a", ""] }, expect: { path: "requires[1]", ruleId: "string.min_len" }, valid: { ...stage, requires: ["a", "b"] } },
    { invalid: { ...stage, requires: [chars(65)] }, expect: { path: "requires[0]", ruleId: "string.max_len" }, valid: { ...stage, requires: [chars(64)] } },
  );
  rule("StageSpec.job is required", StageSpecSchema, "job", {
    invalid: { name: "build" },
    expect: { path: "job", ruleId: "required" },
    valid: stage,
  });
  rule("RunSpec.name is at most 128 characters", RunSpecSchema, "name", {
    invalid: { name: chars(129), stages: [stage] },
    expect: { path: "name", ruleId: "string.max_len" },
    valid: { name: chars(128), stages: [stage] },
  });
  rule(
    "RunSpec.stages holds 1 to 1000 stages",
    RunSpecSchema,
    "stages",
    { invalid: { stages: [] }, expect: { path: "stages", ruleId: "repeated.min_items" }, valid: { stages: [stage] } },
    { invalid: { stages: items(1001, stage) }, expect: { path: "stages", ruleId: "repeated.max_items" }, valid: { stages: items(1000, stage) } },
  );
  const runSpec = { stages: [stage] };
  rule("SubmitRunRequest.spec is required", SubmitRunRequestSchema, "spec", {
    invalid: {},
    expect: { path: "spec", ruleId: "required" },
    valid: { spec: runSpec },
  });
  rule("SubmitRunRequest.idempotency_key is at most 128 characters", SubmitRunRequestSchema, "idempotency_key", {
    invalid: { spec: runSpec, idempotencyKey: chars(129) },
    expect: { path: "idempotency_key", ruleId: "string.max_len" },
    valid: { spec: runSpec, idempotencyKey: chars(128) },
  });
  rule("GetRunRequest.id must be a UUID", GetRunRequestSchema, "id", {
    invalid: { id: "run-1" },
    expect: { path: "id", ruleId: "string.uuid" },
    valid: { id: uuid },
  });
  rule("ListRunsRequest.state must be a defined state", ListRunsRequestSchema, "state", {
    invalid: { state: 99 as RunState },
    expect: { path: "state", ruleId: "enum.defined_only" },
    valid: { state: RunState.FAILED },
  });
  rule("ListRunsRequest.page_size is at most 1000", ListRunsRequestSchema, "page_size", {
    invalid: { pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { pageSize: 1000 },
  });
  rule("ListRunsRequest.page_token is at most 256 characters", ListRunsRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });
  rule("CancelRunRequest.id must be a UUID", CancelRunRequestSchema, "id", {
    invalid: { id: "" },
    expect: { path: "id", ruleId: "string.uuid_empty" },
    valid: { id: uuid },
  });
  rule(
    "CancelRunRequest.grace_period is zero to one hour",
    CancelRunRequestSchema,
    "grace_period",
    { invalid: { id: uuid, gracePeriod: { seconds: -1n } }, expect: { path: "grace_period", ruleId: "duration.gte_lte" }, valid: { id: uuid, gracePeriod: {} } },
    { invalid: { id: uuid, gracePeriod: { seconds: 3601n } }, expect: { path: "grace_period", ruleId: "duration.gte_lte" }, valid: { id: uuid, gracePeriod: { seconds: 3600n } } },
  );
  rule("CancelRunRequest.reason is at most 1024 characters", CancelRunRequestSchema, "reason", {
    invalid: { id: uuid, reason: chars(1025) },
    expect: { path: "reason", ruleId: "string.max_len" },
    valid: { id: uuid, reason: chars(1024) },
  });

  const schedule = { name: "nightly", cron: "0 3 * * *", template: { case: "job" as const, value: jobSpec } };
  rule(
    "ScheduleSpec.name is 1 to 128 letters, digits, dots, underscores or dashes",
    ScheduleSpecSchema,
    "name",
    { invalid: { ...schedule, name: "" }, expect: [{ path: "name", ruleId: "string.min_len" }, { path: "name", ruleId: "string.pattern" }], valid: { ...schedule, name: "n" } },
    { invalid: { ...schedule, name: chars(129) }, expect: { path: "name", ruleId: "string.max_len" }, valid: { ...schedule, name: chars(128) } },
    { invalid: { ...schedule, name: "nightly/backup" }, expect: { path: "name", ruleId: "string.pattern" }, valid: { ...schedule, name: "nightly.backup_1-a" } },
  );
  rule(
    "ScheduleSpec.cron is 1 to 256 characters",
    ScheduleSpecSchema,
    "cron",
    { invalid: { ...schedule, cron: "" }, expect: { path: "cron", ruleId: "string.min_len" }, valid: { ...schedule, cron: "@hourly" } },
    { invalid: { ...schedule, cron: chars(257, " ") }, expect: { path: "cron", ruleId: "string.max_len" }, valid: { ...schedule, cron: chars(256, " ") } },
  );
  rule("ScheduleSpec.time_zone is at most 64 characters", ScheduleSpecSchema, "time_zone", {
    invalid: { ...schedule, timeZone: chars(65) },
    expect: { path: "time_zone", ruleId: "string.max_len" },
    valid: { ...schedule, timeZone: "America/Argentina/ComodRivadavia" },
  });
  rule("ScheduleSpec.template is required: a job or a run", ScheduleSpecSchema, "template", {
    invalid: { name: "nightly", cron: "0 3 * * *" },
    expect: { path: "template", ruleId: "required" },
    valid: { name: "nightly", cron: "0 3 * * *", template: { case: "run", value: runSpec } },
  });
  rule("ScheduleSpec.overlap must be a defined policy", ScheduleSpecSchema, "overlap", {
    invalid: { ...schedule, overlap: 7 as OverlapPolicy },
    expect: { path: "overlap", ruleId: "enum.defined_only" },
    valid: { ...schedule, overlap: OverlapPolicy.CANCEL_PREVIOUS },
  });
  rule("ScheduleSpec.missed must be a defined policy", ScheduleSpecSchema, "missed", {
    invalid: { ...schedule, missed: 7 as MissedPolicy },
    expect: { path: "missed", ruleId: "enum.defined_only" },
    valid: { ...schedule, missed: MissedPolicy.BACKFILL },
  });
  rule("ScheduleSpec.backfill_limit is at most 1000", ScheduleSpecSchema, "backfill_limit", {
    invalid: { ...schedule, backfillLimit: 1001 },
    expect: { path: "backfill_limit", ruleId: "uint32.lte" },
    valid: { ...schedule, backfillLimit: 1000 },
  });
  rule("CreateScheduleRequest.spec is required", CreateScheduleRequestSchema, "spec", {
    invalid: { paused: true },
    expect: { path: "spec", ruleId: "required" },
    valid: { spec: schedule, paused: true },
  });
  for (const [name, schema] of [
    ["GetScheduleRequest", GetScheduleRequestSchema],
    ["PauseScheduleRequest", PauseScheduleRequestSchema],
    ["ResumeScheduleRequest", ResumeScheduleRequestSchema],
    ["DeleteScheduleRequest", DeleteScheduleRequestSchema],
  ] as const) {
    rule(
      `${name}.id is a schedule's id or name, 1 to 128 characters`,
      schema,
      "id",
      { invalid: { id: "" }, expect: { path: "id", ruleId: "string.min_len" }, valid: { id: "nightly" } },
      { invalid: { id: chars(129) }, expect: { path: "id", ruleId: "string.max_len" }, valid: { id: uuid } },
    );
  }
  rule("ListSchedulesRequest.page_size is at most 1000", ListSchedulesRequestSchema, "page_size", {
    invalid: { pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { pageSize: 1000 },
  });
  rule("ListSchedulesRequest.page_token is at most 256 characters", ListSchedulesRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });

  it("reports a broken stage deep inside a run with the whole field path", () => {
    assert.deepEqual(violationsOf(SubmitRunRequestSchema, { spec: { stages: [stage, { name: "test", job: { exec: { commands: [{ argv: [] }] } } }] } }), [
      { path: "spec.stages[1].job.exec.commands[0].argv", ruleId: "repeated.min_items" },
    ]);
  });
});

describe("drover.deploy.v1 rules", () => {
  rule(
    "ApplyDeploymentRequest.name must be a DNS label",
    ApplyDeploymentRequestSchema,
    "name",
    { invalid: { name: "Web", spec: serviceSpec }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "web", spec: serviceSpec } },
    { invalid: { name: "1web", spec: serviceSpec }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "w1", spec: serviceSpec } },
    { invalid: { name: "web-", spec: serviceSpec }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "web-2", spec: serviceSpec } },
    {
      // Empty breaks the pattern as well as the length.
      invalid: { name: "", spec: serviceSpec },
      expect: [
        { path: "name", ruleId: "string.min_len" },
        { path: "name", ruleId: "string.pattern" },
      ],
      valid: { name: "w", spec: serviceSpec },
    },
    {
      invalid: { name: chars(64), spec: serviceSpec },
      expect: { path: "name", ruleId: "string.max_len" },
      valid: { name: chars(63), spec: serviceSpec },
    },
  );
  rule("ApplyDeploymentRequest.spec is required", ApplyDeploymentRequestSchema, "spec", {
    invalid: { name: "web" },
    expect: { path: "spec", ruleId: "required" },
    valid: { name: "web", spec: serviceSpec },
  });
  rule("GetDeploymentRequest.ended_replicas is at most 1000", GetDeploymentRequestSchema, "ended_replicas", {
    invalid: { name: "web", endedReplicas: 1001 },
    expect: { path: "ended_replicas", ruleId: "uint32.lte" },
    valid: { name: "web", endedReplicas: 1000 },
  });
  rule(
    "GetDeploymentRequest.name must be a DNS label",
    GetDeploymentRequestSchema,
    "name",
    { invalid: { name: "web_api" }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "web-api" } },
    {
      invalid: { name: "" },
      expect: [
        { path: "name", ruleId: "string.min_len" },
        { path: "name", ruleId: "string.pattern" },
      ],
      valid: { name: "a" },
    },
  );
  rule("ServiceSpec.exec is required", ServiceSpecSchema, "exec", {
    invalid: { replicas: 2 },
    expect: { path: "exec", ruleId: "required" },
    valid: { replicas: 2, exec },
  });
  rule("ServiceSpec.driver is empty, process or docker", ServiceSpecSchema, "driver", {
    invalid: { ...serviceSpec, driver: "Process" },
    expect: { path: "driver", ruleId: "string.in" },
    valid: { ...serviceSpec, driver: "process" },
  });
  rule("ServiceSpec.replicas is at most 10000", ServiceSpecSchema, "replicas", {
    invalid: { ...serviceSpec, replicas: 10_001 },
    expect: { path: "replicas", ruleId: "uint32.lte" },
    valid: { ...serviceSpec, replicas: 10_000 },
  });
  rule(
    "ServiceSpec.replace_unhealthy_after is one second to one day when set",
    ServiceSpecSchema,
    "replace_unhealthy_after",
    {
      invalid: { ...serviceSpec, replaceUnhealthyAfter: { nanos: 999_999_999 } },
      expect: { path: "replace_unhealthy_after", ruleId: "duration.gte_lte" },
      valid: { ...serviceSpec, replaceUnhealthyAfter: { seconds: 1n } },
    },
    {
      // Set to zero is not the same as unset (1 min).
      invalid: { ...serviceSpec, replaceUnhealthyAfter: {} },
      expect: { path: "replace_unhealthy_after", ruleId: "duration.gte_lte" },
      valid: serviceSpec,
    },
    {
      invalid: { ...serviceSpec, replaceUnhealthyAfter: { seconds: 86_401n } },
      expect: { path: "replace_unhealthy_after", ruleId: "duration.gte_lte" },
      valid: { ...serviceSpec, replaceUnhealthyAfter: { seconds: 86_400n } },
    },
  );

  rule(
    "PerAgent.labels has at most 64 pairs with label-shaped keys and values of at most 256 characters",
    PerAgentSchema,
    "labels",
    {
      invalid: { labels: { "gpu type": "a100" } },
      expect: { path: 'labels["gpu type"]', ruleId: "string.pattern", forKey: true },
      valid: { labels: { "example.com/gpu_type-1": "a100" } },
    },
    {
      invalid: { labels: { ".zone": "a" } },
      expect: { path: 'labels[".zone"]', ruleId: "string.pattern", forKey: true },
      valid: { labels: { "0zone": "a" } },
    },
    {
      invalid: { labels: { [chars(64, "k")]: "a" } },
      expect: { path: `labels["${chars(64, "k")}"]`, ruleId: "string.pattern", forKey: true },
      valid: { labels: { [chars(63, "k")]: "" } },
    },
    {
      invalid: { labels: { zone: chars(257) } },
      expect: { path: 'labels["zone"]', ruleId: "string.max_len" },
      valid: { labels: { zone: chars(256) } },
    },
    // Empty: every agent.
    { invalid: { labels: pairs(65) }, expect: { path: "labels", ruleId: "map.max_pairs" }, valid: { labels: {} } },
  );

  rule(
    "UpdateStrategy.max_parallel is 1 to 10000 when set",
    UpdateStrategySchema,
    "max_parallel",
    {
      // The field is optional: an explicit 0 is set, and refused; unset means 1.
      invalid: { maxParallel: 0 },
      expect: { path: "max_parallel", ruleId: "uint32.gte_lte" },
      valid: {},
    },
    { invalid: { maxParallel: 10_001 }, expect: { path: "max_parallel", ruleId: "uint32.gte_lte" }, valid: { maxParallel: 10_000 } },
    { invalid: { maxParallel: 0, canary: 1 }, expect: { path: "max_parallel", ruleId: "uint32.gte_lte" }, valid: { maxParallel: 1, canary: 1 } },
  );
  rule(
    "UpdateStrategy.min_healthy_time is zero to one day",
    UpdateStrategySchema,
    "min_healthy_time",
    { invalid: { minHealthyTime: { nanos: -1 } }, expect: { path: "min_healthy_time", ruleId: "duration.gte_lte" }, valid: { minHealthyTime: {} } },
    { invalid: { minHealthyTime: { seconds: 86_401n } }, expect: { path: "min_healthy_time", ruleId: "duration.gte_lte" }, valid: { minHealthyTime: { seconds: 86_400n } } },
  );
  rule(
    "UpdateStrategy.healthy_deadline is one second to one day when set",
    UpdateStrategySchema,
    "healthy_deadline",
    { invalid: { healthyDeadline: {} }, expect: { path: "healthy_deadline", ruleId: "duration.gte_lte" }, valid: { healthyDeadline: { seconds: 1n } } },
    { invalid: { healthyDeadline: { nanos: 999_999_999 } }, expect: { path: "healthy_deadline", ruleId: "duration.gte_lte" }, valid: { healthyDeadline: { seconds: 300n } } },
    { invalid: { healthyDeadline: { seconds: 86_400n, nanos: 1 } }, expect: { path: "healthy_deadline", ruleId: "duration.gte_lte" }, valid: { healthyDeadline: { seconds: 86_400n } } },
  );
  rule("UpdateStrategy.canary is at most 10000", UpdateStrategySchema, "canary", {
    invalid: { canary: 10_001 },
    expect: { path: "canary", ruleId: "uint32.lte" },
    // 0: no canaries.
    valid: { canary: 0 },
  });

  // Every request that names one deployment names it as ApplyDeploymentRequest does.
  const nameCases = [
    { invalid: { name: "web_api" }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "web-api" } },
    { invalid: { name: "Web" }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "web" } },
    { invalid: { name: "-web" }, expect: { path: "name", ruleId: "string.pattern" }, valid: { name: "w-1" } },
    {
      invalid: { name: "" },
      expect: [
        { path: "name", ruleId: "string.min_len" },
        { path: "name", ruleId: "string.pattern" },
      ],
      valid: { name: "a" },
    },
    { invalid: { name: chars(64) }, expect: { path: "name", ruleId: "string.max_len" }, valid: { name: chars(63) } },
  ];
  rule("ListRevisionsRequest.name must be a DNS label", ListRevisionsRequestSchema, "name", ...nameCases);
  rule("RollbackDeploymentRequest.name must be a DNS label", RollbackDeploymentRequestSchema, "name", ...nameCases);
  rule("PauseDeploymentRequest.name must be a DNS label", PauseDeploymentRequestSchema, "name", ...nameCases);
  rule("ResumeDeploymentRequest.name must be a DNS label", ResumeDeploymentRequestSchema, "name", ...nameCases);
  rule("PromoteDeploymentRequest.name must be a DNS label", PromoteDeploymentRequestSchema, "name", ...nameCases);
  rule("RestartDeploymentRequest.name must be a DNS label", RestartDeploymentRequestSchema, "name", ...nameCases);
  rule("StopDeploymentRequest.name must be a DNS label", StopDeploymentRequestSchema, "name", ...nameCases);
  rule("DeleteDeploymentRequest.name must be a DNS label", DeleteDeploymentRequestSchema, "name", ...nameCases);
  rule("WatchDeploymentRequest.name must be a DNS label", WatchDeploymentRequestSchema, "name", ...nameCases);
  rule(
    "ScaleDeploymentRequest.name must be a DNS label",
    ScaleDeploymentRequestSchema,
    "name",
    ...nameCases.map((c) => ({ ...c, invalid: { ...c.invalid, replicas: 3 }, valid: { ...c.valid, replicas: 3 } })),
  );
  rule(
    "ScaleDeploymentRequest.replicas is 1 to 10000",
    ScaleDeploymentRequestSchema,
    "replicas",
    // StopDeployment, not a scale to 0, stops every replica.
    { invalid: { name: "web", replicas: 0 }, expect: { path: "replicas", ruleId: "uint32.gte_lte" }, valid: { name: "web", replicas: 1 } },
    { invalid: { name: "web", replicas: 10_001 }, expect: { path: "replicas", ruleId: "uint32.gte_lte" }, valid: { name: "web", replicas: 10_000 } },
  );
  rule("ListDeploymentsRequest.page_size is at most 1000", ListDeploymentsRequestSchema, "page_size", {
    invalid: { pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { pageSize: 1000 },
  });
  rule("ListDeploymentsRequest.page_token is at most 256 characters", ListDeploymentsRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });

  it("reports a rule broken inside a service spec's nested messages with the whole field path", () => {
    type SpecInit = Exclude<MessageInitShape<typeof ServiceSpecSchema>, { $typeName: string }>;
    const apply = (spec: SpecInit) => violationsOf(ApplyDeploymentRequestSchema, { name: "web", spec: { ...serviceSpec, ...spec } });
    assert.deepEqual(apply({ healthCheck: { interval: { nanos: 1 } } }), [{ path: "spec.health_check.interval", ruleId: "duration.gte_lte" }]);
    assert.deepEqual(apply({ healthCheck: { timeout: { seconds: 3601n } } }), [{ path: "spec.health_check.timeout", ruleId: "duration.gte_lte" }]);
    assert.deepEqual(apply({ healthCheck: { check: { case: "http", value: { port: 65_536, path: "/" } } } }), [
      { path: "spec.health_check.http.port", ruleId: "uint32.lte" },
    ]);
    assert.deepEqual(apply({ healthCheck: { check: { case: "http", value: { path: "healthz" } } } }), [
      { path: "spec.health_check.http.path", ruleId: "string.pattern" },
    ]);
    assert.deepEqual(apply({ healthCheck: { check: { case: "tcp", value: { port: 65_536 } } } }), [
      { path: "spec.health_check.tcp.port", ruleId: "uint32.lte" },
    ]);
    assert.deepEqual(apply({ healthCheck: { check: { case: "command", value: { argv: [] } } } }), [
      { path: "spec.health_check.command.argv", ruleId: "repeated.min_items" },
    ]);
    assert.deepEqual(apply({ restart: { initialDelay: { seconds: -1n } } }), [{ path: "spec.restart.initial_delay", ruleId: "duration.gte_lte" }]);
    assert.deepEqual(apply({ update: { maxParallel: 0 } }), [{ path: "spec.update.max_parallel", ruleId: "uint32.gte_lte" }]);
    assert.deepEqual(apply({ update: { canary: 10_001 } }), [{ path: "spec.update.canary", ruleId: "uint32.lte" }]);
    assert.deepEqual(apply({ perAgent: { labels: { "a b": "c" } } }), [{ path: 'spec.per_agent.labels["a b"]', ruleId: "string.pattern", forKey: true }]);
    assert.deepEqual(apply({ constraints: { avoidAgentIds: [""] } }), [{ path: "spec.constraints.avoid_agent_ids[0]", ruleId: "string.min_len" }]);
    // All of them within bounds together.
    assert.deepEqual(
      apply({
        perAgent: { labels: { gpu: "a100" } },
        healthCheck: { check: { case: "http", value: { port: 8080, path: "/healthz" } }, interval: { seconds: 5n }, timeout: { seconds: 2n } },
        restart: { initialDelay: { seconds: 1n }, maxDelay: { seconds: 60n } },
        update: { maxParallel: 2, canary: 1, minHealthyTime: { seconds: 10n }, healthyDeadline: { seconds: 300n } },
        constraints: { agentIds: ["ag_1"], avoidAgentIds: ["ag_2"] },
        replaceUnhealthyAfter: { seconds: 60n },
      }),
      [],
    );
  });
});

describe("drover.bid.v1 rules", () => {
  rule("ListAuctionsRequest.job_id must be a UUID when set", ListAuctionsRequestSchema, "job_id", {
    invalid: { jobId: "job-1" },
    expect: { path: "job_id", ruleId: "string.uuid" },
    // Unset means "all jobs", so the empty string passes too.
    valid: { jobId: "" },
  });
  rule("ListAuctionsRequest.page_size is at most 1000", ListAuctionsRequestSchema, "page_size", {
    invalid: { jobId: uuid, pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { jobId: uuid, pageSize: 1000 },
  });
  rule("ListAuctionsRequest.page_token is at most 256 characters", ListAuctionsRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });
  rule(
    "ExplainPlacementRequest.job_id must be a UUID",
    ExplainPlacementRequestSchema,
    "job_id",
    { invalid: { jobId: "job-1" }, expect: { path: "job_id", ruleId: "string.uuid" }, valid: { jobId: uuid } },
    // Unlike ListAuctionsRequest.job_id, it must be set.
    { invalid: { jobId: "" }, expect: { path: "job_id", ruleId: "string.uuid_empty" }, valid: { jobId: uuid.toUpperCase() } },
  );
});

describe("drover.log.v1 rules", () => {
  for (const [schema, name] of [
    [ReadLogsRequestSchema, "ReadLogsRequest"],
    [FollowLogsRequestSchema, "FollowLogsRequest"],
  ] as const) {
    rule(
      `${name}: exactly one of attempt_id, job_id, run_id and deployment`,
      schema as typeof ReadLogsRequestSchema,
      "(message rules)",
      { invalid: {}, expect: { path: "", ruleId: "message.oneof" }, valid: { attemptId: "a" } },
      { invalid: { attemptId: "a", jobId: "j" }, expect: { path: "", ruleId: "message.oneof" }, valid: { jobId: "j" } },
      { invalid: { jobId: "j", runId: "r" }, expect: { path: "", ruleId: "message.oneof" }, valid: { runId: "r", stageName: "build" } },
      { invalid: { runId: "r", deployment: "web" }, expect: { path: "", ruleId: "message.oneof" }, valid: { deployment: "web", replica: "0" } },
    );
    rule(
      `${name}.deployment is a deployment name: a DNS label of at most 63 characters`,
      schema as typeof ReadLogsRequestSchema,
      "deployment",
      { invalid: { deployment: "Web" }, expect: { path: "deployment", ruleId: "string.pattern" }, valid: { deployment: "web" } },
      { invalid: { deployment: "web-" }, expect: { path: "deployment", ruleId: "string.pattern" }, valid: { deployment: "w-1" } },
      { invalid: { deployment: "1web" }, expect: { path: "deployment", ruleId: "string.pattern" }, valid: { deployment: "w" } },
      { invalid: { deployment: chars(64, "a") }, expect: { path: "deployment", ruleId: "string.max_len" }, valid: { deployment: chars(63, "a") } },
    );
    rule(`${name}.replica is at most 64 characters`, schema as typeof ReadLogsRequestSchema, "replica", {
      invalid: { deployment: "web", replica: chars(65) },
      expect: { path: "replica", ruleId: "string.max_len" },
      valid: { deployment: "web", replica: chars(64) },
    });
    for (const field of ["attempt_id", "job_id", "run_id", "stage_name"] as const) {
      const key = field.replace(/_(.)/g, (_, c: string) => c.toUpperCase()) as "attemptId";
      const base = field === "stage_name" ? { runId: "r" } : {};
      rule(`${name}.${field} is at most 128 characters`, schema as typeof ReadLogsRequestSchema, field, {
        invalid: { ...base, [key]: chars(129) },
        expect: { path: field, ruleId: "string.max_len" },
        valid: { ...base, [key]: chars(128) },
      });
    }
    rule(`${name}.stream must be a defined stream`, schema as typeof ReadLogsRequestSchema, "stream", {
      invalid: { attemptId: "a", stream: 7 as Stream },
      expect: { path: "stream", ruleId: "enum.defined_only" },
      // STREAM_UNSPECIFIED is defined: it means every stream.
      valid: { attemptId: "a", stream: Stream.UNSPECIFIED },
    });
    rule(`${name}.tail_lines is at most 100000`, schema as typeof ReadLogsRequestSchema, "tail_lines", {
      invalid: { attemptId: "a", tailLines: 100_001 },
      expect: { path: "tail_lines", ruleId: "uint32.lte" },
      valid: { attemptId: "a", tailLines: 100_000 },
    });
    rule(`${name}.filter is at most 1024 characters`, schema as typeof ReadLogsRequestSchema, "filter", {
      invalid: { attemptId: "a", filter: chars(1025) },
      expect: { path: "filter", ruleId: "string.max_len" },
      valid: { attemptId: "a", filter: chars(1024) },
    });
  }
  rule("ReadLogsRequest.limit_bytes is at most 16 MiB", ReadLogsRequestSchema, "limit_bytes", {
    invalid: { attemptId: "a", limitBytes: 16 * 1024 * 1024 + 1 },
    expect: { path: "limit_bytes", ruleId: "uint32.lte" },
    valid: { attemptId: "a", limitBytes: 16 * 1024 * 1024 },
  });
  rule("ReadLogsRequest.page_token is at most 1024 characters", ReadLogsRequestSchema, "page_token", {
    invalid: { attemptId: "a", pageToken: chars(1025) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { attemptId: "a", pageToken: chars(1024) },
  });
  rule("FollowLogsRequest.from must be defined", FollowLogsRequestSchema, "from", {
    invalid: { attemptId: "a", from: 9 as FollowFrom },
    expect: { path: "from", ruleId: "enum.defined_only" },
    valid: { attemptId: "a", from: FollowFrom.TAIL },
  });
  const frame = { attemptId: "a", stream: LogStream.STDOUT, offset: 0n, data: new Uint8Array([104, 105]) };
  rule(
    "IngestLogsRequest.agent_id is 1 to 64 characters",
    IngestLogsRequestSchema,
    "agent_id",
    { invalid: { agentId: "", frames: [frame] }, expect: { path: "agent_id", ruleId: "string.min_len" }, valid: { agentId: "a", frames: [frame] } },
    { invalid: { agentId: chars(65), frames: [frame] }, expect: { path: "agent_id", ruleId: "string.max_len" }, valid: { agentId: chars(64), frames: [frame] } },
  );
  rule(
    "IngestLogsRequest.frames holds 1 to 4096 frames",
    IngestLogsRequestSchema,
    "frames",
    { invalid: { agentId: "a", frames: [] }, expect: { path: "frames", ruleId: "repeated.min_items" }, valid: { agentId: "a", frames: [frame] } },
    { invalid: { agentId: "a", frames: items(4097, frame) }, expect: { path: "frames", ruleId: "repeated.max_items" }, valid: { agentId: "a", frames: items(4096, frame) } },
  );
  it("IngestLogsRequest checks every frame's own rules", () => {
    assert.deepEqual(violationsOf(IngestLogsRequestSchema, { agentId: "a", frames: [frame, { ...frame, stream: LogStream.UNSPECIFIED }] }), [
      { path: "frames[1].stream", ruleId: "enum.not_in" },
    ]);
  });
});

describe("drover.fleet.v1 token rules", () => {
  rule(
    "CreateApiTokenRequest.name is 1 to 128 characters",
    CreateApiTokenRequestSchema,
    "name",
    { invalid: { name: "", role: Role.OPERATOR }, expect: { path: "name", ruleId: "string.min_len" }, valid: { name: "ci", role: Role.OPERATOR } },
    {
      invalid: { name: chars(129), role: Role.OPERATOR },
      expect: { path: "name", ruleId: "string.max_len" },
      valid: { name: chars(128), role: Role.OPERATOR },
    },
  );
  rule(
    "CreateApiTokenRequest.role must not be ROLE_UNSPECIFIED",
    CreateApiTokenRequestSchema,
    "role",
    { invalid: { name: "ci", role: Role.UNSPECIFIED }, expect: { path: "role", ruleId: "enum.not_in" }, valid: { name: "ci", role: Role.AGENT } },
    { invalid: { name: "ci", role: 9 as Role }, expect: { path: "role", ruleId: "enum.defined_only" }, valid: { name: "ci", role: Role.ADMIN } },
  );
  rule("CreateApiTokenRequest.ttl is at least one minute when set", CreateApiTokenRequestSchema, "ttl", {
    invalid: { name: "ci", role: Role.OPERATOR, ttl: { seconds: 59n } },
    expect: { path: "ttl", ruleId: "duration.gte" },
    valid: { name: "ci", role: Role.OPERATOR, ttl: { seconds: 60n } },
  });
  rule("ListApiTokensRequest.page_size is at most 1000", ListApiTokensRequestSchema, "page_size", {
    invalid: { pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { pageSize: 1000 },
  });
  rule("ListApiTokensRequest.page_token is at most 256 characters", ListApiTokensRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });
  rule("RevokeApiTokenRequest.id must be a UUID", RevokeApiTokenRequestSchema, "id", {
    invalid: { id: `${uuid}0` },
    expect: { path: "id", ruleId: "string.uuid" },
    valid: { id: uuid },
  });
  rule(
    "AuthenticateTokenRequest.secret is 1 to 512 characters",
    AuthenticateTokenRequestSchema,
    "secret",
    { invalid: { secret: "" }, expect: { path: "secret", ruleId: "string.min_len" }, valid: { secret: "s" } },
    { invalid: { secret: chars(513) }, expect: { path: "secret", ruleId: "string.max_len" }, valid: { secret: chars(512) } },
  );
});

describe("drover.fleet.v1 agent and registration token rules", () => {
  rule(
    "CreateAgentTokenRequest.name is 1 to 128 characters",
    CreateAgentTokenRequestSchema,
    "name",
    { invalid: { name: "" }, expect: { path: "name", ruleId: "string.min_len" }, valid: { name: "rack-1" } },
    { invalid: { name: chars(129) }, expect: { path: "name", ruleId: "string.max_len" }, valid: { name: chars(128) } },
  );
  rule(
    "CreateAgentTokenRequest.labels has at most 64 pairs with label-shaped keys and values of at most 256 characters",
    CreateAgentTokenRequestSchema,
    "labels",
    {
      invalid: { name: "t", labels: { "zone name": "a" } },
      expect: { path: 'labels["zone name"]', ruleId: "string.pattern", forKey: true },
      valid: { name: "t", labels: { "example.com/zone_name-1": "a" } },
    },
    {
      invalid: { name: "t", labels: { [chars(64, "k")]: "a" } },
      expect: { path: `labels["${chars(64, "k")}"]`, ruleId: "string.pattern", forKey: true },
      valid: { name: "t", labels: { [chars(63, "k")]: "" } },
    },
    {
      invalid: { name: "t", labels: { zone: chars(257) } },
      expect: { path: 'labels["zone"]', ruleId: "string.max_len" },
      valid: { name: "t", labels: { zone: chars(256) } },
    },
    { invalid: { name: "t", labels: pairs(65) }, expect: { path: "labels", ruleId: "map.max_pairs" }, valid: { name: "t", labels: pairs(64) } },
  );
  rule("CreateAgentTokenRequest.ttl is at least one minute when set", CreateAgentTokenRequestSchema, "ttl", {
    invalid: { name: "t", ttl: { seconds: 59n, nanos: 999_999_999 } },
    expect: { path: "ttl", ruleId: "duration.gte" },
    valid: { name: "t", ttl: { seconds: 60n } },
  });
  rule("ListAgentTokensRequest.page_size is at most 1000", ListAgentTokensRequestSchema, "page_size", {
    invalid: { pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { pageSize: 1000 },
  });
  rule("ListAgentTokensRequest.page_token is at most 256 characters", ListAgentTokensRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });
  rule(
    "RevokeAgentTokenRequest.id must be a UUID",
    RevokeAgentTokenRequestSchema,
    "id",
    { invalid: { id: "token-1" }, expect: { path: "id", ruleId: "string.uuid" }, valid: { id: uuid } },
    { invalid: { id: "" }, expect: { path: "id", ruleId: "string.uuid_empty" }, valid: { id: uuid.toUpperCase() } },
  );

  rule("ListAgentsRequest.status must be a defined status", ListAgentsRequestSchema, "status", {
    invalid: { status: 9 as AgentStatus },
    expect: { path: "status", ruleId: "enum.defined_only" },
    // AGENT_STATUS_UNSPECIFIED is defined: it means any status.
    valid: { status: AgentStatus.UNSPECIFIED },
  });
  rule("ListAgentsRequest.label_selector has at most 64 pairs", ListAgentsRequestSchema, "label_selector", {
    invalid: { labelSelector: pairs(65) },
    expect: { path: "label_selector", ruleId: "map.max_pairs" },
    // Keys are not checked: a selector naming a key no agent has matches nothing.
    valid: { labelSelector: { ...pairs(63), "any key at all": "v" } },
  });
  rule("ListAgentsRequest.page_size is at most 1000", ListAgentsRequestSchema, "page_size", {
    invalid: { pageSize: 1001 },
    expect: { path: "page_size", ruleId: "uint32.lte" },
    valid: { pageSize: 1000 },
  });
  rule("ListAgentsRequest.page_token is at most 256 characters", ListAgentsRequestSchema, "page_token", {
    invalid: { pageToken: chars(257) },
    expect: { path: "page_token", ruleId: "string.max_len" },
    valid: { pageToken: chars(256) },
  });

  // Every request that names one agent names it the same way.
  const agentId = "ag_abcdefghijklmnopqrstuvwxyz";
  const idCases = [
    { invalid: { id: "" }, expect: { path: "id", ruleId: "string.min_len" }, valid: { id: agentId } },
    { invalid: { id: chars(65) }, expect: { path: "id", ruleId: "string.max_len" }, valid: { id: chars(64) } },
  ];
  rule("GetAgentRequest.id is 1 to 64 characters", GetAgentRequestSchema, "id", ...idCases);
  rule("SetAgentLabelsRequest.id is 1 to 64 characters", SetAgentLabelsRequestSchema, "id", ...idCases);
  rule("DrainAgentRequest.id is 1 to 64 characters", DrainAgentRequestSchema, "id", ...idCases);
  rule("UndrainAgentRequest.id is 1 to 64 characters", UndrainAgentRequestSchema, "id", ...idCases);
  rule("CordonAgentRequest.id is 1 to 64 characters", CordonAgentRequestSchema, "id", ...idCases);
  rule("UncordonAgentRequest.id is 1 to 64 characters", UncordonAgentRequestSchema, "id", ...idCases);
  rule("DeleteAgentRequest.id is 1 to 64 characters", DeleteAgentRequestSchema, "id", ...idCases);

  rule(
    "SetAgentLabelsRequest.labels has at most 64 pairs with label-shaped keys and values of at most 256 characters",
    SetAgentLabelsRequestSchema,
    "labels",
    {
      invalid: { id: agentId, labels: { "/zone": "a" } },
      expect: { path: 'labels["/zone"]', ruleId: "string.pattern", forKey: true },
      valid: { id: agentId, labels: { "zone/": "a" } },
    },
    {
      invalid: { id: agentId, labels: { zone: chars(257) } },
      expect: { path: 'labels["zone"]', ruleId: "string.max_len" },
      valid: { id: agentId, labels: { zone: chars(256) } },
    },
    { invalid: { id: agentId, labels: pairs(65) }, expect: { path: "labels", ruleId: "map.max_pairs" }, valid: { id: agentId, labels: {} } },
  );
  rule("DrainAgentRequest.reason is at most 1024 characters", DrainAgentRequestSchema, "reason", {
    invalid: { id: agentId, reason: chars(1025) },
    expect: { path: "reason", ruleId: "string.max_len" },
    valid: { id: agentId, reason: chars(1024) },
  });
  rule("WatchAgentsRequest.label_selector has at most 64 pairs", WatchAgentsRequestSchema, "label_selector", {
    invalid: { labelSelector: pairs(65) },
    expect: { path: "label_selector", ruleId: "map.max_pairs" },
    valid: { labelSelector: pairs(64) },
  });

  const message = { message: { case: "cancel" as const, value: { attemptId: "a1" } } };
  rule(
    "SendToAgentRequest.agent_id is 1 to 64 characters",
    SendToAgentRequestSchema,
    "agent_id",
    { invalid: { agentId: "", message }, expect: { path: "agent_id", ruleId: "string.min_len" }, valid: { agentId, message } },
    { invalid: { agentId: chars(65), message }, expect: { path: "agent_id", ruleId: "string.max_len" }, valid: { agentId: chars(64), message } },
  );
  rule("SendToAgentRequest.message is required", SendToAgentRequestSchema, "message", {
    invalid: { agentId },
    expect: { path: "message", ruleId: "required" },
    // An empty message passes validation; the service answers it (INVALID_ARGUMENT, "one of ... must be set").
    valid: { agentId, message: {} },
  });
  rule(
    "SendToAgentsRequest.messages holds 1 to 1000 messages",
    SendToAgentsRequestSchema,
    "messages",
    { invalid: { messages: [] }, expect: { path: "messages", ruleId: "repeated.min_items" }, valid: { messages: [{ agentId, message }] } },
    {
      invalid: { messages: items(1001, { agentId, message }) },
      expect: { path: "messages", ruleId: "repeated.max_items" },
      valid: { messages: items(1000, { agentId, message }) },
    },
  );

  const offer = { offerId: "o1", jobId: uuid };
  rule(
    "OfferTo.agent_id is 1 to 64 characters",
    OfferToSchema,
    "agent_id",
    { invalid: { agentId: "", offer }, expect: { path: "agent_id", ruleId: "string.min_len" }, valid: { agentId, offer } },
    { invalid: { agentId: chars(65), offer }, expect: { path: "agent_id", ruleId: "string.max_len" }, valid: { agentId: chars(64), offer } },
  );
  rule("OfferTo.offer is required", OfferToSchema, "offer", {
    invalid: { agentId },
    expect: { path: "offer", ruleId: "required" },
    valid: { agentId, offer },
  });
  const offerTo = { agentId, offer };
  rule(
    "RequestBidsRequest.offers holds 1 to 10000 offers",
    RequestBidsRequestSchema,
    "offers",
    { invalid: { offers: [] }, expect: { path: "offers", ruleId: "repeated.min_items" }, valid: { offers: [offerTo] } },
    {
      invalid: { offers: items(10_001, offerTo) },
      expect: { path: "offers", ruleId: "repeated.max_items" },
      valid: { offers: items(10_000, offerTo) },
    },
  );
  rule(
    "RequestBidsRequest.window is within 1 ms..10 s when set",
    RequestBidsRequestSchema,
    "window",
    {
      invalid: { offers: [offerTo], window: { nanos: 999_999 } },
      expect: { path: "window", ruleId: "duration.gte_lte" },
      valid: { offers: [offerTo], window: { nanos: 1_000_000 } },
    },
    {
      // Set to zero is not the same as unset.
      invalid: { offers: [offerTo], window: {} },
      expect: { path: "window", ruleId: "duration.gte_lte" },
      valid: { offers: [offerTo] },
    },
    {
      invalid: { offers: [offerTo], window: { seconds: 10n, nanos: 1 } },
      expect: { path: "window", ruleId: "duration.gte_lte" },
      valid: { offers: [offerTo], window: { seconds: 10n } },
    },
  );
});

describe("drover.fleet.v1 agent stream rules", () => {
  const hello = { hostname: "node-1" };

  rule("ConnectRequest.message must be set", ConnectRequestSchema, "message", {
    invalid: {},
    expect: { path: "message", ruleId: "required" },
    valid: { message: { case: "hello", value: hello } },
  });
  rule(
    "Hello.hostname is required and at most 253 characters",
    HelloSchema,
    "hostname",
    { invalid: { hostname: "" }, expect: { path: "hostname", ruleId: "string.min_len" }, valid: hello },
    { invalid: { hostname: chars(254) }, expect: { path: "hostname", ruleId: "string.max_len" }, valid: { hostname: chars(253) } },
  );
  rule("Hello.agent_id is at most 64 characters", HelloSchema, "agent_id", {
    invalid: { ...hello, agentId: chars(65) },
    expect: { path: "agent_id", ruleId: "string.max_len" },
    valid: { ...hello, agentId: chars(64) },
  });
  rule("Hello.registration_token is at most 512 characters", HelloSchema, "registration_token", {
    invalid: { ...hello, registrationToken: chars(513) },
    expect: { path: "registration_token", ruleId: "string.max_len" },
    valid: { ...hello, registrationToken: chars(512) },
  });
  rule("Hello.version is at most 64 characters", HelloSchema, "version", {
    invalid: { ...hello, version: chars(65) },
    expect: { path: "version", ruleId: "string.max_len" },
    valid: { ...hello, version: "1.2.3" },
  });
  rule("Hello.labels has at most 64 pairs", HelloSchema, "labels", {
    invalid: { ...hello, labels: pairs(65) },
    expect: { path: "labels", ruleId: "map.max_pairs" },
    valid: { ...hello, labels: pairs(64) },
  });
  rule("Hello.drivers holds at most 16 drivers", HelloSchema, "drivers", {
    invalid: { ...hello, drivers: items(17, "process") },
    expect: { path: "drivers", ruleId: "repeated.max_items" },
    valid: { ...hello, drivers: items(16, "process") },
  });

  // Inside the stream the path starts at the oneof field that carries the message.
  it("reports a Hello rule inside ConnectRequest under the hello field", () => {
    assert.deepEqual(violationsOf(ConnectRequestSchema, { message: { case: "hello", value: { hostname: "" } } }), [
      { path: "hello.hostname", ruleId: "string.min_len" },
    ]);
  });

  rule(
    "Offer.offer_id is 1 to 128 characters",
    OfferSchema,
    "offer_id",
    { invalid: { offerId: "" }, expect: { path: "offer_id", ruleId: "string.min_len" }, valid: { offerId: "o1" } },
    { invalid: { offerId: chars(129) }, expect: { path: "offer_id", ruleId: "string.max_len" }, valid: { offerId: chars(128) } },
  );
  rule("Bid.offer_id is required", BidSchema, "offer_id", {
    invalid: { score: 0.5 },
    expect: { path: "offer_id", ruleId: "string.min_len" },
    valid: { offerId: "o1", score: 0.5 },
  });
  rule(
    "Bid.score is within 0..1",
    BidSchema,
    "score",
    { invalid: { offerId: "o1", score: 1.01 }, expect: { path: "score", ruleId: "double.gte_lte" }, valid: { offerId: "o1", score: 1 } },
    { invalid: { offerId: "o1", score: -0.01 }, expect: { path: "score", ruleId: "double.gte_lte" }, valid: { offerId: "o1", score: 0 } },
    { invalid: { offerId: "o1", score: Number.NaN }, expect: { path: "score", ruleId: "double.gte_lte" }, valid: { offerId: "o1", score: 0.5 } },
  );
  rule("Decline.offer_id is required", DeclineSchema, "offer_id", {
    invalid: { reason: "busy" },
    expect: { path: "offer_id", ruleId: "string.min_len" },
    valid: { offerId: "o1", reason: "busy" },
  });
  rule("Decline.reason is at most 1024 characters", DeclineSchema, "reason", {
    invalid: { offerId: "o1", reason: chars(1025) },
    expect: { path: "reason", ruleId: "string.max_len" },
    valid: { offerId: "o1", reason: chars(1024) },
  });

  const event = { eventId: "e1", attemptId: "a1", state: AttemptState.RUNNING };
  rule("JobEvent.event_id is required", JobEventSchema, "event_id", {
    invalid: { ...event, eventId: "" },
    expect: { path: "event_id", ruleId: "string.min_len" },
    valid: event,
  });
  rule("JobEvent.attempt_id is required", JobEventSchema, "attempt_id", {
    invalid: { ...event, attemptId: "" },
    expect: { path: "attempt_id", ruleId: "string.min_len" },
    valid: event,
  });
  rule(
    "JobEvent.state must be a defined state other than ATTEMPT_STATE_UNSPECIFIED",
    JobEventSchema,
    "state",
    { invalid: { ...event, state: AttemptState.UNSPECIFIED }, expect: { path: "state", ruleId: "enum.not_in" }, valid: event },
    { invalid: { ...event, state: 42 as AttemptState }, expect: { path: "state", ruleId: "enum.defined_only" }, valid: { ...event, state: AttemptState.TIMED_OUT } },
  );
  rule("JobEvent.message is at most 4096 characters", JobEventSchema, "message", {
    invalid: { ...event, message: chars(4097) },
    expect: { path: "message", ruleId: "string.max_len" },
    valid: { ...event, message: chars(4096) },
  });

  const frame = { attemptId: "a1", stream: LogStream.STDOUT, data: new Uint8Array(16) };
  rule("LogFrame.attempt_id is required", LogFrameSchema, "attempt_id", {
    invalid: { ...frame, attemptId: "" },
    expect: { path: "attempt_id", ruleId: "string.min_len" },
    valid: frame,
  });
  rule(
    "LogFrame.stream must be a defined stream other than LOG_STREAM_UNSPECIFIED",
    LogFrameSchema,
    "stream",
    { invalid: { ...frame, stream: LogStream.UNSPECIFIED }, expect: { path: "stream", ruleId: "enum.not_in" }, valid: frame },
    { invalid: { ...frame, stream: 4 as LogStream }, expect: { path: "stream", ruleId: "enum.defined_only" }, valid: { ...frame, stream: LogStream.SYSTEM } },
  );
  rule("LogFrame.data is at most 1 MiB", LogFrameSchema, "data", {
    invalid: { ...frame, data: new Uint8Array(1024 * 1024 + 1) },
    expect: { path: "data", ruleId: "bytes.max_len" },
    valid: { ...frame, data: new Uint8Array(1024 * 1024) },
  });
  rule(
    "Ack.message_ids holds 1 to 1024 ids",
    AckSchema,
    "message_ids",
    { invalid: { messageIds: [] }, expect: { path: "message_ids", ruleId: "repeated.min_items" }, valid: { messageIds: ["m1"] } },
    { invalid: { messageIds: items(1025) }, expect: { path: "message_ids", ruleId: "repeated.max_items" }, valid: { messageIds: items(1024) } },
  );
});

/** Every "<message>.<field or oneof>" in proto/drover that declares a protovalidate rule. */
function declaredRules(): string[] {
  const out: string[] = [];
  const visit = (message: DescMessage) => {
    if (hasOption(message, buf.message)) out.push(`${message.typeName} (message rules)`);
    for (const field of message.fields) if (hasOption(field, buf.field)) out.push(`${message.typeName}.${field.name}`);
    for (const oneof of message.oneofs) if (hasOption(oneof, buf.oneof)) out.push(`${message.typeName}.${oneof.name}`);
    for (const nested of message.nestedMessages) visit(nested);
  };
  for (const file of droverFiles) for (const message of file.messages) visit(message);
  return out.sort();
}

describe("coverage", () => {
  it("every field with a protovalidate rule in proto/drover has a test above", () => {
    const declared = declaredRules();
    // A sanity check that the walk found the rules at all.
    assert.ok(declared.length > 50, `found only ${declared.length} rules`);
    assert.deepEqual(
      declared.filter((name) => !covered.has(name)),
      [],
      "rules without a test",
    );
    assert.deepEqual(
      [...covered].filter((name) => !declared.includes(name)),
      [],
      "tests naming a field without a rule",
    );
  });
});
