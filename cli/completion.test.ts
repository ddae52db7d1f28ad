// `drover completion`: scripts generated from the real command tree.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, test } from "node:test";
import { bashCompletion, completionTree, fishCompletion, zshCompletion } from "./completion.ts";
import { createProgram } from "./program.ts";

describe("drover completion", () => {
  const program = createProgram();

  test("the tree has every command and subcommand of the program, with its own and the global options", () => {
    const paths = completionTree(program).map((n) => n.path);
    for (const cmd of program.commands) {
      assert.ok(paths.includes(`drover ${cmd.name()}`), cmd.name());
      for (const sub of cmd.commands) assert.ok(paths.includes(`drover ${cmd.name()} ${sub.name()}`), `${cmd.name()} ${sub.name()}`);
    }
    for (const name of ["login", "logout", "completion", "jobs", "tokens", "deploy", "deploy apply", "deploy rollback"]) assert.ok(paths.includes(`drover ${name}`), name);
    const submit = completionTree(program).find((n) => n.path === "drover jobs submit")!;
    const longs = submit.options.map((o) => o.long);
    assert.ok(longs.includes("--name") && longs.includes("--addr") && longs.includes("--help"), longs.join(" "));
  });

  test("the bash script offers the real command names, is accepted by bash -n, and completes them in bash", () => {
    const script = bashCompletion(program);
    for (const name of program.commands.map((c) => c.name())) assert.match(script, new RegExp(`'drover ${name}'`));
    execFileSync("bash", ["-n"], { input: script });

    // Drive the completion function the way bash does for `drover jobs su<TAB>` and `drover -o <TAB>`.
    const complete = (...words: string[]) =>
      execFileSync("bash", ["-c", `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _drover; printf '%s\\n' "\${COMPREPLY[@]}"`], {
        encoding: "utf8",
      })
        .trim()
        .split("\n");
    assert.deepEqual(complete("drover", "jobs", "su"), ["submit"]);
    assert.deepEqual(complete("drover", "deploy", "r").sort(), ["restart", "resume", "rm", "rollback"], "the deploy subcommands, from the tree");
    assert.ok(complete("drover", "deploy", "apply", "--w").includes("--wait"));
    assert.ok(complete("drover", "lo").includes("login") && complete("drover", "lo").includes("logout"));
    assert.deepEqual(complete("drover", "-o", ""), ["table", "text", "json", "yaml"]);
    assert.deepEqual(complete("drover", "completion", ""), ["bash", "zsh", "fish"], "the choices of its <shell> argument");
    assert.ok(complete("drover", "jobs", "submit", "--n").includes("--name"));
  });

  test("the zsh and fish scripts name the same commands", () => {
    const zsh = zshCompletion(program);
    const fish = fishCompletion(program);
    assert.match(zsh, /^#compdef drover\n/);
    assert.match(zsh, /'login:check a server address/);
    assert.match(fish, /complete -c drover -n 'test \(__drover_path\) = '\\''drover jobs'\\''' -f -a 'submit'/);
  });
});
