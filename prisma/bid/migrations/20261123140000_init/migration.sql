-- bid, first tables: auctions.

-- The schema is created here, not with CREATE SCHEMA IF NOT EXISTS: that
-- statement needs CREATE on the whole database even when the schema exists,
-- which a split-mode service role does not have (see prisma/README.md).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'bid') THEN
    CREATE SCHEMA "bid";
  END IF;
END $$;

-- job_id is the scheduler's job id; no foreign key, because jobs live in
-- the scheduler's schema and services never share tables.
CREATE TABLE "bid"."auctions" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "job_id" UUID NOT NULL,
    "state" TEXT NOT NULL,
    "winner_agent_id" TEXT,
    "explanation" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "closed_at" TIMESTAMPTZ(6),

    CONSTRAINT "auctions_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "auctions_state_check" CHECK ("state" IN ('open', 'closed', 'no_candidates'))
);

CREATE INDEX "auctions_job_id_idx" ON "bid"."auctions"("job_id");
