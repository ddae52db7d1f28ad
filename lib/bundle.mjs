// An entry point's TypeScript sources and packages bundled once into one ES
// module, kept in a cache directory and rebuilt when any file in it changed.
//
// `drover` (cli/bin.mjs), `drover-agent` (agent/bin.mjs) and the services
// (services/bin.mjs: dev mode, which `npm start` runs, and each split-mode
// service) run from their bundles. Through tsx every `drover` command spent
// ~0.8 s of CPU registering the loader and compiling and resolving ~360
// modules one by one; from the bundle it starts in ~0.2 s. An agent from
// its bundle has no tsx loader thread, whose V8 heap is ~30 MiB of its RSS
// (agent/README.md, "Footprint"). Plain JavaScript, because it runs before
// anything that could load TypeScript.
//
// A bundle is current when every file esbuild read for it has the size and
// modification time recorded when it was built (a manifest beside it, one
// stat per file: ~360 for the CLI, a few ms), so an edit, a `git checkout`
// or an `npm install` makes the next run build it again (~0.5 s) first.
//
// What a bundle must not change: a module's `import.meta.url` (and
// `.filename`, `.dirname`) stays its source file's, written into the bundle
// as a literal, so files found next to a source (package.json, migrations,
// services/dev) are found from the bundle too, wherever the cache is.
//
// Several processes may build at once: each bundle is written under a name
// of its own (its content's hash) and the manifest last, each by a rename,
// so a reader sees an old pair or a new one, never half of either.

import { createHash } from "node:crypto";
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Where cli/bin.mjs, agent/bin.mjs and services/bin.mjs keep their bundles: node_modules/.cache/drover in this repository. */
export const REPOSITORY_CACHE = fileURLToPath(new URL("../node_modules/.cache/drover/", import.meta.url));

/** Bumped when the way a bundle is built changes, so older bundles are rebuilt. */
const FORMAT = 1;

/** A bundle no manifest names any more is deleted once it is this old (a process may be loading it). */
const STALE_BUNDLE_MS = 60_000;

/**
 * The path of a bundle of `entry` current with every file in it, built into
 * `cacheDir` (as `NAME-HASH.mjs` beside `NAME.json`) when there is none.
 * `inject`: modules whose exports replace the globals of the same name
 * within the bundle (esbuild's inject). `packages`: "external" leaves npm
 * packages out, imported from node_modules at run time as before (for
 * packages that find their own files, as PGlite does its WebAssembly).
 * Undefined when it cannot be built or written there, and the caller
 * should run the sources instead; `onError` hears why.
 *
 * @param {{ entry: string, cacheDir: string, name: string, inject?: string[], packages?: "bundle" | "external", onError?: (err: unknown) => void }} options
 * @returns {Promise<string | undefined>}
 */
export async function currentBundle({ entry, cacheDir, name, inject = [], packages = "bundle", onError }) {
  const manifestPath = join(cacheDir, `${name}.json`);
  const manifest = readManifest(manifestPath);
  const options = { entry, inject, packages };
  if (manifest && JSON.stringify(manifest.options) === JSON.stringify(options) && inputsUnchanged(manifest.inputs)) {
    return join(cacheDir, manifest.bundle);
  }
  try {
    return await buildBundle(options, cacheDir, name, manifestPath);
  } catch (err) {
    onError?.(err);
    return undefined;
  }
}

/**
 * Runs `entry`: imports its current bundle (currentBundle, in
 * REPOSITORY_CACHE), or, with `bundled` false or where no bundle can be
 * had, registers tsx and imports the TypeScript itself. What cli/bin.mjs,
 * agent/bin.mjs and services/bin.mjs do.
 *
 * @param {{ entry: string, name: string, inject?: string[], packages?: "bundle" | "external", bundled?: boolean }} options
 */
export async function runEntry({ bundled = true, ...options }) {
  const bundle = bundled ? await currentBundle({ ...options, cacheDir: REPOSITORY_CACHE }) : undefined;
  if (bundle) return import(pathToFileURL(bundle).href);
  const { register } = await import("tsx/esm/api");
  register();
  return import(pathToFileURL(options.entry).href);
}

/** The manifest at `path`, or undefined when there is none or it is not this format's. */
function readManifest(path) {
  try {
    const manifest = JSON.parse(readFileSync(path, "utf8"));
    return manifest.format === FORMAT ? manifest : undefined;
  } catch {
    return undefined;
  }
}

/** Whether every recorded input still has its recorded size and modification time. */
function inputsUnchanged(inputs) {
  for (const [path, mtimeMs, size] of inputs) {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (!stat || stat.mtimeMs !== mtimeMs || stat.size !== size) return false;
  }
  return true;
}

async function buildBundle(options, cacheDir, name, manifestPath) {
  // A cache that cannot be written (a read-only install) fails here, before ~0.5 s of building.
  mkdirSync(cacheDir, { recursive: true });
  accessSync(cacheDir, constants.W_OK);
  const { build } = await import("esbuild");
  const started = Date.now();
  const result = await build({
    entryPoints: [options.entry],
    inject: options.inject,
    bundle: true,
    packages: options.packages,
    platform: "node",
    format: "esm",
    target: "node20",
    write: false,
    outfile: join(cacheDir, `${name}.mjs`),
    metafile: true,
    logLevel: "silent",
    plugins: [sourceModuleUrls],
    // CommonJS dependencies require() Node's modules; an ES module has no require of its own.
    banner: { js: "import { createRequire as __droverCreateRequire } from 'node:module'; const require = __droverCreateRequire(import.meta.url);" },
  });
  const code = result.outputFiles[0].contents;
  const bundle = `${name}-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.mjs`;
  writeAtomically(join(cacheDir, bundle), code);

  const inputs = Object.keys(result.metafile.inputs).map((input) => {
    const path = resolve(input);
    const stat = statSync(path);
    return [path, stat.mtimeMs, stat.size];
  });
  // A file changed while esbuild read it may be in the bundle half old: run
  // this bundle, but leave no manifest that calls it current. (A file dated
  // in the future, from a skewed clock, is not taken for one.)
  const finished = Date.now();
  if (!inputs.some(([, mtimeMs]) => mtimeMs >= started && mtimeMs <= finished)) {
    writeAtomically(manifestPath, JSON.stringify({ format: FORMAT, options, bundle, inputs }));
  }
  removeStaleBundles(cacheDir, name, bundle);
  return join(cacheDir, bundle);
}

/**
 * esbuild plugin: `import.meta.url`, `.filename` and `.dirname` in our own
 * sources become the source file's, as string literals.
 */
const sourceModuleUrls = {
  name: "source-module-urls",
  setup(build) {
    build.onLoad({ filter: /\.[cm]?ts$/ }, (args) => {
      if (args.path.includes("/node_modules/")) return undefined;
      const source = readFileSync(args.path, "utf8");
      if (!/import\.meta\.(url|filename|dirname)\b/.test(source)) return undefined;
      const values = { url: pathToFileURL(args.path).href, filename: args.path, dirname: dirname(args.path) };
      return { contents: source.replace(/import\.meta\.(url|filename|dirname)\b/g, (_, key) => JSON.stringify(values[key])), loader: "ts" };
    });
  },
};

function writeAtomically(path, contents) {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, contents);
  renameSync(temporary, path);
}

function removeStaleBundles(cacheDir, name, keep) {
  for (const file of readdirSync(cacheDir)) {
    if (file === keep || !file.startsWith(`${name}-`) || !file.endsWith(".mjs")) continue;
    const path = join(cacheDir, file);
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat && Date.now() - stat.mtimeMs > STALE_BUNDLE_MS) rmSync(path, { force: true });
  }
}
