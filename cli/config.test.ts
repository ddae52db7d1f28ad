// Where the CLI connects and as whom: the resolution order of flags,
// environment, config file and dev-mode defaults, and the config file itself.

import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { removeDir, tempDir } from "../integration/harness.ts";
import { configFile, readConfig, removeConfig, writeConfig } from "./config.ts";
import { DEFAULT_ADDR, resolveConnection } from "./connection.ts";
import { CliError } from "./errors.ts";

/** Asserts fn throws a CliError with this code and a message matching re. */
function assertCliError(fn: () => unknown, code: Code, re: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CliError, `a CliError, not ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, re);
    return true;
  });
}

describe("configFile", () => {
  test("DROVER_CONFIG wins, then XDG_CONFIG_HOME, then ~/.config", () => {
    assert.equal(configFile({ DROVER_CONFIG: "/etc/d.json", XDG_CONFIG_HOME: "/x" }, "/home/me"), "/etc/d.json");
    assert.equal(configFile({ XDG_CONFIG_HOME: "/x" }, "/home/me"), "/x/drover/config.json");
    assert.equal(configFile({}, "/home/me"), "/home/me/.config/drover/config.json");
  });
});

describe("the config file", () => {
  let dir: string;
  before(() => {
    dir = tempDir("drover-config-");
  });
  after(() => removeDir(dir));

  test("writeConfig creates the directory 0700 and the file 0600, and readConfig reads it back", () => {
    const file = join(dir, "fresh", "drover", "config.json");
    writeConfig(file, { addr: "https://d.example:7070", token: "s3cret" });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "fresh", "drover")).mode & 0o777, 0o700);
    assert.deepEqual(readConfig(file), { addr: "https://d.example:7070", token: "s3cret" });
  });

  test("writeConfig replaces an existing file, tightens its mode and leaves no temporary file behind", () => {
    const sub = join(dir, "replace");
    mkdirSync(sub);
    const file = join(sub, "config.json");
    writeFileSync(file, "old", { mode: 0o644 });
    writeConfig(file, { addr: "http://a:1", token: "new" });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(JSON.parse(readFileSync(file, "utf8")), { addr: "http://a:1", token: "new" });
    assert.deepEqual(readdirSync(sub), ["config.json"]);
  });

  test("readConfig returns undefined when there is no file", () => {
    assert.equal(readConfig(join(dir, "missing.json")), undefined);
  });

  test("a malformed file is an invalid_argument error that names the file and what is wrong", () => {
    const cases: [string, RegExp][] = [
      ["{not json", /not valid JSON/],
      ["[1]", /must be a JSON object/],
      ['{"token": 42}', /"token" must be a non-empty string/],
      ['{"addr": ""}', /"addr" must be a non-empty string/],
      ['{"addr": "127.0.0.1:7070"}', /"addr": "127\.0\.0\.1:7070" must be a URL/],
    ];
    for (const [i, [text, re]] of cases.entries()) {
      const file = join(dir, `bad-${i}.json`);
      writeFileSync(file, text);
      assertCliError(() => readConfig(file), Code.InvalidArgument, new RegExp(`^config file ${file}: .*${re.source}`));
    }
  });

  test("removeConfig removes the file and says whether there was one", () => {
    const file = join(dir, "gone.json");
    writeConfig(file, { token: "t" });
    assert.equal(removeConfig(file), true);
    assert.equal(removeConfig(file), false);
  });
});

describe("resolveConnection", () => {
  let dir: string;
  /** A config file holding addr and token "file", and a dev-mode admin token "dev". */
  let env: NodeJS.ProcessEnv;
  before(() => {
    dir = tempDir("drover-resolve-");
    writeConfig(join(dir, "config.json"), { addr: "http://file:1", token: "file" });
    mkdirSync(join(dir, "data"));
    writeFileSync(join(dir, "data", "admin-token"), "dev\n");
    env = { DROVER_CONFIG: join(dir, "config.json"), DROVER_DATA_DIR: join(dir, "data") };
  });
  after(() => removeDir(dir));

  test("flags win over the environment", () => {
    const conn = resolveConnection({ addr: "http://flag:1", token: "flag" }, { ...env, DROVER_ADDR: "http://env:1", DROVER_TOKEN: "env" }, dir);
    assert.deepEqual(conn, { addr: "http://flag:1", token: "flag" });
  });

  test("the environment wins over the config file", () => {
    const conn = resolveConnection({}, { ...env, DROVER_ADDR: "http://env:1", DROVER_TOKEN: "env" }, dir);
    assert.deepEqual(conn, { addr: "http://env:1", token: "env" });
  });

  test("the config file wins over dev-mode defaults", () => {
    assert.deepEqual(resolveConnection({}, env, dir), { addr: "http://file:1", token: "file" });
  });

  test("address and token come from different levels: DROVER_ADDR with the file's token, a --token flag with the file's address", () => {
    assert.deepEqual(resolveConnection({}, { ...env, DROVER_ADDR: "http://env:1" }, dir), { addr: "http://env:1", token: "file" });
    assert.deepEqual(resolveConnection({ token: "flag" }, env, dir), { addr: "http://file:1", token: "flag" });
  });

  test("without a config file, dev-mode defaults: the local address and the admin token file", () => {
    const conn = resolveConnection({}, { ...env, DROVER_CONFIG: join(dir, "none.json") }, dir);
    assert.deepEqual(conn, { addr: DEFAULT_ADDR, token: "dev" });
  });

  test("a config file holding only an address still takes the token from the dev-mode file", () => {
    writeConfig(join(dir, "addr-only.json"), { addr: "http://file:2" });
    assert.deepEqual(resolveConnection({}, { ...env, DROVER_CONFIG: join(dir, "addr-only.json") }, dir), { addr: "http://file:2", token: "dev" });
  });

  test("a malformed config file is not read when flags or the environment give both address and token", () => {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{");
    const conn = resolveConnection({ addr: "http://flag:1" }, { ...env, DROVER_CONFIG: bad, DROVER_TOKEN: "env" }, dir);
    assert.deepEqual(conn, { addr: "http://flag:1", token: "env" });
    assertCliError(() => resolveConnection({}, { ...env, DROVER_CONFIG: bad }, dir), Code.InvalidArgument, /^config file .*bad\.json: not valid JSON/);
  });

  test("no token anywhere is unauthenticated and names every place looked in", () => {
    const none = { DROVER_CONFIG: join(dir, "none.json"), DROVER_DATA_DIR: join(dir, "empty") };
    assertCliError(
      () => resolveConnection({}, none, dir),
      Code.Unauthenticated,
      /^no token: pass --token, set DROVER_TOKEN, run drover login \(writes .*none\.json\), or run where dev mode keeps .*empty\/admin-token/,
    );
  });

  test("an address that is not a URL is an invalid argument", () => {
    assertCliError(() => resolveConnection({ addr: "localhost:7070", token: "t" }, env, dir), Code.InvalidArgument, /^--addr: "localhost:7070" must be a URL/);
  });
});
