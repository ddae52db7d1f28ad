// What `drover logs` reads and how it prints it, as pure functions: the
// TARGET syntax, --since/--until times, and the line writer that puts each
// stream's bytes on stdout or stderr with a source prefix when several
// sources are merged. logs.ts does the calls.

import { Code } from "@connectrpc/connect";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Stream, type LogLine } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { CliError } from "./errors.ts";
import { parseDuration } from "./parse.ts";

/** Whose output: one attempt, every attempt of a job, every stage of a run, one stage of it, or a deployment's replicas. */
export type LogTarget =
  | { kind: "attempt"; attemptId: string }
  /** A bare id: a job's, or (when no job has it) an attempt's. */
  | { kind: "job"; jobId: string }
  | { kind: "run"; runId: string }
  | { kind: "stage"; runId: string; stageName: string }
  /** replica: a replica's id or slot; "" for all of them. */
  | { kind: "deployment"; deployment: string; replica: string };

/** `drover logs --help`: the TARGET syntax. */
export const TARGET_HELP = `TARGET is one of:
  JOB_ID          every attempt of the job, oldest first (an id that is no job's
                  is taken as an attempt's)
  --attempt ID    one attempt (instead of TARGET)
  run:RUN_ID      every stage of the run
  RUN_ID/STAGE    one stage of the run (also run:RUN_ID/STAGE)
  deployment/NAME every replica of the deployment, merged by time (with -f,
                  also those a rollout starts, until the deployment is deleted)
  deployment/NAME/REPLICA
                  one replica of it: its slot (0, 1, ...) or its id`;

const STAGE_NAME = /^[A-Za-z0-9._-]+$/;
// As drover.deploy.v1 names deployments.
const DEPLOYMENT_NAME = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DEPLOYMENT_PREFIX = "deployment/";

/** The TARGET argument and --attempt, checked: exactly one of them. */
export function parseTarget(target: string | undefined, attempt: string | undefined): LogTarget {
  if (attempt !== undefined) {
    if (target !== undefined) throw new CliError(Code.InvalidArgument, `--attempt ${attempt} names the attempt: give no TARGET ("${target}") with it`);
    if (attempt === "") throw new CliError(Code.InvalidArgument, "--attempt: the attempt id is empty");
    return { kind: "attempt", attemptId: attempt };
  }
  if (target === undefined || target === "") throw new CliError(Code.InvalidArgument, `a TARGET is required (a job id, run:RUN_ID, RUN_ID/STAGE, deployment/NAME) or --attempt ID`);
  if (target.startsWith(DEPLOYMENT_PREFIX)) {
    const rest = target.slice(DEPLOYMENT_PREFIX.length);
    const slash = rest.indexOf("/");
    const deployment = slash >= 0 ? rest.slice(0, slash) : rest;
    const replica = slash >= 0 ? rest.slice(slash + 1) : "";
    if (deployment.length > 63 || !DEPLOYMENT_NAME.test(deployment)) {
      throw new CliError(Code.InvalidArgument, `"${target}": "${deployment}" is not a deployment name (1-63 lowercase letters, digits and '-', starting with a letter)`);
    }
    if (slash >= 0 && (replica === "" || replica.length > 64)) {
      throw new CliError(Code.InvalidArgument, `"${target}": the replica is missing or too long (deployment/NAME/REPLICA: a slot or a replica id)`);
    }
    return { kind: "deployment", deployment, replica };
  }
  const rest = target.startsWith("run:") ? target.slice(4) : undefined;
  const slash = target.indexOf("/");
  if (slash >= 0) {
    const runId = (rest ?? target).slice(0, (rest ?? target).indexOf("/"));
    const stageName = target.slice(slash + 1);
    if (runId === "" || !STAGE_NAME.test(stageName)) {
      throw new CliError(Code.InvalidArgument, `"${target}" is not RUN_ID/STAGE (a stage name is letters, digits, '.', '_' or '-')`);
    }
    return { kind: "stage", runId, stageName };
  }
  if (rest !== undefined) {
    if (rest === "") throw new CliError(Code.InvalidArgument, `"${target}": the run id is missing (run:RUN_ID)`);
    return { kind: "run", runId: rest };
  }
  return { kind: "job", jobId: target };
}

/** "10m" (that long ago) or an RFC 3339 time ("2026-12-04T10:00:00Z") → epoch ms. */
export function parseTime(flag: string, text: string, now = Date.now()): number {
  if (/^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?)?(Z|[+-]\d\d:?\d\d)?$/i.test(text)) {
    const ms = Date.parse(text);
    if (!Number.isNaN(ms)) return ms;
  }
  if (/^\d/.test(text) && !/^\d{4}-/.test(text)) {
    try {
      return now - Math.round(parseDuration(flag, text) * 1000);
    } catch {
      // Said below, with both forms.
    }
  }
  throw new CliError(Code.InvalidArgument, `${flag}: "${text}" is neither a duration ago (10m, 2h) nor an RFC 3339 time (2026-12-04T10:00:00Z)`);
}

/** --stream's words. */
export const STREAM_WORDS: Record<string, Stream> = { stdout: Stream.STDOUT, stderr: Stream.STDERR, system: Stream.SYSTEM };

export function parseStream(text: string | undefined): Stream {
  if (text === undefined) return Stream.UNSPECIFIED;
  const stream = STREAM_WORDS[text.toLowerCase()];
  if (stream === undefined) throw new CliError(Code.InvalidArgument, `--stream: "${text}" is not one of ${Object.keys(STREAM_WORDS).join(", ")}`);
  return stream;
}

export function streamWord(stream: Stream): string {
  return Object.entries(STREAM_WORDS).find(([, s]) => s === stream)?.[0] ?? "unspecified";
}

/** A line as `-o json` prints it: LogLine's JSON fields, with the bytes as text (UTF-8) instead of base64. */
export function lineJson(line: LogLine, source: string): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {
    attemptId: line.attemptId,
    jobId: line.jobId,
    stream: streamWord(line.stream),
    commandIndex: line.commandIndex,
    offset: Number(line.offset),
    text: new TextDecoder().decode(line.data),
  };
  if (line.stageName) out.stageName = line.stageName;
  if (line.replicaId) out.replicaId = line.replicaId;
  if (line.replicaSlot) out.replicaSlot = line.replicaSlot;
  if (line.revision) out.revision = line.revision;
  if (line.time) out.time = timestampDate(line.time).toISOString();
  if (line.partial) out.partial = true;
  if (line.marker) out.marker = line.marker;
  if (source) out.source = source;
  return out;
}

/** Where text output goes: the bytes as they are. */
export interface Outputs {
  stdout: (bytes: Uint8Array | string) => void;
  stderr: (bytes: Uint8Array | string) => void;
}

/**
 * Writes lines as text: stdout lines to stdout, stderr and system lines to
 * stderr, each prefixed with its source (`[build] `, `[attempt 2] `) when
 * one is given. A line the Log service cut (partial) goes on without a
 * prefix; if another source's line comes in between, it is ended first so
 * that no two sources share a line. Marker lines (the Log service's own,
 * "truncated") go to stderr in brackets.
 */
export class TextLineWriter {
  // Per output: the source and stream whose line is still open there.
  private readonly open = new Map<"stdout" | "stderr", string>();

  constructor(private readonly out: Outputs) {}

  write(line: LogLine, source: string): void {
    const fd = line.stream === Stream.STDOUT ? "stdout" : "stderr";
    const key = `${line.attemptId}\u0000${line.stream}`;
    const openKey = this.open.get(fd);
    const prefix = source ? `[${source}] ` : "";
    if (line.marker) {
      if (openKey !== undefined) this.out[fd]("\n");
      this.open.delete(fd);
      this.out.stderr(`${prefix}[${line.marker}] ${new TextDecoder().decode(line.data).trimEnd()}\n`);
      return;
    }
    if (openKey !== undefined && openKey !== key) this.out[fd]("\n");
    if (openKey !== key && prefix) this.out[fd](prefix);
    this.out[fd](line.data);
    const ends = line.data.length > 0 && line.data[line.data.length - 1] === 0x0a;
    if (ends || (!line.partial && line.data.length === 0)) this.open.delete(fd);
    else this.open.set(fd, key);
  }

  /** Whether a line printed on `fd` has not ended yet (a progress line there would clobber it). */
  isOpen(fd: "stdout" | "stderr"): boolean {
    return this.open.has(fd);
  }

  /** Ends a line left open (output that ended without a newline) so that what is printed next starts on its own line; `run --follow` does before its last state line. */
  finish(): void {
    for (const fd of this.open.keys()) this.out[fd]("\n");
    this.open.clear();
  }
}

/**
 * The prefix of a line's source: "" for one attempt; "attempt N" for a job
 * (or a run's stage) with several attempts; the stage's name (and "attempt
 * N" if it has several) for a whole run; "slot N" for a deployment's
 * replica, with "rev R" once lines of several revisions were seen (a
 * rollout: two replicas can share a slot).
 */
export function sourceLabel(
  kind: LogTarget["kind"],
  line: Pick<LogLine, "stageName"> & Partial<Pick<LogLine, "replicaSlot" | "revision">>,
  attempt: { number: number; of: number },
  revisionsSeen = 1,
): string {
  const nth = attempt.of > 1 ? `attempt ${attempt.number}` : "";
  switch (kind) {
    case "deployment":
      return [`slot ${line.replicaSlot || "?"}`, revisionsSeen > 1 ? `rev ${line.revision}` : ""].filter(Boolean).join(" ");
    case "attempt":
      return "";
    case "job":
    case "stage":
      return nth;
    case "run":
      return [line.stageName || "?", nth].filter(Boolean).join(" ");
  }
}
