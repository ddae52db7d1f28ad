#!/usr/bin/env node
// `node services/bin.mjs NAME [options]`: runs services/NAME/main.ts, dev
// mode (`npm start`, `drover dev`) or one split-mode service, from its
// bundle (lib/bundle.mjs), built into node_modules/.cache/drover on the
// first start and after any change to its sources. npm packages stay out
// of it and load from node_modules as before (PGlite and Prisma find their
// WebAssembly next to their own files). Where no bundle can be built or
// written, or with DROVER_SERVICE_BUNDLE=0, it registers tsx and runs the
// TypeScript, as `node --import tsx services/NAME/main.ts` does.
import { fileURLToPath } from "node:url";
import { runEntry } from "../lib/bundle.mjs";

const SERVICES = ["dev", "fleet", "scheduler", "bid", "log", "deploy"];
// The service's own options follow its name; main.ts reads them from process.argv.
const [name] = process.argv.splice(2, 1);
if (!SERVICES.includes(name)) {
  process.stderr.write(`usage: node services/bin.mjs ${SERVICES.join("|")} [options]\n`);
  process.exit(2);
}
await runEntry({
  entry: fileURLToPath(new URL(`./${name}/main.ts`, import.meta.url)),
  name: `service-${name}`,
  packages: "external",
  bundled: process.env.DROVER_SERVICE_BUNDLE !== "0",
});
