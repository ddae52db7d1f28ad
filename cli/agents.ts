// `drover agents`: the machines in the fleet, and an operator's levers on them.

import { toJson } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Command } from "commander";
import {
  AgentSchema,
  AgentStatus,
  Schedulability,
  type Agent,
} from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { CALL_TIMEOUT_MS, print, type CommandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { ago, enumText, formatFields, formatTable, labelText } from "./output.ts";
import { parseDuration, parseLabels } from "./parse.ts";

const statuses: Record<string, AgentStatus> = {
  online: AgentStatus.ONLINE,
  stale: AgentStatus.STALE,
  offline: AgentStatus.OFFLINE,
};
const collect = (value: string, previous: string[]) => [...previous, value];
const when = (t: Timestamp | undefined) => (t ? ago(timestampMs(t)) : "-");
const cpu = (millis: number | undefined) => (millis === undefined ? "-" : `${(millis / 1000).toFixed(1)}`);
const gib = (bytes: bigint | undefined) => (bytes === undefined ? "-" : `${(Number(bytes) / 2 ** 30).toFixed(1)}Gi`);

const headers = ["ID", "HOSTNAME", "STATUS", "SCHEDULING", "CPU FREE/TOTAL", "MEM FREE/TOTAL", "LABELS", "HEARTBEAT"];

function row(a: Agent): string[] {
  return [
    a.id,
    a.hostname,
    enumText(AgentStatus, a.status),
    enumText(Schedulability, a.schedulability),
    `${cpu(a.free?.cpuMillis)}/${cpu(a.total?.cpuMillis)}`,
    `${gib(a.free?.memoryBytes)}/${gib(a.total?.memoryBytes)}`,
    labelText({ ...a.labels, ...a.operatorLabels }),
    when(a.lastHeartbeatTime),
  ];
}

/** One agent in detail: its fields, then its status history. */
function details(a: Agent, bold: (s: string) => string): string {
  const fields = formatFields([
    ["id", a.id],
    ["hostname", a.hostname],
    ["version", a.version],
    ["status", enumText(AgentStatus, a.status)],
    ["scheduling", enumText(Schedulability, a.schedulability)],
    ["drain deadline", a.drainDeadline ? new Date(timestampMs(a.drainDeadline)).toISOString() : "-"],
    ["labels", labelText(a.labels)],
    ["operator labels", labelText(a.operatorLabels)],
    ["drivers", a.drivers.join(",") || "-"],
    ["cpu free/total", `${cpu(a.free?.cpuMillis)}/${cpu(a.total?.cpuMillis)}`],
    ["mem free/total", `${gib(a.free?.memoryBytes)}/${gib(a.total?.memoryBytes)}`],
    ["last heartbeat", when(a.lastHeartbeatTime)],
    ["registered", when(a.registerTime)],
    ["connected", when(a.connectTime)],
  ]);
  if (a.history.length === 0) return fields;
  const history = formatTable(
    {
      headers: ["WHEN", "FROM", "TO", "REASON"],
      rows: a.history.map((h) => [when(h.time), enumText(AgentStatus, h.from), enumText(AgentStatus, h.to), h.reason]),
    },
    bold,
  );
  return `${fields}\n${history}`;
}

/** An action that takes an agent id, calls `call`, and prints the agent it returns. */
function agentAction(call: (ctx: CommandContext, id: string, opts: Record<string, unknown>) => Promise<{ agent?: Agent }>) {
  return (id: string, opts: Record<string, unknown>, cmd: Command) =>
    print(cmd, async (ctx) => {
      const { agent } = await call(ctx, id, opts);
      return { json: () => toJson(AgentSchema, agent!), table: () => details(agent!, ctx.bold) };
    });
}

export function agentsCommand(): Command {
  const agents = new Command("agents").description("the machines in the fleet");
  const timeout = { timeoutMs: CALL_TIMEOUT_MS };

  agents
    .command("ls")
    .description("list agents")
    .option("--status <status>", "only online, stale or offline agents")
    .option("--label <k=v>", "only agents with this label (repeatable; all must match)", collect, [])
    .action((opts: { status?: string; label: string[] }, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        let status = AgentStatus.UNSPECIFIED;
        if (opts.status !== undefined) {
          const s = statuses[opts.status];
          if (s === undefined) throw new CliError(Code.InvalidArgument, `--status: "${opts.status}" is not online, stale or offline`);
          status = s;
        }
        const labelSelector = parseLabels("--label", opts.label);
        const all: Agent[] = [];
        let pageToken = "";
        do {
          const res = await clients.fleet.listAgents({ status, labelSelector, pageToken }, timeout);
          all.push(...res.agents);
          pageToken = res.nextPageToken;
        } while (pageToken);
        return {
          json: () => all.map((a) => toJson(AgentSchema, a)),
          table: () => formatTable({ headers, rows: all.map(row) }, bold),
        };
      }),
    );

  agents
    .command("get")
    .description("show one agent with its status history")
    .argument("<id>", "the agent's id")
    .action(agentAction(({ clients }, id) => clients.fleet.getAgent({ id }, timeout)));

  agents
    .command("drain")
    .description("stop placing work on an agent and let running work finish")
    .argument("<id>", "the agent's id")
    .option("--reason <text>", "why, shown in the agent's history")
    .option("--deadline <duration>", "running work should end within this, e.g. 10m (default: let it finish)")
    .action(
      agentAction(({ clients }, id, opts) => {
        const { reason, deadline } = opts as { reason?: string; deadline?: string };
        const deadlineTs = deadline === undefined ? undefined : timestampFromMs(Date.now() + parseDuration("--deadline", deadline) * 1000);
        return clients.fleet.drainAgent({ id, reason: reason ?? "", deadline: deadlineTs }, timeout);
      }),
    );

  agents
    .command("undrain")
    .description("make a draining agent eligible for work again")
    .argument("<id>", "the agent's id")
    .action(agentAction(({ clients }, id) => clients.fleet.undrainAgent({ id }, timeout)));

  agents
    .command("cordon")
    .description("stop placing new work on an agent; running work is untouched")
    .argument("<id>", "the agent's id")
    .action(agentAction(({ clients }, id) => clients.fleet.cordonAgent({ id }, timeout)));

  agents
    .command("uncordon")
    .description("make a cordoned agent eligible for work again")
    .argument("<id>", "the agent's id")
    .action(agentAction(({ clients }, id) => clients.fleet.uncordonAgent({ id }, timeout)));

  agents
    .command("labels")
    .description("replace an agent's operator labels (none given: clear them)")
    .argument("<id>", "the agent's id")
    .argument("[labels...]", "k=v pairs")
    .action((id: string, pairs: string[], _opts, cmd: Command) =>
      print(cmd, async (ctx) => {
        const labels = parseLabels("labels", pairs);
        const { agent } = await ctx.clients.fleet.setAgentLabels({ id, labels }, timeout);
        return { json: () => toJson(AgentSchema, agent!), table: () => details(agent!, ctx.bold) };
      }),
    );

  agents
    .command("rm")
    .description("forget an offline agent")
    .argument("<id>", "the agent's id")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients }) => {
        await clients.fleet.deleteAgent({ id }, timeout);
        return { json: () => ({ id, deleted: true }), table: () => `deleted agent ${id}\n` };
      }),
    );
  return agents;
}
