// docs/reference is generated from the proto files' comments (buf.gen.yaml,
// scripts/protoc-gen-reference.ts) and committed. This test generates it
// again into a temporary directory, with the plugin entry of buf.gen.yaml, and
// fails when the committed pages differ: a proto comment changed without
// `npm run generate`, or a page was edited by hand.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse } from "yaml";
import { removeDir, ROOT, tempDir } from "./harness.ts";

const COMMITTED = join(ROOT, "docs", "reference");

/** File name → content, for the Markdown pages of a directory. */
function pages(dir: string): Map<string, string> {
  return new Map(
    readdirSync(dir)
      .filter((f) => f.endsWith(".md"))
      .sort()
      .map((f) => [f, readFileSync(join(dir, f), "utf8")]),
  );
}

/** GitHub's anchor for a heading (as the plugin computes it). */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

describe("docs/reference", () => {
  let out: string;
  before(() => {
    out = tempDir("drover-reference-");
  });
  after(() => removeDir(out));

  it("is what `npm run generate` writes from proto/ now", { timeout: 120_000 }, async () => {
    // buf.gen.yaml with only the plugin that writes docs/reference (gen/ts
    // would take as long again and is not this test's business); -o puts
    // its output under the temporary directory.
    const template = parse(readFileSync(join(ROOT, "buf.gen.yaml"), "utf8")) as { plugins: { out: string }[] };
    template.plugins = template.plugins.filter((p) => p.out === "docs/reference");
    assert.equal(template.plugins.length, 1, "buf.gen.yaml has one plugin writing docs/reference");
    await new Promise<void>((res, rej) =>
      execFile(join(ROOT, "node_modules", ".bin", "buf"), ["generate", "--template", JSON.stringify(template), "-o", out], { cwd: ROOT }, (err, _stdout, stderr) =>
        err ? rej(new Error(`buf generate failed: ${stderr}`)) : res(),
      ),
    );
    const fresh = pages(join(out, "docs", "reference"));
    const committed = pages(COMMITTED);
    assert.deepEqual([...committed.keys()], [...fresh.keys()], "the same pages; run `npm run generate`");
    for (const [name, text] of fresh) {
      assert.ok(committed.get(name) === text, `docs/reference/${name} is stale or was edited by hand; run \`npm run generate\``);
    }
  });

  it("documents every drover package, and every link between its pages lands on a heading", () => {
    const all = pages(COMMITTED);
    const packages = readdirSync(join(ROOT, "proto", "drover")).map((service) => `drover.${service}.v1.md`);
    for (const page of packages) assert.ok(all.has(page), `docs/reference/${page}`);

    const anchors = new Map([...all].map(([name, text]) => [name, new Set([...text.matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1]!)))]));
    for (const [name, text] of all) {
      for (const [, file, anchor] of text.matchAll(/\]\(([\w.]*\.md)?#([^)]+)\)/g)) {
        const target = file ?? name;
        assert.ok(anchors.get(target)?.has(anchor!), `${name}: a link to ${target}#${anchor} that has no heading`);
      }
    }
  });
});
