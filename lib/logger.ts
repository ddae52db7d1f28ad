import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.ts";

export type { Logger };

/**
 * The root logger of a process. Components take a child
 * (`logger.child({ component })`) and log ids as fields.
 */
export function createLogger(level: LogLevel, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...base } });
}
