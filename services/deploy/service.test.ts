// DeployService's RPCs against a real (embedded) PostgreSQL, impl methods
// called directly: revisions, scaling, the operator's levers, bad input.
// Rollouts themselves run in integration/deploy.test.ts with real agents.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import {
  ApplyDeploymentRequestSchema,
  DeploymentState,
  ServiceSpecSchema,
} from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { openPglite, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { failure } from "../../lib/testing/connect.ts";
import { DeployServiceImpl } from "./service.ts";

let db: Database;
let wakes = 0;
const svc = () => new DeployServiceImpl({ db: db.prismaFor("deploy"), sql: db.executor, wake: () => wakes++ });

before(async () => {
  db = await openPglite("memory://");
  await migrate(db.executor, "deploy");
});

after(async () => {
  await db?.close();
});

const exec = { commands: [{ argv: ["serve"] }] };
const apply = (name: string, spec: MessageInitShape<typeof ServiceSpecSchema>) => svc().applyDeployment(create(ApplyDeploymentRequestSchema, { name, spec }));

describe("ApplyDeployment", () => {
  it("creates revision 1, rolling out, and wakes the controller", async () => {
    const before = wakes;
    const res = await apply("web", { exec, replicas: 2 });
    assert.equal(res.changed, true);
    assert.equal(res.deployment.currentRevision?.number, 1);
    assert.equal(res.deployment.desiredReplicas, 2);
    assert.equal(res.deployment.state, DeploymentState.ROLLING_OUT);
    assert.match(res.deployment.currentRevision?.specHash ?? "", /^[0-9a-f]{64}$/);
    assert.equal(wakes, before + 1);
  });

  it("changes nothing when the same spec is applied again", async () => {
    const first = await apply("api", { exec, replicas: 3 });
    const again = await apply("api", { exec, replicas: 3 });
    assert.equal(again.changed, false);
    assert.equal(again.deployment.id, first.deployment.id);
    assert.equal(again.deployment.currentRevision?.number, 1);
  });

  it("scales without a new revision when only the count changes", async () => {
    await apply("worker", { exec, replicas: 1 });
    const scaled = await apply("worker", { exec, replicas: 4 });
    assert.equal(scaled.changed, true);
    assert.equal(scaled.deployment.currentRevision?.number, 1);
    assert.equal(scaled.deployment.desiredReplicas, 4);
    const got = await svc().getDeployment({ $typeName: "drover.deploy.v1.GetDeploymentRequest", name: "worker", endedReplicas: 0 });
    assert.deepEqual(got.events.map((e) => e.kind), ["applied", "scaled"]);
    assert.match(got.events[1]!.message, /from 1 to 4/);
  });

  it("makes revision 2 from a changed spec; env order is not a change", async () => {
    const withEnv = (env: Record<string, string>) => ({ exec: { ...exec, env }, replicas: 1, constraints: { labels: { zone: "a", disk: "ssd" } } });
    await apply("cache", withEnv({ A: "1", B: "2" }));
    const reordered = await apply("cache", { ...withEnv({ B: "2", A: "1" }), constraints: { labels: { disk: "ssd", zone: "a" } } });
    assert.equal(reordered.changed, false);
    const changed = await apply("cache", withEnv({ A: "1", B: "3" }));
    assert.equal(changed.deployment.currentRevision?.number, 2);
    const revs = await svc().listRevisions({ $typeName: "drover.deploy.v1.ListRevisionsRequest", name: "cache" });
    assert.deepEqual(revs.revisions.map((r) => r.number), [2, 1]);
    assert.equal(revs.currentRevision, 2);
  });

  it("refuses bad specs with the field's path, storing nothing", async () => {
    const cases: [MessageInitShape<typeof ServiceSpecSchema>, RegExp][] = [
      [{ exec }, /spec\.replicas: must be at least 1/],
      [{ exec, replicas: 2, perAgent: {} }, /spec\.replicas: must be 0 with per_agent/],
      [{ exec, replicas: 1, healthCheck: { check: { case: "http", value: { path: "/health" } } } }, /spec\.health_check\.http\.port: a port is required/],
      [{ exec, replicas: 1, healthCheck: { check: { case: "tcp", value: {} } } }, /spec\.health_check\.tcp\.port/],
      [{ exec, replicas: 2, update: { canary: 3 } }, /spec\.update\.canary: more canaries \(3\) than replicas \(2\)/],
      [{ exec, replicas: 1, driver: "docker" }, /spec\.exec\.image/],
      [
        { exec: { image: "nginx:1.27", commands: [{ argv: ["nginx"] }] }, replicas: 1, driver: "docker", healthCheck: { check: { case: "http", value: { port: 80 } } } },
        /spec\.health_check\.http\.port: a docker replica is checked on its assigned port/,
      ],
    ];
    for (const [spec, message] of cases) {
      const err = await failure(apply("bad", spec));
      assert.equal(err.code, Code.InvalidArgument, String(message));
      assert.match(err.rawMessage, message);
    }
    assert.equal(await db.prismaFor("deploy").deployment.count({ where: { name: "bad" } }), 0);
    // A port check is fine with assign_port.
    const ok = await apply("good", { exec, replicas: 1, assignPort: true, healthCheck: { check: { case: "http", value: {} } } });
    assert.equal(ok.changed, true);
    const docker = await apply("good-docker", { exec: { image: "nginx:1.27", commands: [{ argv: ["nginx"] }] }, driver: "docker", replicas: 1, assignPort: true, healthCheck: { check: { case: "tcp", value: {} } } });
    assert.equal(docker.changed, true);
  });
});

describe("the operator's levers", () => {
  it("rolls back to an earlier revision, and refuses an unknown one", async () => {
    await apply("rb", { exec, replicas: 1 });
    await apply("rb", { exec: { commands: [{ argv: ["serve", "--v2"] }] }, replicas: 1 });
    const err = await failure(svc().rollbackDeployment({ $typeName: "drover.deploy.v1.RollbackDeploymentRequest", name: "rb", revision: 9 }));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /revision: deployment rb has no revision 9/);
    const res = await svc().rollbackDeployment({ $typeName: "drover.deploy.v1.RollbackDeploymentRequest", name: "rb", revision: 0 });
    assert.equal(res.deployment.currentRevision?.number, 1);
    assert.equal(res.deployment.rollout?.fromRevision, 2);
    assert.equal(res.deployment.state, DeploymentState.ROLLING_OUT);
  });

  it("rolls back to the last revision that rolled out, passing over one with the current spec, when no revision is named", async () => {
    const v1 = { exec, replicas: 1 };
    const v2 = { exec: { commands: [{ argv: ["serve", "--v2"] }] }, replicas: 1 };
    const rollback = () => svc().rollbackDeployment({ $typeName: "drover.deploy.v1.RollbackDeploymentRequest", name: "rb2", revision: 0 });
    const rolledOut = async (revision: number) => {
      // What the controller records when a revision rolls out, and makes it the stable one.
      const d = await db.prismaFor("deploy").deployment.findUniqueOrThrow({ where: { name: "rb2" } });
      const sequence = BigInt(Date.now()) * 1000n + BigInt(revision);
      await db.prismaFor("deploy").event.create({ data: { deploymentId: d.id, sequence, kind: "rollout_succeeded", message: "rolled out", revision } });
      await db.prismaFor("deploy").deployment.update({ where: { id: d.id }, data: { stableRevision: revision, state: "running" } });
    };
    await apply("rb2", v1);
    await rolledOut(1);
    await apply("rb2", v2); // revision 2: it fails, say, and is reverted to 1
    await apply("rb2", v2); // the same spec again: no new revision
    await svc().rollbackDeployment({ $typeName: "drover.deploy.v1.RollbackDeploymentRequest", name: "rb2", revision: 1 });
    await apply("rb2", { ...v2, replicas: 1 }); // v2 once more, now revision 3, and it rolls out
    const now = await svc().getDeployment({ $typeName: "drover.deploy.v1.GetDeploymentRequest", name: "rb2", endedReplicas: 0 });
    assert.equal(now.deployment.currentRevision?.number, 3);
    await rolledOut(3);
    // Stable is current: not revision 2 (v2 again, which never rolled out), but 1.
    const res = await rollback();
    assert.equal(res.deployment.currentRevision?.number, 1);
    assert.equal(res.deployment.rollout?.fromRevision, 3);
  });

  it("pauses and resumes a rollout", async () => {
    await apply("pz", { exec, replicas: 1 });
    const paused = await svc().pauseDeployment({ $typeName: "drover.deploy.v1.PauseDeploymentRequest", name: "pz" });
    assert.equal(paused.deployment.state, DeploymentState.PAUSED);
    const resumed = await svc().resumeDeployment({ $typeName: "drover.deploy.v1.ResumeDeploymentRequest", name: "pz" });
    assert.equal(resumed.deployment.state, DeploymentState.ROLLING_OUT);
  });

  it("refuses to promote without canaries waiting, and to scale a per-agent deployment", async () => {
    await apply("pr", { exec, replicas: 1 });
    await svc().scaleDeployment({ $typeName: "drover.deploy.v1.ScaleDeploymentRequest", name: "pr", replicas: 1 });
    await db.prismaFor("deploy").deployment.update({ where: { name: "pr" }, data: { state: "running", promoted: true } });
    const err = await failure(svc().promoteDeployment({ $typeName: "drover.deploy.v1.PromoteDeploymentRequest", name: "pr" }));
    assert.equal(err.code, Code.FailedPrecondition);
    await apply("sys", { exec, perAgent: { labels: { role: "edge" } } });
    const scale = await failure(svc().scaleDeployment({ $typeName: "drover.deploy.v1.ScaleDeploymentRequest", name: "sys", replicas: 3 }));
    assert.equal(scale.code, Code.FailedPrecondition);
    assert.match(scale.rawMessage, /one replica per matching agent/);
  });

  it("deletes only a stopped deployment", async () => {
    await apply("del", { exec, replicas: 1 });
    const early = await failure(svc().deleteDeployment({ $typeName: "drover.deploy.v1.DeleteDeploymentRequest", name: "del" }));
    assert.equal(early.code, Code.FailedPrecondition);
    assert.match(early.rawMessage, /not stopped: stop it first/);
    const stopped = await svc().stopDeployment({ $typeName: "drover.deploy.v1.StopDeploymentRequest", name: "del" });
    assert.equal(stopped.deployment.desiredReplicas, 0);
    assert.equal(stopped.deployment.state, DeploymentState.STOPPING);
    await svc().deleteDeployment({ $typeName: "drover.deploy.v1.DeleteDeploymentRequest", name: "del" });
    const gone = await failure(svc().getDeployment({ $typeName: "drover.deploy.v1.GetDeploymentRequest", name: "del", endedReplicas: 0 }));
    assert.equal(gone.code, Code.NotFound);
  });

  it("restart bumps the generation and rolls", async () => {
    await apply("rs", { exec, replicas: 2 });
    const res = await svc().restartDeployment({ $typeName: "drover.deploy.v1.RestartDeploymentRequest", name: "rs" });
    assert.equal(res.deployment.state, DeploymentState.ROLLING_OUT);
    const row = await db.prismaFor("deploy").deployment.findUniqueOrThrow({ where: { name: "rs" } });
    assert.equal(row.generation, 1);
  });

  it("lists deployments by name, paginated", async () => {
    const first = await svc().listDeployments({ $typeName: "drover.deploy.v1.ListDeploymentsRequest", pageSize: 2, pageToken: "" });
    assert.equal(first.deployments.length, 2);
    assert.ok(first.nextPageToken);
    const second = await svc().listDeployments({ $typeName: "drover.deploy.v1.ListDeploymentsRequest", pageSize: 2, pageToken: first.nextPageToken });
    assert.ok(second.deployments[0]!.name > first.deployments[1]!.name);
  });
});
