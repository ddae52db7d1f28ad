import { create, fromJson, toBinary, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/deploy/client.ts";
import { HealthState } from "../../gen/ts/drover/common/v1/service_pb.ts";
import {
  DeployService,
  DeploymentEventSchema,
  DeploymentSchema,
  DeploymentState,
  ReplicaSchema,
  type Replica,
  ReplicaState,
  RevisionSchema,
  ServiceSpecSchema,
  type ApplyDeploymentRequest,
  type DeleteDeploymentRequest,
  type Deployment,
  type DeploymentEvent,
  type GetDeploymentRequest,
  type ListDeploymentsRequest,
  type ListRevisionsRequest,
  type PauseDeploymentRequest,
  type PromoteDeploymentRequest,
  type RestartDeploymentRequest,
  type ResumeDeploymentRequest,
  type RollbackDeploymentRequest,
  type ScaleDeploymentRequest,
  type ServiceSpec,
  type StopDeploymentRequest,
  type WatchDeploymentRequest,
} from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { isUniqueViolation } from "../../lib/db/errors.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { decodePageToken, encodePageToken } from "../../lib/host/paging.ts";
import { sleep } from "../../lib/timers.ts";
import { IN_ROLLOUT, type DeployState } from "./rollout.ts";
import { readDeployment, readLiveReplicas, type DeploymentRow, type ReplicaRow } from "./rows.ts";
import type { DeploySignals } from "./signals.ts";
import { checkServiceSpec, strategyOf } from "./spec.ts";
import { specHash } from "./spec_hash.ts";

/** Who may call what on DeployService (methods not listed: admin and operator). */
export const deployAccess: Record<string, AccessRule> = {};

type RevisionRow = { number: number; spec: unknown; specHash: string; createdAt: Date };
type EventRow = Awaited<ReturnType<PrismaClient["event"]["findUniqueOrThrow"]>>;

const STATES: Record<string, DeploymentState> = {
  rolling_out: DeploymentState.ROLLING_OUT,
  running: DeploymentState.RUNNING,
  paused: DeploymentState.PAUSED,
  waiting_promotion: DeploymentState.WAITING_PROMOTION,
  failed: DeploymentState.FAILED,
  stopping: DeploymentState.STOPPING,
  stopped: DeploymentState.STOPPED,
  reverting: DeploymentState.REVERTING,
};
const REPLICA_STATES: Record<string, ReplicaState> = {
  pending: ReplicaState.PENDING,
  running: ReplicaState.RUNNING,
  stopping: ReplicaState.STOPPING,
  stopped: ReplicaState.STOPPED,
  failed: ReplicaState.FAILED,
};
const HEALTH: Record<string, HealthState> = { unknown: HealthState.UNSPECIFIED, healthy: HealthState.HEALTHY, unhealthy: HealthState.UNHEALTHY };
const LIVE = ["pending", "running", "stopping"];
/** How often WatchDeployment looks without a bus to wake it. */
const WATCH_POLL_MS = 250;
/** How often it looks anyway with one: a doorbell can be lost (Redis restarting). */
const WATCH_FALLBACK_MS = 2_000;

function revision(rev: RevisionRow) {
  return create(RevisionSchema, {
    number: rev.number,
    spec: fromJson(ServiceSpecSchema, rev.spec as JsonValue),
    specHash: rev.specHash,
    createTime: timestampFromDate(rev.createdAt),
  });
}

function event(e: EventRow): DeploymentEvent {
  return create(DeploymentEventSchema, {
    sequence: e.sequence,
    time: timestampFromDate(e.time),
    kind: e.kind,
    message: e.message,
    revision: e.revision,
    replicaId: e.replicaId ?? "",
  });
}

/** The Deployment message: the row, its current revision and, when given, its live replicas and rollout progress. */
function deployment(row: DeploymentRow, rev: RevisionRow, replicas?: readonly ReplicaRow[]): Deployment {
  const d = create(DeploymentSchema, {
    id: row.id,
    name: row.name,
    currentRevision: revision(rev),
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
    state: STATES[row.state] ?? DeploymentState.UNSPECIFIED,
    statusMessage: row.statusMessage,
    desiredReplicas: row.stopped ? 0 : row.desiredReplicas,
    stableRevision: row.stableRevision,
  });
  const spec = d.currentRevision!.spec!;
  if (!replicas) return d;
  const current = (r: ReplicaRow) => r.revision === row.currentRevision && r.generation === row.generation && r.state !== "stopping";
  const healthy = replicas.filter((r) => current(r) && r.healthyAt && r.health === "healthy");
  const counted = new Set(replicas.filter((r) => current(r) && r.healthyAt).map((r) => r.slot));
  const inFlight = replicas.filter((r) => current(r) && !r.healthyAt).length;
  if (spec.perAgent) d.desiredReplicas = row.stopped ? 0 : new Set(replicas.filter((r) => r.state !== "stopping").map((r) => r.slot)).size;
  const per = Math.max(1, strategyOf(spec).maxParallel);
  const batches = Math.max(1, Math.ceil(d.desiredReplicas / per));
  d.healthyReplicas = healthy.length;
  d.rollout = {
    $typeName: "drover.deploy.v1.Rollout",
    fromRevision: row.rolloutFrom,
    toRevision: row.currentRevision,
    startTime: row.rolloutStartedAt ? timestampFromDate(row.rolloutStartedAt) : undefined,
    endTime: row.rolloutEndedAt ? timestampFromDate(row.rolloutEndedAt) : undefined,
    desired: d.desiredReplicas,
    healthy: counted.size,
    inFlight,
    batch: Math.min(batches, Math.floor(counted.size / per) + 1),
    batches,
  };
  d.replicas = replicas.map(replicaMessage);
  return d;
}

function replicaMessage(r: ReplicaRow): Replica {
  return create(ReplicaSchema, {
    id: r.id,
    revision: r.revision,
    slot: r.slot,
    agentId: r.agentId ?? "",
    jobId: r.jobId ?? "",
    state: REPLICA_STATES[r.state] ?? ReplicaState.UNSPECIFIED,
    health: { state: HEALTH[r.health] ?? HealthState.UNSPECIFIED, message: r.healthMessage, since: r.healthSince ? timestampFromDate(r.healthSince) : undefined, restarts: r.restarts, port: r.port },
    canary: r.canary,
    createTime: timestampFromDate(r.createdAt),
    message: r.message,
    generation: r.generation,
  });
}

export interface DeployServiceDeps {
  db: PrismaClient;
  /** The same database below Prisma, for the rows GetDeployment and WatchDeployment read on every poll (rows.ts). */
  sql: SqlExecutor;
  /** Called after a change, so the controller looks at once. */
  wake?: () => void;
  /** Told of changes, and waited on by WatchDeployment (without it, watchers poll). */
  signals?: DeploySignals;
}

/** DeployService: deployments, revisions, and the operator's levers on rollouts; the controller does the rolling. */
export class DeployServiceImpl implements ServiceImpl<typeof DeployService> {
  private readonly db: PrismaClient;
  private readonly sql: SqlExecutor;
  private readonly wakeController: () => void;
  private readonly signals: DeploySignals | undefined;

  constructor(deps: DeployServiceDeps) {
    this.db = deps.db;
    this.sql = deps.sql;
    this.wakeController = deps.wake ?? (() => {});
    this.signals = deps.signals;
  }

  /** A deployment changed: the controller looks at it, and its watchers see it, at once. */
  private wake(id: string): void {
    this.wakeController();
    this.signals?.changed([id]);
  }

  async applyDeployment(req: ApplyDeploymentRequest) {
    const spec = req.spec!;
    checkServiceSpec(spec);
    const hash = specHash(spec);
    const json = toJson(ServiceSpecSchema, spec) as object;
    const count = spec.perAgent ? 0 : spec.replicas;
    // Concurrent applies of one name race on the unique (name) and
    // (deployment_id, number) keys; the loser re-reads and tries again.
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.db.$transaction(async (tx) => {
          const current = await tx.deployment.findUnique({ where: { name: req.name } });
          const now = new Date();
          if (!current) {
            const row = await tx.deployment.create({
              data: { name: req.name, currentRevision: 1, desiredReplicas: count, rolloutStartedAt: now, eventSeq: 1n },
            });
            const rev = await tx.revision.create({ data: { deploymentId: row.id, number: 1, spec: json, specHash: hash } });
            await tx.event.create({ data: { deploymentId: row.id, sequence: 1n, kind: "applied", message: `revision 1 applied`, revision: 1 } });
            return { deployment: deployment(row, rev), changed: true };
          }
          const rev = await tx.revision.findUniqueOrThrow({
            where: { deploymentId_number: { deploymentId: current.id, number: current.currentRevision } },
          });
          if (rev.specHash === hash) {
            if (current.desiredReplicas === count && !current.stopped) return { deployment: deployment(current, rev), changed: false };
            const what = current.stopped ? `started again with ${count || "per-agent"} replicas` : `scaled from ${current.desiredReplicas} to ${count} replicas`;
            const row = await this.change(tx, current, { desiredReplicas: count, stopped: false, state: current.state === "failed" ? "failed" : "rolling_out" }, current.stopped ? "started" : "scaled", what);
            return { deployment: deployment(row, rev), changed: true };
          }
          const last = await tx.revision.aggregate({ where: { deploymentId: current.id }, _max: { number: true } });
          const number = (last._max.number ?? 0) + 1;
          const next = await tx.revision.create({ data: { deploymentId: current.id, number, spec: json, specHash: hash } });
          const row = await this.change(
            tx,
            current,
            { currentRevision: number, desiredReplicas: count, stopped: false, paused: false, promoted: false, state: "rolling_out", statusMessage: `rolling out revision ${number}`, rolloutFrom: current.currentRevision, rolloutStartedAt: now, rolloutEndedAt: null },
            "applied",
            `revision ${number} applied (was ${current.currentRevision})`,
            number,
          );
          return { deployment: deployment(row, next), changed: true };
        });
        if (res.changed) this.wake(res.deployment.id);
        return res;
      } catch (err) {
        if (!isUniqueViolation(err) || attempt >= 3) throw err;
      }
    }
  }

  async getDeployment(req: GetDeploymentRequest) {
    const { row, rev } = await this.load(req.name);
    const [replicas, events, ended] = await Promise.all([
      this.liveReplicas(row.id),
      this.events(row.id, 50),
      req.endedReplicas > 0 ? this.db.replica.findMany({ where: { deploymentId: row.id, state: { notIn: LIVE } }, orderBy: { createdAt: "desc" }, take: req.endedReplicas }) : [],
    ]);
    return { deployment: deployment(row, rev, replicas), events: events.map(event), endedReplicas: ended.map(replicaMessage) };
  }

  async listDeployments(req: ListDeploymentsRequest) {
    const size = req.pageSize || 100;
    const after = decodePageToken(req.pageToken);
    const rows = await this.db.deployment.findMany({ where: after ? { name: { gt: after } } : {}, orderBy: { name: "asc" }, take: size + 1 });
    const page = rows.slice(0, size);
    const revs = await this.db.revision.findMany({ where: { OR: page.map((r) => ({ deploymentId: r.id, number: r.currentRevision })) } });
    const revOf = new Map(revs.map((r) => [r.deploymentId, r]));
    const live = await this.db.replica.findMany({ where: { deploymentId: { in: page.map((r) => r.id) }, state: { in: LIVE } } });
    return {
      deployments: page.map((r) => {
        const d = deployment(r, revOf.get(r.id)!, live.filter((x) => x.deploymentId === r.id));
        d.replicas = [];
        return d;
      }),
      nextPageToken: rows.length > size ? encodePageToken(page.at(-1)!.name) : "",
    };
  }

  async listRevisions(req: ListRevisionsRequest) {
    const { row } = await this.load(req.name);
    const revs = await this.db.revision.findMany({ where: { deploymentId: row.id }, orderBy: { number: "desc" } });
    return { revisions: revs.map(revision), currentRevision: row.currentRevision, stableRevision: row.stableRevision };
  }

  async rollbackDeployment(req: RollbackDeploymentRequest) {
    return this.update(req.name, async (row, tx) => {
      const to = req.revision === 0 ? await rollbackTarget(tx, row) : req.revision;
      const exists = to >= 1 && (await tx.revision.count({ where: { deploymentId: row.id, number: to } })) === 1;
      if (!exists) {
        const why = req.revision === 0 ? `deployment ${row.name} has no earlier revision with another spec` : `deployment ${row.name} has no revision ${req.revision}`;
        throw new ConnectError(`revision: ${why}`, Code.InvalidArgument);
      }
      if (to === row.currentRevision) return null;
      return {
        data: { currentRevision: to, stopped: false, paused: false, promoted: true, state: "rolling_out", statusMessage: `rolling back to revision ${to}`, rolloutFrom: row.currentRevision, rolloutStartedAt: new Date(), rolloutEndedAt: null },
        kind: "rollback",
        message: `rolling back from revision ${row.currentRevision} to ${to}`,
        revision: to,
      };
    });
  }

  async pauseDeployment(req: PauseDeploymentRequest) {
    return this.update(req.name, async (row) => (row.paused ? null : { data: { paused: true, ...(IN_ROLLOUT.has(row.state as DeployState) ? { state: "paused", statusMessage: "paused" } : {}) }, kind: "paused", message: "rollout paused" }));
  }

  async resumeDeployment(req: ResumeDeploymentRequest) {
    return this.update(req.name, async (row) =>
      !row.paused ? null : { data: { paused: false, ...(row.state === "paused" ? { state: "rolling_out", statusMessage: "resumed" } : {}) }, kind: "resumed", message: "rollout resumed" },
    );
  }

  async promoteDeployment(req: PromoteDeploymentRequest) {
    return this.update(req.name, async (row) => {
      if (row.state !== "waiting_promotion" && !(IN_ROLLOUT.has(row.state as DeployState) && !row.promoted)) {
        throw new ConnectError(`deployment ${row.name} has no canaries waiting for promotion (it is ${row.state.replace("_", " ")})`, Code.FailedPrecondition);
      }
      return { data: { promoted: true, ...(row.state === "waiting_promotion" ? { state: "rolling_out", statusMessage: "promoted" } : {}) }, kind: "promoted", message: "canaries promoted" };
    });
  }

  async scaleDeployment(req: ScaleDeploymentRequest) {
    return this.update(req.name, async (row, _tx, spec) => {
      if (spec.perAgent) throw new ConnectError(`deployment ${row.name} runs one replica per matching agent: it cannot be scaled`, Code.FailedPrecondition);
      if (row.desiredReplicas === req.replicas && !row.stopped) return null;
      return {
        data: { desiredReplicas: req.replicas, stopped: false, state: row.state === "failed" || row.state === "paused" || row.state === "waiting_promotion" ? row.state : "rolling_out" },
        kind: "scaled",
        message: `scaled from ${row.stopped ? 0 : row.desiredReplicas} to ${req.replicas} replicas`,
      };
    });
  }

  async restartDeployment(req: RestartDeploymentRequest) {
    return this.update(req.name, async (row) => ({
      data: { generation: row.generation + 1, stopped: false, paused: false, promoted: true, state: "rolling_out", statusMessage: "restarting every replica", rolloutFrom: row.currentRevision, rolloutStartedAt: new Date(), rolloutEndedAt: null },
      kind: "restarted",
      message: `rolling restart (generation ${row.generation + 1})`,
    }));
  }

  async stopDeployment(req: StopDeploymentRequest) {
    return this.update(req.name, async (row) => (row.stopped ? null : { data: { stopped: true, state: "stopping", statusMessage: "stopping" }, kind: "stopping", message: "stop requested" }));
  }

  async deleteDeployment(req: DeleteDeploymentRequest) {
    const { row } = await this.load(req.name);
    const live = await this.db.replica.count({ where: { deploymentId: row.id, state: { in: LIVE } } });
    if (!row.stopped || live > 0) {
      throw new ConnectError(
        `deployment ${row.name} ${row.stopped ? `still has ${live} replica${live === 1 ? "" : "s"} stopping` : "is not stopped: stop it first (StopDeployment)"}`,
        Code.FailedPrecondition,
      );
    }
    await this.db.deployment.delete({ where: { id: row.id } });
    this.signals?.changed([row.id]); // its watchers end
    return {};
  }

  async *watchDeployment(req: WatchDeploymentRequest, ctx: HandlerContext) {
    let { row, rev } = await this.load(req.name);
    let lastSeq = -1n;
    let lastBytes: Buffer | undefined;
    while (!ctx.signal.aborted) {
      // Listening before reading: a change made while we read wakes the next look.
      const next = this.signals ? this.signals.untilChanged(row.id, WATCH_FALLBACK_MS, ctx.signal) : sleep(WATCH_POLL_MS, ctx.signal);
      // Three reads at once (each is a round trip, and a rollout wakes this on every pass); a
      // revision never changes once written, so it is read again only when the deployment moves to another.
      const [fresh, replicas, events] = await Promise.all([
        readDeployment(this.sql, { id: row.id }),
        this.liveReplicas(row.id),
        lastSeq < 0n ? this.events(row.id, 50) : this.db.event.findMany({ where: { deploymentId: row.id, sequence: { gt: lastSeq } }, orderBy: { sequence: "asc" } }),
      ]);
      if (!fresh) throw new ConnectError(`deployment ${req.name} was deleted`, Code.NotFound);
      row = fresh;
      if (rev.number !== row.currentRevision) rev = await this.db.revision.findUniqueOrThrow({ where: { deploymentId_number: { deploymentId: row.id, number: row.currentRevision } } });
      const d = deployment(row, rev, replicas);
      d.updateTime = undefined; // not a change on its own
      const encoded = toBinary(DeploymentSchema, d);
      const bytes = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
      if (events.length > 0 || !lastBytes || !bytes.equals(lastBytes)) {
        d.updateTime = timestampFromDate(row.updatedAt);
        yield { deployment: d, events: events.map(event) };
        lastBytes = bytes;
        if (events.length > 0) lastSeq = events.at(-1)!.sequence;
        else if (lastSeq < 0n) lastSeq = 0n; // none yet (not row.eventSeq: one written between the reads would be skipped)
      }
      await next;
    }
  }

  private async load(name: string): Promise<{ row: DeploymentRow; rev: RevisionRow }> {
    const row = await readDeployment(this.sql, { name });
    if (!row) throw new ConnectError(`deployment ${name} not found`, Code.NotFound);
    const rev = await this.db.revision.findUniqueOrThrow({ where: { deploymentId_number: { deploymentId: row.id, number: row.currentRevision } } });
    return { row, rev };
  }

  private liveReplicas(id: string) {
    return readLiveReplicas(this.sql, id, "slot");
  }

  private async events(id: string, n: number) {
    const rows = await this.db.event.findMany({ where: { deploymentId: id }, orderBy: { sequence: "desc" }, take: n });
    return rows.reverse();
  }

  /** A change to a deployment with its event, in the caller's transaction. */
  private async change(tx: Tx, row: DeploymentRow, data: Record<string, unknown>, kind: string, message: string, rev = row.currentRevision): Promise<DeploymentRow> {
    const seq = row.eventSeq + 1n;
    await tx.event.create({ data: { deploymentId: row.id, sequence: seq, kind, message, revision: rev } });
    return tx.deployment.update({ where: { id: row.id }, data: { ...data, eventSeq: seq } });
  }

  /** Loads a deployment under a row lock, lets `decide` say what changes (null: nothing), writes it with its event. */
  private async update(
    name: string,
    decideChange: (row: DeploymentRow, tx: Tx, spec: ServiceSpec) => Promise<{ data: Record<string, unknown>; kind: string; message: string; revision?: number } | null>,
  ) {
    const res = await this.db.$transaction(async (tx) => {
      const found = await tx.$queryRawUnsafe<{ id: string }[]>(`SELECT id FROM deploy.deployments WHERE name = $1 FOR UPDATE`, name);
      if (found.length === 0) throw new ConnectError(`deployment ${name} not found`, Code.NotFound);
      let row = await tx.deployment.findUniqueOrThrow({ where: { id: found[0]!.id } });
      const cur = await tx.revision.findUniqueOrThrow({ where: { deploymentId_number: { deploymentId: row.id, number: row.currentRevision } } });
      const change = await decideChange(row, tx, fromJson(ServiceSpecSchema, cur.spec as JsonValue));
      if (change) row = await this.change(tx, row, change.data, change.kind, change.message, change.revision ?? row.currentRevision);
      const rev = await tx.revision.findUniqueOrThrow({ where: { deploymentId_number: { deploymentId: row.id, number: row.currentRevision } } });
      return { row, rev, changed: !!change };
    });
    if (res.changed) this.wake(res.row.id);
    return { deployment: deployment(res.row, res.rev, await this.liveReplicas(res.row.id)) };
  }
}

type Tx = Parameters<Parameters<PrismaClient["$transaction"]>[0]>[0];

export function deployRoutes(impl: DeployServiceImpl) {
  return (router: ConnectRouter) => router.service(DeployService, impl);
}

/**
 * RollbackDeployment's revision 0: the stable revision when it is not the
 * current one; otherwise the latest earlier revision that rolled out fully
 * (a rollout_succeeded or reverted event names it), or failing that the
 * latest earlier one. Revisions with the current one's spec are passed over:
 * going back to them would change nothing, and a revision re-applied after
 * it failed would otherwise be the first candidate. 0 when there is none.
 */
async function rollbackTarget(tx: Tx, row: DeploymentRow): Promise<number> {
  if (row.stableRevision && row.stableRevision !== row.currentRevision) return row.stableRevision;
  const current = await tx.revision.findUnique({ where: { deploymentId_number: { deploymentId: row.id, number: row.currentRevision } }, select: { specHash: true } });
  const earlier = await tx.revision.findMany({
    where: { deploymentId: row.id, number: { lt: row.currentRevision }, ...(current ? { specHash: { not: current.specHash } } : {}) },
    orderBy: { number: "desc" },
    select: { number: true },
  });
  if (earlier.length === 0) return 0;
  const rolledOut = await tx.event.findMany({
    where: { deploymentId: row.id, kind: { in: ["rollout_succeeded", "reverted"] }, revision: { in: earlier.map((r) => r.number) } },
    select: { revision: true },
  });
  const good = new Set(rolledOut.map((e) => e.revision));
  return (earlier.find((r) => good.has(r.number)) ?? earlier[0]!).number;
}
