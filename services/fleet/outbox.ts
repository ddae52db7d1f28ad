// The durable outbox of server-to-agent messages that need an acknowledgement
// (everything but Welcome and LogAck). A message is stored before it is sent
// (an Assignment to a stream this replica holds: while it is stored), so that
// whatever happens to the stream, the replica or the bus, the agent gets it on
// its next Hello: at least once, in the order it was stored.

import { randomUUID } from "node:crypto";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { PrismaClient } from "../../gen/prisma/fleet/client.ts";
import { ConnectResponseSchema, type ConnectResponse } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { Batcher } from "../../lib/batcher.ts";
import { isUniqueViolation } from "../../lib/db/errors.ts";
import { encodeOnce } from "../../lib/encode_once.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";

/** How long acknowledged messages are kept (to recognise a resent message id) before they are pruned. */
export const ACKED_RETENTION_MS = 24 * 3600_000;

/** True for server messages the agent must acknowledge. */
export function needsAck(message: ConnectResponse): boolean {
  return message.message.case !== "welcome" && message.message.case !== "logAck" && message.message.case !== undefined;
}

/** A new message id. */
export function newMessageId(): string {
  return `msg_${randomUUID()}`;
}

/** What store() found. */
export type StoreOutcome =
  /** Stored now; send it. */
  | "stored"
  /** Stored before and not yet acknowledged; sending it again is harmless. */
  | "pending"
  /** Stored before and acknowledged; do not send it again. */
  | "acked"
  /** No such agent. */
  | "no-agent";

export class Outbox {
  /** storeMany calls in flight, by agent (see ack). */
  private readonly storing = new Map<string, Set<Promise<StoreOutcome[]>>>();

  /**
   * Every stream's acks that wait at once, in one UPDATE: with 50 agents
   * acknowledging every 50 ms, a statement per Ack was a statement per job.
   */
  private readonly acks = new Batcher<{ agentId: string; messageIds: readonly string[] }, number>(
    async (items) => {
      const rows = items.flatMap(({ agentId, messageIds }, ord) => messageIds.map((message_id) => ({ ord, agent_id: agentId, message_id })));
      const counted = await this.sql.query<{ ord: number; n: number }>(
        `WITH input AS (
           SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(ord int, agent_id text, message_id text)
         ), acked AS (
           UPDATE "fleet"."agent_messages" m SET "acked_at" = $2::timestamptz, "payload" = ''::bytea
             FROM input i
            WHERE m.agent_id = i.agent_id AND m.message_id = i.message_id AND m.acked_at IS NULL
           RETURNING i.ord
         ) SELECT ord, count(*)::int AS n FROM acked GROUP BY ord`,
        [JSON.stringify(rows), this.now().toISOString()],
      );
      const n = new Array<number>(items.length).fill(0);
      for (const r of counted) n[r.ord] = r.n;
      return n;
    },
    { maxSize: 500 },
  );

  constructor(
    private readonly db: PrismaClient,
    /** The same database below Prisma, for the statements every assignment and ack runs. */
    private readonly sql: SqlExecutor,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Stores a message (its message_id must be set) for an agent. */
  async store(agentId: string, message: ConnectResponse): Promise<StoreOutcome> {
    if (!message.messageId) throw new Error("Outbox.store: the message has no message_id");
    if ((await this.db.agent.count({ where: { id: agentId } })) === 0) return "no-agent";
    try {
      await this.db.agentMessage.create({
        data: { agentId, messageId: message.messageId, payload: toBinary(ConnectResponseSchema, message) },
      });
      return "stored";
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const existing = await this.db.agentMessage.findUnique({
        where: { agentId_messageId: { agentId, messageId: message.messageId } },
        select: { ackedAt: true },
      });
      return existing?.ackedAt ? "acked" : "pending";
    }
  }

  /**
   * Stores many messages (message_ids set) in one statement, in order;
   * resolves one outcome per message, as store() would.
   */
  storeMany(items: readonly { agentId: string; message: ConnectResponse }[]): Promise<StoreOutcome[]> {
    if (items.length === 0) return Promise.resolve([]);
    const stored = this.insertMany(items);
    const agents = new Set(items.map((i) => i.agentId));
    for (const agentId of agents) {
      let pending = this.storing.get(agentId);
      if (!pending) this.storing.set(agentId, (pending = new Set()));
      pending.add(stored);
    }
    const settled = () => {
      for (const agentId of agents) {
        const pending = this.storing.get(agentId);
        pending?.delete(stored);
        if (pending?.size === 0) this.storing.delete(agentId);
      }
    };
    stored.then(settled, settled);
    return stored;
  }

  private async insertMany(items: readonly { agentId: string; message: ConnectResponse }[]): Promise<StoreOutcome[]> {
    const rows = items.map(({ agentId, message }, ord) => {
      if (!message.messageId) throw new Error("Outbox.storeMany: a message has no message_id");
      // Encoded once: the stream and the bus send these bytes too (encode_once.ts).
      const payload = encodeOnce(ConnectResponseSchema, message);
      return { ord, agent_id: agentId, message_id: message.messageId, payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("base64") };
    });
    // The outer SELECT sees the table as it was before the INSERT, so a row
    // found in "m" is one stored earlier: a resend.
    const found = await this.sql.query<{ ord: number; stored: boolean; agent: boolean; acked: boolean }>(
      `WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(ord int, agent_id text, message_id text, payload text)
       ), ins AS (
         INSERT INTO "fleet"."agent_messages" ("agent_id", "message_id", "payload")
         SELECT i.agent_id, i.message_id, decode(i.payload, 'base64')
           FROM input i JOIN "fleet"."agents" a ON a.id = i.agent_id
          ORDER BY i.ord
         ON CONFLICT ("agent_id", "message_id") DO NOTHING
         RETURNING "agent_id", "message_id"
       )
       SELECT i.ord, (ins.message_id IS NOT NULL) AS stored, (a.id IS NOT NULL) AS agent, (m.acked_at IS NOT NULL) AS acked
         FROM input i
         LEFT JOIN ins ON ins.agent_id = i.agent_id AND ins.message_id = i.message_id
         LEFT JOIN "fleet"."agents" a ON a.id = i.agent_id
         LEFT JOIN "fleet"."agent_messages" m ON m.agent_id = i.agent_id AND m.message_id = i.message_id
        ORDER BY i.ord`,
      [JSON.stringify(rows)],
    );
    const outcomes: StoreOutcome[] = new Array(items.length).fill("pending");
    for (const r of found) outcomes[r.ord] = !r.agent ? "no-agent" : r.stored ? "stored" : r.acked ? "acked" : "pending";
    return outcomes;
  }

  /** The agent's unacknowledged messages, oldest first. */
  async unacked(agentId: string): Promise<ConnectResponse[]> {
    const rows = await this.db.agentMessage.findMany({
      where: { agentId, ackedAt: null },
      orderBy: { seq: "asc" },
      select: { payload: true },
    });
    return rows.map((r) => fromBinary(ConnectResponseSchema, r.payload));
  }

  /**
   * Marks messages acknowledged; resolves how many were pending (ids unknown
   * or acknowledged before do not count). An acknowledged message keeps its
   * id, to recognise a resend, but not its payload: nothing reads it again,
   * and a day of assignments' payloads would be most of the table.
   */
  async ack(agentId: string, messageIds: readonly string[]): Promise<number> {
    if (messageIds.length === 0) return 0;
    // A message can reach its agent while it is being stored (see FleetServiceImpl.sendToAgents):
    // the ack must not look for its row before the INSERT is done.
    const pending = this.storing.get(agentId);
    if (pending) await Promise.allSettled(pending);
    return this.acks.add({ agentId, messageIds });
  }

  /** Deletes acknowledged messages older than the retention. */
  async prune(): Promise<number> {
    const { count } = await this.db.agentMessage.deleteMany({
      where: { ackedAt: { lt: new Date(this.now().getTime() - ACKED_RETENTION_MS) } },
    });
    return count;
  }
}
