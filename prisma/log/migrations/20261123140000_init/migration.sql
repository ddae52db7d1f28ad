-- log, first tables: log chunks.

-- The schema is created here, not with CREATE SCHEMA IF NOT EXISTS: that
-- statement needs CREATE on the whole database even when the schema exists,
-- which a split-mode service role does not have (see prisma/README.md).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'log') THEN
    CREATE SCHEMA "log";
  END IF;
END $$;

-- A chunk is keyed by where it starts in its stream, so a chunk sent twice
-- (after a reconnect) is rejected by the unique index instead of duplicated.
CREATE TABLE "log"."log_chunks" (
    "id" BIGSERIAL NOT NULL,
    "attempt_id" TEXT NOT NULL,
    "stream" TEXT NOT NULL,
    "start_offset" BIGINT NOT NULL,
    "data" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "log_chunks_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "log_chunks_stream_check" CHECK ("stream" IN ('stdout', 'stderr', 'system')),
    CONSTRAINT "log_chunks_start_offset_check" CHECK ("start_offset" >= 0)
);

CREATE UNIQUE INDEX "log_chunks_attempt_id_stream_start_offset_key" ON "log"."log_chunks"("attempt_id", "stream", "start_offset");
