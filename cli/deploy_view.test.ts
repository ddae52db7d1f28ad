// The pure parts of `drover deploy`: reading a deployment file (with the
// line and field of every fault), and how deployments, replicas, revisions,
// events and a followed rollout print.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createValidator } from "@bufbuild/protovalidate";
import { HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import {
  DeploymentEventSchema,
  DeploymentSchema,
  DeploymentState,
  ListRevisionsResponseSchema,
  ReplicaState,
  type Deployment,
} from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { deploymentFileHelp } from "./deploy.ts";
import { parseDeploymentFile as parseWith } from "./deploy_spec.ts";
import {
  applyText,
  clock,
  deploymentDetails,
  deploymentRow,
  eventLine,
  eventsTable,
  historyText,
  leverText,
  progressEventLine,
  progressKey,
  progressLine,
  revisionMarks,
  ttyProgress,
  waitOutcome,
} from "./deploy_view.ts";

const validator = createValidator();
const parseDeploymentFile = (label: string, text: string) => parseWith(label, text, validator);

const NOW = Date.parse("2030-01-01T12:00:00Z");
const ago = (s: number) => timestampFromMs(NOW - s * 1000);

function deployment(init: MessageInitShape<typeof DeploymentSchema> = {}): Deployment {
  return create(DeploymentSchema, {
    id: "d0000000-0000-4000-8000-000000000001",
    name: "web",
    currentRevision: { number: 3, specHash: "ab".repeat(32), spec: { replicas: 4, exec: { commands: [{ argv: ["./server", "--port", "8080"] }] } } },
    createTime: ago(3600),
    updateTime: ago(60),
    state: DeploymentState.ROLLING_OUT,
    statusMessage: "rolling out revision 3: 2 of 4 healthy, batch 2 of 4",
    desiredReplicas: 4,
    stableRevision: 2,
    healthyReplicas: 2,
    rollout: { fromRevision: 2, toRevision: 3, startTime: ago(120), desired: 4, healthy: 2, inFlight: 1, batch: 3, batches: 4 },
    ...(init as object),
  } as MessageInitShape<typeof DeploymentSchema>);
}

// ---- Deployment files --------------------------------------------------------------

describe("deployment files", () => {
  const FILE = `name: web
replicas: 3
exec:
  commands:
    - argv: [./server, --port, "8080"]
  env: {MODE: prod}
assign_port: true
health_check: {http: {path: /healthz}}
update:
  max_parallel: 2
  minHealthyTime: 10s
`;

  test("a YAML file becomes the name and a ServiceSpec, in either spelling of field names", () => {
    const { name, spec } = parseDeploymentFile("web.yaml", FILE);
    assert.equal(name, "web");
    assert.equal(spec.replicas, 3);
    assert.deepEqual(spec.exec?.commands[0]?.argv, ["./server", "--port", "8080"]);
    assert.deepEqual(spec.exec?.env, { MODE: "prod" });
    assert.equal(spec.assignPort, true);
    assert.equal(spec.healthCheck?.check.case, "http");
    assert.equal(spec.update?.maxParallel, 2);
    assert.equal(spec.update?.minHealthyTime?.seconds, 10n);
  });

  test("the example in deploy apply --help is a valid deployment file", () => {
    const example = deploymentFileHelp.split("\n\n")[1]!.replace(/^ {2}/gm, "");
    const { name, spec } = parseDeploymentFile("help.yaml", example);
    assert.equal(name, "web");
    assert.equal(spec.resources?.cpuMillis, 500);
    assert.equal(spec.update?.healthyDeadline?.seconds, 300n);
  });

  test("JSON reads the same", () => {
    const { spec } = parseDeploymentFile("web.json", JSON.stringify({ name: "web", perAgent: { labels: { role: "edge" } }, exec: { commands: [{ argv: ["x"] }] } }));
    assert.deepEqual(spec.perAgent?.labels, { role: "edge" });
  });

  const fails = (text: string, message: string) =>
    assert.throws(() => parseDeploymentFile("web.yaml", text), (err: Error & { code?: number }) => {
      assert.equal(err.message, message);
      assert.equal(err.code, 3, "InvalidArgument: exit 2");
      return true;
    });
  const exec = "exec: {commands: [{argv: [x]}]}\n";

  test("a value of the wrong type names its line and its path as written", () => {
    fails(`name: web\n${exec}replicas: three\n`, 'web.yaml:3: replicas: expected number (uint32), got "three"');
    fails("name: web\nreplicas: 1\nexec:\n  commands:\n    - argv: make\n", 'web.yaml:5: exec.commands[0].argv: expected Array, got "make"');
    fails(`name: web\n${exec}update:\n  max_parallel: 1\n  healthy_deadline: 5m\n`, 'web.yaml:5: update.healthy_deadline: "5m" is not a duration; write seconds with an "s": "90s", "0.5s", "3600s"');
  });

  test("an unknown key names its line and suggests the field it is close to", () => {
    fails(`name: web\n${exec}replica: 2\n`, "web.yaml:3: replica: unknown field (did you mean replicas?)");
    fails(`name: web\n${exec}update:\n  max_paralel: 2\n`, "web.yaml:4: update.max_paralel: unknown field (did you mean max_parallel?)");
    fails(`name: web\n${exec}colour: blue\n`, "web.yaml:3: colour: unknown field");
  });

  test("a broken protovalidate rule names its line, its field and its rule", () => {
    fails(`name: web\n${exec}replicas: 1\nupdate:\n  max_parallel: 0\n`, "web.yaml:5: update.max_parallel: must be greater than or equal to 1 and less than or equal to 10000 [uint32.gte_lte]");
    fails(`name: web\n${exec}driver: podman\n`, "web.yaml:3: driver: must be in list [, process, docker] [string.in]");
    fails(`name: web\nreplicas: 1\n`, "web.yaml: exec: value is required [required]");
  });

  test("the name is required, a string, and a DNS label", () => {
    fails(exec, 'web.yaml: name: missing; every deployment has one ("name: web")');
    fails(`${exec}name: [a]\n`, 'web.yaml:2: name: expected a string, got ["a"]');
    fails(`${exec}name: Web_1\n`, `web.yaml:2: name: "Web_1" must be 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'`);
  });

  test("broken YAML, an empty file or a list are one error each", () => {
    fails("name: web\nexec: [\n", "web.yaml:3: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]");
    fails("name: a\nname: b\n", "web.yaml:2: not valid YAML: Map keys must be unique");
    fails("", "web.yaml: the deployment file is empty");
    fails("- web\n", `web.yaml: a deployment file is a mapping with "name" and the service's fields (exec, replicas, ...), not a list`);
  });

  test("rules across fields are left to the server: replicas 0 without per_agent parses", () => {
    assert.equal(parseDeploymentFile("web.yaml", `name: web\n${exec}replicas: 0\n`).spec.replicas, 0);
  });
});

// ---- ls, status, history -------------------------------------------------------------

test("a deployment's row has its name, revision, state, healthy of desired and age", () => {
  assert.deepEqual(deploymentRow(deployment(), NOW), ["web", "3", "rolling_out", "2/4", "1h ago"]);
  assert.deepEqual(deploymentRow(deployment({ state: DeploymentState.WAITING_PROMOTION }), NOW)[2], "waiting_promotion");
});

test("status shows the state and why, the revision and the stable one, the rollout, every replica and the latest events", () => {
  const d = deployment({
    statusMessage: "revision 3 failed: replica 1a2b3c4d ended: exited with code 3\nlast output of replica 1a2b3c4d:\nconfig missing",
    state: DeploymentState.FAILED,
    replicas: [
      { id: "1a2b3c4d-0000-4000-8000-000000000000", revision: 2, slot: "0", agentId: "agent-1", jobId: "j0000000-0000-4000-8000-000000000001", state: ReplicaState.RUNNING, health: { state: HealthState.HEALTHY, restarts: 1, port: 31000 }, message: "slot is empty" },
      { id: "5e6f7a8b-0000-4000-8000-000000000000", revision: 3, slot: "1", canary: true, state: ReplicaState.RUNNING, agentId: "agent-2", health: { state: HealthState.UNHEALTHY, message: "GET / answered 503" }, message: "canary 1 of 1" },
      { id: "9c9c9c9c-0000-4000-8000-000000000000", revision: 3, slot: "2", state: ReplicaState.PENDING, message: "rolling out revision 3" },
    ],
  });
  const events = [
    create(DeploymentEventSchema, { sequence: 1n, time: ago(300), kind: "applied", message: "revision 3 applied (was 2)", revision: 3 }),
    create(DeploymentEventSchema, { sequence: 2n, time: ago(30), kind: "rollout_failed", message: "revision 3 failed\nlast output:\nconfig missing", revision: 3 }),
  ];
  const text = deploymentDetails(d, events, { now: NOW });
  assert.match(text, /^state:\s+failed$/m);
  assert.match(text, /^status:\s+revision 3 failed: replica 1a2b3c4d ended: exited with code 3\n {2}last output of replica 1a2b3c4d:\n {2}config missing$/m, "a status of several lines stays readable");
  assert.match(text, /^revision:\s+3 \(stable: 2\)$/m);
  assert.match(text, /^replicas:\s+2\/4 healthy$/m);
  assert.match(text, /^rollout:\s+revision 2 → 3: batch 3 of 4, 2\/4 healthy, 1 starting; started 2m ago$/m);
  assert.match(text, /^command:\s+\.\/server --port 8080$/m);
  assert.match(text, /^SLOT\s+REPLICA\s+REVISION\s+STATE\s+HEALTH\s+AGENT\s+RESTARTS\s+PORT\s+JOB\s+MESSAGE$/m);
  assert.match(text, /^0\s+1a2b3c4d\s+2\s+running\s+healthy\s+agent-1\s+1\s+31000\s+j0000000-\S+\s+slot is empty$/m);
  assert.match(text, /^1\s+5e6f7a8b\s+3 \(canary\)\s+running\s+unhealthy\s+agent-2\s+0\s+-\s+-\s+GET \/ answered 503$/m, "an unhealthy replica says why");
  assert.match(text, /^2\s+9c9c9c9c\s+3\s+pending\s+-\s+-\s+0\s+-\s+-\s+rolling out revision 3$/m);
  assert.match(text, /^Events:\nTIME\s+REVISION\s+EVENT\s+MESSAGE\n5m ago\s+3\s+applied\s+revision 3 applied \(was 2\)\n30s ago\s+3\s+rollout_failed\s+revision 3 failed\n\s+ {2}last output:\n\s+ {2}config missing\n$/m);
});

test("status of a deployment with no replicas and no stable revision says so", () => {
  const text = deploymentDetails(deployment({ stableRevision: 0, replicas: [] }), [], { now: NOW });
  assert.match(text, /^revision:\s+3 \(none stable yet\)$/m);
  assert.match(text, /\nNo replicas\.\n$/);
  assert.doesNotMatch(text, /Events:/);
});

test("history lists revisions newest first, marking the current and the stable one, then events", () => {
  const res = create(ListRevisionsResponseSchema, {
    currentRevision: 3,
    stableRevision: 2,
    revisions: [
      { number: 3, specHash: "c".repeat(64), createTime: ago(60), spec: { replicas: 4, exec: { commands: [{ argv: ["./server", "--v3"] }] } } },
      { number: 2, specHash: "b".repeat(64), createTime: ago(7200), spec: { perAgent: {}, exec: { image: "nginx:1", commands: [{ argv: ["nginx"] }] } } },
      { number: 1, specHash: "a".repeat(64), createTime: ago(86400 * 2), spec: { replicas: 1, exec: { commands: [{ argv: ["./server"] }] } } },
    ],
  });
  const lines = historyText(res, [create(DeploymentEventSchema, { time: ago(60), kind: "applied", message: "revision 3 applied (was 2)", revision: 3 })], { now: NOW }).split("\n");
  assert.match(lines[0]!, /^REVISION\s+CREATED\s+HASH\s+COMMAND$/);
  assert.match(lines[1]!, /^3\s+current\s+1m ago\s+cccccccccccc\s+\.\/server --v3$/);
  assert.match(lines[2]!, /^2\s+stable\s+2h ago\s+bbbbbbbbbbbb\s+nginx:1: nginx$/);
  assert.match(lines[3]!, /^1\s+2d ago\s+aaaaaaaaaaaa\s+\.\/server$/);
  assert.equal(lines[5], "Events:");
  assert.deepEqual([revisionMarks(2, 2, 2), revisionMarks(1, 2, 2), revisionMarks(2, 3, 2)], ["current, stable", "", "stable"]);
});

test("an event of several lines takes a row per line in a table", () => {
  const table = eventsTable([create(DeploymentEventSchema, { time: ago(5), kind: "reverting", message: "a\nb", revision: 2 })], undefined, NOW);
  assert.deepEqual(table.split("\n"), ["TIME    REVISION  EVENT      MESSAGE", "5s ago  2         reverting  a", `${" ".repeat(29)}  b`, ""], "continuation lines are indented under the message");
});

// ---- apply and the levers ------------------------------------------------------------

test("apply says whether it made a revision, changed nothing, scaled, or started a stopped deployment", () => {
  const before = deployment({ currentRevision: { number: 2 }, desiredReplicas: 4 });
  const same = deployment({ currentRevision: { number: 2, spec: { replicas: 4 } } });
  assert.equal(applyText(undefined, deployment({ currentRevision: { number: 1, spec: { replicas: 2 } }, desiredReplicas: 2 }), true), "web: created, revision 1 rolling out (2 replicas)");
  assert.equal(applyText(before, deployment(), true), "web: revision 3 applied, rolling out (was 2)");
  assert.equal(applyText(before, same, false), "web: unchanged (revision 2)");
  assert.equal(applyText(before, deployment({ currentRevision: { number: 2, spec: { replicas: 5 } }, desiredReplicas: 5 }), true), "web: scaled to 5 (from 4)");
  const stopped = deployment({ currentRevision: { number: 2 }, state: DeploymentState.STOPPED, desiredReplicas: 0 });
  assert.equal(applyText(stopped, deployment({ currentRevision: { number: 2, spec: { replicas: 4 } } }), true), "web: started again with 4 replicas (revision 2)");
});

test("a lever's line shows the state after it, and the status only when it says more", () => {
  assert.equal(leverText(deployment({ state: DeploymentState.PAUSED, statusMessage: "paused" }), "paused"), "web: paused; paused at revision 3\n");
  assert.equal(leverText(deployment({ state: DeploymentState.STOPPING, statusMessage: "stopping" }), "stop requested"), "web: stop requested; stopping at revision 3\n");
});

// ---- following a rollout ---------------------------------------------------------------

describe("--wait", () => {
  const target = { revision: 3 };

  test("goes on while the revision rolls out, pauses or waits for promotion", () => {
    for (const state of [DeploymentState.ROLLING_OUT, DeploymentState.PAUSED, DeploymentState.WAITING_PROMOTION]) {
      assert.equal(waitOutcome(deployment({ state }), target), undefined, DeploymentState[state]);
    }
  });

  test("exits 0 once the deployment runs the applied revision", () => {
    assert.deepEqual(waitOutcome(deployment({ state: DeploymentState.RUNNING, healthyReplicas: 4 }), target), { code: 0, line: "web: revision 3 running, 4/4 healthy" });
  });

  test("exits 1 with the status message when the rollout fails, reverts, stops or another revision takes over", () => {
    const failed = waitOutcome(deployment({ state: DeploymentState.FAILED, statusMessage: "revision 3 failed: replica 1a2b3c4d ended\nlast output of replica 1a2b3c4d:\nno config" }), target);
    assert.deepEqual(failed, { code: 1, line: "web: revision 3 failed: replica 1a2b3c4d ended\nlast output of replica 1a2b3c4d:\nno config" });
    const reverting = waitOutcome(deployment({ state: DeploymentState.REVERTING, currentRevision: { number: 2 }, statusMessage: "revision 3 failed: x; reverting to revision 2" }), target);
    assert.deepEqual(reverting, { code: 1, line: "web: revision 3 failed: x; reverting to revision 2" });
    assert.equal(waitOutcome(deployment({ state: DeploymentState.STOPPED, statusMessage: "stopped" }), target)?.code, 1);
    assert.equal(waitOutcome(deployment({ state: DeploymentState.STOPPING, statusMessage: "stopping 2 replicas" }), target)?.line, "web: stopped: stopping 2 replicas");
    const moved = waitOutcome(deployment({ state: DeploymentState.RUNNING, currentRevision: { number: 4 }, statusMessage: "4 of 4 healthy" }), target);
    assert.deepEqual(moved, { code: 1, line: "web: revision 3 is no longer current, revision 4 is: 4 of 4 healthy" });
  });

  test("stop --wait goes on while replicas stop, exits 0 once none is left and 1 if started again", () => {
    const stop = { revision: 3, stopped: true };
    assert.equal(waitOutcome(deployment({ state: DeploymentState.STOPPING, statusMessage: "stopping 2 replicas" }), stop), undefined);
    assert.deepEqual(waitOutcome(deployment({ state: DeploymentState.STOPPED, statusMessage: "stopped" }), stop), { code: 0, line: "web: stopped, no replica runs" });
    assert.deepEqual(waitOutcome(deployment({ state: DeploymentState.ROLLING_OUT, statusMessage: "" }), stop), { code: 1, line: "web: started again meanwhile; rolling_out at revision 3" });
  });

  test("the progress line says the state, the batch and how many are healthy", () => {
    assert.equal(progressLine(deployment()), "rolling out revision 3: batch 3 of 4, 2/4 healthy, 1 starting");
    assert.equal(progressLine(deployment({ state: DeploymentState.REVERTING, currentRevision: { number: 2 } })), "reverting to revision 2: batch 3 of 4, 2/4 healthy, 1 starting");
    assert.equal(progressLine(deployment({ state: DeploymentState.WAITING_PROMOTION })), "revision 3 waits for promotion: batch 3 of 4, 2/4 healthy, 1 starting (drover deploy promote web goes on)");
    assert.equal(progressLine(deployment({ state: DeploymentState.RUNNING, healthyReplicas: 4 })), "running revision 3: 4/4 healthy");
    assert.equal(progressLine(deployment({ state: DeploymentState.FAILED, statusMessage: "revision 3 failed: x\nlog" })), "failed: revision 3 failed: x");
    assert.equal(ttyProgress(deployment(), 30), "rolling out revision 3: batc…", "cut to the terminal's width, so it can be rewritten in place");
  });

  test("a progress line is printed again only when the progress changed", () => {
    const d = deployment();
    assert.equal(progressKey(d), progressKey(deployment({ statusMessage: "other words", updateTime: ago(1) })));
    assert.notEqual(progressKey(d), progressKey(deployment({ rollout: { ...d.rollout!, healthy: 3 } })));
    assert.notEqual(progressKey(d), progressKey(deployment({ state: DeploymentState.PAUSED })));
  });

  test("event lines have the event's time and kind, a message of several lines indented under it", () => {
    const e = create(DeploymentEventSchema, { time: timestampFromMs(NOW), kind: "rollout_failed", message: "revision 3 failed\nlast output:\nboom", revision: 3 });
    const pad = " ".repeat(29);
    assert.equal(eventLine(e), `${clock(NOW)}  rollout_failed     revision 3 failed\n${pad}last output:\n${pad}boom`);
    assert.equal(progressEventLine(deployment(), NOW), `${clock(NOW)}  (progress)         rolling out revision 3: batch 3 of 4, 2/4 healthy, 1 starting`);
  });
});
