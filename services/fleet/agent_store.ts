// Agents in the fleet schema. Everything that writes an agent row is here,
// so the rules about when Postgres is written are in one place:
//
//   register    once per agent: the row, its credential, the token's count
//   connect     once per stream: what Hello said, the session, connect time
//   transition  once per change of status, with a history row
//   snapshot    heartbeat data, batched, at most every snapshot interval
//   operator    labels, drain, cordon, delete
//
// Heartbeats themselves never reach this file.

import { randomBytes } from "node:crypto";
import { toJson } from "@bufbuild/protobuf";
import type { Agent as AgentRow, AgentStatusChange, Prisma, PrismaClient } from "../../gen/prisma/fleet/client.ts";
import { ResourcesSchema, type Resources } from "../../gen/ts/drover/common/v1/resources_pb.ts";
import type { Hello } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { announceRevocation, hashSecret, newSecret } from "../../lib/auth/tokens.ts";
import type { Labels } from "./labels.ts";
import type { Liveness } from "./liveness.ts";

export type { AgentRow, AgentStatusChange };

/** How many status changes are kept per agent. */
export const HISTORY_KEPT = 50;

/** Whether new work may go to an agent, as stored. */
export type Schedulability = "eligible" | "cordoned" | "draining";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** A new agent id: "ag_" and 26 base32 characters (130 random bits, of which 128 count). */
export function newAgentId(): string {
  const bytes = randomBytes(17);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return `ag_${out}`;
}

function resourcesJson(r: Resources | undefined): Prisma.InputJsonValue {
  return r ? (toJson(ResourcesSchema, r) as Prisma.InputJsonValue) : {};
}

/** What Hello says about the machine, as columns. */
function helloColumns(hello: Hello) {
  return {
    hostname: hello.hostname,
    version: hello.version,
    reportedLabels: hello.labels,
    drivers: hello.drivers,
    totalResources: resourcesJson(hello.total),
    freeResources: resourcesJson(hello.free),
  };
}

/** One agent's heartbeat data for a batched snapshot. */
export interface Snapshot {
  agentId: string;
  /** Only written while this is still the agent's session (a replica that lost it writes nothing). */
  sessionId: string;
  lastHeartbeatAt: Date;
  /** Proto JSON of Metrics, or null to keep what is stored. */
  metrics: unknown;
  /** Proto JSON of Resources, or null to keep what is stored. */
  free: unknown;
}

/** Conditions a transition must meet, so that a decision made on old data is not applied. */
export interface TransitionGuard {
  /** The status the decision was made from. */
  from?: Liveness;
  /** The session the decision was made about (null: the agent had none). */
  sessionId?: string | null;
}

/** What the sweeper needs to know about an agent that is not offline. */
export interface SweepRow {
  id: string;
  status: Liveness;
  sessionId: string | null;
  /** The best evidence of the last heartbeat Postgres has, in ms. */
  lastSeenMs: number;
}

export type DeleteOutcome = { deleted: AgentRow } | { notFound: true } | { status: string };

export class AgentStore {
  constructor(
    private readonly db: PrismaClient,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Registers a new agent with a registration token's secret, in one
   * statement (so one round trip, atomic, and no interactive transaction to
   * hold a pooled connection during a registration storm): counts the
   * registration only while the token is valid, creates the agent (offline
   * until its stream is attached) with the token's labels, and mints its
   * credential. Null, and nothing written, when the token is unknown,
   * revoked or expired.
   */
  async register(tokenSecret: string, hello: Hello): Promise<{ agent: AgentRow; credential: string; credentialId: string } | null> {
    const now = this.now().toISOString();
    const agentId = newAgentId();
    const credential = newSecret();
    const columns = helloColumns(hello);
    const rows = await this.db.$queryRawUnsafe<{ id: string }[]>(
      `WITH token AS (
         UPDATE "fleet"."agent_tokens" SET registrations = registrations + 1
          WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2::timestamptz)
         RETURNING id, labels
       ), agent AS (
         INSERT INTO "fleet"."agents" (id, hostname, version, reported_labels, token_labels, drivers,
                                       total_resources, free_resources, status, registered_at, registration_token_id, updated_at)
         SELECT $3, $4, $5, $6::jsonb, token.labels, ARRAY(SELECT jsonb_array_elements_text($7::jsonb)),
                $8::jsonb, $9::jsonb, 'offline', $2::timestamptz, token.id, $2::timestamptz
           FROM token
         RETURNING id
       )
       INSERT INTO "fleet"."api_tokens" (name, role, token_hash, agent_id)
       SELECT $10, 'agent', $11, agent.id FROM agent
       RETURNING id`,
      hashSecret(tokenSecret),
      now,
      agentId,
      columns.hostname,
      columns.version,
      JSON.stringify(columns.reportedLabels),
      JSON.stringify(columns.drivers),
      JSON.stringify(columns.totalResources),
      JSON.stringify(columns.freeResources),
      `agent ${agentId} (${hello.hostname})`.slice(0, 128),
      hashSecret(credential),
    );
    const credentialId = rows[0]?.id;
    if (credentialId === undefined) return null;
    const agent = await this.get(agentId);
    if (!agent) throw new Error(`agent ${agentId} vanished right after it was registered`);
    return { agent, credential, credentialId };
  }

  /** Records a new stream: what Hello said, the session, and the connect time (which counts as a heartbeat). */
  async connect(agentId: string, hello: Hello, sessionId: string, at: Date): Promise<AgentRow | null> {
    const updated = await this.db.agent.updateMany({
      where: { id: agentId },
      data: { ...helloColumns(hello), connectedAt: at, sessionId, lastHeartbeatAt: at },
    });
    return updated.count === 0 ? null : this.get(agentId);
  }

  get(id: string): Promise<AgentRow | null> {
    return this.db.agent.findUnique({ where: { id } });
  }

  /** The newest status changes of an agent, newest first. */
  history(agentId: string, limit = 20): Promise<AgentStatusChange[]> {
    return this.db.agentStatusChange.findMany({ where: { agentId }, orderBy: { id: "desc" }, take: limit });
  }

  /**
   * Changes an agent's status and records the change, in one statement,
   * unless it already has that status or the guard fails. Resolves the
   * status it changed from, or null when nothing changed. Keeps the newest
   * HISTORY_KEPT changes of the agent.
   */
  async transition(agentId: string, to: Liveness, reason: string, at: Date, guard: TransitionGuard = {}): Promise<Liveness | null> {
    // FOR UPDATE makes a concurrent transition of the same agent wait and then
    // re-check the conditions against the row as the other one left it.
    const rows = await this.db.$queryRawUnsafe<{ from_status: Liveness }[]>(
      `WITH prev AS (
         SELECT id, status FROM "fleet"."agents"
          WHERE id = $1 AND status <> $2
            AND ($5::text IS NULL OR status = $5::text)
            AND (NOT $6::boolean OR session_id IS NOT DISTINCT FROM $7::text)
          FOR UPDATE
       ), changed AS (
         UPDATE "fleet"."agents" a SET status = $2, updated_at = $3::timestamptz
           FROM prev WHERE a.id = prev.id
         RETURNING prev.status AS from_status
       )
       INSERT INTO "fleet"."agent_status_changes" (agent_id, from_status, to_status, at, reason)
       SELECT $1, from_status, $2, $3::timestamptz, $4 FROM changed
       RETURNING from_status`,
      agentId,
      to,
      at.toISOString(),
      reason,
      guard.from ?? null,
      guard.sessionId !== undefined,
      guard.sessionId ?? null,
    );
    const from = rows[0]?.from_status ?? null;
    if (from !== null) {
      await this.db.$executeRawUnsafe(
        `DELETE FROM "fleet"."agent_status_changes"
          WHERE agent_id = $1 AND id <= (
            SELECT id FROM "fleet"."agent_status_changes" WHERE agent_id = $1 ORDER BY id DESC OFFSET $2::int LIMIT 1)`,
        agentId,
        HISTORY_KEPT,
      );
    }
    return from;
  }

  /** Writes heartbeat data of many agents in one statement. */
  async snapshot(batch: readonly Snapshot[]): Promise<number> {
    if (batch.length === 0) return 0;
    const records = batch.map((s) => ({
      id: s.agentId,
      session_id: s.sessionId,
      last_heartbeat_at: s.lastHeartbeatAt.toISOString(),
      metrics: s.metrics,
      free_resources: s.free,
    }));
    return this.db.$executeRawUnsafe(
      `UPDATE "fleet"."agents" AS a
          SET last_heartbeat_at = s.last_heartbeat_at,
              metrics = COALESCE(s.metrics, a.metrics),
              free_resources = COALESCE(s.free_resources, a.free_resources)
         FROM jsonb_to_recordset($1::jsonb)
              AS s(id text, session_id text, last_heartbeat_at timestamptz, metrics jsonb, free_resources jsonb)
        WHERE a.id = s.id AND a.session_id = s.session_id`,
      JSON.stringify(records),
    );
  }

  /**
   * One page of agents by id, filtered by status and by a selector over
   * effective labels (reported || token || operator: later ones win, as in
   * effectiveLabels()).
   */
  async list(opts: { status?: Liveness; selector: Labels; after?: string; limit: number }): Promise<AgentRow[]> {
    const ids = await this.db.$queryRawUnsafe<{ id: string }[]>(
      `SELECT id FROM "fleet"."agents"
        WHERE ($1::text IS NULL OR status = $1::text)
          AND (reported_labels || token_labels || operator_labels) @> $2::jsonb
          AND ($3::text IS NULL OR id > $3::text)
        ORDER BY id
        LIMIT $4::int`,
      opts.status ?? null,
      JSON.stringify(opts.selector),
      opts.after ?? null,
      opts.limit,
    );
    if (ids.length === 0) return [];
    const rows = await this.db.agent.findMany({ where: { id: { in: ids.map((r) => r.id) } } });
    const byId = new Map(rows.map((r) => [r.id, r]));
    // Same order as the page, whatever order findMany returned.
    return ids.map((r) => byId.get(r.id)).filter((r): r is AgentRow => r !== undefined);
  }

  /** Replaces an agent's operator labels; null when there is no such agent. */
  async setOperatorLabels(id: string, labels: Labels): Promise<AgentRow | null> {
    const updated = await this.db.agent.updateMany({ where: { id }, data: { operatorLabels: labels } });
    return updated.count === 0 ? null : this.get(id);
  }

  /**
   * Moves an agent's schedulability from one of `from` to `to` (and sets or
   * clears the drain fields with it). Resolves the agent as it now stands and
   * whether it changed; null when there is no such agent.
   */
  async setSchedulability(
    id: string,
    from: readonly Schedulability[],
    to: Schedulability,
    drain: { deadline: Date | null; reason: string | null } = { deadline: null, reason: null },
  ): Promise<{ agent: AgentRow; changed: boolean } | null> {
    const updated = await this.db.agent.updateMany({
      where: { id, schedulability: { in: [...from] } },
      data: { schedulability: to, drainDeadline: drain.deadline, drainReason: drain.reason },
    });
    const agent = await this.get(id);
    return agent ? { agent, changed: updated.count > 0 } : null;
  }

  /**
   * Deletes an agent if it is offline, revoking its credentials in the same
   * transaction; its history and outbox go with it.
   */
  async deleteIfOffline(id: string): Promise<DeleteOutcome> {
    const now = this.now();
    const outcome = await this.db.$transaction(async (tx) => {
      const agent = await tx.agent.findUnique({ where: { id } });
      if (!agent) return { notFound: true } as const;
      if (agent.status !== "offline") return { status: agent.status };
      await tx.apiToken.updateMany({ where: { agentId: id, revokedAt: null }, data: { revokedAt: now } });
      const deleted = await tx.agent.deleteMany({ where: { id, status: "offline" } });
      if (deleted.count === 0) return { status: "online" };
      return { deleted: agent };
    });
    if ("deleted" in outcome) announceRevocation();
    return outcome;
  }

  /** Agents that are online or stale, with the best evidence of their last heartbeat, for the sweeper. */
  async notOffline(): Promise<SweepRow[]> {
    const rows = await this.db.agent.findMany({
      where: { status: { not: "offline" } },
      select: { id: true, status: true, sessionId: true, lastHeartbeatAt: true, connectedAt: true, registeredAt: true },
    });
    return rows.map((r) => ({
      id: r.id,
      status: r.status as Liveness,
      sessionId: r.sessionId,
      lastSeenMs: (r.lastHeartbeatAt ?? r.connectedAt ?? r.registeredAt).getTime(),
    }));
  }
}
