// The SQL itself is run against PostgreSQL in migrate.test.ts; here, only
// that the README shows what the code writes.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { serviceRoleSql } from "./roles.ts";

describe("serviceRoleSql", () => {
  it("is what prisma/README.md shows for fleet, word for word", () => {
    const readme = readFileSync(new URL("../../prisma/README.md", import.meta.url), "utf8");
    const block = /serviceRoleSql\("fleet", "drover_fleet", "change-me"\).*\n```sql\n([\s\S]*?)```/.exec(readme);
    assert.ok(block, "prisma/README.md has no sql block after the serviceRoleSql marker");
    assert.equal(block[1], serviceRoleSql("fleet", "drover_fleet", "change-me"));
  });

  it("quotes a role name that needs it and a password with a quote", () => {
    const sql = serviceRoleSql("log", "Drover Log", "it's");
    assert.match(sql, /CREATE ROLE "Drover Log" LOGIN PASSWORD 'it''s';/);
    assert.match(sql, /ARRAY\['fleet', 'scheduler', 'bid', 'deploy'\]/);
  });
});
