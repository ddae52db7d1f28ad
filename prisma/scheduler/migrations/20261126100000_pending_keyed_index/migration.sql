-- scheduler: the keys of pending keyed jobs, for every claim.

-- Each claim first asks which concurrency keys have pending jobs; without
-- this index that look costs a scan of the pending jobs on every claim,
-- keyed or not. Partial, so Prisma cannot express it: it lives here only.
CREATE INDEX "jobs_pending_concurrency_key" ON "scheduler"."jobs"("concurrency_key")
    WHERE "state" = 'pending' AND "concurrency_key" IS NOT NULL;
