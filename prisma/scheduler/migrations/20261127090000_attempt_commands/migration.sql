-- scheduler: how each command of an attempt ended.

-- The CommandResults an agent reported for the attempt, as a JSON array of
-- proto JSON objects, one per command index (each with its "index" always
-- present), in index order. Written set-based, a batch of job events per
-- statement; a result reported again is not stored twice.
ALTER TABLE "scheduler"."attempts"
    ADD COLUMN "commands" JSONB NOT NULL DEFAULT '[]';
