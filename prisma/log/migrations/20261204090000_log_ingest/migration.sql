-- log: ingestion of agents' frames. An attempt's output is known once its
-- first frame arrives (log_attempts: whose it is, for ownership checks and
-- queries by job or run stage); each of its streams keeps how far it is
-- stored (log_streams: the offset every LogAck reports); chunks gain the
-- command they belong to, where they end in the agent's file (redaction can
-- make data shorter than the bytes it covers) and per-frame read times, so
-- that every line keeps its own timestamp.

CREATE TABLE "log"."log_attempts" (
    "attempt_id" TEXT NOT NULL,
    "job_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "run_id" TEXT,
    "stage_name" TEXT,
    -- Bytes stored for the attempt, all streams together (the size cap).
    "stored_bytes" BIGINT NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "log_attempts_pkey" PRIMARY KEY ("attempt_id")
);

CREATE INDEX "log_attempts_job_id_idx" ON "log"."log_attempts"("job_id");
CREATE INDEX "log_attempts_run_id_idx" ON "log"."log_attempts"("run_id");
CREATE INDEX "log_attempts_updated_at_idx" ON "log"."log_attempts"("updated_at");

CREATE TABLE "log"."log_streams" (
    "attempt_id" TEXT NOT NULL,
    "stream" TEXT NOT NULL,
    -- Every byte before this offset is stored (or was dropped past the cap).
    "next_offset" BIGINT NOT NULL DEFAULT 0,
    -- Where output stopped being stored because the attempt hit its cap.
    "truncated_at" BIGINT,
    -- The final frame is recorded: nothing more will come.
    "complete" BOOLEAN NOT NULL DEFAULT false,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "log_streams_pkey" PRIMARY KEY ("attempt_id", "stream"),
    CONSTRAINT "log_streams_stream_check" CHECK ("stream" IN ('stdout', 'stderr', 'system')),
    CONSTRAINT "log_streams_next_offset_check" CHECK ("next_offset" >= 0)
);

-- end_offset: where the chunk ends in the stream (start_offset + the bytes
-- of the agent's file it covers). times: [[offset within data, epoch ms],
-- ...] for each frame packed into the chunk, in order.
ALTER TABLE "log"."log_chunks"
    ADD COLUMN "command_index" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "end_offset" BIGINT,
    ADD COLUMN "times" JSONB NOT NULL DEFAULT '[]',
    ADD COLUMN "first_time" TIMESTAMPTZ(6),
    ADD COLUMN "last_time" TIMESTAMPTZ(6);

UPDATE "log"."log_chunks" SET "end_offset" = "start_offset" + length("data") WHERE "end_offset" IS NULL;
ALTER TABLE "log"."log_chunks" ALTER COLUMN "end_offset" SET NOT NULL;
