// Rows to messages and stored names to enums, in one place.

import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ResourcesSchema } from "../../gen/ts/drover/common/v1/resources_pb.ts";
import { MetricsSchema } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import {
  AgentSchema,
  AgentStatus,
  AgentTokenSchema,
  Schedulability,
  StatusChangeSchema,
  type Agent,
  type AgentToken,
} from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { AgentRow, AgentStatusChange, Schedulability as StoredSchedulability } from "./agent_store.ts";
import type { AgentTokenRow } from "./agent_token_store.ts";
import { effectiveLabels, labelsFrom } from "./labels.ts";
import type { Liveness } from "./liveness.ts";

export function ts(date: Date | null | undefined): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

const STATUS: Record<Liveness, AgentStatus> = {
  online: AgentStatus.ONLINE,
  stale: AgentStatus.STALE,
  offline: AgentStatus.OFFLINE,
};

export function agentStatus(stored: string): AgentStatus {
  return STATUS[stored as Liveness] ?? AgentStatus.UNSPECIFIED;
}

/** The stored name of a status; undefined for UNSPECIFIED ("any"). */
export function livenessOf(status: AgentStatus): Liveness | undefined {
  return (Object.keys(STATUS) as Liveness[]).find((k) => STATUS[k] === status);
}

const SCHEDULABILITY: Record<StoredSchedulability, Schedulability> = {
  eligible: Schedulability.ELIGIBLE,
  cordoned: Schedulability.CORDONED,
  draining: Schedulability.DRAINING,
};

export function schedulability(stored: string): Schedulability {
  return SCHEDULABILITY[stored as StoredSchedulability] ?? Schedulability.UNSPECIFIED;
}

function jsonMessage<T>(json: unknown, parse: (json: JsonValue) => T): T | undefined {
  if (json === null || json === undefined) return undefined;
  try {
    return parse(json as JsonValue);
  } catch {
    // A snapshot written by a newer version with fields this one does not know.
    return undefined;
  }
}

/** An agent row as the API shows it; history only where given (GetAgent). */
export function agentMessage(row: AgentRow, history: readonly AgentStatusChange[] = []): Agent {
  const operatorLabels = labelsFrom(row.operatorLabels);
  return create(AgentSchema, {
    id: row.id,
    hostname: row.hostname,
    version: row.version,
    labels: effectiveLabels(labelsFrom(row.reportedLabels), labelsFrom(row.tokenLabels), operatorLabels),
    operatorLabels,
    drivers: row.drivers,
    status: agentStatus(row.status),
    schedulability: schedulability(row.schedulability),
    total: jsonMessage(row.totalResources, (j) => fromJson(ResourcesSchema, j, { ignoreUnknownFields: true })),
    free: jsonMessage(row.freeResources, (j) => fromJson(ResourcesSchema, j, { ignoreUnknownFields: true })),
    metrics: jsonMessage(row.metrics, (j) => fromJson(MetricsSchema, j, { ignoreUnknownFields: true })),
    lastHeartbeatTime: ts(row.lastHeartbeatAt),
    registerTime: ts(row.registeredAt),
    connectTime: ts(row.connectedAt),
    drainDeadline: row.schedulability === "draining" ? ts(row.drainDeadline) : undefined,
    history: history.map((h) =>
      create(StatusChangeSchema, { from: agentStatus(h.fromStatus), to: agentStatus(h.toStatus), time: ts(h.at), reason: h.reason }),
    ),
  });
}

export function agentTokenMessage(row: AgentTokenRow): AgentToken {
  return create(AgentTokenSchema, {
    id: row.id,
    name: row.name,
    labels: labelsFrom(row.labels),
    createTime: ts(row.createdAt),
    expireTime: ts(row.expiresAt),
    revokeTime: ts(row.revokedAt),
    registrations: row.registrations,
  });
}
