-- deploy: rollouts. A deployment's wanted state (count, stopped, paused,
-- restart generation), what the controller last decided (state, stable
-- revision, rollout progress), the claim that lets one Deploy replica drive
-- it at a time, its replicas (each one Scheduler job), and its events.

ALTER TABLE "deploy"."deployments"
    ADD COLUMN "desired_replicas" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "stopped" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "paused" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "promoted" BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN "generation" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "state" TEXT NOT NULL DEFAULT 'rolling_out',
    ADD COLUMN "status_message" TEXT NOT NULL DEFAULT '',
    ADD COLUMN "stable_revision" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "rollout_from" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "rollout_started_at" TIMESTAMPTZ(6),
    ADD COLUMN "rollout_ended_at" TIMESTAMPTZ(6),
    ADD COLUMN "event_seq" BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN "claimed_by" TEXT,
    ADD COLUMN "claim_until" TIMESTAMPTZ(6);

CREATE TABLE "deploy"."replicas" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "deployment_id" UUID NOT NULL,
    "revision" INTEGER NOT NULL,
    "generation" INTEGER NOT NULL,
    "slot" TEXT NOT NULL,
    "canary" BOOLEAN NOT NULL DEFAULT false,
    "state" TEXT NOT NULL DEFAULT 'pending',
    "job_id" UUID,
    "agent_id" TEXT,
    "avoid_agents" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "health" TEXT NOT NULL DEFAULT 'unknown',
    "health_message" TEXT NOT NULL DEFAULT '',
    "health_since" TIMESTAMPTZ(6),
    "restarts" INTEGER NOT NULL DEFAULT 0,
    "port" INTEGER NOT NULL DEFAULT 0,
    "healthy_at" TIMESTAMPTZ(6),
    "message" TEXT NOT NULL DEFAULT '',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "stop_requested_at" TIMESTAMPTZ(6),
    "ended_at" TIMESTAMPTZ(6),

    CONSTRAINT "replicas_pkey" PRIMARY KEY ("id")
);

-- The controller loads a deployment's replicas that are not over yet.
CREATE INDEX "replicas_deployment_id_state_idx" ON "deploy"."replicas"("deployment_id", "state");

ALTER TABLE "deploy"."replicas" ADD CONSTRAINT "replicas_deployment_id_fkey"
    FOREIGN KEY ("deployment_id") REFERENCES "deploy"."deployments"("id") ON DELETE CASCADE ON UPDATE CASCADE;

CREATE TABLE "deploy"."events" (
    "deployment_id" UUID NOT NULL,
    "sequence" BIGINT NOT NULL,
    "time" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "kind" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "revision" INTEGER NOT NULL DEFAULT 0,
    "replica_id" UUID,

    CONSTRAINT "events_pkey" PRIMARY KEY ("deployment_id", "sequence")
);

ALTER TABLE "deploy"."events" ADD CONSTRAINT "events_deployment_id_fkey"
    FOREIGN KEY ("deployment_id") REFERENCES "deploy"."deployments"("id") ON DELETE CASCADE ON UPDATE CASCADE;
