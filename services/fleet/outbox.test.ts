// The outbox's statements on both databases Drover runs on: storing many
// messages (outcomes per message), acknowledging them, and an ack that
// arrives while its message is still being stored (an Assignment goes to
// a local stream while it is stored: FleetServiceImpl.sendToAgents).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { ConnectResponseSchema, type ConnectResponse } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, openTempPglite } from "../../lib/db/testing.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { Outbox } from "./outbox.ts";

const pgUrl = await requirePostgres();

const assignment = (attemptId: string): ConnectResponse =>
  create(ConnectResponseSchema, { messageId: `assign:${attemptId}`, message: { case: "assignment", value: { attemptId, jobId: attemptId } } });

function contract(name: string, open: () => Promise<Database & { cleanup?: () => Promise<void> }>) {
  describe(`fleet outbox on ${name}`, () => {
    let db: Database & { cleanup?: () => Promise<void> };
    let outbox: Outbox;
    before(async () => {
      db = await open();
      await migrate(db.executor, "fleet");
      for (const id of ["a1", "a2"]) await db.prismaFor("fleet").agent.create({ data: { id, hostname: id } });
      outbox = new Outbox(db.prismaFor("fleet"), db.executor);
    });
    after(async () => {
      await db?.close();
      await db?.cleanup?.();
    });

    it("stores many messages in order with an outcome each, and acks them once", async () => {
      const outcomes = await outbox.storeMany([
        { agentId: "a1", message: assignment("x1") },
        { agentId: "a1", message: assignment("x2") },
        { agentId: "nobody", message: assignment("x3") },
        { agentId: "a2", message: assignment("x4") },
      ]);
      assert.deepEqual(outcomes, ["stored", "stored", "no-agent", "stored"]);
      assert.deepEqual((await outbox.unacked("a1")).map((m) => m.messageId), ["assign:x1", "assign:x2"]);
      assert.equal(await outbox.ack("a1", ["assign:x1", "assign:unknown"]), 1);
      assert.equal(await outbox.ack("a1", ["assign:x1"]), 0, "acknowledged before: not counted again");
      assert.deepEqual(await outbox.storeMany([{ agentId: "a1", message: assignment("x1") }, { agentId: "a1", message: assignment("x2") }]), ["acked", "pending"]);
      assert.deepEqual((await outbox.unacked("a1")).map((m) => m.messageId), ["assign:x2"]);
      assert.equal(await outbox.ack("a1", []), 0);
      // An acknowledged message keeps its id (a resend is recognised, above) but not its payload.
      const rows = await db.executor.query<{ message_id: string; bytes: number }>(
        `SELECT message_id, length(payload) AS bytes FROM "fleet"."agent_messages" WHERE agent_id = 'a1' ORDER BY seq`,
      );
      assert.deepEqual(rows.map((r) => [r.message_id, Number(r.bytes) > 0]), [["assign:x1", false], ["assign:x2", true]]);
    });

    it("acks of several agents that arrive together each count their own agent's messages", async () => {
      await outbox.storeMany([
        { agentId: "a1", message: assignment("z1") },
        { agentId: "a1", message: assignment("z2") },
        { agentId: "a2", message: assignment("z3") },
      ]);
      // One statement for all three (they wait together); an id acks only its own agent's row.
      const counts = await Promise.all([
        outbox.ack("a1", ["assign:z1", "assign:z3"]),
        outbox.ack("a2", ["assign:z1", "assign:z3"]),
        outbox.ack("a1", ["assign:z2", "assign:z2"]),
      ]);
      assert.deepEqual(counts, [1, 1, 1]);
      assert.deepEqual((await outbox.unacked("a1")).map((m) => m.messageId), ["assign:x2"]);
      assert.deepEqual((await outbox.unacked("a2")).map((m) => m.messageId), ["assign:x4"]);
    });

    it("an ack sent while its messages are being stored finds them", async () => {
      const messages = Array.from({ length: 200 }, (_, i) => ({ agentId: "a2", message: assignment(`y${i}`) }));
      // On PostgreSQL, hold the INSERT back: it waits for a lock on the agent's row (its foreign
      // key), while the ack's UPDATE would run at once on another connection.
      let release = () => {};
      let blocker: Promise<void> = Promise.resolve();
      if (name === "PostgreSQL") {
        const held = new Promise<void>((resolve) => (release = resolve));
        let locked = () => {};
        const isLocked = new Promise<void>((resolve) => (locked = resolve));
        blocker = db.executor.transaction(async (tx) => {
          await tx.query(`SELECT 1 FROM "fleet"."agents" WHERE id = 'a2' FOR UPDATE`);
          locked();
          await held;
        });
        await isLocked;
      }
      const storing = outbox.storeMany(messages);
      await new Promise((r) => setTimeout(r, 100));
      const acked = outbox.ack("a2", messages.map((m) => m.message.messageId));
      await new Promise((r) => setTimeout(r, 100));
      release();
      await blocker;
      assert.equal(await acked, 200);
      assert.ok((await storing).every((o) => o === "stored"));
      assert.deepEqual((await outbox.unacked("a2")).map((m) => m.messageId), ["assign:x4"]);
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
