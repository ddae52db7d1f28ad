// `drover tokens` and `drover agent-tokens`: FleetService API and agent tokens.

import { toJson } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Command } from "commander";
import {
  AgentTokenSchema,
  ApiTokenSchema,
  CreateAgentTokenResponseSchema,
  CreateApiTokenResponseSchema,
  Role,
  type AgentToken,
  type ApiToken,
} from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { CALL_TIMEOUT_MS, print } from "./context.ts";
import { CliError } from "./errors.ts";
import { ago, enumText, formatFields, formatTable, labelText } from "./output.ts";
import { parseDuration, parseLabels } from "./parse.ts";

const roles: Record<string, Role> = { admin: Role.ADMIN, operator: Role.OPERATOR };
const collect = (value: string, previous: string[]) => [...previous, value];
const when = (t: Timestamp | undefined) => (t ? ago(timestampMs(t)) : "-");
const ttlOf = (text: string | undefined) => (text === undefined ? undefined : durationFromMs(parseDuration("--ttl", text) * 1000));

function apiTokenRow(t: ApiToken): string[] {
  return [t.id, t.name, enumText(Role, t.role), when(t.createTime), when(t.expireTime), when(t.revokeTime)];
}

function agentTokenRow(t: AgentToken): string[] {
  return [t.id, t.name, labelText(t.labels), String(t.registrations), when(t.createTime), when(t.expireTime), when(t.revokeTime)];
}

const apiHeaders = ["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "REVOKED"];
const agentHeaders = ["ID", "NAME", "LABELS", "REGISTRATIONS", "CREATED", "EXPIRES", "REVOKED"];
const secretNote = "The secret is shown only once; keep it now.";

export function tokensCommand(): Command {
  const tokens = new Command("tokens").description("API tokens for people and scripts (admin only)");

  tokens
    .command("create")
    .description("create an API token and print its secret once")
    .requiredOption("--name <name>", "what the token is for")
    .requiredOption("--role <role>", "admin or operator")
    .option("--ttl <duration>", "how long it lives, e.g. 1h, 30d (default: forever; at least 1m)")
    .action((opts: { name: string; role: string; ttl?: string }, cmd: Command) =>
      print(cmd, async ({ clients }) => {
        const role = roles[opts.role];
        if (role === undefined) throw new CliError(Code.InvalidArgument, `--role: "${opts.role}" is not admin or operator`);
        const res = await clients.fleet.createApiToken({ name: opts.name, role, ttl: ttlOf(opts.ttl) }, { timeoutMs: CALL_TIMEOUT_MS });
        return {
          json: () => toJson(CreateApiTokenResponseSchema, res),
          table: () =>
            formatFields([
              ["id", res.token!.id],
              ["name", res.token!.name],
              ["role", enumText(Role, res.token!.role)],
              ["expires", when(res.token!.expireTime)],
              ["secret", res.secret],
            ]) + `${secretNote}\n`,
        };
      }),
    );

  tokens
    .command("ls")
    .description("list API tokens, revoked ones included")
    .action((_opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const all: ApiToken[] = [];
        let pageToken = "";
        do {
          const res = await clients.fleet.listApiTokens({ pageToken }, { timeoutMs: CALL_TIMEOUT_MS });
          all.push(...res.tokens);
          pageToken = res.nextPageToken;
        } while (pageToken);
        return {
          json: () => all.map((t) => toJson(ApiTokenSchema, t)),
          table: () => formatTable({ headers: apiHeaders, rows: all.map(apiTokenRow) }, bold),
        };
      }),
    );

  tokens
    .command("revoke")
    .description("revoke an API token; calls with it fail from now on")
    .argument("<id>", "the token's id (from tokens ls)")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const res = await clients.fleet.revokeApiToken({ id }, { timeoutMs: CALL_TIMEOUT_MS });
        return {
          json: () => toJson(ApiTokenSchema, res.token!),
          table: () => formatTable({ headers: apiHeaders, rows: [apiTokenRow(res.token!)] }, bold),
        };
      }),
    );
  return tokens;
}

export function agentTokensCommand(): Command {
  const tokens = new Command("agent-tokens").description("tokens that let machines register as agents (admin only)");

  tokens
    .command("create")
    .description("create an agent token and print its secret once")
    .requiredOption("--name <name>", "what the token is for, e.g. the rack or site")
    .option("--label <k=v>", "label given to every agent that registers with it (repeatable)", collect, [])
    .option("--ttl <duration>", "how long it can register agents, e.g. 1h (default: forever; at least 1m)")
    .action((opts: { name: string; label: string[]; ttl?: string }, cmd: Command) =>
      print(cmd, async ({ clients }) => {
        const labels = parseLabels("--label", opts.label);
        const res = await clients.fleet.createAgentToken({ name: opts.name, labels, ttl: ttlOf(opts.ttl) }, { timeoutMs: CALL_TIMEOUT_MS });
        return {
          json: () => toJson(CreateAgentTokenResponseSchema, res),
          table: () =>
            formatFields([
              ["id", res.token!.id],
              ["name", res.token!.name],
              ["labels", labelText(res.token!.labels)],
              ["expires", when(res.token!.expireTime)],
              ["secret", res.secret],
            ]) + `${secretNote}\n`,
        };
      }),
    );

  tokens
    .command("ls")
    .description("list agent tokens, revoked ones included")
    .action((_opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const all: AgentToken[] = [];
        let pageToken = "";
        do {
          const res = await clients.fleet.listAgentTokens({ pageToken }, { timeoutMs: CALL_TIMEOUT_MS });
          all.push(...res.tokens);
          pageToken = res.nextPageToken;
        } while (pageToken);
        return {
          json: () => all.map((t) => toJson(AgentTokenSchema, t)),
          table: () => formatTable({ headers: agentHeaders, rows: all.map(agentTokenRow) }, bold),
        };
      }),
    );

  tokens
    .command("revoke")
    .description("revoke an agent token so no new agent can register with it")
    .argument("<id>", "the token's id (from agent-tokens ls)")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const res = await clients.fleet.revokeAgentToken({ id }, { timeoutMs: CALL_TIMEOUT_MS });
        return {
          json: () => toJson(AgentTokenSchema, res.token!),
          table: () => formatTable({ headers: agentHeaders, rows: [agentTokenRow(res.token!)] }, bold),
        };
      }),
    );
  return tokens;
}
