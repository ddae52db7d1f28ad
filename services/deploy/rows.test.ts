// The deploy schema's hot rows in raw SQL (rows.ts), on both databases
// Drover runs on: what they read is what Prisma reads of the same rows,
// field for field (dates, bigints, arrays, nulls), and what they write
// Prisma reads back.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, openTempPglite } from "../../lib/db/testing.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { NEW_REPLICA, insertEvents, insertReplicas, patchDeployment, readDeployment, readLiveReplicas, writeJobIds, writeReplicas, writeStopRequested, type ReplicaRow } from "./rows.ts";

const pgUrl = await requirePostgres();

function contract(name: string, open: () => Promise<Database & { cleanup?: () => Promise<void> }>) {
  describe(`deploy rows on ${name}`, () => {
    let db: Database & { cleanup?: () => Promise<void> };
    before(async () => {
      db = await open();
      await migrate(db.executor, "deploy");
    });
    after(async () => {
      await db?.close();
      await db?.cleanup?.();
    });

    const newDeployment = async (name: string) =>
      db.prismaFor("deploy").deployment.create({ data: { name, currentRevision: 1, desiredReplicas: 3, eventSeq: 9_007_199_254_740_993n, claimedBy: "me", claimUntil: new Date(Date.UTC(2030, 0, 2, 3, 4, 5, 678)) } });

    const replica = (deploymentId: string, slot: string, createdAt: Date, extra: Partial<ReplicaRow> = {}): ReplicaRow => ({
      ...NEW_REPLICA,
      id: randomUUID(),
      deploymentId,
      revision: 1,
      generation: 0,
      slot,
      message: "slot is empty",
      createdAt,
      ...extra,
    });

    it("reads a deployment by id and by name as Prisma does, and nothing for an unknown one", async () => {
      const made = await newDeployment("read-me");
      const prisma = await db.prismaFor("deploy").deployment.findUniqueOrThrow({ where: { id: made.id } });
      assert.deepEqual(await readDeployment(db.executor, { id: made.id }), prisma);
      assert.deepEqual(await readDeployment(db.executor, { name: "read-me" }), prisma);
      assert.equal(prisma.eventSeq, 9_007_199_254_740_993n, "a bigint past 2^53 survives");
      assert.equal(await readDeployment(db.executor, { id: randomUUID() }), undefined);
      assert.equal(await readDeployment(db.executor, { name: "nobody" }), undefined);
    });

    it("inserts replicas, reads the live ones in either order as Prisma does, and leaves out those that are over", async () => {
      const dep = await newDeployment("replicas");
      const t0 = Date.UTC(2026, 11, 4, 12, 0, 0, 123);
      const rows = [
        replica(dep.id, "1", new Date(t0), { avoidAgents: ["agent-a", "agent,b"], canary: true }),
        replica(dep.id, "0", new Date(t0 + 1)),
        replica(dep.id, "0", new Date(t0 + 2)),
        replica(dep.id, "2", new Date(t0 + 3)),
      ];
      await insertReplicas(db.executor, rows);
      rows[1]!.jobId = randomUUID();
      await writeJobIds(db.executor, [rows[1]!]);
      Object.assign(rows[2]!, { state: "running", agentId: "agent-a", health: "healthy", healthMessage: "200 OK", healthSince: new Date(t0 + 50), restarts: 2, port: 20123, healthyAt: new Date(t0 + 1050) });
      Object.assign(rows[3]!, { state: "stopped", endedAt: new Date(t0 + 60), stopRequestedAt: new Date(t0 + 55) });
      await writeReplicas(db.executor, [rows[2]!, rows[3]!]);
      await writeStopRequested(db.executor, [rows[0]!.id], new Date(t0 + 70));

      const prisma = await db.prismaFor("deploy").replica.findMany({ where: { deploymentId: dep.id, state: { in: ["pending", "running", "stopping"] } }, orderBy: [{ createdAt: "asc" }] });
      assert.deepEqual(await readLiveReplicas(db.executor, dep.id, "created"), prisma);
      const bySlot = await readLiveReplicas(db.executor, dep.id, "slot");
      assert.deepEqual(bySlot.map((r) => [r.slot, r.createdAt.getTime()]), [["0", t0 + 1], ["0", t0 + 2], ["1", t0]]);
      assert.deepEqual(bySlot[2]!.avoidAgents, ["agent-a", "agent,b"]);
      assert.equal(bySlot[2]!.stopRequestedAt?.getTime(), t0 + 70);
      assert.equal(bySlot[0]!.jobId, rows[1]!.jobId);
      assert.deepEqual(
        { ...bySlot[1]!, healthSince: bySlot[1]!.healthSince?.getTime(), healthyAt: bySlot[1]!.healthyAt?.getTime() },
        { ...rows[2]!, healthSince: t0 + 50, healthyAt: t0 + 1050 },
      );
    });

    it("appends events and patches only the columns named, moving updated_at", async () => {
      const dep = await newDeployment("patched");
      await insertEvents(db.executor, dep.id, [
        { sequence: dep.eventSeq + 1n, kind: "replica_started", message: "one", revision: 1, replicaId: randomUUID() },
        { sequence: dep.eventSeq + 2n, kind: "rollout_succeeded", message: "two", revision: 1, replicaId: null },
      ]);
      const ended = new Date(Date.UTC(2026, 11, 4, 13, 0, 0, 5));
      await patchDeployment(db.executor, dep.id, { state: "running", statusMessage: "3 of 3 healthy", stableRevision: 1, rolloutEndedAt: ended, eventSeq: dep.eventSeq + 2n });
      const after = await db.prismaFor("deploy").deployment.findUniqueOrThrow({ where: { id: dep.id } });
      assert.deepEqual(
        { state: after.state, statusMessage: after.statusMessage, stableRevision: after.stableRevision, rolloutEndedAt: after.rolloutEndedAt, eventSeq: after.eventSeq, desiredReplicas: after.desiredReplicas, claimedBy: after.claimedBy },
        { state: "running", statusMessage: "3 of 3 healthy", stableRevision: 1, rolloutEndedAt: ended, eventSeq: dep.eventSeq + 2n, desiredReplicas: 3, claimedBy: "me" },
      );
      assert.ok(after.updatedAt.getTime() >= dep.updatedAt.getTime());
      const events = await db.prismaFor("deploy").event.findMany({ where: { deploymentId: dep.id }, orderBy: { sequence: "asc" } });
      assert.deepEqual(events.map((e) => [e.sequence, e.kind, e.message, e.replicaId === null]), [[dep.eventSeq + 1n, "replica_started", "one", false], [dep.eventSeq + 2n, "rollout_succeeded", "two", true]]);
      await patchDeployment(db.executor, dep.id, {}); // nothing to write is no statement, not an error
      await assert.rejects(patchDeployment(db.executor, dep.id, { name: "renamed" }), /name is not a column the controller writes/);
    });
  });
}

contract("PGlite", openTempPglite);
if (pgUrl) {
  contract("PostgreSQL", async () => {
    const testDb = await createTestDatabase(pgUrl);
    return { ...openPostgres(testDb.url), cleanup: () => testDb.drop() };
  });
}
