// `drover runs`: submit a DAG run from a spec file, list and inspect runs,
// follow one until it ends, cancel it. Each stage of a run is a job
// (`drover jobs get <job id>` shows its attempts).

import { toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { RunSchema, RunState } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CALL_TIMEOUT_MS, contextFor, print, type CommandContext } from "./context.ts";
import { followRun } from "./follow.ts";
import { formatTable, render } from "./output.ts";
import { addLimitOptions, collectPages, limitFrom } from "./pages.ts";
import { parseDurationMs } from "./parse.ts";
import { readRunSpec } from "./run_spec.ts";
import { parseRunState, RUN_LIST_HEADERS, RUN_STATE_WORDS, runDetails, runExitHelp, runExitStatus, runRow } from "./run_view.ts";

const timeout = { timeoutMs: CALL_TIMEOUT_MS };

/** What a run spec file holds, for --help. */
export const runSpecHelp = `A run spec file is YAML or JSON (a .json name is read as JSON), "-" for stdin,
with the fields of RunSpec in protobuf's JSON form (as runs get -o json prints):

  name: nightly
  stages:
    - name: build
      job: {exec: {commands: [{argv: [make]}]}}
    - name: test
      requires: [build]
      job:
        exec: {commands: [{argv: [make, test]}], env: {CI: "1"}}
        resources: {cpuMillis: 2000}
        timeout: 600s

A stage starts once every stage it requires succeeded; a failed stage skips
everything downstream.`;

/** `runs watch` and `runs submit --follow`: follow the run, then exit with its status (runExitHelp). */
async function watchRunAndExit(ctx: CommandContext, id: string): Promise<void> {
  const run = await followRun(ctx, id);
  process.exitCode = runExitStatus(run) ?? 1;
}

export function runsCommand(): Command {
  const runs = new Command("runs").description("DAG runs: stages of jobs that wait for each other");

  runs
    .command("submit")
    .description("submit a run from a spec file and print it; with --follow, wait for it to end")
    .argument("<file>", 'the run spec, YAML or JSON; "-" reads stdin')
    .option("--idempotency-key <key>", "submitting again with the same key returns the first run")
    .option("-f, --follow", "print a line per stage change until the run ends, then exit with its status")
    .addHelpText("after", `\n${runSpecHelp}\n\n${runExitHelp}\n\nCtrl-C stops following (exit 130); the run goes on.`)
    .action(async (file: string, opts: { idempotencyKey?: string; follow?: boolean }, cmd: Command) => {
      const ctx = contextFor(cmd);
      const spec = readRunSpec(file);
      const { run, created } = await ctx.clients.scheduler.submitRun({ spec, idempotencyKey: opts.idempotencyKey ?? "" }, timeout);
      if (!opts.follow) {
        process.stdout.write(render(ctx.format, { json: () => toJson(RunSchema, run!), table: () => runDetails(run!, { created, bold: ctx.bold }) }));
        return;
      }
      // In a table, say which run this is before following it; JSON and YAML carry the id in every record.
      if (ctx.format === "table") {
        process.stdout.write(created ? `run ${run!.id}\n` : `run ${run!.id} (already submitted with this idempotency key)\n`);
      }
      await watchRunAndExit(ctx, run!.id);
    });

  addLimitOptions(
    runs
      .command("ls")
      .description("list runs, newest first")
      .option("--state <state>", `only runs in this state: ${Object.keys(RUN_STATE_WORDS).join(", ")}`),
  ).action((opts: { state?: string; limit: string; all?: boolean }, cmd: Command) =>
    print(cmd, async ({ clients, bold }) => {
      const state = opts.state === undefined ? RunState.UNSPECIFIED : parseRunState("--state", opts.state);
      const { items, more } = await collectPages(limitFrom(opts), async (pageSize, pageToken) => {
        const res = await clients.scheduler.listRuns({ state, pageSize, pageToken }, timeout);
        return { items: res.runs, nextPageToken: res.nextPageToken };
      });
      if (more) process.stderr.write(`drover: showing the newest ${items.length} runs; --limit N or --all for more\n`);
      const now = Date.now();
      return {
        json: () => items.map((r) => toJson(RunSchema, r)),
        table: () => formatTable({ headers: RUN_LIST_HEADERS, rows: items.map((r) => runRow(r, now)) }, bold),
      };
    }),
  );

  runs
    .command("get")
    .description("show one run and its stages: state, what each requires, its job and why it waits or ended")
    .argument("<id>", "the run's id")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const { run } = await clients.scheduler.getRun({ id }, timeout);
        return { json: () => toJson(RunSchema, run!), table: () => runDetails(run!, { bold }) };
      }),
    );

  runs
    .command("cancel")
    .description("cancel a run: stages not yet started are skipped, running ones get SIGTERM, then SIGKILL after the grace period")
    .argument("<id>", "the run's id")
    .option("--grace <duration>", "time between SIGTERM and SIGKILL, e.g. 30s (default: the server's, 10s)")
    .option("--reason <text>", "why, kept on the run's stages")
    .action((id: string, opts: { grace?: string; reason?: string }, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const gracePeriod = opts.grace === undefined ? undefined : durationFromMs(parseDurationMs("--grace", opts.grace));
        const { run } = await clients.scheduler.cancelRun({ id, gracePeriod, reason: opts.reason ?? "" }, timeout);
        const note = run!.state === RunState.RUNNING ? `\nCancel requested: running stages are being stopped; drover runs watch ${id} follows them.\n` : "";
        return { json: () => toJson(RunSchema, run!), table: () => runDetails(run!, { bold }) + note };
      }),
    );

  runs
    .command("watch")
    .description("print a line per stage change of a run until it ends, then exit with its status")
    .argument("<id>", "the run's id")
    .addHelpText("after", `\n${runExitHelp}\n\nCtrl-C stops watching (exit 130); the run goes on.`)
    .action((id: string, _opts, cmd: Command) => watchRunAndExit(contextFor(cmd), id));

  return runs;
}
