// `drover schedules`: fire a job (`-- CMD ARGS...`) or a run (`--run FILE`)
// on a cron expression in a time zone; list, inspect, pause, resume and
// delete schedules. A schedule is named by its name or its id.

import { create, toJson } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { Command, Option } from "commander";
import { ScheduleSchema, ScheduleSpecSchema, type Schedule } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CALL_TIMEOUT_MS, print } from "./context.ts";
import { CliError } from "./errors.ts";
import { addJobOptions, JOB_OPTION_KEYS, jobSpecFrom, type JobSpecOptions } from "./job_spec.ts";
import { formatTable, type Printable } from "./output.ts";
import { collectPages } from "./pages.ts";
import { parseInteger } from "./parse.ts";
import { readRunSpec } from "./run_spec.ts";
import { runSpecHelp } from "./runs.ts";
import { MISSED_WORDS, OVERLAP_WORDS, SCHEDULE_LIST_HEADERS, scheduleDetails, scheduleRow } from "./schedule_view.ts";

const timeout = { timeoutMs: CALL_TIMEOUT_MS };

/** What `schedules create` collects besides the job options. */
interface ScheduleOptions extends JobSpecOptions {
  cron: string;
  tz?: string;
  overlap?: string;
  missed?: string;
  backfillLimit?: string;
  paused?: boolean;
  run?: string;
}

/** A schedule in every format: its details for people, protobuf JSON for scripts. */
function scheduleOut(schedule: Schedule, note = ""): Printable {
  return { json: () => toJson(ScheduleSchema, schedule), table: () => scheduleDetails(schedule) + note };
}

export function schedulesCommand(): Command {
  const schedules = new Command("schedules").description("cron schedules that fire a job or a run");

  addJobOptions(
    schedules
      .command("create")
      .description("create a schedule that fires CMD ARGS... (a job) or a run spec file on a cron expression")
      .usage("NAME --cron EXPR [options] (-- CMD [ARGS...] | --run FILE)")
      .argument("<name>", "unique: letters, digits, '.', '_' or '-'")
      .argument("[command...]", "the job's command and its arguments, after -- (or --run FILE)")
      .requiredOption("--cron <expr>", "five fields (minute hour day-of-month month day-of-week), or six with seconds first; @hourly, @daily, ...")
      .option("--tz <zone>", "IANA time zone the expression is read in, e.g. Europe/Paris (default UTC)")
      .addOption(new Option("--overlap <policy>", "a tick while what the previous one fired is still going: fire nothing, fire anyway, or cancel it first (default skip)").choices(Object.keys(OVERLAP_WORDS)))
      .addOption(new Option("--missed <policy>", "ticks missed while no scheduler ran: none, the latest once, or each (default run-once)").choices(Object.keys(MISSED_WORDS)))
      .option("--backfill-limit <n>", "with --missed backfill: the most missed ticks fired (default 10)")
      .option("--paused", "create it paused (schedules resume starts it)")
      .option("--run <file>", 'fire a run from this spec file instead of a job ("-" reads stdin)'),
  )
    .addHelpText("after", `\nThe job options (--name, --cpu, ...) describe the job each tick fires; --name defaults to the schedule's name.\nWith --run they do not apply: the spec file says what each stage runs.\n\n${runSpecHelp}`)
    .action((name: string, argv: string[], opts: ScheduleOptions, cmd: Command) =>
      print(cmd, async ({ clients }) => {
        const spec = create(ScheduleSpecSchema, {
          name,
          cron: opts.cron,
          timeZone: opts.tz ?? "",
          template: templateFrom(name, argv, opts, cmd),
          overlap: opts.overlap === undefined ? undefined : OVERLAP_WORDS[opts.overlap],
          missed: opts.missed === undefined ? undefined : MISSED_WORDS[opts.missed],
          backfillLimit: backfillLimitFrom(opts),
        });
        const { schedule } = await clients.scheduler.createSchedule({ spec, paused: opts.paused ?? false }, timeout);
        return scheduleOut(schedule!);
      }),
    );

  schedules
    .command("ls")
    .description("list schedules by name, with their next and last fire times")
    .action((_opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const { items } = await collectPages(undefined, async (pageSize, pageToken) => {
          const res = await clients.scheduler.listSchedules({ pageSize, pageToken }, timeout);
          return { items: res.schedules, nextPageToken: res.nextPageToken };
        });
        const now = Date.now();
        return {
          json: () => items.map((s) => toJson(ScheduleSchema, s)),
          table: () => formatTable({ headers: SCHEDULE_LIST_HEADERS, rows: items.map((s) => scheduleRow(s, now)) }, bold),
        };
      }),
    );

  schedules
    .command("get")
    .description("show one schedule: when it fires next, what, and what it last fired or skipped")
    .argument("<name-or-id>", "the schedule's name or id")
    .action((id: string, _opts, cmd: Command) => print(cmd, async ({ clients }) => scheduleOut((await clients.scheduler.getSchedule({ id }, timeout)).schedule!)));

  schedules
    .command("pause")
    .description("stop a schedule firing until resumed")
    .argument("<name-or-id>", "the schedule's name or id")
    .action((id: string, _opts, cmd: Command) => print(cmd, async ({ clients }) => scheduleOut((await clients.scheduler.pauseSchedule({ id }, timeout)).schedule!)));

  schedules
    .command("resume")
    .description("make a paused schedule fire again, from now on (ticks missed while paused are not fired)")
    .argument("<name-or-id>", "the schedule's name or id")
    .action((id: string, _opts, cmd: Command) => print(cmd, async ({ clients }) => scheduleOut((await clients.scheduler.resumeSchedule({ id }, timeout)).schedule!)));

  schedules
    .command("rm")
    .description("delete a schedule; what it already fired runs on")
    .argument("<name-or-id>", "the schedule's name or id")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients }) => {
        await clients.scheduler.deleteSchedule({ id }, timeout);
        return { json: () => ({}), table: () => `deleted schedule ${id}\n` };
      }),
    );

  return schedules;
}

/** The job (`-- CMD`) or run (`--run FILE`) each tick fires: exactly one of them, and job options only with a job. */
function templateFrom(name: string, argv: string[], opts: ScheduleOptions, cmd: Command) {
  if (opts.run !== undefined) {
    if (argv.length > 0) throw new CliError(Code.InvalidArgument, "--run: a schedule fires either a run or a command (after --), not both");
    const given = JOB_OPTION_KEYS.find((key) => cmd.getOptionValueSource(key) === "cli");
    if (given) {
      const flag = given.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      throw new CliError(Code.InvalidArgument, `--${flag}: describes a job template; with --run, put it in the spec file's stages`);
    }
    return { case: "run" as const, value: readRunSpec(opts.run) };
  }
  if (argv.length === 0) throw new CliError(Code.InvalidArgument, "what to fire: give -- CMD [ARGS...] or --run FILE");
  return { case: "job" as const, value: jobSpecFrom(argv, { ...opts, name: opts.name ?? name }) };
}

function backfillLimitFrom(opts: ScheduleOptions): number | undefined {
  if (opts.backfillLimit === undefined) return undefined;
  if (opts.missed !== "backfill") throw new CliError(Code.InvalidArgument, "--backfill-limit: only with --missed backfill");
  const limit = parseInteger("--backfill-limit", opts.backfillLimit);
  if (limit < 1 || limit > 1000) throw new CliError(Code.InvalidArgument, `--backfill-limit: "${opts.backfillLimit}" must be 1 to 1000`);
  return limit;
}
