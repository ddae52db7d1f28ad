// Types for bundle.mjs, which is plain JavaScript because it runs before
// anything that could load TypeScript.

/**
 * The path of a bundle of `entry` current with every file in it, built into
 * `cacheDir` (as `NAME-HASH.mjs` beside `NAME.json`) when there is none.
 * `inject`: modules whose exports replace the globals of the same name
 * within the bundle (esbuild's inject). `packages`: "external" leaves npm
 * packages out, imported from node_modules at run time as before (for
 * packages that find their own files, as PGlite does its WebAssembly).
 * Undefined when it cannot be built or written there, and the caller
 * should run the sources instead; `onError` hears why.
 */
export function currentBundle(options: {
  entry: string;
  cacheDir: string;
  name: string;
  inject?: string[];
  packages?: "bundle" | "external";
  onError?: (err: unknown) => void;
}): Promise<string | undefined>;

/** Where cli/bin.mjs, agent/bin.mjs and services/bin.mjs keep their bundles: node_modules/.cache/drover in this repository. */
export const REPOSITORY_CACHE: string;

/**
 * Runs `entry`: imports its current bundle (currentBundle, in
 * REPOSITORY_CACHE), or, with `bundled` false or where no bundle can be
 * had, registers tsx and imports the TypeScript itself. What cli/bin.mjs,
 * agent/bin.mjs and services/bin.mjs do.
 */
export function runEntry(options: { entry: string; name: string; inject?: string[]; packages?: "bundle" | "external"; bundled?: boolean }): Promise<unknown>;
