// Where the CLI connects and as whom: flags, then environment, then the config
// file `drover login` wrote, then dev-mode defaults (the local server and the
// admin token dev mode wrote to disk). Address and token are resolved each on
// its own, so DROVER_ADDR can point at a server while the token comes from the
// config file.

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createDroverTransport } from "../lib/grpc_transport.ts";
import { BidService } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { DeployService } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { LogService } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { configFile, readConfig, type CliConfig } from "./config.ts";
import { CliError } from "./errors.ts";

/** The dev-mode gRPC address, used when neither --addr, DROVER_ADDR nor the config file gives one. */
export const DEFAULT_ADDR = "http://127.0.0.1:7070";

/** Where to connect and with which token, resolved once per command. */
export interface Connection {
  /** Base URL of a gRPC (HTTP/2 cleartext or TLS) endpoint. */
  addr: string;
  /** The bearer token sent with every call. */
  token: string;
}

/** The admin-token file dev mode writes: $DROVER_DATA_DIR/admin-token, else ./.drover/admin-token. */
export function adminTokenFile(env: NodeJS.ProcessEnv, cwd: string): string {
  return resolve(cwd, join(env.DROVER_DATA_DIR || ".drover", "admin-token"));
}

/**
 * Flags win over the environment, which wins over the config file, which wins
 * over dev-mode defaults. The config file is read only when a flag or variable
 * is missing, and a malformed one is an error naming it. A missing token is
 * Unauthenticated (exit 4) and names every place looked in.
 */
export function resolveConnection(
  flags: { addr?: string; token?: string },
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
): Connection {
  let config: CliConfig | undefined;
  const file = configFile(env);
  const fromFile = () => (config ??= readConfig(file) ?? {});

  const addr = flags.addr || env.DROVER_ADDR || fromFile().addr || DEFAULT_ADDR;
  if (!/^https?:\/\//.test(addr)) {
    throw new CliError(Code.InvalidArgument, `--addr: "${addr}" must be a URL such as ${DEFAULT_ADDR}`);
  }
  let token = flags.token || env.DROVER_TOKEN || fromFile().token;
  if (!token) {
    const tokenFile = adminTokenFile(env, cwd);
    try {
      token = readFileSync(tokenFile, "utf8").trim();
    } catch {
      throw new CliError(
        Code.Unauthenticated,
        `no token: pass --token, set DROVER_TOKEN, run drover login (writes ${file}), or run where dev mode keeps ${tokenFile} (DROVER_DATA_DIR)`,
      );
    }
    if (!token) throw new CliError(Code.Unauthenticated, `no token: ${tokenFile} is empty`);
  }
  return { addr, token };
}

/** The generated clients the CLI uses, over one HTTP/2 connection. */
export interface CliClients {
  fleet: Client<typeof FleetService>;
  bid: Client<typeof BidService>;
  scheduler: Client<typeof SchedulerService>;
  log: Client<typeof LogService>;
  deploy: Client<typeof DeployService>;
}

export function createCliClients(conn: Connection): CliClients {
  const transport = createDroverTransport({ baseUrl: conn.addr, interceptors: [bearer(conn.token)] });
  return {
    fleet: createClient(FleetService, transport),
    bid: createClient(BidService, transport),
    scheduler: createClient(SchedulerService, transport),
    log: createClient(LogService, transport),
    deploy: createClient(DeployService, transport),
  };
}
