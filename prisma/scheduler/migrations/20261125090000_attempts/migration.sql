-- scheduler: attempts, leases, claims and retries.

-- A job's life beyond "pending": the claim a Bid replica holds while it runs
-- the auction, the attempt that currently holds the job, retries, and why
-- it waits or ended.
ALTER TABLE "scheduler"."jobs"
    ADD COLUMN "attempt_count" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "failure_count" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "lost_count" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "current_attempt_id" UUID,
    ADD COLUMN "not_before" TIMESTAMPTZ(6),
    ADD COLUMN "waiting_for_capacity" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "wait_reason" TEXT,
    ADD COLUMN "claim_id" UUID,
    ADD COLUMN "claim_expires_at" TIMESTAMPTZ(6),
    ADD COLUMN "cancel_requested_at" TIMESTAMPTZ(6),
    ADD COLUMN "end_reason" TEXT,
    ADD COLUMN "ended_at" TIMESTAMPTZ(6);

-- Lapsed claims.
CREATE INDEX "jobs_claim_expires_at_idx" ON "scheduler"."jobs"("claim_expires_at");

CREATE TABLE "scheduler"."attempts" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "job_id" UUID NOT NULL,
    "number" INTEGER NOT NULL,
    "agent_id" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "auction_id" UUID,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(6),
    "ended_at" TIMESTAMPTZ(6),
    "exit_code" INTEGER,
    "signal" TEXT,
    "reason" TEXT,
    "lease_expires_at" TIMESTAMPTZ(6) NOT NULL,

    CONSTRAINT "attempts_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "attempts_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "scheduler"."jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "attempts_state_check" CHECK ("state" IN (
        'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost'))
);

CREATE UNIQUE INDEX "attempts_job_id_number_key" ON "scheduler"."attempts"("job_id", "number");
-- Leases to renew or reclaim, and an agent's live attempts.
CREATE INDEX "attempts_lease_expires_at_idx" ON "scheduler"."attempts"("lease_expires_at");
CREATE INDEX "attempts_agent_id_idx" ON "scheduler"."attempts"("agent_id");
-- Exactly one attempt of a job can succeed, whatever races happen above.
-- Partial, so Prisma cannot express it: it lives here only (see
-- prisma/README.md).
CREATE UNIQUE INDEX "attempts_one_success" ON "scheduler"."attempts"("job_id") WHERE "state" = 'succeeded';
