// Proves that each service's Prisma schema and its hand-written migrations
// describe the same tables. The migrations are applied to an empty database
// (always the embedded PGlite; PostgreSQL too when it is reachable), the
// result is read back from the catalog, and compared with the models as
// Prisma itself reads them (its DMMF, see ./dmmf.ts): tables, columns (name,
// nullability, type, whether there is a default), primary keys, unique and
// plain indexes, foreign keys. A field added to a schema without a migration,
// or a column added by a migration without a field, fails here.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";

import { SERVICE_NAMES, type ServiceName } from "../lib/config.ts";
import { openPglite, openPostgres, type Database } from "../lib/db/database.ts";
import type { SqlQueryable } from "../lib/db/executor.ts";
import { migrate } from "../lib/db/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../lib/db/testing.ts";
import { requirePostgres } from "../lib/testing/services.ts";
import { loadDmmf, type Dmmf, type DmmfField, type DmmfModel } from "./dmmf.ts";

const schemaText = (service: ServiceName) =>
  readFileSync(new URL(`./${service}/schema.prisma`, import.meta.url), "utf8");

// ---- What the database has --------------------------------------------

interface Column {
  name: string;
  nullable: boolean;
  type: string;
  hasDefault: boolean;
}

interface Index {
  name: string;
  kind: "primary" | "unique" | "normal";
  /** Columns in order, " DESC" appended where descending. */
  columns: string[];
}

interface ForeignKey {
  name: string;
  columns: string[];
  references: string;
  referencedColumns: string[];
  onDelete: string;
  onUpdate: string;
}

interface Table {
  columns: Column[];
  indexes: Index[];
  foreignKeys: ForeignKey[];
}

/** Tables of one schema, keyed by name; the migrator's bookkeeping is left out. */
type Catalog = Map<string, Table>;

// pg_constraint's action codes, in Prisma's words.
const ACTIONS: Record<string, string> = { a: "NoAction", r: "Restrict", c: "Cascade", n: "SetNull", d: "SetDefault" };

async function readCatalog(db: SqlQueryable, schema: string): Promise<Catalog> {
  const catalog: Catalog = new Map();
  const tables = await db.query<{ name: string }>(
    `SELECT table_name AS name FROM information_schema.tables
      WHERE table_schema = $1 AND table_type = 'BASE TABLE' AND table_name <> '_prisma_migrations'`,
    [schema],
  );
  for (const { name } of tables) catalog.set(name, { columns: [], indexes: [], foreignKeys: [] });

  const columns = await db.query<{
    table_name: string;
    column_name: string;
    is_nullable: string;
    udt_name: string;
    datetime_precision: number | null;
    character_maximum_length: number | null;
    numeric_precision: number | null;
    numeric_scale: number | null;
    column_default: string | null;
  }>(
    `SELECT table_name, column_name, is_nullable, udt_name, datetime_precision,
            character_maximum_length, numeric_precision, numeric_scale, column_default
       FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position`,
    [schema],
  );
  for (const c of columns) {
    catalog.get(c.table_name)?.columns.push({
      name: c.column_name,
      nullable: c.is_nullable === "YES",
      type: columnType(c.udt_name, c),
      hasDefault: c.column_default !== null,
    });
  }

  // Key columns only (indnkeyatts), in index order, with DESC where set
  // (bit 0 of indoption). Partial indexes (indpred) are left out: Prisma
  // cannot express them, so they live in the migrations alone.
  const indexes = await db.query<{ table_name: string; name: string; primary: boolean; unique: boolean; columns: string }>(
    `SELECT t.relname AS table_name, i.relname AS name, ix.indisprimary AS primary, ix.indisunique AS unique,
            (SELECT string_agg(a.attname || CASE WHEN ix.indoption[k.n] & 1 = 1 THEN ' DESC' ELSE '' END, ',' ORDER BY k.n)
               FROM generate_series(0, ix.indnkeyatts - 1) AS k(n)
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ix.indkey[k.n]) AS columns
       FROM pg_index ix
       JOIN pg_class i ON i.oid = ix.indexrelid
       JOIN pg_class t ON t.oid = ix.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $1 AND ix.indpred IS NULL`,
    [schema],
  );
  for (const ix of indexes) {
    catalog.get(ix.table_name)?.indexes.push({
      name: ix.name,
      kind: ix.primary ? "primary" : ix.unique ? "unique" : "normal",
      columns: ix.columns.split(","),
    });
  }

  const foreignKeys = await db.query<{
    table_name: string;
    name: string;
    columns: string;
    references: string;
    referenced_columns: string;
    confdeltype: string;
    confupdtype: string;
  }>(
    `SELECT t.relname AS table_name, c.conname AS name, rn.nspname || '.' || rt.relname AS references,
            (SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS columns,
            (SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS referenced_columns,
            c.confdeltype::text AS confdeltype, c.confupdtype::text AS confupdtype
       FROM pg_constraint c
       JOIN pg_class t ON t.oid = c.conrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       JOIN pg_class rt ON rt.oid = c.confrelid
       JOIN pg_namespace rn ON rn.oid = rt.relnamespace
      WHERE c.contype = 'f' AND n.nspname = $1`,
    [schema],
  );
  for (const fk of foreignKeys) {
    catalog.get(fk.table_name)?.foreignKeys.push({
      name: fk.name,
      columns: fk.columns.split(","),
      references: fk.references,
      referencedColumns: fk.referenced_columns.split(","),
      onDelete: ACTIONS[fk.confdeltype] ?? fk.confdeltype,
      onUpdate: ACTIONS[fk.confupdtype] ?? fk.confupdtype,
    });
  }
  return catalog;
}

// A column's type in the short spelling used on both sides of the comparison.
function columnType(
  udt: string,
  c: { datetime_precision: number | null; character_maximum_length: number | null; numeric_precision: number | null; numeric_scale: number | null },
): string {
  if (udt.startsWith("_")) return `${columnType(udt.slice(1), c)}[]`;
  switch (udt) {
    case "timestamptz":
    case "timestamp":
    case "time":
    case "timetz":
      return `${udt}(${c.datetime_precision})`;
    case "varchar":
    case "bpchar":
      return c.character_maximum_length === null ? udt : `${udt}(${c.character_maximum_length})`;
    case "numeric":
      return c.numeric_precision === null ? udt : `numeric(${c.numeric_precision},${c.numeric_scale})`;
    default:
      return udt;
  }
}

// ---- What the Prisma schema says ----------------------------------------

/** The column type Prisma expects for a field (its defaults for PostgreSQL, or the @db. type). */
function expectedType(model: DmmfModel, field: DmmfField): string {
  const where = `${model.name}.${field.name}`;
  if (field.kind === "enum") throw new Error(`${where}: enums are not compared yet; extend expectedType`);
  const [native, args] = field.nativeType ?? [null, []];
  const base = ((): string => {
    switch (`${field.type}:${native ?? ""}`) {
      case "String:":
      case "String:Text":
        return "text";
      case "String:Uuid":
        return "uuid";
      case "String:VarChar":
        return args.length ? `varchar(${args[0]})` : "varchar";
      case "Int:":
      case "Int:Integer":
        return "int4";
      case "Int:SmallInt":
        return "int2";
      case "BigInt:":
      case "BigInt:BigInt":
        return "int8";
      case "Boolean:":
        return "bool";
      case "Float:":
        return "float8";
      case "Decimal:":
        return "numeric(65,30)";
      case "Decimal:Decimal":
        return `numeric(${args.join(",")})`;
      case "DateTime:":
        return "timestamp(3)";
      case "DateTime:Timestamp":
      case "DateTime:Timestamptz":
        return `${native!.toLowerCase()}(${args[0] ?? 6})`;
      case "DateTime:Date":
        return "date";
      case "Json:":
      case "Json:JsonB":
        return "jsonb";
      case "Json:Json":
        return "json";
      case "Bytes:":
      case "Bytes:ByteA":
        return "bytea";
      default:
        throw new Error(`${where}: no known column type for ${field.type} @db.${native}; extend expectedType`);
    }
  })();
  return field.isList ? `${base}[]` : base;
}

const columnOf = (model: DmmfModel, fieldName: string): string => {
  const field = model.fields.find((f) => f.name === fieldName);
  if (!field) throw new Error(`${model.name} has no field ${fieldName}`);
  return field.dbName ?? field.name;
};

/** The catalog the migrations should have produced, according to the DMMF. */
function expectedCatalog(dmmf: Dmmf, schema: string): Catalog {
  const catalog: Catalog = new Map();
  const models = dmmf.datamodel.models.filter((m) => (m.schema ?? "public") === schema);
  const tableOf = (model: DmmfModel) => model.dbName ?? model.name;
  for (const model of models) {
    const table = tableOf(model);
    catalog.set(table, {
      columns: model.fields
        .filter((f) => f.kind === "scalar" || f.kind === "enum")
        .map((f) => ({
          name: f.dbName ?? f.name,
          nullable: !f.isRequired,
          type: expectedType(model, f),
          hasDefault: f.hasDefaultValue,
        })),
      indexes: [],
      foreignKeys: model.fields
        .filter((f) => f.kind === "object" && f.relationFromFields?.length)
        .map((f) => {
          const target = dmmf.datamodel.models.find((m) => m.name === f.type)!;
          const columns = f.relationFromFields!.map((name) => columnOf(model, name));
          return {
            // Prisma's default name; a relation's map: is not in the DMMF.
            name: `${table}_${columns.join("_")}_fkey`,
            columns,
            references: `${target.schema ?? "public"}.${tableOf(target)}`,
            referencedColumns: f.relationToFields!.map((name) => columnOf(target, name)),
            // Prisma's defaults: Restrict (SetNull when optional) on delete, Cascade on update.
            onDelete: f.relationOnDelete ?? (f.isRequired ? "Restrict" : "SetNull"),
            onUpdate: f.relationOnUpdate ?? "Cascade",
          };
        }),
    });
  }
  for (const index of dmmf.datamodel.indexes) {
    const model = models.find((m) => m.name === index.model);
    if (!model) continue;
    const table = tableOf(model);
    const columns = index.fields.map((f) => columnOf(model, f.name) + (f.sortOrder === "desc" ? " DESC" : ""));
    const kind = index.type === "id" ? "primary" : index.type === "unique" ? "unique" : "normal";
    if (index.type === "fulltext") throw new Error(`${model.name}: fulltext indexes are not compared yet`);
    // Prisma's default names when the schema maps none.
    const plain = columns.map((c) => c.replace(/ DESC$/, ""));
    const name =
      index.dbName ?? (kind === "primary" ? `${table}_pkey` : `${table}_${plain.join("_")}_${kind === "unique" ? "key" : "idx"}`);
    catalog.get(table)!.indexes.push({ name, kind, columns });
  }
  return catalog;
}

/** Every way in which the database differs from what the Prisma schema says, as sentences. */
function differences(dmmf: Dmmf, schema: string, actual: Catalog): string[] {
  const expected = expectedCatalog(dmmf, schema);
  const found: string[] = [];
  const onlyIn = (where: string) => `only in the ${where}`;
  for (const table of new Set([...expected.keys(), ...actual.keys()])) {
    const e = expected.get(table);
    const a = actual.get(table);
    if (!e || !a) {
      found.push(`${schema}.${table}: table ${onlyIn(e ? "Prisma schema" : "migrations")}`);
      continue;
    }
    compareByName(`${schema}.${table}: column`, e.columns, a.columns, found);
    compareByName(`${schema}.${table}: index`, e.indexes, a.indexes, found);
    compareByName(`${schema}.${table}: foreign key`, e.foreignKeys, a.foreignKeys, found);
  }
  return found;
}

function compareByName<T extends { name: string }>(what: string, expected: T[], actual: T[], found: string[]): void {
  for (const name of new Set([...expected.map((x) => x.name), ...actual.map((x) => x.name)])) {
    const e = expected.find((x) => x.name === name);
    const a = actual.find((x) => x.name === name);
    if (!e) found.push(`${what} ${name} is only in the migrations: ${JSON.stringify(a)}`);
    else if (!a) found.push(`${what} ${name} is only in the Prisma schema: ${JSON.stringify(e)}`);
    else if (JSON.stringify(e) !== JSON.stringify(sameKeyOrder(a, e))) {
      found.push(`${what} ${name} differs: Prisma schema ${JSON.stringify(e)}, migrations ${JSON.stringify(a)}`);
    }
  }
}

function sameKeyOrder<T extends object>(value: T, like: T): T {
  return Object.fromEntries(Object.keys(like).map((k) => [k, value[k as keyof T]])) as T;
}

// ---- The tests ------------------------------------------------------------

const dmmfs = Object.fromEntries(SERVICE_NAMES.map((s) => [s, loadDmmf(schemaText(s))])) as Record<ServiceName, Dmmf>;

function agreementCases(open: () => Promise<Database>) {
  let db: Database;
  const catalogs = new Map<ServiceName, Catalog>();
  before(async () => {
    db = await open();
    for (const service of SERVICE_NAMES) {
      await migrate(db.executor, service);
      catalogs.set(service, await readCatalog(db.executor, service));
    }
  });
  after(async () => {
    await db?.close();
  });

  for (const service of SERVICE_NAMES) {
    it(`the ${service} schema's models match the tables its migrations create`, () => {
      assert.deepEqual(differences(dmmfs[service], service, catalogs.get(service)!), []);
      // A schema whose tables all vanished would agree with an empty catalog.
      assert.ok(catalogs.get(service)!.size > 0, `${service} has no tables`);
    });
  }

  // These two prove the check itself; they compare against what the real
  // schema reports, so that they pass or fail independently of it.
  const newDifferences = (service: ServiceName, edited: string) => {
    const baseline = new Set(differences(dmmfs[service], service, catalogs.get(service)!));
    return differences(loadDmmf(edited), service, catalogs.get(service)!).filter((d) => !baseline.has(d));
  };

  it("notices a field added to a schema without a migration", () => {
    const edited = schemaText("fleet").replace('@@map("api_tokens")', 'extra String\n  @@map("api_tokens")');
    assert.deepEqual(newDifferences("fleet", edited), [
      'fleet.api_tokens: column extra is only in the Prisma schema: {"name":"extra","nullable":false,"type":"text","hasDefault":false}',
    ]);
  });

  it("notices a column, a nullability, a type and an index that differ from the migrations", () => {
    const edited = schemaText("scheduler")
      .replace(/^\s*\/\/\/ Higher runs first\.\n\s*priority .*$/m, "") // column only in the migrations
      .replace("idempotencyKey String?", "idempotencyKey String") // nullability
      .replace("spec           Json", "spec           String") // type
      .replace(/@@index\(.*\)/, "@@index([state])"); // index
    const found = newDifferences("scheduler", edited);
    const about = (pattern: RegExp) => assert.ok(found.some((d) => pattern.test(d)), `${pattern} in ${found.join("\n")}`);
    about(/column priority is only in the migrations/);
    about(/column idempotency_key differs/);
    about(/column spec differs/);
    about(/index jobs_state_idx is only in the Prisma schema/);
    about(/index jobs_state_priority_created_at_idx is only in the migrations/);
    assert.equal(found.length, 5, found.join("\n"));
  });
}

describe("the Prisma schemas and their migrations agree, on the embedded database (PGlite)", () => {
  agreementCases(() => openPglite("memory://"));
});

const adminUrl = await requirePostgres();

describe("the Prisma schemas and their migrations agree, on PostgreSQL", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  let testDb: TestDatabase | undefined;
  agreementCases(async () => {
    testDb = await createTestDatabase(adminUrl);
    const db = openPostgres(testDb.url, { max: 2 });
    return { ...db, close: () => db.close().finally(() => testDb!.drop()) };
  });
});

describe("the generated clients", () => {
  for (const service of SERVICE_NAMES) {
    it(`the ${service} client was generated from the current schema (else run npm run generate)`, () => {
      const generated = readFileSync(new URL(`../gen/prisma/${service}/internal/class.ts`, import.meta.url), "utf8");
      const inline = /^ {2}"inlineSchema": (".*"),$/m.exec(generated);
      assert.ok(inline, `gen/prisma/${service}/internal/class.ts has no inlineSchema; has Prisma's output changed?`);
      // Compared as Prisma reads them, so formatting and // comments do not matter.
      assert.deepEqual(loadDmmf(JSON.parse(inline[1]) as string).datamodel, dmmfs[service].datamodel);
    });
  }

  it("loadDmmf reports a schema Prisma would reject, with Prisma's message", () => {
    assert.throws(() => loadDmmf("model Broken {\n  id Int @id\n  name Strin\n}\n"), /Type "Strin" is neither a built-in type/);
  });
});
