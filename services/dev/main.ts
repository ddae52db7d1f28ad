// `npm start`: Drover in dev mode. Prints where it listens and the admin
// token, then runs until SIGTERM or SIGINT.

import { parseArgs } from "node:util";
import { ConfigError, readDevConfig } from "../../lib/config.ts";
import { closeOnSignals } from "../../lib/host/server.ts";
import { createLogger } from "../../lib/logger.ts";
import { startDev } from "./dev.ts";

const started = performance.now();
const { values } = parseArgs({ options: { "data-dir": { type: "string" } }, strict: true });

let config;
try {
  config = readDevConfig(process.env, values["data-dir"] ? { dataDir: values["data-dir"] } : {});
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`drover: bad configuration: ${err.message}`);
  process.exit(2);
}

const logger = createLogger(config.logLevel, { mode: "dev" });
let plane;
try {
  plane = await startDev(config, logger);
} catch (err) {
  logger.fatal({ err }, "dev mode failed to start");
  console.error(`drover: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
closeOnSignals(plane.close, logger);
const ms = Math.round(performance.now() - started);
logger.info({ ms, grpcUrl: plane.server.grpcUrl, httpUrl: plane.server.httpUrl }, "drover dev mode ready");

// The human-readable banner goes to stderr so that stdout stays pure JSON logs.
process.stderr.write(
  [
    "",
    `Drover is running in dev mode (ready in ${ms} ms; data in ${config.dataDir}).`,
    `  gRPC, Connect, gRPC-Web over HTTP/2 (h2c): ${plane.server.grpcUrl}`,
    `  Connect and gRPC-Web over HTTP/1.1:        ${plane.server.httpUrl}`,
    `  admin token (also in ${plane.adminTokenFile}):`,
    `    ${plane.adminToken}`,
    `  try: npx buf curl --http2-prior-knowledge --list-services ${plane.server.grpcUrl}`,
    "",
  ].join("\n") + "\n",
);
