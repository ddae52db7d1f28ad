-- scheduler: attempts are indexed by agent only while they are live.
--
-- attempts_agent_id_idx covered every attempt ever made, and every state
-- change of an attempt is an UPDATE of an indexed column (state), so each
-- wrote a new entry into it: an index that grew with the whole history,
-- written on the hot path of every job event. Its two questions are about
-- an agent's live attempts only (liveAttemptsOf, expireLeasesOf: agent_id =
-- $1 AND state IN ('assigned', 'running')), which this partial index
-- answers; an attempt's final write no longer goes into it.
--
-- Partial indexes cannot be written in Prisma's schema: this one lives here
-- only (prisma/schema-agreement.test.ts leaves partial indexes out).
--
-- Upgrading a large table: migrations run in a transaction, so the index is
-- built without CONCURRENTLY and holds off writes to attempts while it is
-- built (it reads the table once; the new index is small).

DROP INDEX "scheduler"."attempts_agent_id_idx";
CREATE INDEX "attempts_agent_id_idx" ON "scheduler"."attempts"("agent_id")
    WHERE "state" IN ('assigned', 'running');
