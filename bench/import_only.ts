// Loads one module and exits, without starting anything: how long a module
// graph takes to load under tsx (used by startup.ts). Prints {"importMs": n},
// the time of the import itself, excluding Node's and tsx's own start.
//
//   node --import tsx bench/import_only.ts services/split.ts
//   node --import tsx bench/import_only.ts @bufbuild/protovalidate

import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const target = process.argv[2];
if (!target) {
  console.error("usage: node --import tsx bench/import_only.ts <file or package>");
  process.exit(2);
}
const isFile = target.startsWith(".") || target.startsWith("/") || target.endsWith(".ts");
const started = performance.now();
await import(isFile ? pathToFileURL(resolve(target)).href : target);
console.log(JSON.stringify({ importMs: Math.round((performance.now() - started) * 10) / 10 }));
// Exit at once: a module may open handles (timers, pools) that are not part of loading.
process.exit(0);
