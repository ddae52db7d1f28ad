// Whose output a deployment's logs are. The Log service does not know
// deployments: it asks the Deploy service (GetDeployment) for the replicas
// and reads the Scheduler jobs that run them. Reading asks once, for the
// live replicas and the latest ENDED_REPLICAS that stopped or failed (a
// failed rollout's output is what one reads logs for); following asks for
// the live ones again every few seconds, so that replicas a rollout starts
// are followed too.

import { Code, ConnectError } from "@connectrpc/connect";

import type { Replica } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";

/** How many ended replicas a read includes, newest first. */
export const ENDED_REPLICAS = 100;

/** Which replica of a deployment a job runs: what each of its lines says about its source. */
export interface ReplicaRef {
  replicaId: string;
  slot: string;
  revision: number;
}

/** The jobs of a deployment's replicas, by job id. */
export type ReplicaJobs = Map<string, ReplicaRef>;

/**
 * The jobs of the replicas `replica` names (an id, or a slot: every replica
 * in it; "" for all), and whether any replica matched at all (a pending
 * replica matches before it has a job).
 */
export function replicaJobs(replicas: readonly Pick<Replica, "id" | "slot" | "revision" | "jobId">[], replica: string): { jobs: ReplicaJobs; matched: boolean } {
  const jobs: ReplicaJobs = new Map();
  let matched = false;
  for (const r of replicas) {
    if (replica !== "" && r.id !== replica && r.slot !== replica) continue;
    matched = true;
    if (r.jobId !== "") jobs.set(r.jobId, { replicaId: r.id, slot: r.slot, revision: r.revision });
  }
  return { jobs, matched };
}

/**
 * Asks the Deploy service for a deployment's replica jobs. An unknown
 * deployment, or a replica it does not have, is NOT_FOUND naming it; a
 * Deploy service that cannot answer is UNAVAILABLE.
 */
export async function resolveDeployment(
  deploy: DroverClients["deploy"],
  name: string,
  replica: string,
  opts: { signal?: AbortSignal; ended?: number } = {},
): Promise<ReplicaJobs> {
  const replicas = await getReplicas(deploy, name, opts.signal, opts.ended);
  if (replicas === null) throw new ConnectError(`deployment "${name}" not found`, Code.NotFound);
  const { jobs, matched } = replicaJobs(replicas, replica);
  if (!matched) {
    const slots = replicas.map((r) => r.slot).join(", ") || "none";
    throw new ConnectError(`deployment "${name}" has no replica with the id or slot "${replica}" (its slots: ${slots})`, Code.NotFound);
  }
  return jobs;
}

/** The deployment's replicas that are not stopped, then up to `ended` that are; null when the Deploy service does not know it. */
export async function getReplicas(deploy: DroverClients["deploy"], name: string, signal?: AbortSignal, ended = 0): Promise<Replica[] | null> {
  try {
    const res = await deploy.getDeployment({ name, endedReplicas: ended }, { signal, timeoutMs: 10_000 });
    return [...(res.deployment?.replicas ?? []), ...res.endedReplicas];
  } catch (err) {
    const error = ConnectError.from(err);
    if (error.code === Code.NotFound) return null;
    if (signal?.aborted) throw error;
    // The deployment may well exist; we cannot tell now.
    throw new ConnectError(`cannot ask the Deploy service about deployment "${name}" now (${Code[error.code]})`, Code.Unavailable);
  }
}
