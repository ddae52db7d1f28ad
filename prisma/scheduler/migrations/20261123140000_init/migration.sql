-- scheduler, first tables: jobs.

-- The schema is created here, not with CREATE SCHEMA IF NOT EXISTS: that
-- statement needs CREATE on the whole database even when the schema exists,
-- which a split-mode service role does not have (see prisma/README.md).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'scheduler') THEN
    CREATE SCHEMA "scheduler";
  END IF;
END $$;

CREATE TABLE "scheduler"."jobs" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "state" TEXT NOT NULL,
    "spec" JSONB NOT NULL,
    "priority" INTEGER NOT NULL DEFAULT 0,
    "idempotency_key" TEXT,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "jobs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "jobs_state_check" CHECK ("state" IN (
        'pending', 'offered', 'assigned', 'running',
        'succeeded', 'failed', 'cancelled', 'timed_out', 'dead'))
);

CREATE UNIQUE INDEX "jobs_idempotency_key_key" ON "scheduler"."jobs"("idempotency_key");

-- The queue scan: next job in a state by priority, then age.
CREATE INDEX "jobs_state_priority_created_at_idx" ON "scheduler"."jobs"("state", "priority" DESC, "created_at");
