// The Bid service's loop: claim placeable jobs from the Scheduler, run one
// auction per job, record it, and settle the claims.
//
//   ClaimPlaceableJobs (long poll) → jobs a standing bid (one that lost an
//   earlier auction) answers are placed at once and recorded → for each
//   other job: selectCandidates (power of k over the agent view) → one
//   RequestBids to Fleet for the whole batch (closes when every offer is
//   answered, or after the window) → decide → auctions stored →
//   RecordPlacements (the Scheduler creates attempts and sends Assignments)
//
// The agent view comes from Fleet's WatchAgents; what this replica assigned
// since an agent last reported its free capacity is held as `reserved`, so
// a batch does not pile every job onto the same agent. Reservations age out
// after a lease's length, by when the agent's own reports include them.
// When an agent comes online the Scheduler is asked to wake jobs that
// wait for capacity.

import { randomUUID } from "node:crypto";
import { durationFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import type { PrismaClient } from "../../gen/prisma/bid/client.ts";
import { AgentStatus, Schedulability, WatchAgentsResponse_Kind as Kind, type Agent } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Resources } from "../../gen/ts/drover/common/v1/resources_pb.ts";
import type { PlaceableJob } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { followAgents } from "../../lib/agent_watch.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import type { Logger } from "../../lib/logger.ts";
import { sleep } from "../../lib/timers.ts";
import { decide, decideStanding, explainNoCandidates, explainNoWinner, requiredDrivers, selectCandidates, type AgentView, type CandidateSelection, type JobNeeds, type Res, type StandingBid } from "./placement.ts";
import { ReplicasInFlight } from "./replicas_in_flight.ts";

const JOBS_PER_ROUND = 200;
// A job whose offered agents did not answer in the window is auctioned again
// after about this long (jittered ±50 %), not after the wait for capacity:
// a slow answer is not a full agent. It doubles with each silent auction in
// a row, up to 2 s (or the wait for capacity if shorter), so an overloaded
// fleet is not flooded with offers it cannot answer. A job with a
// concurrency key stays claimed by this replica meanwhile (held), so that it
// keeps its slot and a job of the key submitted after it cannot go first,
// also through auctions that then find no eligible agent at all; a claim
// with too little time left for another auction goes back to the Scheduler
// instead, the job pending until the retry, as other jobs do.
// (Holding every job was tried: under a burst of submits its small rounds of
// retries sent six times the offers, most unanswered, and throughput fell by
// two fifths; bench/README.md, scheduling, session 24.)
const NO_ANSWER_RETRY_MS = 250;
const NO_ANSWER_RETRY_CAP_MS = 2_000;
// A held job's claim must outlast its next auction by this much: the window,
// RecordPlacements, and a loaded machine's delays.
const HOLD_MARGIN_MS = 2_000;
// A service replica is auctioned again rather than placed beside its
// siblings while an offered agent running fewer of them has not answered
// (decide's spreadFirst), in up to this many silent auctions in a row
// (~250 ms and ~500 ms later, jittered); after that it takes the best bid.
const SPREAD_PATIENCE = 2;
// Jobs whose silent auctions in a row this replica counts (a bound, not a cache size that matters).
const MAX_SILENT_TRACKED = 100_000;
// A bid that lost its auction answers later jobs of its size for this long:
// long enough to serve the next rounds under load, short enough that the
// agent is still as it described itself (its running jobs, its load).
const STANDING_BID_MS = 1_000;
// Standing bids kept at most (the oldest go first); more than a few rounds' worth buys nothing.
const MAX_STANDING = 2_000;

/** An auction as stored in bid.auctions. */
interface AuctionRecord {
  id: string;
  jobId: string;
  state: string;
  winnerAgentId: string | null;
  explanation: object;
  closedAt: Date;
}

/** A settled claim, as RecordPlacements takes it. */
interface Placement {
  jobId: string;
  claimId: string;
  /** The winner; empty: the job waits. */
  agentId: string;
  auctionId: string;
  waitReason: string;
  retryAfter: Duration | undefined;
}

const ms = (t: number) => Math.round(t * 10) / 10;

function res(r: Resources | undefined): Res {
  return { cpuMillis: r?.cpuMillis ?? 0, memoryBytes: Number(r?.memoryBytes ?? 0n), diskBytes: Number(r?.diskBytes ?? 0n) };
}

function viewOf(agent: Agent): AgentView {
  return {
    id: agent.id,
    status: agent.status === AgentStatus.ONLINE ? "online" : agent.status === AgentStatus.STALE ? "stale" : "offline",
    schedulability: agent.schedulability === Schedulability.DRAINING ? "draining" : agent.schedulability === Schedulability.CORDONED ? "cordoned" : "schedulable",
    labels: { ...agent.labels },
    drivers: [...agent.drivers],
    total: res(agent.total),
    free: res(agent.free),
    reserved: { cpuMillis: 0, memoryBytes: 0, diskBytes: 0 },
  };
}

/** The deployment a service replica belongs to, which its siblings share; undefined for other jobs. */
function deploymentOf(job: PlaceableJob): string | undefined {
  return job.spec?.service?.deployment || undefined;
}

/**
 * Replicas per agent: the Scheduler's count at claim time, plus those this
 * round placed (or is about to), plus those other rounds of this replica
 * are placing that the count missed.
 */
function siblingCounts(job: PlaceableJob, inRound: ReadonlyMap<string, number> | undefined, inFlight: ReplicasInFlight, round: number, deployment: string): Map<string, number> {
  const counts = new Map(inRound);
  for (const id of job.siblingAgentIds) counts.set(id, (counts.get(id) ?? 0) + 1);
  inFlight.addUncounted(counts, round, deployment, job.jobId, job.siblingJobIds);
  return counts;
}

/** Adds one to a deployment's count on an agent, in a round's map of deployment → agent → count. */
function countOne(round: Map<string, Map<string, number>>, deployment: string | undefined, agentId: string | undefined): void {
  if (deployment === undefined || agentId === undefined) return;
  let counts = round.get(deployment);
  if (!counts) round.set(deployment, (counts = new Map()));
  counts.set(agentId, (counts.get(agentId) ?? 0) + 1);
}

function needsOf(job: PlaceableJob): JobNeeds {
  const spec = job.spec!;
  return {
    jobId: job.jobId,
    driver: spec.driver,
    resources: res(spec.resources),
    labels: { ...(spec.constraints?.labels ?? {}) },
    drivers: [...(spec.constraints?.drivers ?? [])],
    agentIds: [...(spec.constraints?.agentIds ?? [])],
    avoidAgentIds: [...(spec.constraints?.avoidAgentIds ?? [])],
    previousAgentIds: job.previousAgentIds,
  };
}

export interface AuctioneerDeps {
  db: PrismaClient;
  /** Raw SQL on the same database for storeAuctions, which every round runs; without it, Prisma's raw queries. */
  sql?: SqlExecutor;
  clients: Pick<DroverClients, "fleet" | "scheduler">;
  settings: SchedulingSettings;
  /** This replica's name, for claims and logs. */
  bidder: string;
  log: Logger;
  random?: () => number;
}

/** Places claimed jobs by auction; promises every claim it takes is settled or left to lapse. */
export class Auctioneer {
  private readonly agents = new Map<string, AgentView & { reservations: { res: Res; at: number; until: number }[] }>();
  private synced = false;
  private readonly stopping = new AbortController();
  private loops: Promise<void>[] = [];
  private wakeTimer?: NodeJS.Timeout;
  /** When capacity last appeared in the agent view (Date.now()); see round. */
  private capacityAt = 0;
  readonly stats = { auctions: 0, standing: 0, placed: 0, waiting: 0 };
  /** Bids that lost their auctions, oldest first (see placeStanding). */
  private standing: StandingBid[] = [];
  /** Silent auctions in a row, per job (see NO_ANSWER_RETRY_MS). */
  private readonly silent = new Map<string, number>();
  /** When each claimed job with a concurrency key (the only ones held) has its claim lapse, by this replica's clock (a little after the Scheduler's). */
  private readonly claimEnds = new WeakMap<PlaceableJob, number>();
  /** Claimed jobs whose offered agents did not answer, to be auctioned again at dueAt (see NO_ANSWER_RETRY_MS). */
  private held: { job: PlaceableJob; dueAt: number }[] = [];
  private heldTimer?: NodeJS.Timeout;
  /** When heldTimer fires (Date.now()); undefined: not armed. */
  private heldTimerAt?: number;
  /** Auctions of held jobs in flight, for stop(). */
  private readonly heldRounds = new Set<Promise<void>>();
  /** The bid window now: DROVER_BID_WINDOW_MS, longer while answers come late (see adaptWindow). */
  private windowMs: number;
  /** Service replicas this replica's rounds are placing, which overlapping rounds' claims may not count. */
  private readonly replicasInFlight = new ReplicasInFlight();

  constructor(private readonly deps: AuctioneerDeps) {
    this.windowMs = deps.settings.bidWindowMs;
  }

  /**
   * When most offers of a round go unanswered, the window was too short for
   * this fleet or this machine as it is now (a loaded Fleet reads answers
   * late; a busy agent sends them late): double it, up to 20 times the
   * setting. When every offer is answered, ease it back towards the setting.
   * Rounds overlap, so a longer window costs latency, not throughput.
   */
  private adaptWindow(offered: number, answered: number, usedMs: number): void {
    const base = this.deps.settings.bidWindowMs;
    if (offered === 0) return;
    if (answered * 2 < offered) this.windowMs = Math.min(Math.max(this.windowMs, usedMs * 2), base * 20);
    else if (answered === offered) this.windowMs = Math.max(base, Math.floor(this.windowMs * 0.9));
  }

  start(): void {
    // Several rounds in flight: one claims while another waits for bids or records placements.
    this.loops = [this.watchLoop(), ...Array.from({ length: this.deps.settings.auctionRounds }, () => this.placeLoop())];
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.wakeTimer);
    clearTimeout(this.heldTimer);
    await Promise.allSettled([...this.loops, ...this.heldRounds]);
    // Held jobs go back to the Scheduler, placeable at once, rather than wait for their claims to lapse.
    const held = this.held.splice(0);
    if (held.length === 0) return;
    const placements = held.map(({ job }) => ({ jobId: job.jobId, claimId: job.claimId, agentId: "", auctionId: "", waitReason: "its Bid replica stopped before auctioning it again", retryAfter: durationFromMs(0) }));
    await this.deps.clients.scheduler.recordPlacements({ placements }).catch((err) => this.deps.log.warn({ err, jobs: held.length }, "could not give held jobs back; their claims lapse"));
  }

  /**
   * One round: claim; place at once the jobs a standing bid answers; auction
   * the rest; settle. The placements made at once are recorded while the
   * others' offers are out, so they never wait for a bid window. Resolves
   * how many jobs it handled.
   */
  async round(wait: boolean): Promise<number> {
    const roundId = this.replicasInFlight.begin();
    try {
      return await this.claimAndPlace(roundId, wait);
    } finally {
      this.replicasInFlight.end(roundId);
    }
  }

  private async claimAndPlace(roundId: number, wait: boolean): Promise<number> {
    const { clients, bidder } = this.deps;
    const { jobs: claimed } = await clients.scheduler.claimPlaceableJobs(
      { bidder, maxJobs: JOBS_PER_ROUND, wait: wait ? { seconds: 1n } : undefined },
      { signal: this.stopping.signal },
    );
    if (claimed.length === 0) return 0;
    const claimEnds = Date.now() + this.deps.settings.claimMs;
    for (const job of claimed) if (job.spec?.concurrencyKey) this.claimEnds.set(job, claimEnds);
    return this.place(roundId, claimed);
  }

  /** Places claimed jobs: at once on standing bids, the rest by auction. Resolves how many it handled. */
  private async place(roundId: number, claimed: readonly PlaceableJob[]): Promise<number> {
    const claimedAt = performance.now();
    const now = Date.now();
    const standing = this.placeStanding(claimed, now);
    const jobs = claimed.filter((j) => !standing.placed.has(j.jobId));
    const [, auctioned] = await Promise.all([this.settle(standing.records, standing.placements, standing.needs), this.auction(roundId, jobs, now)]);
    this.deps.log.debug({ jobs: claimed.length, standing: standing.placed.size, selectMs: ms(auctioned.offeredAt - claimedAt), ...auctioned.round }, "auction round");
    this.stats.auctions += jobs.length;
    this.stats.standing += standing.placed.size;
    const all = [...standing.placements, ...auctioned.placements];
    this.stats.placed += all.filter((p) => p.agentId).length;
    this.stats.waiting += all.filter((p) => !p.agentId).length;
    // Capacity that appeared after this round read the agent view may have
    // been announced (WakeWaitingJobs) before this round's jobs were set
    // waiting for it: they would sleep DROVER_WAIT_RETRY_MS next to a free agent.
    if (this.capacityAt >= now && all.some((p) => !p.agentId && !p.retryAfter)) this.wakeWaiting();
    return claimed.length;
  }

  /** Auctions jobs and settles their claims; resolves the placements and how the round went, for the log. */
  private async auction(roundId: number, jobs: readonly PlaceableJob[], now: number): Promise<{ placements: Placement[]; offeredAt: number; round: object }> {
    const { clients, settings, bidder } = this.deps;
    const signal = this.stopping.signal;
    const random = this.deps.random ?? Math.random;
    if (jobs.length === 0) return { placements: [], offeredAt: performance.now(), round: {} };
    const views = [...this.agents.values()].map((a) => this.current(a, now));
    // Pinned jobs look their agents up here instead of passing over the fleet.
    const byId = jobs.some((j) => (j.spec?.constraints?.agentIds.length ?? 0) > 0) ? new Map(views.map((v) => [v.id, v])) : undefined;
    // Replicas of one deployment in this round spread too: each selection
    // counts the likely winners (the first offered) of the ones before it.
    const likely = new Map<string, Map<string, number>>();
    const auctions = jobs.map((job) => {
      const needs = needsOf(job);
      const deployment = deploymentOf(job);
      if (deployment !== undefined) needs.siblings = siblingCounts(job, likely.get(deployment), this.replicasInFlight, roundId, deployment);
      const selection: CandidateSelection = selectCandidates(views, needs, settings.offersPerJob, random, byId);
      countOne(likely, deployment, selection.offered[0]?.id);
      if (deployment !== undefined) this.replicasInFlight.note(roundId, deployment, job.jobId, selection.offered[0]?.id);
      // Offer ids are the auction's: a held job is auctioned again under the same claim, while Fleet may still hold its unanswered offers.
      const auctionId = randomUUID();
      return { job, needs, deployment, selection, auctionId, offers: selection.offered.map((a, i) => ({ agentId: a.id, offerId: `${auctionId}:${i}` })) };
    });
    const offers = auctions.flatMap((a) =>
      a.offers.map((o) => ({
        agentId: o.agentId,
        offer: { offerId: o.offerId, jobId: a.job.jobId, resources: a.job.spec?.resources, driver: a.job.spec?.driver || "process", service: a.job.spec?.service !== undefined },
      })),
    );
    const windowMs = this.windowMs;
    const offeredAt = performance.now();
    const replies = offers.length > 0 ? (await clients.fleet.requestBids({ offers, window: durationFromMs(windowMs) }, { signal })).replies : [];
    const answeredAt = performance.now();
    const bidAt = Date.now();
    const byOffer = new Map(replies.map((r) => [r.offerId, r]));
    this.adaptWindow(offers.length, replies.length, windowMs);

    // What each agent said it had free when it bid replaces our view of it
    // before any job of the round is decided.
    for (const r of replies) {
      if (r.reply.case === "bid" && r.reply.value.free) this.reported(r.agentId, res(r.reply.value.free), now);
    }
    const records: AuctionRecord[] = [];
    // Replicas this round placed, by deployment: the next sibling's decision counts them.
    const won = new Map<string, Map<string, number>>();
    const placements = auctions.map((a) => {
      const answers = a.offers.map((o) => {
        const r = byOffer.get(o.offerId);
        if (r?.reply.case === "bid") return { agentId: o.agentId, bid: { score: r.reply.value.score } };
        if (r?.reply.case === "decline") return { agentId: o.agentId, decline: { reason: r.reply.value.reason } };
        return { agentId: o.agentId };
      });
      const noCandidates = a.selection.offered.length === 0;
      if (a.deployment !== undefined) a.needs.siblings = siblingCounts(a.job, won.get(a.deployment), this.replicasInFlight, roundId, a.deployment);
      // The offered agents as they are now, with what this round already gave away reserved:
      // every agent bid with the same free capacity, and only the first jobs may take it.
      const offered = a.selection.offered.map((v) => {
        const agent = this.agents.get(v.id);
        return agent ? this.current(agent, now) : v;
      });
      const spreadFirst = a.deployment !== undefined && (this.silent.get(a.job.jobId) ?? 0) < SPREAD_PATIENCE;
      const decision = noCandidates ? undefined : decide(a.needs, offered, answers, a.selection, spreadFirst);
      countOne(won, a.deployment, decision?.winnerAgentId);
      if (a.deployment !== undefined) this.replicasInFlight.note(roundId, a.deployment, a.job.jobId, decision?.winnerAgentId);
      const summary = noCandidates ? explainNoCandidates(a.selection) : decision!.winnerAgentId ? decision!.summary : explainNoWinner(decision!);
      records.push({
        id: a.auctionId,
        jobId: a.job.jobId,
        state: noCandidates ? "no_candidates" : "closed",
        winnerAgentId: decision?.winnerAgentId ?? null,
        explanation: { summary, candidates: decision?.candidates ?? [], ineligible: a.selection.ineligible, eligibleCount: a.selection.eligibleCount, examined: a.selection.examined, attempt: a.job.attemptNumber, bidder },
        closedAt: new Date(),
      });
      if (decision?.winnerAgentId) this.reserve(decision.winnerAgentId, a.needs.resources, now);
      // The bids that lost stand for the next jobs of their size (see placeStanding);
      // not a service replica's, whose agent also counted its replicas.
      if (a.job.spec?.service === undefined) {
        for (const ans of answers) {
          if (ans.bid && ans.agentId !== decision?.winnerAgentId) {
            this.standing.push({ agentId: ans.agentId, score: ans.bid.score, needs: a.needs.resources, drivers: requiredDrivers(a.needs), jobId: a.job.jobId, at: bidAt });
          }
        }
      }
      // Offered agents that did not answer, or whose capacity went to jobs before
      // this one in the round, say nothing about the fleet being full: try again soon.
      const unanswered = !decision?.winnerAgentId && decision?.candidates.some((c) => c.outcome === "no_answer" || c.outcome === "outbid");
      // A held job (see hold) whose agents, silent before, are now not even
      // eligible (stale, most often: a missed heartbeat or two) is held on:
      // going back would free its slot for a job of its key submitted after it.
      const silentBefore = this.silent.get(a.job.jobId) ?? 0;
      const stillHeld = noCandidates && !!a.job.spec?.concurrencyKey && silentBefore > 0;
      const silent = unanswered || stillHeld ? silentBefore + 1 : 0;
      if (silent > 0 && this.silent.size < MAX_SILENT_TRACKED) this.silent.set(a.job.jobId, silent);
      else this.silent.delete(a.job.jobId);
      const retryMs = Math.round(Math.min(NO_ANSWER_RETRY_MS * 2 ** Math.min(silent - 1, 20), NO_ANSWER_RETRY_CAP_MS, settings.waitRetryMs) * (0.5 + random()));
      if ((unanswered || stillHeld) && this.hold(a.job, retryMs, windowMs)) return undefined;
      return {
        jobId: a.job.jobId,
        claimId: a.job.claimId,
        agentId: decision?.winnerAgentId ?? "",
        auctionId: a.auctionId,
        waitReason: decision?.winnerAgentId ? "" : summary,
        retryAfter: unanswered ? durationFromMs(retryMs) : undefined,
      };
    });
    if (this.standing.length > MAX_STANDING) this.standing.splice(0, this.standing.length - MAX_STANDING);
    // Held jobs are settled by a later auction.
    const settling = placements.flatMap((p, i) => (p ? [{ placement: p, needs: auctions[i]!.needs }] : []));
    const timing = await this.settle(records, settling.map((x) => x.placement), settling.map((x) => x.needs));
    return {
      placements: settling.map((x) => x.placement),
      offeredAt,
      round: {
        offers: offers.length,
        answers: replies.length,
        windowMs,
        bidsMs: ms(answeredAt - offeredAt),
        recordMs: ms(performance.now() - answeredAt),
        placeMs: ms(timing.placedAt - answeredAt),
        storeMs: ms(timing.storedAt - answeredAt),
      },
    };
  }

  /**
   * Keeps a claimed job with a concurrency key (one claimEnds knows) whose
   * offered agents did not answer, to auction it again in `retryMs` (see
   * NO_ANSWER_RETRY_MS), if its claim lasts that long and the next
   * auction's window with HOLD_MARGIN_MS to spare. False: the claim is to go
   * back to the Scheduler.
   */
  private hold(job: PlaceableJob, retryMs: number, windowMs: number): boolean {
    const claimEnds = this.claimEnds.get(job);
    const dueAt = Date.now() + retryMs;
    if (this.stopping.signal.aborted || claimEnds === undefined || dueAt + windowMs + HOLD_MARGIN_MS > claimEnds) return false;
    this.held.push({ job, dueAt });
    if (this.heldTimerAt === undefined || dueAt < this.heldTimerAt) this.armHeld();
    return true;
  }

  /** Runs the next auction of held jobs when the first of them is due. */
  private armHeld(): void {
    clearTimeout(this.heldTimer);
    this.heldTimerAt = undefined;
    if (this.held.length === 0 || this.stopping.signal.aborted) return;
    let first = Infinity;
    for (const h of this.held) first = Math.min(first, h.dueAt);
    this.heldTimerAt = first;
    this.heldTimer = setTimeout(() => {
      const now = Date.now();
      const due = this.held.filter((h) => h.dueAt <= now).slice(0, JOBS_PER_ROUND);
      const jobs = new Set(due.map((h) => h.job));
      this.held = this.held.filter((h) => !jobs.has(h.job));
      this.armHeld();
      if (due.length === 0) return;
      const roundId = this.replicasInFlight.begin();
      const placing: Promise<void> = this.place(roundId, [...jobs])
        .then(
          () => undefined,
          (err) => {
            if (!this.stopping.signal.aborted) this.deps.log.warn({ err, jobs: jobs.size }, "an auction of held jobs failed; their claims lapse and are retried");
          },
        )
        .finally(() => {
          this.replicasInFlight.end(roundId);
          this.heldRounds.delete(placing);
        });
      this.heldRounds.add(placing);
    }, Math.max(0, first - Date.now()));
  }

  /**
   * Places the jobs that a standing bid answers (decideStanding), each on
   * its own bid, reserving as it goes so the next job sees what this one
   * took. Service replicas are always auctioned: their agent's answer also
   * counts its replicas (DROVER_MAX_SERVICES), which a bid for a batch job
   * did not. Each placement is recorded as an auction with one candidate,
   * so ExplainPlacement says which bid it used.
   */
  private placeStanding(jobs: readonly PlaceableJob[], now: number): { placed: Set<string>; records: AuctionRecord[]; placements: Placement[]; needs: JobNeeds[] } {
    const out = { placed: new Set<string>(), records: [] as AuctionRecord[], placements: [] as Placement[], needs: [] as JobNeeds[] };
    this.standing = this.standing.filter((b) => now - b.at <= STANDING_BID_MS);
    if (this.standing.length === 0) return out;
    // Views as this round leaves them; an agent's is dropped when a placement reserves on it.
    const views = new Map<string, AgentView>();
    const agentOf = (id: string) => {
      let v = views.get(id);
      if (!v) {
        const a = this.agents.get(id);
        if (!a) return undefined;
        views.set(id, (v = this.current(a, now)));
      }
      return v;
    };
    for (const job of jobs) {
      if (job.spec?.service !== undefined) continue;
      const needs = needsOf(job);
      const hit = decideStanding(needs, this.standing, agentOf, now, STANDING_BID_MS);
      if (!hit) continue;
      this.standing.splice(hit.index, 1);
      const agentId = hit.decision.winnerAgentId!;
      this.reserve(agentId, needs.resources, now);
      views.delete(agentId);
      const auctionId = randomUUID();
      out.placed.add(job.jobId);
      out.needs.push(needs);
      out.records.push({
        id: auctionId,
        jobId: job.jobId,
        state: "closed",
        winnerAgentId: agentId,
        explanation: { summary: hit.decision.summary, candidates: hit.decision.candidates, ineligible: [], eligibleCount: 1, attempt: job.attemptNumber, bidder: this.deps.bidder },
        closedAt: new Date(),
      });
      out.placements.push({ jobId: job.jobId, claimId: job.claimId, agentId, auctionId, waitReason: "", retryAfter: undefined });
      this.silent.delete(job.jobId);
    }
    return out;
  }

  /**
   * Stores the auction records and settles the claims; a winner whose
   * placement the Scheduler did not accept gives its reservation back.
   * The record is for ExplainPlacement: placing the jobs does not wait for it.
   */
  private async settle(records: AuctionRecord[], placements: Placement[], needs: readonly JobNeeds[]): Promise<{ storedAt: number; placedAt: number }> {
    const timing = { storedAt: performance.now(), placedAt: performance.now() };
    if (placements.length === 0) {
      // Every job of the round is held for another auction: its record is all there is to keep.
      await this.storeAuctions(records).catch((err) => this.deps.log.warn({ err, auctions: records.length }, "could not store auctions; ExplainPlacement will lack them"));
      timing.storedAt = performance.now();
      return timing;
    }
    // The placements go out first: they are what the jobs wait on. Storing the auctions'
    // records (a JSON document each, encoded before the statement is sent) waits a turn of
    // the event loop, so that encoding does not hold the placements' request back.
    const placed = this.deps.clients.scheduler.recordPlacements({ placements }, { signal: this.stopping.signal }).finally(() => (timing.placedAt = performance.now()));
    const [{ results }] = await Promise.all([
      placed,
      new Promise((resolve) => setImmediate(resolve))
        .then(() => this.storeAuctions(records))
        .catch((err) => this.deps.log.warn({ err, auctions: records.length }, "could not store auctions; ExplainPlacement will lack them"))
        .finally(() => (timing.storedAt = performance.now())),
    ]);
    results.forEach((r, i) => {
      const p = placements[i]!;
      if (p.agentId && !r.accepted) this.release(p.agentId, needs[i]!.resources);
      this.replicasInFlight.settled(p.jobId, r.accepted && p.agentId !== "");
    });
    return timing;
  }

  /**
   * One INSERT for a round's auctions (Prisma's createMany costs more CPU
   * than the auction itself), on the raw executor when there is one: at a
   * low rate every job is a round of its own, and Prisma's raw query costs
   * more than the statement.
   */
  private async storeAuctions(records: readonly AuctionRecord[]): Promise<void> {
    if (records.length === 0) return;
    const statement = `INSERT INTO "bid"."auctions" (id, job_id, state, winner_agent_id, explanation, closed_at)
       SELECT id, job_id, state, winner_agent_id, explanation, closed_at
         FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, job_id uuid, state text, winner_agent_id text, explanation jsonb, closed_at timestamptz)`;
    const rows = JSON.stringify(records.map((r) => ({ id: r.id, job_id: r.jobId, state: r.state, winner_agent_id: r.winnerAgentId, explanation: r.explanation, closed_at: r.closedAt.toISOString() })));
    if (this.deps.sql) await this.deps.sql.query(statement, [rows]);
    else await this.deps.db.$executeRawUnsafe(statement, rows);
  }

  private async placeLoop(): Promise<void> {
    const signal = this.stopping.signal;
    let backoff = 100;
    while (!signal.aborted) {
      try {
        // Without the agent view every job would wait for "no agents": hold off until it is synced.
        if (!this.synced) {
          await sleep(50, signal);
          continue;
        }
        await this.round(true);
        backoff = 100;
      } catch (err) {
        if (signal.aborted) return;
        this.deps.log.warn({ err }, "an auction round failed; its claims lapse and are retried");
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  private watchLoop(): Promise<void> {
    return followAgents(
      this.deps.clients.fleet,
      {
        onEvent: (res) => {
          if (res.kind === Kind.SYNCED) {
            this.synced = true;
            this.capacityAppeared();
            return;
          }
          const agent = res.agent;
          if (!agent) return;
          if (res.kind === Kind.DELETED) {
            this.agents.delete(agent.id);
            return;
          }
          const before = this.agents.get(agent.id);
          const view = viewOf(agent);
          this.agents.set(agent.id, { ...view, reservations: before?.reservations ?? [] });
          // Capacity may have appeared: a new or returning agent, an undrain.
          const usable = view.status === "online" && view.schedulability === "schedulable";
          if (usable && (!before || before.status !== "online" || before.schedulability !== "schedulable")) this.capacityAppeared();
        },
        onLost: () => {
          this.synced = false;
        },
      },
      this.stopping.signal,
      this.deps.log,
    );
  }

  private capacityAppeared(): void {
    this.capacityAt = Date.now();
    this.wakeWaiting();
  }

  /** Asks the Scheduler to re-auction jobs waiting for capacity, at most every 100 ms. */
  private wakeWaiting(): void {
    if (this.wakeTimer) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.deps.clients.scheduler.wakeWaitingJobs({}).catch((err) => this.deps.log.debug({ err }, "could not wake waiting jobs"));
    }, 100);
  }

  // The view with live reservations summed up.
  private current(a: AgentView & { reservations: { res: Res; at: number; until: number }[] }, now: number): AgentView {
    a.reservations = a.reservations.filter((r) => r.until > now);
    const reserved = { cpuMillis: 0, memoryBytes: 0, diskBytes: 0 };
    for (const r of a.reservations) {
      reserved.cpuMillis += r.res.cpuMillis;
      reserved.memoryBytes += r.res.memoryBytes;
      reserved.diskBytes += r.res.diskBytes;
    }
    return { ...a, reserved };
  }

  private reserve(agentId: string, r: Res, now: number): void {
    // A job that asks for nothing holds nothing: kept, it only made current() longer (with jobs
    // placed on standing bids, whose agents report nothing in between, over a thousand per
    // agent within a lease in bench/scheduling, each summed up on every look at the agent).
    if (r.cpuMillis === 0 && r.memoryBytes === 0 && r.diskBytes === 0) return;
    this.agents.get(agentId)?.reservations.push({ res: r, at: now, until: now + this.deps.settings.leaseMs });
  }

  private release(agentId: string, r: Res): void {
    const a = this.agents.get(agentId);
    // The very object reserve() was given: each job's needs are reserved once.
    const i = a?.reservations.findIndex((x) => x.res === r) ?? -1;
    if (a && i >= 0) a.reservations.splice(i, 1);
  }

  // An agent said what it had free when it bid (after this round began):
  // that counts what was assigned to it before the round, not what this
  // round is assigning.
  private reported(agentId: string, free: Res, roundStart: number): void {
    const a = this.agents.get(agentId);
    if (!a) return;
    a.free = free;
    a.reservations = a.reservations.filter((r) => r.at >= roundStart);
  }
}
