-- deploy, first tables: deployments and their revisions.

-- The schema is created here, not with CREATE SCHEMA IF NOT EXISTS: that
-- statement needs CREATE on the whole database even when the schema exists,
-- which a split-mode service role does not have (see prisma/README.md).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'deploy') THEN
    CREATE SCHEMA "deploy";
  END IF;
END $$;

CREATE TABLE "deploy"."deployments" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "name" TEXT NOT NULL,
    "current_revision" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "deployments_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "deployments_name_key" ON "deploy"."deployments"("name");

CREATE TABLE "deploy"."revisions" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "deployment_id" UUID NOT NULL,
    "number" INTEGER NOT NULL,
    "spec" JSONB NOT NULL,
    "spec_hash" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(6) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "revisions_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "revisions_deployment_id_number_key" ON "deploy"."revisions"("deployment_id", "number");

ALTER TABLE "deploy"."revisions" ADD CONSTRAINT "revisions_deployment_id_fkey"
    FOREIGN KEY ("deployment_id") REFERENCES "deploy"."deployments"("id") ON DELETE CASCADE ON UPDATE CASCADE;
