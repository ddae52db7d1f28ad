import { openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";

/**
 * Claims a data directory for this process with a pid file, so two dev-mode
 * processes never open one embedded database (which would corrupt it). A pid
 * file left by a process that is gone is taken over. Returns the release
 * function.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = join(dataDir, "drover.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number.parseInt(readFileSync(file, "utf8"), 10);
      if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
        throw new Error(`${dataDir} is in use by another Drover process (pid ${holder}); stop it or use another --data-dir`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new Error(`cannot lock ${dataDir}: ${file} keeps reappearing`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
