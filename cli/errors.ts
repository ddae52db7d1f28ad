// How a failure reaches the user: one line on stderr, `drover: <code>: <message>`,
// and an exit code by category so scripts can branch without parsing text.

import { Code, ConnectError } from "@connectrpc/connect";

/** Exit codes by category; `drover --help` prints this table. */
export const ExitCode = {
  /** Anything not listed below (internal, failed precondition, already exists, ...). */
  other: 1,
  /** A bad command line, or a request the server rejected as invalid. */
  usage: 2,
  /** The job, agent or token does not exist. */
  notFound: 3,
  /** No token, a bad token, or a role that may not do this. */
  auth: 4,
  /** The server cannot be reached or asked to retry later. */
  unavailable: 5,
} as const;

export const exitCodesHelp = `Exit codes:
  0  success
  1  other errors (failed precondition, already exists, internal, ...)
  2  usage error or invalid argument
  3  not found
  4  unauthenticated or permission denied (includes: no token found)
  5  unavailable or deadline exceeded (server down or busy; retry)
  Once a followed job or run ends, \`jobs watch\`, \`run --follow\`, \`runs watch\` and
  \`runs submit --follow\` exit with its status instead (see their --help).`;

/** A failure the CLI detected itself, before or instead of a call. */
export class CliError extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(message);
  }
}

/** `invalid_argument` for Code.InvalidArgument: the spelling gRPC and Connect use on the wire. */
export function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

export function exitCodeFor(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return ExitCode.usage;
    case Code.NotFound:
      return ExitCode.notFound;
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return ExitCode.auth;
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return ExitCode.unavailable;
    default:
      return ExitCode.other;
  }
}

/** The line to print and the code to exit with, for anything an action threw. */
export function describeFailure(err: unknown): { line: string; exitCode: number } {
  if (err instanceof CliError) {
    return { line: `drover: ${codeName(err.code)}: ${err.message}`, exitCode: exitCodeFor(err.code) };
  }
  const error = ConnectError.from(err);
  return { line: `drover: ${codeName(error.code)}: ${error.rawMessage}`, exitCode: exitCodeFor(error.code) };
}
