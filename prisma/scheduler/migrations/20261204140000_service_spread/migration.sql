-- scheduler: where a deployment's replicas run, for spreading new ones.
--
-- ClaimPlaceableJobs tells Bid, for each service replica it claims, on
-- which agents the deployment's other live replicas run
-- (PlaceableJob.sibling_agent_ids). This partial index on the deployment's
-- name answers that from the assigned and running jobs alone, however many
-- finished jobs the table holds.
CREATE INDEX "jobs_live_service_deployment" ON "scheduler"."jobs" (("spec" -> 'service' ->> 'deployment'))
    WHERE "state" IN ('assigned', 'running');
