// Split mode's least privilege: each service connects as its own Postgres
// role, which owns its schema and has no rights on the other services'.
// The SQL is generated here (rather than only written in the README) so
// that a test can run it for real; prisma/README.md shows it for fleet and
// a test checks that the README still says exactly this.

import { SERVICE_NAMES, type ServiceName } from "../config.ts";

/**
 * SQL that an administrator runs once, as a superuser or the database's
 * owner, to create `role` for `service`: it may log in, owns the schema
 * named after the service (so it can migrate it), and is refused by every
 * other service's schema.
 */
export function serviceRoleSql(service: ServiceName, role: string, password: string): string {
  if (!SERVICE_NAMES.includes(service)) throw new Error(`serviceRoleSql: unknown service ${JSON.stringify(service)}`);
  const others = SERVICE_NAMES.filter((s) => s !== service);
  const r = ident(role);
  const s = ident(service);
  return `-- The ${service} service's role: owns schema ${service}, nothing else.
CREATE ROLE ${r} LOGIN PASSWORD ${literal(password)};

-- Owning the schema lets the role create and alter its tables (migrations),
-- and gives it USAGE and CREATE. The schema is made here because CREATE
-- SCHEMA needs CREATE on the whole database, which the role must not have.
CREATE SCHEMA IF NOT EXISTS ${s};
ALTER SCHEMA ${s} OWNER TO ${r};
-- Tables made before the role existed (say, by migrating as an admin) must
-- change owner too; their sequences and indexes follow them.
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ${literal(service)} AND c.relkind IN ('r', 'p') LOOP
    EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', ${literal(service)}, t.relname, ${literal(role)});
  END LOOP;
END $$;

-- Nothing on the other services' schemas. A new role has no rights there;
-- this undoes any granted earlier. Schemas that do not exist yet are skipped.
DO $$
DECLARE other text;
BEGIN
  FOREACH other IN ARRAY ARRAY[${others.map(literal).join(", ")}] LOOP
    IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = other) THEN
      EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', other, ${literal(role)});
      EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', other, ${literal(role)});
    END IF;
  END LOOP;
END $$;

-- Unqualified names resolve to the service's own schema.
ALTER ROLE ${r} SET search_path = ${s};
`;
}

// Quotes only when needed, so the SQL in the README reads naturally.
function ident(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
