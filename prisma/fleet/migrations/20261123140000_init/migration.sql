-- fleet, first tables: API tokens.

-- The schema is created here, not with CREATE SCHEMA IF NOT EXISTS: that
-- statement needs CREATE on the whole database even when the schema exists,
-- which a split-mode service role does not have (see prisma/README.md).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'fleet') THEN
    CREATE SCHEMA "fleet";
  END IF;
END $$;

CREATE TABLE "fleet"."api_tokens" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "token_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(6),
    "revoked_at" TIMESTAMPTZ(6),
    "last_used_at" TIMESTAMPTZ(6),

    CONSTRAINT "api_tokens_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "api_tokens_role_check" CHECK ("role" IN ('admin', 'operator', 'agent')),
    -- Lowercase hex SHA-256, so lookups by hash never miss on case.
    CONSTRAINT "api_tokens_token_hash_check" CHECK ("token_hash" ~ '^[0-9a-f]{64}$')
);

CREATE UNIQUE INDEX "api_tokens_token_hash_key" ON "fleet"."api_tokens"("token_hash");
