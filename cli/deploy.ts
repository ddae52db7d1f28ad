// `drover deploy`: long-running services as deployments. Apply a
// deployment file, see deployments, their replicas, revisions and events,
// and pull the levers on a rollout (rollback, pause, resume, promote, scale,
// restart, stop, rm). `--wait` follows the rollout a command started until
// it is over (WatchDeployment) and exits with how it ended (waitExitHelp);
// `watch` follows a deployment's events until Ctrl-C.
//
// Every command runs without agents too: the deployment then stays
// rolling_out with pending replicas.

import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { Command } from "commander";
import {
  ApplyDeploymentResponseSchema,
  DeploymentEventSchema,
  DeploymentSchema,
  DeployService,
  GetDeploymentResponseSchema,
  ListRevisionsResponseSchema,
  WatchDeploymentResponseSchema,
  type Deployment,
  type GetDeploymentResponse,
} from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { CALL_TIMEOUT_MS, contextFor, type CommandContext } from "./context.ts";
import { loadValidator, readDeploymentFile } from "./deploy_spec.ts";
import {
  applyText,
  DEPLOYMENT_LIST_HEADERS,
  deploymentDetails,
  deploymentRow,
  eventLine,
  historyText,
  leverText,
  progressEventLine,
  progressKey,
  revisionOf,
  ttyProgress,
  stopWaitExitHelp,
  waitExitHelp,
  waitOutcome,
  type WaitTarget,
} from "./deploy_view.ts";
import { CliError } from "./errors.ts";
import { formatTable, formatYaml, render, type Printable } from "./output.ts";
import { collectPages } from "./pages.ts";
import { parseInteger } from "./parse.ts";

const timeout = { timeoutMs: CALL_TIMEOUT_MS };

type DeployClient = Client<typeof DeployService>;


/** Runs an action and writes what it returns in the chosen format. */
async function print(cmd: Command, action: (ctx: CommandContext) => Promise<Printable>): Promise<void> {
  const ctx = contextFor(cmd);
  process.stdout.write(render(ctx.format, await action(ctx)));
}

/** The deployment and its latest events, or undefined when there is none by that name. */
async function getIfExists(deploy: DeployClient, name: string): Promise<GetDeploymentResponse | undefined> {
  try {
    return await deploy.getDeployment({ name }, timeout);
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) return undefined;
    throw err;
  }
}

/** The sequence of the latest event already there: following prints only newer ones. */
const lastSequence = (got: GetDeploymentResponse | undefined) => got?.events.at(-1)?.sequence ?? 0n;

/** What a deployment file holds, for --help. */
export const deploymentFileHelp = `A deployment file is YAML (or JSON), "-" for stdin: "name" and the fields of
ServiceSpec in protobuf's JSON form (either spelling, max_parallel or maxParallel):

  name: web
  replicas: 3
  exec: {commands: [{argv: [./server, --port, "8080"]}]}
  resources: {cpu_millis: 500, memory_bytes: 268435456}
  health_check: {http: {port: 8080, path: /healthz}}
  update: {max_parallel: 1, min_healthy_time: 10s, healthy_deadline: 300s}

Instead of replicas, per_agent: {labels: {role: edge}} runs one replica on
every matching agent. Also: driver, constraints, restart, assign_port,
replace_unhealthy_after. A changed spec makes a new revision and rolls it out;
the same spec again changes nothing; a changed replica count alone scales.`;

/**
 * Follows the deployment until `target` is reached or missed (resolving the
 * exit status), or forever without a target. Table output prints each new
 * event as a line and the progress either as a line when it changes (not a
 * terminal) or as one line rewritten in place (a terminal); JSON prints one
 * compact WatchDeploymentResponse per change (NDJSON), YAML one document per
 * change. Only events after `afterSequence` are printed.
 *
 * Ctrl-C leaves the deployment alone and exits 130.
 */
async function followDeployment(ctx: CommandContext, name: string, opts: { target?: WaitTarget; afterSequence: bigint }): Promise<number> {
  const out = process.stdout;
  const tty = ctx.format === "table" && out.isTTY === true;
  let progressShown = false;
  const detach = () => {
    if (progressShown) out.write("\n");
    if (opts.target) process.stderr.write(`\ndrover: detached; deployment ${name} goes on (drover deploy status ${name} shows it)\n`);
    process.exit(130);
  };
  process.once("SIGINT", detach);
  try {
    let lastSequence = opts.afterSequence;
    let lastKey = "";
    for (;;) {
      // No deadline: a rollout may take hours. The server streams until we go away.
      for await (const msg of ctx.clients.deploy.watchDeployment({ name })) {
        const d = msg.deployment;
        if (!d) continue;
        const events = msg.events.filter((e) => e.sequence > lastSequence);
        if (events.length > 0) lastSequence = events.at(-1)!.sequence;
        const outcome = opts.target ? waitOutcome(d, opts.target) : undefined;
        const key = progressKey(d);
        if (ctx.format !== "table") {
          if (events.length > 0 || key !== lastKey) {
            const json = toJson(WatchDeploymentResponseSchema, { ...msg, events });
            out.write(ctx.format === "json" ? `${JSON.stringify(json)}\n` : `---\n${formatYaml(json)}`);
          }
        } else {
          if (progressShown) out.write("\r\x1b[K");
          progressShown = false;
          for (const e of events) out.write(`${eventLine(e)}\n`);
          if (outcome) out.write(`${outcome.line}\n`);
          else if (tty) {
            out.write(ttyProgress(d, out.columns || 80));
            progressShown = true;
          } else if (key !== lastKey) out.write(`${progressEventLine(d)}\n`);
        }
        lastKey = key;
        if (outcome) return outcome.code;
      }
      // The stream ended (a server going away gracefully): watch again after a
      // pause; events already printed are not printed again.
      await new Promise((res) => setTimeout(res, 1000));
    }
  } finally {
    process.removeListener("SIGINT", detach);
  }
}

/** A lever's output, or with --wait its line then the followed rollout. */
async function leverAndMaybeWait(
  cmd: Command,
  name: string,
  wait: boolean | undefined,
  pull: (deploy: DeployClient) => Promise<Deployment>,
  did: (d: Deployment) => string,
  targetOf: (d: Deployment) => WaitTarget = (d) => ({ revision: revisionOf(d) }),
): Promise<void> {
  const ctx = contextFor(cmd);
  const before = wait ? await ctx.clients.deploy.getDeployment({ name }, timeout) : undefined;
  const d = await pull(ctx.clients.deploy);
  if (!wait) {
    process.stdout.write(render(ctx.format, { json: () => toJson(DeploymentSchema, d), table: () => leverText(d, did(d)) }));
    return;
  }
  if (ctx.format === "table") process.stdout.write(leverText(d, did(d)));
  process.exitCode = await followDeployment(ctx, name, { target: targetOf(d), afterSequence: lastSequence(before) });
}

/** A deployment's name as every command takes it. */
const NAME_HELP = "the deployment's name";

export function deployCommand(): Command {
  const deploy = new Command("deploy").description("deployments: long-running services as replicas on agents, rolled out revision by revision");

  deploy
    .command("apply")
    .description("create or update a deployment from a file: a changed spec rolls out a new revision; with --wait, follow the rollout")
    .argument("<file>", 'the deployment file, YAML or JSON; "-" reads stdin')
    .option("--wait", "follow the rollout until it is over, then exit with how it ended")
    .addHelpText("after", `\n${deploymentFileHelp}\n\n${waitExitHelp}\n\nCtrl-C stops following (exit 130); the rollout goes on.`)
    .action(async (file: string, opts: { wait?: boolean }, cmd: Command) => {
      // The file is read and checked before any call, so a bad one needs no server.
      const { name, spec } = readDeploymentFile(file, await loadValidator());
      const ctx = contextFor(cmd);
      const before = await getIfExists(ctx.clients.deploy, name);
      const res = await ctx.clients.deploy.applyDeployment({ name, spec }, timeout);
      const line = applyText(before?.deployment, res.deployment!, res.changed);
      if (!opts.wait) {
        process.stdout.write(render(ctx.format, { json: () => toJson(ApplyDeploymentResponseSchema, res), table: () => `${line}\n` }));
        return;
      }
      if (ctx.format === "table") process.stdout.write(`${line}\n`);
      process.exitCode = await followDeployment(ctx, name, { target: { revision: revisionOf(res.deployment!) }, afterSequence: lastSequence(before) });
    });

  deploy
    .command("ls")
    .description("list deployments by name: revision, state, healthy of wanted replicas, age")
    .action((_opts, cmd: Command) =>
      print(cmd, async ({ clients: { deploy }, bold }) => {
        const { items } = await collectPages(undefined, async (pageSize, pageToken) => {
          const res = await deploy.listDeployments({ pageSize, pageToken }, timeout);
          return { items: res.deployments, nextPageToken: res.nextPageToken };
        });
        const now = Date.now();
        return {
          json: () => items.map((d) => toJson(DeploymentSchema, d)),
          table: () => formatTable({ headers: DEPLOYMENT_LIST_HEADERS, rows: items.map((d) => deploymentRow(d, now)) }, bold),
        };
      }),
    );

  deploy
    .command("status")
    .description("show a deployment: state and why, revision, rollout progress, every replica, and the latest events")
    .argument("<name>", NAME_HELP)
    .action((name: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients: { deploy }, bold }) => {
        const res = await deploy.getDeployment({ name }, timeout);
        return { json: () => toJson(GetDeploymentResponseSchema, res), table: () => deploymentDetails(res.deployment!, res.events, { bold }) };
      }),
    );

  deploy
    .command("history")
    .description("list a deployment's revisions, newest first, marking the current and the stable one, then its latest events")
    .argument("<name>", NAME_HELP)
    .action((name: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients: { deploy }, bold }) => {
        const [revisions, got] = await Promise.all([deploy.listRevisions({ name }, timeout), deploy.getDeployment({ name }, timeout)]);
        return {
          json: () => ({ ...(toJson(ListRevisionsResponseSchema, revisions) as Record<string, JsonValue>), events: got.events.map((e) => toJson(DeploymentEventSchema, e)) }),
          table: () => historyText(revisions, got.events, { bold }),
        };
      }),
    );

  deploy
    .command("rollback")
    .description("roll out an earlier revision again: REVISION, or the last stable one before the current")
    .argument("<name>", NAME_HELP)
    .argument("[revision]", "the revision to run again (drover deploy history lists them)")
    .option("--wait", "follow the rollback until it is over, then exit with how it ended")
    .addHelpText("after", `\n${waitExitHelp}`)
    .action((name: string, revision: string | undefined, opts: { wait?: boolean }, cmd: Command) => {
      const to = revision === undefined ? 0 : parseInteger("REVISION", revision);
      if (to < (revision === undefined ? 0 : 1)) throw new CliError(Code.InvalidArgument, `REVISION: "${revision}" must be 1 or more`);
      return leverAndMaybeWait(cmd, name, opts.wait, async (deploy) => (await deploy.rollbackDeployment({ name, revision: to }, timeout)).deployment!, (d) => `rolling back to revision ${revisionOf(d)}`);
    });

  deploy
    .command("restart")
    .description("replace every replica, in batches as a rollout does, without a new revision")
    .argument("<name>", NAME_HELP)
    .option("--wait", "follow the restart until it is over, then exit with how it ended")
    .addHelpText("after", `\n${waitExitHelp}`)
    .action((name: string, opts: { wait?: boolean }, cmd: Command) =>
      leverAndMaybeWait(cmd, name, opts.wait, async (deploy) => (await deploy.restartDeployment({ name }, timeout)).deployment!, () => "restart requested"),
    );

  deploy
    .command("scale")
    .description("set how many replicas run (not for per-agent deployments); no new revision")
    .argument("<name>", NAME_HELP)
    .argument("<replicas>", "replicas wanted, 1 to 10000 (drover deploy stop stops them all)")
    .option("--wait", "follow the scaling until it is over, then exit with how it ended")
    .addHelpText("after", `\n${waitExitHelp}`)
    .action((name: string, count: string, opts: { wait?: boolean }, cmd: Command) => {
      const replicas = parseInteger("REPLICAS", count);
      if (replicas < 1) throw new CliError(Code.InvalidArgument, `REPLICAS: "${count}" must be 1 or more (drover deploy stop ${name} stops every replica)`);
      return leverAndMaybeWait(cmd, name, opts.wait, async (deploy) => (await deploy.scaleDeployment({ name, replicas }, timeout)).deployment!, (d) => `scaled to ${d.desiredReplicas}`);
    });

  const levers: [string, string, (deploy: DeployClient, name: string) => Promise<Deployment>, string][] = [
    ["pause", "stop a rollout where it is: no replica is started or stopped for it (crashed ones are still replaced)", async (c, name) => (await c.pauseDeployment({ name }, timeout)).deployment!, "paused"],
    ["resume", "go on with a paused rollout", async (c, name) => (await c.resumeDeployment({ name }, timeout)).deployment!, "resumed"],
    ["promote", "let a rollout waiting on its healthy canaries go on to every replica", async (c, name) => (await c.promoteDeployment({ name }, timeout)).deployment!, "promoted"],
  ];
  for (const [verb, description, call, did] of levers) {
    deploy
      .command(verb)
      .description(description)
      .argument("<name>", NAME_HELP)
      .action((name: string, _opts, cmd: Command) => leverAndMaybeWait(cmd, name, false, (c) => call(c, name), () => did));
  }

  deploy
    .command("stop")
    .description("stop every replica (drover deploy apply starts them again; drover deploy rm deletes it); with --wait, until none is left")
    .argument("<name>", NAME_HELP)
    .option("--wait", "follow the stop until every replica has stopped")
    .addHelpText("after", `\n${stopWaitExitHelp}`)
    .action((name: string, opts: { wait?: boolean }, cmd: Command) =>
      leverAndMaybeWait(cmd, name, opts.wait, async (deploy) => (await deploy.stopDeployment({ name }, timeout)).deployment!, () => "stop requested", (d) => ({ revision: revisionOf(d), stopped: true })),
    );

  deploy
    .command("rm")
    .description("delete a stopped deployment, its revisions and events")
    .argument("<name>", NAME_HELP)
    .action((name: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients: { deploy } }) => {
        await deploy.deleteDeployment({ name }, timeout);
        return { json: () => ({}), table: () => `deleted deployment ${name}\n` };
      }),
    );

  deploy
    .command("watch")
    .description("print a deployment's events as they happen, and its progress, until Ctrl-C")
    .argument("<name>", NAME_HELP)
    .action(async (name: string, _opts, cmd: Command) => {
      process.exitCode = await followDeployment(contextFor(cmd), name, { afterSequence: -1n });
    });

  return deploy;
}
