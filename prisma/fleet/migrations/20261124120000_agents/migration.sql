-- fleet, second migration: agents, registration tokens, status history, the
-- outbox of server-to-agent messages, and agent credentials (api_tokens.agent_id).

CREATE TABLE "fleet"."agent_tokens" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "name" TEXT NOT NULL,
    "token_hash" TEXT NOT NULL,
    "labels" JSONB NOT NULL DEFAULT '{}',
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(6),
    "revoked_at" TIMESTAMPTZ(6),
    "registrations" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "agent_tokens_pkey" PRIMARY KEY ("id"),
    -- Lowercase hex SHA-256, like api_tokens.token_hash.
    CONSTRAINT "agent_tokens_token_hash_check" CHECK ("token_hash" ~ '^[0-9a-f]{64}$'),
    CONSTRAINT "agent_tokens_labels_check" CHECK (jsonb_typeof("labels") = 'object')
);

CREATE UNIQUE INDEX "agent_tokens_token_hash_key" ON "fleet"."agent_tokens"("token_hash");

CREATE TABLE "fleet"."agents" (
    "id" TEXT NOT NULL,
    "hostname" TEXT NOT NULL,
    "version" TEXT NOT NULL DEFAULT '',
    "reported_labels" JSONB NOT NULL DEFAULT '{}',
    "token_labels" JSONB NOT NULL DEFAULT '{}',
    "operator_labels" JSONB NOT NULL DEFAULT '{}',
    "drivers" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "total_resources" JSONB NOT NULL DEFAULT '{}',
    "free_resources" JSONB NOT NULL DEFAULT '{}',
    "metrics" JSONB,
    "status" TEXT NOT NULL DEFAULT 'offline',
    "schedulability" TEXT NOT NULL DEFAULT 'eligible',
    "drain_deadline" TIMESTAMPTZ(6),
    "drain_reason" TEXT,
    "last_heartbeat_at" TIMESTAMPTZ(6),
    "registered_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "connected_at" TIMESTAMPTZ(6),
    "session_id" TEXT,
    "registration_token_id" UUID,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "agents_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "agents_status_check" CHECK ("status" IN ('online', 'stale', 'offline')),
    CONSTRAINT "agents_schedulability_check" CHECK ("schedulability" IN ('eligible', 'cordoned', 'draining')),
    -- Label columns are merged with || to find effective labels; only objects merge as maps.
    CONSTRAINT "agents_labels_check" CHECK (
        jsonb_typeof("reported_labels") = 'object'
        AND jsonb_typeof("token_labels") = 'object'
        AND jsonb_typeof("operator_labels") = 'object')
);

-- The sweeper reads the agents that are not offline.
CREATE INDEX "agents_status_idx" ON "fleet"."agents"("status");

ALTER TABLE "fleet"."agents" ADD CONSTRAINT "agents_registration_token_id_fkey"
    FOREIGN KEY ("registration_token_id") REFERENCES "fleet"."agent_tokens"("id") ON DELETE SET NULL ON UPDATE CASCADE;

CREATE TABLE "fleet"."agent_status_changes" (
    "id" BIGSERIAL NOT NULL,
    "agent_id" TEXT NOT NULL,
    "from_status" TEXT NOT NULL,
    "to_status" TEXT NOT NULL,
    "at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "reason" TEXT NOT NULL DEFAULT '',

    CONSTRAINT "agent_status_changes_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "agent_status_changes_status_check" CHECK (
        "from_status" IN ('online', 'stale', 'offline') AND "to_status" IN ('online', 'stale', 'offline'))
);

-- An agent's history, newest first.
CREATE INDEX "agent_status_changes_agent_id_id_idx" ON "fleet"."agent_status_changes"("agent_id", "id" DESC);

ALTER TABLE "fleet"."agent_status_changes" ADD CONSTRAINT "agent_status_changes_agent_id_fkey"
    FOREIGN KEY ("agent_id") REFERENCES "fleet"."agents"("id") ON DELETE CASCADE ON UPDATE CASCADE;

CREATE TABLE "fleet"."agent_messages" (
    "agent_id" TEXT NOT NULL,
    "message_id" TEXT NOT NULL,
    "seq" BIGSERIAL NOT NULL,
    "payload" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "acked_at" TIMESTAMPTZ(6),

    CONSTRAINT "agent_messages_pkey" PRIMARY KEY ("agent_id", "message_id")
);

-- Unacknowledged messages of an agent, in order:
-- WHERE agent_id = $1 AND acked_at IS NULL ORDER BY seq.
CREATE INDEX "agent_messages_agent_id_acked_at_seq_idx" ON "fleet"."agent_messages"("agent_id", "acked_at", "seq");

ALTER TABLE "fleet"."agent_messages" ADD CONSTRAINT "agent_messages_agent_id_fkey"
    FOREIGN KEY ("agent_id") REFERENCES "fleet"."agents"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- An agent's credential is an API token with role agent that names it.
ALTER TABLE "fleet"."api_tokens" ADD COLUMN "agent_id" TEXT;

CREATE INDEX "api_tokens_agent_id_idx" ON "fleet"."api_tokens"("agent_id");

ALTER TABLE "fleet"."api_tokens" ADD CONSTRAINT "api_tokens_agent_id_fkey"
    FOREIGN KEY ("agent_id") REFERENCES "fleet"."agents"("id") ON DELETE SET NULL ON UPDATE CASCADE;
