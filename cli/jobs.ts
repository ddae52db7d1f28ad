// `drover jobs`: submit a command as a job and look at it. Execution arrives
// with the agent runners; until then a submitted job stays pending.

import { toJson } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { JobSchema, JobState, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CALL_TIMEOUT_MS, print } from "./context.ts";
import { enumText, formatFields, labelText } from "./output.ts";
import { parseBytes, parseCpu, parseInteger, parseLabels } from "./parse.ts";

const collect = (value: string, previous: string[]) => [...previous, value];

/** A command line as a person would retype it: arguments with blanks or quotes are quoted. */
function commandText(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}

function details(job: Job, created?: boolean): string {
  const spec = job.spec;
  const fields: [string, string][] = [
    ["id", job.id],
    ["state", enumText(JobState, job.state)],
    ["name", spec?.name || "-"],
    ["command", spec?.exec?.commands.map((c) => commandText(c.argv)).join(" && ") || "-"],
    ["constraints", labelText(spec?.constraints?.labels ?? {})],
    ["priority", String(spec?.priority ?? 0)],
    ["created", job.createTime ? new Date(timestampMs(job.createTime)).toISOString() : "-"],
  ];
  if (job.idempotencyKey) fields.push(["idempotency key", job.idempotencyKey]);
  const note = created === false ? "An existing job with this idempotency key; nothing new was submitted.\n" : "";
  return formatFields(fields) + note;
}

export function jobsCommand(): Command {
  const jobs = new Command("jobs").description("one-shot jobs");

  jobs
    .command("submit")
    .description("submit a job that runs CMD ARGS... and print it (it stays pending until execution lands)")
    .usage("[options] -- CMD [ARGS...]")
    .argument("<command...>", "the command and its arguments, after --")
    .option("--name <name>", "a name for people")
    .option("--label <k=v>", "run only on agents with this label (repeatable)", collect, [])
    .option("--cpu <cores>", "CPU it needs: cores (2, 0.5) or millicores (500m)")
    .option("--mem <bytes>", "memory it needs: 512Mi, 1G or bytes")
    .option("--priority <n>", "-1000..1000; higher goes first", "0")
    .option("--idempotency-key <key>", "submitting again with the same key returns the first job")
    .action(
      (
        argv: string[],
        opts: { name?: string; label: string[]; cpu?: string; mem?: string; priority: string; idempotencyKey?: string },
        cmd: Command,
      ) =>
        print(cmd, async ({ clients }) => {
          const spec = {
            name: opts.name ?? "",
            exec: { commands: [{ argv }] },
            constraints: { labels: parseLabels("--label", opts.label) },
            resources: {
              cpuMillis: opts.cpu === undefined ? 0 : parseCpu("--cpu", opts.cpu),
              memoryBytes: opts.mem === undefined ? 0n : parseBytes("--mem", opts.mem),
            },
            priority: parseInteger("--priority", opts.priority),
          };
          const res = await clients.scheduler.submitJob(
            { spec, idempotencyKey: opts.idempotencyKey ?? "" },
            { timeoutMs: CALL_TIMEOUT_MS },
          );
          return { json: () => toJson(JobSchema, res.job!), table: () => details(res.job!, res.created) };
        }),
    );

  jobs
    .command("get")
    .description("show one job")
    .argument("<id>", "the job's id")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients }) => {
        const { job } = await clients.scheduler.getJob({ id }, { timeoutMs: CALL_TIMEOUT_MS });
        return { json: () => toJson(JobSchema, job!), table: () => details(job!) };
      }),
    );
  return jobs;
}
