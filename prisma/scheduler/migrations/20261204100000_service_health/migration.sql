-- scheduler: a service replica's health, as its agent last reported it.

-- The HealthStatus (proto JSON form) of the JobEvent with the greatest
-- sequence the attempt's own agent sent while the attempt was assigned or
-- running, and that sequence: events may arrive late or twice, and one
-- with a sequence not above the stored one changes nothing. Null until the
-- agent reports health (jobs without JobSpec.service never do). Written
-- set-based, a batch of job events per statement.
ALTER TABLE "scheduler"."attempts"
    ADD COLUMN "health" JSONB,
    ADD COLUMN "health_sequence" BIGINT;
