// The deploy schema's hot rows in raw SQL: the controller reads a
// deployment and its live replicas on every pass and writes its decision in
// one transaction, and GetDeployment / WatchDeployment read the same rows
// for every poll. Through Prisma that was a third of Deploy's CPU during a
// rollout (query planning in its engine and row mapping); here a row costs
// what node-postgres (or PGlite) costs. The rows keep Prisma's shapes
// (camelCase, Date, bigint), so callers and the colder paths that stay on
// Prisma share one type.
//
// Timestamps travel as epoch milliseconds and bigints as text: node-postgres
// and PGlite agree on those, and a Date is built here once.

import type { PrismaClient } from "../../gen/prisma/deploy/client.ts";
import type { SqlQueryable } from "../../lib/db/executor.ts";

export type DeploymentRow = Awaited<ReturnType<PrismaClient["deployment"]["findUniqueOrThrow"]>>;
export type ReplicaRow = Awaited<ReturnType<PrismaClient["replica"]["findUniqueOrThrow"]>>;

const ms = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8 AS ${column}`;

const DEPLOYMENT_COLUMNS = [
  "id",
  "name",
  "current_revision",
  ms("created_at"),
  ms("updated_at"),
  "desired_replicas",
  "stopped",
  "paused",
  "promoted",
  "generation",
  "state",
  "status_message",
  "stable_revision",
  "rollout_from",
  ms("rollout_started_at"),
  ms("rollout_ended_at"),
  "event_seq::text AS event_seq",
  "claimed_by",
  ms("claim_until"),
].join(", ");

const REPLICA_COLUMNS = [
  "id",
  "deployment_id",
  "revision",
  "generation",
  "slot",
  "canary",
  "state",
  "job_id",
  "agent_id",
  "avoid_agents",
  "health",
  "health_message",
  ms("health_since"),
  "restarts",
  "port",
  ms("healthy_at"),
  "message",
  ms("created_at"),
  ms("stop_requested_at"),
  ms("ended_at"),
].join(", ");

type Raw = Record<string, unknown>;

const date = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(Number(v)));

function deploymentOf(r: Raw): DeploymentRow {
  return {
    id: String(r.id),
    name: String(r.name),
    currentRevision: Number(r.current_revision),
    createdAt: date(r.created_at)!,
    updatedAt: date(r.updated_at)!,
    desiredReplicas: Number(r.desired_replicas),
    stopped: Boolean(r.stopped),
    paused: Boolean(r.paused),
    promoted: Boolean(r.promoted),
    generation: Number(r.generation),
    state: String(r.state),
    statusMessage: String(r.status_message),
    stableRevision: Number(r.stable_revision),
    rolloutFrom: Number(r.rollout_from),
    rolloutStartedAt: date(r.rollout_started_at),
    rolloutEndedAt: date(r.rollout_ended_at),
    eventSeq: BigInt(String(r.event_seq)),
    claimedBy: r.claimed_by === null ? null : String(r.claimed_by),
    claimUntil: date(r.claim_until),
  };
}

function replicaOf(r: Raw): ReplicaRow {
  return {
    id: String(r.id),
    deploymentId: String(r.deployment_id),
    revision: Number(r.revision),
    generation: Number(r.generation),
    slot: String(r.slot),
    canary: Boolean(r.canary),
    state: String(r.state),
    jobId: r.job_id === null ? null : String(r.job_id),
    agentId: r.agent_id === null ? null : String(r.agent_id),
    avoidAgents: ((r.avoid_agents as string[] | null) ?? []).map(String),
    health: String(r.health),
    healthMessage: String(r.health_message),
    healthSince: date(r.health_since),
    restarts: Number(r.restarts),
    port: Number(r.port),
    healthyAt: date(r.healthy_at),
    message: String(r.message),
    createdAt: date(r.created_at)!,
    stopRequestedAt: date(r.stop_requested_at),
    endedAt: date(r.ended_at),
  };
}

/** Defaults of a replica row not yet written (what the table's defaults give). */
export const NEW_REPLICA: Omit<ReplicaRow, "id" | "deploymentId" | "revision" | "generation" | "slot" | "createdAt"> = {
  canary: false,
  state: "pending",
  jobId: null,
  agentId: null,
  avoidAgents: [],
  health: "unknown",
  healthMessage: "",
  healthSince: null,
  restarts: 0,
  port: 0,
  healthyAt: null,
  message: "",
  stopRequestedAt: null,
  endedAt: null,
};

/** A deployment by id or by name; undefined when there is none. */
export async function readDeployment(db: SqlQueryable, by: { id: string } | { name: string }): Promise<DeploymentRow | undefined> {
  const [where, value] = "id" in by ? ["id = $1::uuid", by.id] : ["name = $1", by.name];
  const rows = await db.query<Raw>(`SELECT ${DEPLOYMENT_COLUMNS} FROM deploy.deployments WHERE ${where}`, [value]);
  return rows[0] ? deploymentOf(rows[0]) : undefined;
}

/** A deployment's replicas that are not over, oldest first (the controller's order) or by slot then age (the API's). */
export async function readLiveReplicas(db: SqlQueryable, deploymentId: string, order: "created" | "slot"): Promise<ReplicaRow[]> {
  const orderBy = order === "created" ? "created_at, id" : "slot, created_at, id";
  const rows = await db.query<Raw>(
    `SELECT ${REPLICA_COLUMNS} FROM deploy.replicas WHERE deployment_id = $1::uuid AND state IN ('pending', 'running', 'stopping') ORDER BY ${orderBy}`,
    [deploymentId],
  );
  return rows.map(replicaOf);
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

/** Inserts new replica rows (job ids come later, from SubmitJobs). */
export async function insertReplicas(db: SqlQueryable, rows: readonly ReplicaRow[]): Promise<void> {
  if (rows.length === 0) return;
  const data = rows.map((r) => ({
    id: r.id,
    deployment_id: r.deploymentId,
    revision: r.revision,
    generation: r.generation,
    slot: r.slot,
    canary: r.canary,
    state: r.state,
    avoid_agents: r.avoidAgents,
    message: r.message,
    created_at: iso(r.createdAt),
  }));
  await db.query(
    `INSERT INTO deploy.replicas (id, deployment_id, revision, generation, slot, canary, state, avoid_agents, message, created_at)
     SELECT id, deployment_id, revision, generation, slot, canary, state, ARRAY(SELECT jsonb_array_elements_text(avoid_agents)), message, created_at
       FROM jsonb_to_recordset($1::jsonb) AS c(id uuid, deployment_id uuid, revision int, generation int, slot text, canary boolean, state text,
            avoid_agents jsonb, message text, created_at timestamptz)`,
    [JSON.stringify(data)],
  );
}

/** Writes the mutable columns of many replica rows in one statement. */
export async function writeReplicas(db: SqlQueryable, rows: readonly ReplicaRow[]): Promise<void> {
  if (rows.length === 0) return;
  const data = rows.map((r) => ({
    id: r.id,
    state: r.state,
    agent_id: r.agentId,
    health: r.health,
    health_message: r.healthMessage,
    health_since: iso(r.healthSince),
    restarts: r.restarts,
    port: r.port,
    healthy_at: iso(r.healthyAt),
    message: r.message,
    stop_requested_at: iso(r.stopRequestedAt),
    ended_at: iso(r.endedAt),
  }));
  await db.query(
    `UPDATE deploy.replicas r SET state = c.state, agent_id = c.agent_id, health = c.health, health_message = c.health_message,
            health_since = c.health_since, restarts = c.restarts, port = c.port, healthy_at = c.healthy_at, message = c.message,
            stop_requested_at = c.stop_requested_at, ended_at = c.ended_at
     FROM jsonb_to_recordset($1::jsonb) AS c(id uuid, state text, agent_id text, health text, health_message text, health_since timestamptz,
          restarts int, port int, healthy_at timestamptz, message text, stop_requested_at timestamptz, ended_at timestamptz)
     WHERE r.id = c.id`,
    [JSON.stringify(data)],
  );
}

/** Sets replicas' job ids, as SubmitJobs answered. */
export async function writeJobIds(db: SqlQueryable, rows: readonly ReplicaRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.query(`UPDATE deploy.replicas r SET job_id = c.job_id FROM jsonb_to_recordset($1::jsonb) AS c(id uuid, job_id uuid) WHERE r.id = c.id`, [
    JSON.stringify(rows.map((r) => ({ id: r.id, job_id: r.jobId }))),
  ]);
}

/** Notes that the replicas' stops were asked of the Scheduler now. */
export async function writeStopRequested(db: SqlQueryable, ids: readonly string[], at: Date): Promise<void> {
  if (ids.length === 0) return;
  await db.query(`UPDATE deploy.replicas SET stop_requested_at = $2 WHERE id = ANY($1::uuid[])`, [ids, at.toISOString()]);
}

export interface EventRow {
  sequence: bigint;
  kind: string;
  message: string;
  revision: number;
  replicaId: string | null;
}

/** Appends a deployment's events (their sequence numbers chosen by the caller, under the deployment's row lock). */
export async function insertEvents(db: SqlQueryable, deploymentId: string, events: readonly EventRow[]): Promise<void> {
  if (events.length === 0) return;
  const data = events.map((e) => ({ sequence: String(e.sequence), kind: e.kind, message: e.message, revision: e.revision, replica_id: e.replicaId }));
  await db.query(
    `INSERT INTO deploy.events (deployment_id, sequence, kind, message, revision, replica_id)
     SELECT $1::uuid, sequence, kind, message, revision, replica_id
       FROM jsonb_to_recordset($2::jsonb) AS c(sequence bigint, kind text, message text, revision int, replica_id uuid)`,
    [deploymentId, JSON.stringify(data)],
  );
}

/** The deployment columns the controller changes, by DeploymentRow field. */
const PATCHABLE: Record<string, string> = {
  currentRevision: "current_revision",
  promoted: "promoted",
  rolloutFrom: "rollout_from",
  rolloutStartedAt: "rollout_started_at",
  rolloutEndedAt: "rollout_ended_at",
  stableRevision: "stable_revision",
  state: "state",
  statusMessage: "status_message",
  eventSeq: "event_seq",
};

/** Updates some of a deployment's columns (and updated_at, as Prisma's @updatedAt does). */
export async function patchDeployment(db: SqlQueryable, id: string, patch: Partial<DeploymentRow>): Promise<void> {
  const sets: string[] = [];
  const params: unknown[] = [id];
  for (const [field, value] of Object.entries(patch)) {
    const column = PATCHABLE[field];
    if (!column) throw new Error(`patchDeployment: ${field} is not a column the controller writes`);
    params.push(value instanceof Date ? value.toISOString() : typeof value === "bigint" ? String(value) : value);
    sets.push(`${column} = $${params.length}`);
  }
  if (sets.length === 0) return;
  await db.query(`UPDATE deploy.deployments SET ${sets.join(", ")}, updated_at = now() WHERE id = $1::uuid`, params);
}
