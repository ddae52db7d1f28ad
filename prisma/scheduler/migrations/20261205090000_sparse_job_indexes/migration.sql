-- scheduler: indexes hold only the rows they are asked about.
--
-- Every state change of a job is an UPDATE that changes an indexed column
-- (state), so PostgreSQL writes the new row version into every index of
-- the table: a job's five writes (submit, claim, assignment, its events)
-- each went into seven or eight indexes, though most jobs have no
-- idempotency key, run, repeat chain or concurrency key, a claim's expiry
-- is set only while the job is offered, and only service replicas have a
-- deployment. Each of those indexes now holds only the rows where its
-- column is set, so a plain job's write touches two or three: the primary
-- key, the queue scan and (while offered) the claim's expiry. The
-- same for an attempt's lease: only live attempts are swept for a lapsed
-- one. Every query that uses these indexes names the column with an
-- operator that implies it is set (`=`, `<`, `IN`), or says so.
--
-- Partial indexes cannot be written in Prisma's schema: these live here
-- only (prisma/schema-agreement.test.ts leaves partial indexes out).
--
-- Upgrading a large table: migrations run in a transaction, so these are
-- built without CONCURRENTLY and hold off writes to jobs and attempts while
-- they are built (each reads the table once; the new indexes are small).

DROP INDEX "scheduler"."jobs_idempotency_key_key";
CREATE UNIQUE INDEX "jobs_idempotency_key_key" ON "scheduler"."jobs"("idempotency_key")
    WHERE "idempotency_key" IS NOT NULL;

DROP INDEX "scheduler"."jobs_claim_expires_at_idx";
CREATE INDEX "jobs_claim_expires_at_idx" ON "scheduler"."jobs"("claim_expires_at")
    WHERE "claim_expires_at" IS NOT NULL;

DROP INDEX "scheduler"."jobs_run_id_stage_name_key";
CREATE UNIQUE INDEX "jobs_run_id_stage_name_key" ON "scheduler"."jobs"("run_id", "stage_name")
    WHERE "run_id" IS NOT NULL;

DROP INDEX "scheduler"."jobs_repeat_of_idx";
CREATE INDEX "jobs_repeat_of_idx" ON "scheduler"."jobs"("repeat_of")
    WHERE "repeat_of" IS NOT NULL;

DROP INDEX "scheduler"."jobs_concurrency_key_state_idx";
CREATE INDEX "jobs_concurrency_key_state_idx" ON "scheduler"."jobs"("concurrency_key", "state")
    WHERE "concurrency_key" IS NOT NULL;

DROP INDEX "scheduler"."jobs_live_service_deployment";
CREATE INDEX "jobs_live_service_deployment" ON "scheduler"."jobs" (("spec" -> 'service' ->> 'deployment'))
    WHERE "state" IN ('assigned', 'running') AND ("spec" -> 'service' ->> 'deployment') IS NOT NULL;

DROP INDEX "scheduler"."attempts_lease_expires_at_idx";
CREATE INDEX "attempts_lease_expires_at_idx" ON "scheduler"."attempts"("lease_expires_at")
    WHERE "state" IN ('assigned', 'running');
