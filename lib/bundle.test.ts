// currentBundle (lib/bundle.mjs), on a small TypeScript project of its own in
// a temporary directory: the bundle runs as the sources would, is built once,
// is built again after an edit, and is given up on (undefined, the error
// heard) when it cannot be built or written.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { removeDir, tempDir } from "../integration/harness.ts";
import { currentBundle } from "./bundle.mjs";

const run = promisify(execFile);

describe("currentBundle", () => {
  let dir: string;
  let project: string;
  let entry: string;
  before(() => {
    dir = tempDir("drover-bundle-test-");
    project = join(dir, "project");
    mkdirSync(join(project, "lib"), { recursive: true });
    entry = join(project, "main.ts");
    writeFileSync(entry, 'import { greeting, here } from "./lib/greeting.ts";\nconsole.log(JSON.stringify({ greeting: greeting(), here }));\n');
    writeFileSync(join(project, "lib", "greeting.txt"), "hello from a file beside the source");
    writeFileSync(join(project, "lib", "greeting.ts"), greetingModule(""));
  });
  after(() => removeDir(dir));

  /** lib/greeting.ts: reads greeting.txt beside itself, by its import.meta.url, and says where it is. */
  function greetingModule(suffix: string): string {
    return [
      'import { readFileSync } from "node:fs";',
      `export const greeting = (): string => readFileSync(new URL("./greeting.txt", import.meta.url), "utf8") + ${JSON.stringify(suffix)};`,
      "export const here = { url: import.meta.url, filename: import.meta.filename, dirname: import.meta.dirname };",
      "",
    ].join("\n");
  }

  async function runBundle(bundle: string): Promise<{ greeting: string; here: { url: string; filename: string; dirname: string } }> {
    const { stdout } = await run(process.execPath, [bundle]);
    return JSON.parse(stdout);
  }

  test("builds a bundle that runs as the sources do, import.meta still the source file's, and reuses it while nothing changed", async () => {
    const cacheDir = join(dir, "cache-reuse");
    const errors: unknown[] = [];
    const bundle = await currentBundle({ entry, cacheDir, name: "cli", onError: (err) => errors.push(err) });
    assert.deepEqual(errors, []);
    assert.ok(bundle && bundle.startsWith(join(cacheDir, "cli-")) && bundle.endsWith(".mjs"), String(bundle));
    const source = join(project, "lib", "greeting.ts");
    assert.deepEqual(await runBundle(bundle), {
      greeting: "hello from a file beside the source",
      here: { url: pathToFileURL(source).href, filename: source, dirname: join(project, "lib") },
    });

    const manifest = join(cacheDir, "cli.json");
    const { inputs } = JSON.parse(readFileSync(manifest, "utf8")) as { inputs: [string, number, number][] };
    assert.deepEqual(inputs.map(([path]) => path).sort(), [source, entry].sort());
    const written = statSync(manifest).mtimeMs;
    assert.equal(await currentBundle({ entry, cacheDir, name: "cli" }), bundle);
    assert.equal(statSync(manifest).mtimeMs, written, "the manifest was written again: the bundle was rebuilt");
  });

  test("builds it again after a source changes, and the new bundle has the change", async () => {
    const cacheDir = join(dir, "cache-edit");
    const first = await currentBundle({ entry, cacheDir, name: "cli" });
    assert.ok(first);
    const source = join(project, "lib", "greeting.ts");
    writeFileSync(source, greetingModule(", edited"));
    try {
      const second = await currentBundle({ entry, cacheDir, name: "cli" });
      assert.ok(second);
      assert.notEqual(second, first);
      assert.equal((await runBundle(second)).greeting, "hello from a file beside the source, edited");
      // The older bundle stays a while: another process may be loading it.
      assert.ok(existsSync(first));
      assert.equal(await currentBundle({ entry, cacheDir, name: "cli" }), second);
    } finally {
      writeFileSync(source, greetingModule(""));
    }
  });

  test("injects a module's exports in place of the globals of the same name, and builds again when the list of injected modules changes", async () => {
    const cacheDir = join(dir, "cache-inject");
    const headers = join(project, "headers.ts");
    writeFileSync(headers, "export class Headers {\n  readonly injected = true;\n}\n");
    const printer = join(project, "print_headers.ts");
    writeFileSync(printer, "console.log(JSON.stringify({ injected: (new Headers() as unknown as { injected?: boolean }).injected ?? false }));\n");
    const plain = await currentBundle({ entry: printer, cacheDir, name: "headers" });
    assert.ok(plain);
    assert.deepEqual(JSON.parse((await run(process.execPath, [plain])).stdout), { injected: false });
    const injected = await currentBundle({ entry: printer, cacheDir, name: "headers", inject: [headers] });
    assert.ok(injected);
    assert.notEqual(injected, plain);
    assert.deepEqual(JSON.parse((await run(process.execPath, [injected])).stdout), { injected: true });
  });

  test("leaves npm packages out with packages: external, so a package finds its own files, and builds again when that option changes", async () => {
    const cacheDir = join(dir, "cache-packages");
    // A package that says where it runs from, as PGlite finds its WebAssembly beside itself.
    const pkg = join(project, "node_modules", "where-am-i");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "where-am-i", type: "module", exports: "./index.js" }));
    writeFileSync(join(pkg, "index.js"), "export const where = import.meta.url;\n");
    const printer = join(project, "print_where.ts");
    writeFileSync(printer, 'import { where } from "where-am-i";\nconsole.log(JSON.stringify({ where }));\n');
    const inlined = await currentBundle({ entry: printer, cacheDir, name: "where" });
    assert.ok(inlined);
    assert.deepEqual(JSON.parse((await run(process.execPath, [inlined])).stdout), { where: pathToFileURL(inlined).href });
    // An external package is imported from where the bundle is: the cache must be in the project, as node_modules/.cache/drover is.
    const external = await currentBundle({ entry: printer, cacheDir: join(project, "node_modules", ".cache", "t"), name: "where", packages: "external" });
    assert.ok(external);
    assert.doesNotMatch(readFileSync(external, "utf8"), /export const where/);
    assert.deepEqual(JSON.parse((await run(process.execPath, [external])).stdout), { where: pathToFileURL(join(pkg, "index.js")).href });
    const again = await currentBundle({ entry: printer, cacheDir, name: "where", packages: "external" });
    assert.ok(again);
    assert.notEqual(again, inlined, "a bundle built with packages inlined is not current for packages: external");
  });

  test("gives undefined, and says why, when the sources do not build or the cache cannot be written", async () => {
    const broken = join(project, "broken.ts");
    writeFileSync(broken, 'import { missing } from "./nowhere.ts";\nconsole.log(missing);\n');
    const errors: unknown[] = [];
    assert.equal(await currentBundle({ entry: broken, cacheDir: join(dir, "cache-broken"), name: "cli", onError: (err) => errors.push(err) }), undefined);
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /nowhere\.ts/);

    // A cache directory under a regular file cannot be made.
    const file = join(dir, "a-file");
    writeFileSync(file, "");
    errors.length = 0;
    assert.equal(await currentBundle({ entry, cacheDir: join(file, "cache"), name: "cli", onError: (err) => errors.push(err) }), undefined);
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /ENOTDIR/);
  });
});
