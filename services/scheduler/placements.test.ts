// RecordPlacements builds each Assignment from the spec its claim parsed on
// the replica that answered the claim, and reads the spec back from the
// database on any other replica: either way the agent gets the job's
// commands. Two Scheduler replicas on one database (PGlite and PostgreSQL),
// each with a Fleet that keeps what it is asked to send.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";

import { ClaimPlaceableJobsRequestSchema, RecordPlacementsRequestSchema, SubmitJobRequestSchema } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { SendToAgentsRequest } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import type { DroverClients } from "../../lib/clients.ts";
import { defaultSchedulingSettings } from "../../lib/config.ts";
import type { Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { openTempPglite, openTempPostgres } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { JobStore } from "./job_store.ts";
import { SchedulerServiceImpl } from "./service.ts";
import { SchedulerSignals } from "./signals.ts";

const adminUrl = await requirePostgres();
const log = createLogger("silent");

/** A Scheduler replica whose Fleet keeps the argv of each Assignment it is asked to send, by job. */
function replica(db: Database) {
  const sent = new Map<string, string[]>();
  const fleet = {
    sendToAgents: async (req: { messages: SendToAgentsRequest["messages"] }) => {
      for (const { message } of req.messages) {
        if (message?.message.case === "assignment") sent.set(message.message.value.jobId, message.message.value.exec?.commands[0]?.argv ?? []);
      }
      return {};
    },
  } as unknown as DroverClients["fleet"];
  const store = new JobStore(db.prismaFor("scheduler"), db.executor);
  // Counts the claim statements run (the store itself is the real one).
  const looks = { n: 0 };
  const claim = store.claim.bind(store);
  store.claim = (...args) => (looks.n++, claim(...args));
  const service = new SchedulerServiceImpl({
    store,
    signals: new SchedulerSignals(createMemoryBus(), log),
    clients: { fleet },
    settings: defaultSchedulingSettings(),
    log,
  });
  return { service, sent, looks };
}

const longPoll = (service: SchedulerServiceImpl, waitMs: number) =>
  service.claimPlaceableJobs(create(ClaimPlaceableJobsRequestSchema, { bidder: "test", maxJobs: 10, wait: { nanos: waitMs * 1_000_000 } }), { signal: new AbortController().signal } as never);

function cases(open: () => Promise<Database>) {
  let db: Database;
  before(async () => {
    db = await open();
    await migrate(db.executor, "scheduler");
  });
  after(async () => {
    await db?.close();
  });

  it("sends each job's commands whichever replica records its placement", async () => {
    const a = replica(db);
    const b = replica(db);
    const ids: string[] = [];
    for (const word of ["kept", "read-back"]) {
      const { job } = await a.service.submitJob(create(SubmitJobRequestSchema, { spec: { exec: { commands: [{ argv: ["echo", word] }] } } }));
      ids.push(job.id);
    }
    const { jobs } = await a.service.claimPlaceableJobs(create(ClaimPlaceableJobsRequestSchema, { bidder: "test", maxJobs: 10 }), { signal: new AbortController().signal } as never);
    assert.deepEqual(jobs.map((j) => j.jobId).sort(), [...ids].sort());
    const placement = (jobId: string) => {
      const claimed = jobs.find((j) => j.jobId === jobId)!;
      return create(RecordPlacementsRequestSchema, { placements: [{ jobId, claimId: claimed.claimId, agentId: "ag_1" }] });
    };
    // The replica that answered the claim kept the spec; the other reads it back.
    const [onA, onB] = await Promise.all([a.service.recordPlacements(placement(ids[0]!)), b.service.recordPlacements(placement(ids[1]!))]);
    assert.ok(onA.results[0]!.accepted && onB.results[0]!.accepted);
    assert.deepEqual([...a.sent], [[ids[0], ["echo", "kept"]]]);
    assert.deepEqual([...b.sent], [[ids[1], ["echo", "read-back"]]]);
  });

  it("tells a claimed service replica where its deployment's live replicas run, and which jobs they are", async () => {
    const a = replica(db);
    const claimNow = async () => (await a.service.claimPlaceableJobs(create(ClaimPlaceableJobsRequestSchema, { bidder: "test", maxJobs: 10 }), { signal: new AbortController().signal } as never)).jobs;
    const submit = async (deployment: string) =>
      (await a.service.submitJob(create(SubmitJobRequestSchema, { spec: { exec: { commands: [{ argv: ["true"] }] }, service: { deployment, revision: 1, replicaId: randomUUID() } } }))).job.id;
    const placed = [await submit("sib-web"), await submit("sib-web"), await submit("sib-api")];
    const claimed = await claimNow();
    const results = await a.service.recordPlacements(
      create(RecordPlacementsRequestSchema, { placements: claimed.map((j, i) => ({ jobId: j.jobId, claimId: j.claimId, agentId: `ag_${i}` })) }),
    );
    assert.ok(results.results.every((r) => r.accepted));
    const agentOf = new Map(claimed.map((j, i) => [j.jobId, `ag_${i}`]));
    const next = await submit("sib-web");
    const [job] = await claimNow();
    assert.equal(job?.jobId, next);
    const siblings = job.siblingJobIds.map((id, i) => [id, job.siblingAgentIds[i]]).sort();
    assert.deepEqual(siblings, placed.slice(0, 2).map((id) => [id, agentOf.get(id)]).sort(), "the two live sib-web replicas, each with its agent; not sib-api's");
  });

  it("a long poll right after a claim that found the queue drained waits without looking, until a doorbell rings", async () => {
    const a = replica(db);
    assert.deepEqual((await longPoll(a.service, 50)).jobs, []);
    assert.equal(a.looks.n, 1, "the first long poll looked once, found nothing, and waited");
    assert.deepEqual((await longPoll(a.service, 50)).jobs, []);
    assert.equal(a.looks.n, 1, "nothing rang since: the second did not look");
    // A submit rings the doorbell: the next long poll looks, as does a waiting one.
    const { job } = await a.service.submitJob(create(SubmitJobRequestSchema, { spec: { exec: { commands: [{ argv: ["true"] }] } } }));
    assert.deepEqual((await longPoll(a.service, 50)).jobs.map((j) => j.jobId), [job.id]);
    assert.equal(a.looks.n, 2);
    const waiting = longPoll(a.service, 5_000);
    const { job: next } = await a.service.submitJob(create(SubmitJobRequestSchema, { spec: { exec: { commands: [{ argv: ["true"] }] } } }));
    assert.deepEqual((await waiting).jobs.map((j) => j.jobId), [next.id]);
    assert.equal(a.looks.n, 3, "the waiting poll looked once, when the doorbell woke it");
    // A claim without a wait always looks: it cannot wait for a doorbell.
    assert.deepEqual((await a.service.claimPlaceableJobs(create(ClaimPlaceableJobsRequestSchema, { bidder: "test", maxJobs: 10 }), { signal: new AbortController().signal } as never)).jobs, []);
    assert.equal(a.looks.n, 4);
  });

  it("a job that comes due silently (not_before passes) is still found by a skipping long poll, through the due poll", async () => {
    const a = replica(db);
    assert.deepEqual((await longPoll(a.service, 50)).jobs, []);
    // Stored behind the replica's back: no doorbell rings for it, as for a retry whose backoff ends.
    const executor = db.executor;
    const id = randomUUID();
    await executor.query(
      `INSERT INTO "scheduler"."jobs" (id, spec, state, priority, created_at, updated_at) VALUES ($1::uuid, $2::jsonb, 'pending', 0, now(), now())`,
      [id, JSON.stringify({ exec: { commands: [{ argv: ["true"] }] } })],
    );
    const t0 = performance.now();
    const { jobs } = await longPoll(a.service, 5_000);
    assert.deepEqual(jobs.map((j) => j.jobId), [id]);
    assert.ok(performance.now() - t0 < 4_000, "found by the due poll, not at the end of the wait");
  });
}

describe("placements recorded on either Scheduler replica (PGlite)", () => {
  cases(openTempPglite);
});

describe("placements recorded on either Scheduler replica (PostgreSQL)", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  cases(() => openTempPostgres(adminUrl));
});
