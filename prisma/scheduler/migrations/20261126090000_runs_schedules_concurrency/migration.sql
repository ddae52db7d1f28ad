-- scheduler: DAG runs, schedules, run modes and concurrency keys.

-- What a job belongs to (a run's stage, a chain of repeats, a schedule's
-- tick), its concurrency key, and whether something must happen once it
-- ends (release a run's next stages, submit its next repeat).
ALTER TABLE "scheduler"."jobs"
    ADD COLUMN "run_id" UUID,
    ADD COLUMN "stage_name" TEXT,
    ADD COLUMN "repeat_of" UUID,
    ADD COLUMN "repeat_index" INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN "next_job_id" UUID,
    ADD COLUMN "schedule_id" UUID,
    ADD COLUMN "concurrency_key" TEXT,
    ADD COLUMN "concurrency_limit" INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN "followup_pending" BOOLEAN NOT NULL DEFAULT false;

-- One job per stage of a run: releasing a stage twice cannot start it twice.
CREATE UNIQUE INDEX "jobs_run_id_stage_name_key" ON "scheduler"."jobs"("run_id", "stage_name");
-- Jobs of a chain of repeats.
CREATE INDEX "jobs_repeat_of_idx" ON "scheduler"."jobs"("repeat_of");
-- The live jobs of a concurrency key, counted when claiming.
CREATE INDEX "jobs_concurrency_key_state_idx" ON "scheduler"."jobs"("concurrency_key", "state");
-- Ended jobs whose follow-up (run release, next repeat) is still to do.
-- Partial, so Prisma cannot express it: it lives here only.
CREATE INDEX "jobs_followup_due" ON "scheduler"."jobs"("ended_at") WHERE "followup_pending";

CREATE TABLE "scheduler"."runs" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "state" TEXT NOT NULL,
    "spec" JSONB NOT NULL,
    "idempotency_key" TEXT,
    "schedule_id" UUID,
    "skipped" JSONB NOT NULL DEFAULT '{}',
    "cancel_requested_at" TIMESTAMPTZ(6),
    "end_reason" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "ended_at" TIMESTAMPTZ(6),

    CONSTRAINT "runs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "runs_state_check" CHECK ("state" IN ('running', 'succeeded', 'failed', 'cancelled'))
);

CREATE UNIQUE INDEX "runs_idempotency_key_key" ON "scheduler"."runs"("idempotency_key");
CREATE INDEX "runs_state_created_at_idx" ON "scheduler"."runs"("state", "created_at");
CREATE INDEX "runs_created_at_idx" ON "scheduler"."runs"("created_at");

CREATE TABLE "scheduler"."schedules" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "name" TEXT NOT NULL,
    "spec" JSONB NOT NULL,
    "paused" BOOLEAN NOT NULL DEFAULT false,
    "next_fire_at" TIMESTAMPTZ(6),
    "last_fire_at" TIMESTAMPTZ(6),
    "last_job_id" UUID,
    "last_run_id" UUID,
    "fire_count" BIGINT NOT NULL DEFAULT 0,
    "skip_count" BIGINT NOT NULL DEFAULT 0,
    "last_skip_reason" TEXT,
    "claim_id" UUID,
    "claim_expires_at" TIMESTAMPTZ(6),
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "schedules_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "schedules_name_key" ON "scheduler"."schedules"("name");
-- The tick scan: schedules due now.
CREATE INDEX "schedules_next_fire_at_idx" ON "scheduler"."schedules"("next_fire_at");
