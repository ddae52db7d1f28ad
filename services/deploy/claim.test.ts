// The Deploy controller's claims on the embedded PostgreSQL: one replica
// drives a deployment at a time, renews its claim only once half of it has
// run out, and another replica takes the deployment once the claim lapses.

import assert from "node:assert/strict";
import { after, before, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ApplyDeploymentRequestSchema } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";
import { openPglite, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createLogger } from "../../lib/logger.ts";
import { Controller } from "./controller.ts";
import { DeployServiceImpl } from "./service.ts";

const CLAIM_MS = 2000;
let db: Database;

before(async () => {
  db = await openPglite("memory://");
  await migrate(db.executor, "deploy");
});

after(async () => {
  await db?.close();
});

// Claims read and write the deployments table alone: no other service is called.
const controller = () =>
  new Controller({ db: db.prismaFor("deploy"), sql: db.executor, clients: {} as DroverClients, logger: createLogger("silent"), settings: { tickMs: 200, claimMs: CLAIM_MS } });

const claimUntil = async (name: string) => (await db.prismaFor("deploy").deployment.findUniqueOrThrow({ where: { name } })).claimUntil!.getTime();

it("holds a deployment for one replica, renews the claim at half its length, and lets another take it once it lapses", async () => {
  const svc = new DeployServiceImpl({ db: db.prismaFor("deploy"), sql: db.executor });
  const { deployment } = await svc.applyDeployment(create(ApplyDeploymentRequestSchema, { name: "claimed", spec: { exec: { commands: [{ argv: ["serve"] }] }, replicas: 1 } }));
  const [a, b] = [controller(), controller()];

  assert.deepEqual(await a.claim(), [deployment!.id]);
  assert.deepEqual(await b.claim(), [], "held by the first");
  const first = await claimUntil("claimed");
  // Early in the claim: still ours, and the row is not written again.
  assert.deepEqual(await a.claim(), [deployment!.id]);
  assert.equal(await claimUntil("claimed"), first);
  // Past half of it: renewed.
  await new Promise((r) => setTimeout(r, CLAIM_MS / 2 + 50));
  assert.deepEqual(await a.claim(), [deployment!.id]);
  assert.ok((await claimUntil("claimed")) > first, "renewed");
  assert.deepEqual(await b.claim(), []);
  // The first replica goes quiet: once the claim lapses the second takes over, and the first has nothing.
  await new Promise((r) => setTimeout(r, CLAIM_MS + 50));
  assert.deepEqual(await b.claim(), [deployment!.id]);
  assert.deepEqual(await a.claim(), []);
});
