-- fleet: the outbox's index holds only the messages still to acknowledge.
--
-- It was (agent_id, acked_at, seq) over every row, acknowledged ones
-- included, so an Ack (an UPDATE of acked_at, an indexed column) wrote each
-- message's new row version into it as well as into the primary key, and
-- the index grew with a day of history (acknowledged rows are kept a day to
-- recognise a resend). Its one question is "an agent's unacknowledged
-- messages in order" (agent_id = $1 AND acked_at IS NULL ORDER BY seq), which
-- this partial index answers; an acknowledged row's new version goes into
-- the primary key alone.
--
-- Partial indexes cannot be written in Prisma's schema: this one lives here
-- only (prisma/schema-agreement.test.ts leaves partial indexes out).
--
-- Upgrading a large outbox: migrations run in a transaction, so the index
-- is built without CONCURRENTLY and holds off writes to agent_messages
-- while it is built (it reads the table once; the new index is small).

DROP INDEX "fleet"."agent_messages_agent_id_acked_at_seq_idx";
CREATE INDEX "agent_messages_unacked" ON "fleet"."agent_messages" ("agent_id", "seq") WHERE "acked_at" IS NULL;
