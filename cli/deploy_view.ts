// How deployments, their replicas, revisions and events read on a terminal,
// and when a followed rollout is over and with what exit status. Pure: every
// function takes `now` where time matters, so the tests fix it.

import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import {
  DeploymentState,
  ReplicaState,
  type Deployment,
  type DeploymentEvent,
  type ListRevisionsResponse,
  type Replica,
  type Revision,
  type Rollout,
} from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { commandText, truncate } from "./job_view.ts";
import { ago, enumText, formatFields, formatTable } from "./output.ts";

type Bold = (s: string) => string;
const plain: Bold = (s) => s;

// ---- Small pieces ----------------------------------------------------------------

/** DeploymentState.WAITING_PROMOTION → "waiting_promotion": one word, so a table column splits cleanly. */
export function stateText(state: DeploymentState): string {
  return enumText(DeploymentState, state);
}

const when = (t: Timestamp | undefined, now: number) => (t ? ago(timestampMs(t), now) : "-");
const iso = (t: Timestamp | undefined) => (t ? new Date(timestampMs(t)).toISOString() : "-");
/** Local wall-clock time, for lines printed as things happen. */
export const clock = (ms: number) => new Date(ms).toTimeString().slice(0, 8);

/** The number of the revision being run; 0 before the first apply is read. */
export function revisionOf(d: Deployment): number {
  return d.currentRevision?.number ?? 0;
}

/** "3 (stable)", "3 (stable: 2)", "1 (none stable yet)". */
export function revisionText(d: Deployment): string {
  const current = revisionOf(d);
  if (d.stableRevision === 0) return `${current} (none stable yet)`;
  return d.stableRevision === current ? `${current} (stable)` : `${current} (stable: ${d.stableRevision})`;
}

/** What one replica runs: "./server --port 8080", or the image for docker. */
export function specCommand(d: Deployment): string {
  const exec = d.currentRevision?.spec?.exec;
  const commands = exec?.commands.map((c) => commandText(c.argv)).join(" && ") || "-";
  return exec?.image ? `${exec.image}: ${commands}` : commands;
}

/** "5/10": replicas healthy on the current revision of those wanted. */
export function healthyText(d: Deployment): string {
  return `${d.healthyReplicas}/${d.desiredReplicas}`;
}

/** "batch 2 of 4, 5/10 healthy, 1 starting": a rollout's progress. */
export function progressText(r: Rollout): string {
  const parts = [`batch ${r.batch} of ${r.batches}`, `${r.healthy}/${r.desired} healthy`];
  if (r.inFlight > 0) parts.push(`${r.inFlight} starting`);
  return parts.join(", ");
}

/** "revision 2 → 3: batch 2 of 4, 5/10 healthy; started 3m ago" (or "ended 1m ago"). */
export function rolloutText(r: Rollout | undefined, now = Date.now()): string {
  if (!r) return "-";
  const what = r.fromRevision === 0 ? `revision ${r.toRevision}` : r.fromRevision === r.toRevision ? `revision ${r.toRevision} (restart)` : `revision ${r.fromRevision} → ${r.toRevision}`;
  const time = r.endTime ? `ended ${when(r.endTime, now)}` : r.startTime ? `started ${when(r.startTime, now)}` : "";
  return `${what}: ${progressText(r)}${time ? `; ${time}` : ""}`;
}

/** A message of several lines (a failure with the replica's last output) as one field value, later lines indented under the first. */
function indentLines(text: string, indent: string): string {
  return text.split("\n").join(`\n${indent}`);
}

// ---- ls --------------------------------------------------------------------------

export const DEPLOYMENT_LIST_HEADERS = ["NAME", "REVISION", "STATE", "HEALTHY", "AGE"];

/** One deployment in `deploy ls`. */
export function deploymentRow(d: Deployment, now = Date.now()): string[] {
  return [d.name, String(revisionOf(d)), stateText(d.state), healthyText(d), when(d.createTime, now)];
}

// ---- status ----------------------------------------------------------------------

export const REPLICA_HEADERS = ["SLOT", "REPLICA", "REVISION", "STATE", "HEALTH", "AGENT", "RESTARTS", "PORT", "JOB", "MESSAGE"];

/** "healthy", "unhealthy", "unknown": what the agent last said. */
export function healthText(r: Replica): string {
  if (r.state === ReplicaState.PENDING) return "-";
  switch (r.health?.state) {
    case HealthState.HEALTHY:
      return "healthy";
    case HealthState.UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

/** One replica's row: its place, what it runs, where, and why it is as it is. */
export function replicaRow(r: Replica): string[] {
  const health = r.health;
  const why = health?.state === HealthState.UNHEALTHY && health.message ? health.message : r.message;
  return [
    r.slot,
    r.id.slice(0, 8),
    `${r.revision}${r.canary ? " (canary)" : ""}`,
    enumText(ReplicaState, r.state),
    healthText(r),
    r.agentId || "-",
    String(health?.restarts ?? 0),
    health?.port ? String(health.port) : "-",
    r.jobId || "-",
    truncate((why || "-").split("\n")[0]!, 80),
  ];
}

export function replicasTable(replicas: Replica[], bold: Bold = plain): string {
  return formatTable({ headers: REPLICA_HEADERS, rows: replicas.map(replicaRow) }, bold);
}

export const EVENT_HEADERS = ["TIME", "REVISION", "EVENT", "MESSAGE"];

/** Events oldest first; a message of several lines takes a row per line, the later ones indented. */
export function eventsTable(events: DeploymentEvent[], bold: Bold = plain, now = Date.now()): string {
  const rows = events.flatMap((e) => {
    const [first, ...more] = e.message.split("\n");
    return [[when(e.time, now), String(e.revision || "-"), e.kind, first ?? ""], ...more.map((line) => ["", "", "", `  ${line}`])];
  });
  return formatTable({ headers: EVENT_HEADERS, rows }, bold);
}

/** `deploy status`: the deployment, its rollout, its replicas, then its latest events. */
export function deploymentDetails(d: Deployment, events: DeploymentEvent[], opts: { bold?: Bold; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const bold = opts.bold ?? plain;
  const spec = d.currentRevision?.spec;
  const fields: [string, string][] = [
    ["name", d.name],
    ["id", d.id],
    ["state", stateText(d.state)],
  ];
  if (d.statusMessage) fields.push(["status", indentLines(d.statusMessage, "  ")]);
  fields.push(
    ["revision", revisionText(d)],
    ["replicas", `${healthyText(d)} healthy${spec?.perAgent ? " (one per matching agent)" : ""}`],
    ["rollout", rolloutText(d.rollout, now)],
    ["command", specCommand(d)],
  );
  if (spec?.driver && spec.driver !== "process") fields.push(["driver", spec.driver]);
  fields.push(["created", `${iso(d.createTime)} (${when(d.createTime, now)})`], ["updated", `${iso(d.updateTime)} (${when(d.updateTime, now)})`]);
  const replicas = d.replicas.length > 0 ? replicasTable(d.replicas, bold) : "No replicas.\n";
  const latest = events.length > 0 ? `\n${bold("Events:")}\n${eventsTable(events, bold, now)}` : "";
  return `${formatFields(fields)}\n${replicas}${latest}`;
}

// ---- history ---------------------------------------------------------------------

// No replica count: it is not part of a revision (changing it alone scales).
export const REVISION_HEADERS = ["REVISION", "", "CREATED", "HASH", "COMMAND"];

/** "current, stable", "current", "stable" or "". */
export function revisionMarks(n: number, current: number, stable: number): string {
  return [n === current ? "current" : "", n === stable ? "stable" : ""].filter(Boolean).join(", ");
}

function revisionRow(r: Revision, current: number, stable: number, now: number): string[] {
  const spec = r.spec;
  const commands = spec?.exec?.commands.map((c) => commandText(c.argv)).join(" && ") || "-";
  return [String(r.number), revisionMarks(r.number, current, stable), when(r.createTime, now), r.specHash.slice(0, 12), truncate(spec?.exec?.image ? `${spec.exec.image}: ${commands}` : commands, 60)];
}

/** `deploy history`: revisions newest first, marked current and stable, then the latest events. */
export function historyText(res: ListRevisionsResponse, events: DeploymentEvent[], opts: { bold?: Bold; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const bold = opts.bold ?? plain;
  const table = formatTable({ headers: REVISION_HEADERS, rows: res.revisions.map((r) => revisionRow(r, res.currentRevision, res.stableRevision, now)) }, bold);
  const latest = events.length > 0 ? `\n${bold("Events:")}\n${eventsTable(events, bold, now)}` : "";
  return table + latest;
}

// ---- apply and the other levers --------------------------------------------------

/**
 * What an apply did, in one line: "web: revision 3 applied, rolling out",
 * "web: unchanged (revision 2)", "web: scaled to 5". `before` is the
 * deployment as it was just before the apply (undefined: it did not exist).
 */
export function applyText(before: Deployment | undefined, after: Deployment, changed: boolean): string {
  const rev = revisionOf(after);
  const count = after.currentRevision?.spec?.perAgent ? "one per matching agent" : String(after.desiredReplicas);
  if (!changed) return `${after.name}: unchanged (revision ${rev})`;
  if (!before) return `${after.name}: created, revision ${rev} rolling out (${count} replica${count === "1" ? "" : "s"})`;
  if (revisionOf(before) !== rev) return `${after.name}: revision ${rev} applied, rolling out (was ${revisionOf(before)})`;
  if (before.state === DeploymentState.STOPPED || before.desiredReplicas === 0) return `${after.name}: started again with ${count} replicas (revision ${rev})`;
  return `${after.name}: scaled to ${count}${before.desiredReplicas ? ` (from ${before.desiredReplicas})` : ""}`;
}

/** The one line a lever (rollback, pause, scale, ...) prints: the deployment's state after it. */
export function leverText(d: Deployment, did: string): string {
  const state = stateText(d.state);
  const status = d.statusMessage.split("\n")[0]!;
  // The status often says what was just done ("paused"); it is shown only when it says more.
  const more = status && status !== did && status !== state ? `: ${status}` : "";
  return `${d.name}: ${did}; ${state} at revision ${revisionOf(d)}${more}\n`;
}

// ---- following a rollout ---------------------------------------------------------

/** What `--wait` waits for: the deployment running this revision, or (stop) no replica left. */
export interface WaitTarget {
  revision: number;
  stopped?: boolean;
}

/** What `--wait` exits with; the commands' --help prints this. */
export const waitExitHelp = `With --wait, exit status once the rollout is over:
  0  the deployment is running the revision, every replica healthy
  1  the rollout failed, was reverted, or the deployment was stopped or
     moved to another revision meanwhile (the status message says why,
     with the failing replica's last output when there is some)`;

/** What `deploy stop --wait` exits with. */
export const stopWaitExitHelp = `With --wait, exit status:
  0  every replica has stopped
  1  the deployment was started again (deploy apply) before that`;

/** How a followed rollout ended: the exit status and the last line; undefined while it goes on. */
export function waitOutcome(d: Deployment, target: WaitTarget): { code: number; line: string } | undefined {
  const rev = revisionOf(d);
  const status = d.statusMessage ? `: ${d.statusMessage}` : "";
  if (target.stopped) {
    if (d.state === DeploymentState.STOPPED) return { code: 0, line: `${d.name}: stopped, no replica runs` };
    if (d.state === DeploymentState.STOPPING) return undefined;
    return { code: 1, line: `${d.name}: started again meanwhile; ${stateText(d.state)} at revision ${rev}${status}` };
  }
  // The controller's status messages say what failed and why ("revision 3 failed: replica 1a2b3c4d ..."), with the replica's last output.
  switch (d.state) {
    case DeploymentState.FAILED:
      return { code: 1, line: `${d.name}: ${d.statusMessage || `revision ${rev} failed`}` };
    case DeploymentState.REVERTING:
      return { code: 1, line: `${d.name}: ${d.statusMessage || `revision ${target.revision} failed; reverting to revision ${rev}`}` };
    case DeploymentState.STOPPING:
    case DeploymentState.STOPPED:
      return { code: 1, line: `${d.name}: stopped${status}` };
  }
  if (rev !== target.revision) return { code: 1, line: `${d.name}: revision ${target.revision} is no longer current, revision ${rev} is${status}` };
  if (d.state === DeploymentState.RUNNING) return { code: 0, line: `${d.name}: revision ${rev} running, ${healthyText(d)} healthy` };
  return undefined;
}

/** "rolling out revision 3: batch 2 of 4, 5/10 healthy": where the deployment stands, in one line. */
export function progressLine(d: Deployment): string {
  const rev = revisionOf(d);
  const progress = d.rollout ? progressText(d.rollout) : `${healthyText(d)} healthy`;
  switch (d.state) {
    case DeploymentState.ROLLING_OUT:
      return `rolling out revision ${rev}: ${progress}`;
    case DeploymentState.REVERTING:
      return `reverting to revision ${rev}: ${progress}`;
    case DeploymentState.PAUSED:
      return `paused at revision ${rev}: ${progress} (drover deploy resume ${d.name} goes on)`;
    case DeploymentState.WAITING_PROMOTION:
      return `revision ${rev} waits for promotion: ${progress} (drover deploy promote ${d.name} goes on)`;
    case DeploymentState.RUNNING:
      return `running revision ${rev}: ${healthyText(d)} healthy`;
    default:
      return d.statusMessage ? `${stateText(d.state)}: ${d.statusMessage.split("\n")[0]}` : `${stateText(d.state)} at revision ${rev}`;
  }
}

/** The kind column of a followed line that reports progress rather than an event (no event kind has parentheses). */
export const PROGRESS_KIND = "(progress)";

const KIND_WIDTH = 17;

/** One event as it happens: "12:00:01  replica_started    replica 1a2b3c4d ...", later lines of its message indented under it. */
export function eventLine(e: DeploymentEvent): string {
  const time = e.time ? clock(timestampMs(e.time)) : "--:--:--";
  const head = `${time}  ${e.kind.padEnd(KIND_WIDTH)}  `;
  return `${head}${indentLines(e.message, " ".repeat(head.length))}`.trimEnd();
}

/** A progress line among event lines, at `now`. */
export function progressEventLine(d: Deployment, now = Date.now()): string {
  return `${clock(now)}  ${PROGRESS_KIND.padEnd(KIND_WIDTH)}  ${progressLine(d)}`;
}

/** What a progress line shows: a change in any of these is a new line. */
export function progressKey(d: Deployment): string {
  const r = d.rollout;
  return [d.state, revisionOf(d), d.healthyReplicas, d.desiredReplicas, r?.batch, r?.batches, r?.healthy, r?.inFlight].join("/");
}

/** The progress line on a terminal: rewritten in place, so cut to the terminal's width (a wrapped line could not be). */
export function ttyProgress(d: Deployment, columns: number): string {
  return truncate(progressLine(d), Math.max(20, columns - 1));
}
