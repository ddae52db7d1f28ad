// Reads a Prisma schema into Prisma's own DMMF (the data model the generator
// sees), offline and without @prisma/internals.
//
// Why this way: @prisma/internals is not installed, and the generated
// client only carries a reduced data model (no nullability, no native
// types). The prisma CLI package ships the WebAssembly build of Prisma's
// schema parser (build/prisma_schema_build_bg.wasm) and calls its `get_dmmf`
// export; we instantiate the same file with a minimal copy of the
// wasm-bindgen glue the CLI bundles. The import names carry hashes that
// change between releases, so they are matched by prefix; an import we do
// not know makes loadDmmf fail loudly rather than misbehave.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** A field of a model, as Prisma's DMMF describes it (the parts we use). */
export interface DmmfField {
  name: string;
  /** "scalar" | "object" (relation) | "enum" | "unsupported". */
  kind: string;
  /** Column name when the field has @map; absent otherwise. */
  dbName?: string | null;
  isRequired: boolean;
  isList: boolean;
  isId: boolean;
  isUnique: boolean;
  /** Prisma scalar type: String, Int, BigInt, DateTime, Json, Bytes, ... */
  type: string;
  /** [name, args] from @db.X(args), e.g. ["Uuid", []]; null when absent. */
  nativeType: [string, string[]] | null;
  hasDefaultValue: boolean;
  /** Relation fields (kind "object") that hold the foreign key: its columns' fields. */
  relationFromFields?: string[];
  /** ...and the referenced model's fields. */
  relationToFields?: string[];
  /** Referential actions when set explicitly: Cascade, Restrict, NoAction, SetNull, SetDefault. */
  relationOnDelete?: string;
  relationOnUpdate?: string;
}

/** A model, as Prisma's DMMF describes it (the parts we use). */
export interface DmmfModel {
  name: string;
  /** Table name when the model has @@map; null otherwise. */
  dbName?: string | null;
  schema: string | null;
  fields: DmmfField[];
  uniqueFields: string[][];
  primaryKey: { fields: string[] } | null;
}

/** An index, primary key or unique constraint of a model. */
export interface DmmfIndex {
  model: string;
  type: "id" | "unique" | "normal" | "fulltext";
  /** Its name in the database when the schema maps one. */
  dbName?: string;
  fields: Array<{ name: string; sortOrder?: "asc" | "desc" }>;
}

/** Prisma's DMMF for one schema (the parts we use). */
export interface Dmmf {
  datamodel: { models: DmmfModel[]; indexes: DmmfIndex[] };
}

// The project's TypeScript libs (ES2023 + @types/node 20) declare no
// WebAssembly global; these are the few parts of it used here.
interface WasmTable {
  grow(delta: number): number;
  get(index: number): unknown;
  set(index: number, value: unknown): void;
}
interface WasmApi {
  Module: {
    new (bytes: Uint8Array): object;
    imports(module: object): Array<{ module: string; name: string }>;
  };
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const webAssembly = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

interface SchemaWasm {
  memory: { buffer: ArrayBuffer };
  get_dmmf(ptr: number, len: number): [number, number, number, number];
  __wbindgen_malloc(size: number, align: number): number;
  __wbindgen_free(ptr: number, len: number, align: number): void;
  __wbindgen_externrefs: WasmTable;
  __externref_table_dealloc(index: number): void;
  __wbindgen_start(): void;
}

let wasm: SchemaWasm | undefined;
// Set by the wasm just before a Rust panic traps, so the error can say why.
let panicMessage = "";

function load(): SchemaWasm {
  if (wasm) return wasm;
  const require = createRequire(import.meta.url);
  const file = join(dirname(require.resolve("prisma/package.json")), "build", "prisma_schema_build_bg.wasm");
  const module = new webAssembly.Module(readFileSync(file));
  const decoder = new TextDecoder("utf-8", { fatal: true });
  // A fresh view each time: the memory's buffer is replaced when it grows.
  const text = (ptr: number, len: number) =>
    decoder.decode(new Uint8Array(exports.memory.buffer).subarray(ptr >>> 0, (ptr >>> 0) + len));
  const known: Array<[string, (...args: number[]) => unknown]> = [
    ["__wbg_set_message_", (ptr, len) => { panicMessage = text(ptr, len); }],
    ["__wbg_Error_", (ptr, len) => new Error(text(ptr, len))],
    ["__wbg___wbindgen_throw_", (ptr, len) => { throw new Error(text(ptr, len)); }],
    ["__wbindgen_init_externref_table", () => {
      // Same initial table layout as wasm-bindgen's generated glue.
      const table = exports.__wbindgen_externrefs;
      const base = table.grow(4);
      table.set(0, undefined);
      table.set(base + 0, undefined);
      table.set(base + 1, null);
      table.set(base + 2, true);
      table.set(base + 3, false);
    }],
  ];
  const imports: Record<string, Record<string, (...args: number[]) => unknown>> = {};
  for (const imp of webAssembly.Module.imports(module)) {
    const match = known.find(([prefix]) => imp.name.startsWith(prefix));
    if (!match) {
      throw new Error(
        `prisma/dmmf.ts: the schema wasm of this prisma version imports ${imp.module}.${imp.name}, ` +
          `which this loader does not provide; update the loader (compare the glue in prisma/build/cli.js)`,
      );
    }
    (imports[imp.module] ??= {})[imp.name] = match[1];
  }
  const instance = new webAssembly.Instance(module, imports);
  const exports = instance.exports as unknown as SchemaWasm;
  exports.__wbindgen_start();
  wasm = exports;
  return wasm;
}

/** Parses one schema.prisma text into its DMMF; throws Prisma's validation errors. */
export function loadDmmf(schemaText: string): Dmmf {
  const w = load();
  const input = new TextEncoder().encode(JSON.stringify({ prismaSchema: schemaText, noColor: true }));
  const ptr = w.__wbindgen_malloc(input.length, 1) >>> 0;
  new Uint8Array(w.memory.buffer).set(input, ptr);
  // Ownership of the input buffer passes to get_dmmf, which frees it.
  let result: [number, number, number, number];
  try {
    result = w.get_dmmf(ptr, input.length);
  } catch (error) {
    // A trapped instance is in no state to be used again.
    wasm = undefined;
    if (!panicMessage) throw error;
    throw new Error(`prisma schema wasm panicked: ${panicMessage}`, { cause: error });
  }
  const [outPtr, outLen, errRef, isErr] = result;
  if (isErr) {
    const error = w.__wbindgen_externrefs.get(errRef);
    w.__externref_table_dealloc(errRef);
    // Prisma's errors come as JSON: {"error_code": "P1012", "message": "..."}.
    const raw = error instanceof Error ? error.message : String(error);
    let message = raw;
    try {
      message = (JSON.parse(raw) as { message?: string }).message ?? raw;
    } catch {
      // not JSON: keep it as it came
    }
    throw new Error(`Prisma rejected the schema: ${message}`);
  }
  try {
    const bytes = new Uint8Array(w.memory.buffer).subarray(outPtr >>> 0, (outPtr >>> 0) + outLen);
    return JSON.parse(new TextDecoder().decode(bytes)) as Dmmf;
  } finally {
    w.__wbindgen_free(outPtr, outLen, 1);
  }
}
