// `drover dev`: dev mode, exactly what `npm start` runs, as a child process so
// that its own argument parsing and signal handling stay as they are.

import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { Command } from "commander";

export function devCommand(): Command {
  return new Command("dev")
    .description("run the whole control plane in one process (same as npm start); data in ./.drover")
    .option("--data-dir <dir>", "where the database and admin token live (default: $DROVER_DATA_DIR or ./.drover)")
    .action((opts: { dataDir?: string }) => {
      // services/bin.mjs runs dev mode from its bundle (or through tsx where it cannot be built).
      const bin = fileURLToPath(new URL("../services/bin.mjs", import.meta.url));
      const args = [bin, "dev", ...(opts.dataDir ? ["--data-dir", opts.dataDir] : [])];
      const child = spawn(process.execPath, args, { stdio: "inherit" });
      // The child gets Ctrl-C from the terminal itself; forward what arrives only to us.
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
      return new Promise<void>((res) =>
        child.on("exit", (code, signal) => {
          process.exitCode = code ?? 128 + (signal ? constants.signals[signal] : 0);
          res();
        }),
      );
    });
}
