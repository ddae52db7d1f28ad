// Placement of one job for an auction: which agents are offered the job, and
// which of their answers wins. Pure: it reads plain views of agents and
// answers and returns plain decisions; the Bid service loads the views, sends
// the offers, collects the answers and applies the decision.
//
//   agents ──selectCandidates──▶ offered (best k of a random sample)
//   offered + answers ──decide──▶ winner, one outcome per offered agent, summary
//   standing bids (lost auctions) ──decideStanding──▶ a winner at once, or none
//
// The fleet may hold 10,000 agents, so selection never scores them all when
// it does not have to ("power of k choices"): it samples a bounded number of
// distinct agents at random, and only scans the whole fleet when the sample
// holds fewer than k eligible agents (a rare label, a nearly full fleet). A
// job pinned to agents (Constraints.agent_ids, at most 64) is not sampled at
// all: only its pinned agents are examined, found by id.

/** Resources in the units agents report; 0 means "no requirement" in a job. */
export interface Res {
  cpuMillis: number;
  memoryBytes: number;
  diskBytes: number;
}

/** What placement knows about one agent: liveness, schedulability, labels, drivers and capacity. */
export interface AgentView {
  id: string;
  status: "online" | "stale" | "offline";
  schedulability: "schedulable" | "draining" | "cordoned";
  /** Effective labels (reported, overlaid by token's, overlaid by operator's). */
  labels: Record<string, string>;
  drivers: string[];
  total: Res;
  /** As last reported by the agent. */
  free: Res;
  /** What this control plane assigned to the agent since its last report (not yet reflected in free). */
  reserved: Res;
}

/** What one job needs from the agent that runs it. */
export interface JobNeeds {
  jobId: string;
  /** The job's runner; "" means "process". */
  driver: string;
  resources: Res;
  /** Every key must be present on the agent with the same value. */
  labels: Record<string, string>;
  /** Further drivers the agent must have, besides `driver`. */
  drivers: string[];
  /** Only these agents may run it (Constraints.agent_ids); empty or unset: any. */
  agentIds?: string[];
  /** These agents may never run it (Constraints.avoid_agent_ids). */
  avoidAgentIds?: string[];
  /** Agents of previous attempts: offered and chosen only after every other eligible agent. */
  previousAgentIds?: string[];
  /**
   * A service replica's siblings: how many replicas of its deployment each
   * agent runs (absent: none). Fewer first, before fit, so a deployment
   * spreads over agents (see siblingsOn).
   */
  siblings?: ReadonlyMap<string, number>;
}

/**
 * How many of the job's siblings the agent runs. Replicas of one service
 * are spread, not packed: with every replica on the agent that fits best,
 * one machine going down takes the whole service with it. This is Nomad's
 * job anti-affinity, made a rule rather than a weight: an agent with fewer
 * siblings always comes first, and fit decides among equals, so batch jobs
 * (which have no siblings) still pack.
 */
export function siblingsOn(job: JobNeeds, agentId: string): number {
  return job.siblings?.get(agentId) ?? 0;
}

/** The agents offered a job, and what the selection saw on the way. */
export interface CandidateSelection {
  /** At most k agents, best first. */
  offered: AgentView[];
  /** Eligible agents among those examined. */
  eligibleCount: number;
  /**
   * Agents whose eligibility was checked: bounded when sampling sufficed,
   * all agents after a full scan or for a pinned job (the agents it is not
   * pinned to are judged by their ids alone).
   */
  examined: number;
  /**
   * Examined agents that could not take the job, grouped by reason, largest
   * group first; and, for a pinned job, the pinned agents Fleet does not
   * know (PINNED_UNKNOWN), which were not examined.
   */
  ineligible: { reason: string; count: number; exampleAgentIds: string[] }[];
}

/** One offered agent's answer to an offer; neither bid nor decline counts as no answer. */
export interface Answer {
  agentId: string;
  bid?: { score: number };
  decline?: { reason: string };
}

/** How one offered agent fared in the auction. */
export interface Outcome {
  agentId: string;
  outcome: "won" | "outbid" | "declined" | "no_answer" | "deferred";
  /** The combined score for a bid; 0 otherwise. */
  score: number;
  reason: string;
}

/** The result of an auction: the winner, if any, every offered agent's outcome, and a sentence for people. */
export interface Decision {
  winnerAgentId?: string;
  /** One per offered agent: winner first, then the other bids best first, then declines, then silences. */
  candidates: Outcome[];
  summary: string;
}

/** Why an agent may not run a job pinned to other agents. */
export const NOT_PINNED = "not one of the agents the job is pinned to";
/** Why an agent may not run a job that avoids it. */
export const AVOIDED = "avoided by the job";
/** The group of a pinned job's agents that Fleet does not know (never registered, or deleted). */
export const PINNED_UNKNOWN = "pinned by the job but not registered";

/** Below this many agents a full scan is as cheap as sampling, and gives the exact picture. */
export const FULL_SCAN_BELOW = 64;

/** How many distinct agents sampling examines at most before falling back to a full scan. */
export function sampleBound(k: number): number {
  return Math.max(8 * offerCount(k), FULL_SCAN_BELOW);
}

// Weights of the final score. The agent's bid is the fresher opinion: it knows
// its real load at the moment of the offer, which our view only knows as of
// the last report plus our own reservations. Fit keeps the packing policy in
// the decision even when agents bid alike (an agent may bid a flat 1).
export const BID_WEIGHT = 0.6;
export const FIT_WEIGHT = 0.4;

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const KiB = 1024;

// ---------------------------------------------------------------------------
// Eligibility

// A reason for one agent (`detail`, shown on the agent) and the group it
// counts in (`group`, shown in summaries). They differ where the detail names
// a number particular to the agent: "label zone is us, needs eu" counts as
// "lacks label zone=eu", "needs 4 CPU cores, 1.5 free" counts as "has less
// than 4 CPU cores free". Groups are phrased so that "30 lack ..." reads.
interface Verdict {
  detail: string;
  group: string;
}

// Stale agents are not eligible. A stale agent missed heartbeats but is not
// yet declared offline; it may be partitioned or dying. Offering it a job
// spends one of k offers on an agent that likely will not answer, and if it
// does answer, the job lands somewhere we may lose sight of in seconds. A job
// waiting a few seconds for a healthy agent is the cheaper mistake.
//
// The job's own choice of agents comes first: for an agent the job may never
// run on, whether it is online or full is beside the point.
function verdict(agent: AgentView, job: JobNeeds, drivers: readonly string[] = requiredDrivers(job)): Verdict | null {
  if (job.agentIds?.length && !job.agentIds.includes(agent.id)) return same(NOT_PINNED);
  if (job.avoidAgentIds?.includes(agent.id)) return same(AVOIDED);
  if (agent.status === "offline") return same("offline");
  if (agent.status === "stale") return same("stale (no recent heartbeat)");
  if (agent.schedulability === "draining") return same("draining");
  if (agent.schedulability === "cordoned") return same("cordoned");

  for (const [key, want] of Object.entries(job.labels)) {
    const have = agent.labels[key];
    if (have === want) continue;
    const group = `lacks label ${key}=${want}`;
    return { detail: have === undefined ? group : `label ${key} is ${have}, needs ${want}`, group };
  }

  for (const driver of drivers) {
    if (!agent.drivers.includes(driver)) return { detail: `no driver ${driver}`, group: `has no driver ${driver}` };
  }

  const free = available(agent);
  const need = job.resources;
  if (need.cpuMillis > 0 && need.cpuMillis > free.cpuMillis) {
    const n = cores(need.cpuMillis);
    const unit = n === "1" ? "CPU core" : "CPU cores";
    return { detail: `needs ${n} ${unit}, ${cores(free.cpuMillis)} free`, group: `has less than ${n} ${unit} free` };
  }
  for (const [what, needed, left] of [
    ["memory", need.memoryBytes, free.memoryBytes],
    ["disk", need.diskBytes, free.diskBytes],
  ] as const) {
    if (needed > 0 && needed > left) {
      const unit = byteUnit(needed);
      return {
        detail: `needs ${bytes(needed, unit)} ${what}, ${bytes(left, unit)} free`,
        group: `has less than ${bytes(needed, unit)} ${what} free`,
      };
    }
  }
  return null;
}

function same(reason: string): Verdict {
  return { detail: reason, group: reason };
}

/** Why the agent cannot take the job, in words; null when it can. Checks the job's pins and avoids, liveness, schedulability, labels, drivers, then free minus reserved resources. */
export function ineligibility(agent: AgentView, job: JobNeeds): string | null {
  return verdict(agent, job)?.detail ?? null;
}

/** The drivers the job needs: its own ("" meaning "process") and any further ones, each once. */
export function requiredDrivers(job: JobNeeds): string[] {
  return [...new Set([job.driver === "" ? "process" : job.driver, ...job.drivers])];
}

/** What the agent can still give: what it reported free minus what we reserved on it since, never below 0. */
export function available(agent: AgentView): Res {
  return {
    cpuMillis: Math.max(0, agent.free.cpuMillis - agent.reserved.cpuMillis),
    memoryBytes: Math.max(0, agent.free.memoryBytes - agent.reserved.memoryBytes),
    diskBytes: Math.max(0, agent.free.diskBytes - agent.reserved.diskBytes),
  };
}

// ---------------------------------------------------------------------------
// Fit

/**
 * How well the job fits the agent, from 0 (does not fit, or leaves the agent
 * empty) to 1 (fills the agent exactly); higher is better.
 *
 * We pack (best fit), as Nomad's default binpack does: an agent already busy
 * is preferred, so large agents stay free for large jobs and idle machines
 * stay idle (and can be drained or turned off). Spreading would keep every
 * machine half full and strand large jobs. The formula is Nomad's
 * ScoreFitBinPack over CPU and memory, scaled to 0..1:
 *
 *   fit = (20 - 10^freeCpuFraction - 10^freeMemFraction) / 18
 *
 * with the fractions measured after placement. The exponent punishes an
 * agent that would be left lopsided (CPU full, memory empty) more than one
 * evenly used. Disk is only a yes/no constraint, as in Nomad. A dimension
 * whose total is unknown (0) is left out; with none known, fit is 0.5.
 */
export function fit(agent: AgentView, job: JobNeeds): number {
  return verdict(agent, job) === null ? fitEligible(agent, job) : 0;
}

/** fit() of an agent already found eligible for the job (selection and the standing bids judge each agent once). */
function fitEligible(agent: AgentView, job: JobNeeds): number {
  const free = available(agent);
  const fractions: number[] = [];
  for (const [total, left, need] of [
    [agent.total.cpuMillis, free.cpuMillis, job.resources.cpuMillis],
    [agent.total.memoryBytes, free.memoryBytes, job.resources.memoryBytes],
  ]) {
    if (!(total > 0)) continue;
    fractions.push(clamp01((left - need) / total));
  }
  if (fractions.length === 0) return 0.5;
  const penalty = fractions.reduce((sum, f) => sum + 10 ** f, 0);
  return clamp01((10 * fractions.length - penalty) / (9 * fractions.length));
}

// ---------------------------------------------------------------------------
// Selection

/**
 * The best k eligible agents to offer the job, from a bounded random sample
 * when the fleet is large, from everyone when it is small or when the sample
 * found fewer than k, from its pinned agents alone when it is pinned. Agents
 * in previousAgentIds come after all others; within each, higher fit first,
 * then agent id.
 *
 * Sampling draws distinct agents uniformly (a lazy Fisher-Yates shuffle, so no
 * draw is wasted on a repeat) and stops early once it holds 2k eligible
 * agents: twice as many choices as offers is what makes "power of k choices"
 * place well, and more buys little. It never examines more than sampleBound(k).
 *
 * `byId`, the same agents by id, lets a pinned job find its agents without a
 * pass over the fleet; without it they are found by one.
 */
export function selectCandidates(
  agents: readonly AgentView[],
  job: JobNeeds,
  k: number,
  random: () => number,
  byId?: ReadonlyMap<string, AgentView>,
): CandidateSelection {
  const want = offerCount(k);
  const eligible: AgentView[] = [];
  const groups = new Map<string, { reason: string; count: number; exampleAgentIds: string[] }>();
  let examined = 0;
  const drivers = requiredDrivers(job);

  const examine = (agent: AgentView) => {
    examined++;
    const v = verdict(agent, job, drivers);
    if (v === null) {
      eligible.push(agent);
      return;
    }
    let g = groups.get(v.group);
    if (!g) groups.set(v.group, (g = { reason: v.group, count: 0, exampleAgentIds: [] }));
    g.count++;
    if (g.exampleAgentIds.length < 5) g.exampleAgentIds.push(agent.id);
  };

  if (job.agentIds?.length) {
    // Sampling could miss the one agent in 10,000 the job may run on, and a
    // full scan would judge 10,000 agents to find it: look the pins up.
    const pins = new Set(job.agentIds);
    const pinned = byId ? [...pins].flatMap((id) => byId.get(id) ?? []) : agents.filter((a) => pins.has(a.id));
    for (const agent of pinned) examine(agent);
    const others = agents.length - pinned.length;
    if (others > 0) {
      const exampleAgentIds: string[] = [];
      for (const agent of agents) {
        if (exampleAgentIds.length === 5) break;
        if (!pins.has(agent.id)) exampleAgentIds.push(agent.id);
      }
      groups.set(NOT_PINNED, { reason: NOT_PINNED, count: others, exampleAgentIds });
      examined += others;
    }
    const known = new Set(pinned.map((a) => a.id));
    const unknown = [...pins].filter((id) => !known.has(id)).sort(compareIds);
    if (unknown.length > 0) groups.set(PINNED_UNKNOWN, { reason: PINNED_UNKNOWN, count: unknown.length, exampleAgentIds: unknown.slice(0, 5) });
  } else if (agents.length <= FULL_SCAN_BELOW) {
    for (const agent of agents) examine(agent);
  } else {
    const n = agents.length;
    const bound = Math.min(n, sampleBound(k));
    const swapped = new Map<number, number>(); // the lazy shuffle: position -> index now there
    const seen = new Set<number>();
    for (let i = 0; i < bound && eligible.length < 2 * want; i++) {
      const j = i + Math.min(n - 1 - i, Math.floor(clamp01(random()) * (n - i)));
      const atJ = swapped.get(j) ?? j;
      swapped.set(j, swapped.get(i) ?? i);
      seen.add(atJ);
      examine(agents[atJ]!);
    }
    // Too few in the sample: the job may need something rare, and a rare
    // agent must still be found. Scan the rest once.
    if (eligible.length < want) {
      for (let idx = 0; idx < n; idx++) if (!seen.has(idx)) examine(agents[idx]!);
    }
  }

  const avoid = new Set(job.previousAgentIds ?? []);
  const ranked = eligible
    .map((agent) => ({ agent, avoided: avoid.has(agent.id), siblings: siblingsOn(job, agent.id), fit: fitEligible(agent, job) }))
    .sort((a, b) => Number(a.avoided) - Number(b.avoided) || a.siblings - b.siblings || b.fit - a.fit || compareIds(a.agent.id, b.agent.id));

  return {
    offered: ranked.slice(0, want).map((r) => r.agent),
    eligibleCount: eligible.length,
    examined,
    ineligible: [...groups.values()].sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason)),
  };
}

/** Why a job waits when the selection offered it to nobody, e.g. "no eligible agent: 30 lack label zone=eu, 7 draining". */
export function explainNoCandidates(selection: CandidateSelection): string {
  if (selection.examined === 0) return "no eligible agent: no agents are registered";
  return `no eligible agent: ${countedReasons(selection)}`;
}

// ---------------------------------------------------------------------------
// Decision

/**
 * The winner among the offered agents' answers, with every offered agent's
 * outcome and a summary. The score of a bid is
 * BID_WEIGHT × bid score + FIT_WEIGHT × fit, bid scores clamped to 0..1.
 *
 * Ranking matches selection: an agent in previousAgentIds wins only when no other
 * agent bid, then fewer of the job's siblings (siblingsOn), then higher
 * score, then agent id (so equal scores always pick the same agent). Answers
 * from agents that were not offered the job, and answers after an agent's
 * first, are ignored; an answer carrying a decline counts as a decline even
 * if it also carries a bid. Pass the selection to have the summary say why
 * other agents were not offered the job.
 *
 * `offered` should be the agents as they are now: a bid from an agent that
 * is no longer eligible (the capacity it bid with went to jobs placed before
 * this one in the same round, or it went away) loses to every other bid.
 *
 * `spreadFirst`: a service replica is not placed beside its siblings while
 * an offered agent that runs fewer of them has not answered; the best bid is
 * `deferred` and there is no winner, so that the job is auctioned again (the
 * caller bounds how often: spreading is worth a few hundred milliseconds of
 * a long-running replica's start, not an unanswering agent's wait).
 */
export function decide(job: JobNeeds, offered: readonly AgentView[], answers: readonly Answer[], selection?: CandidateSelection, spreadFirst = false): Decision {
  const answerOf = new Map<string, Answer>();
  for (const a of answers) if (!answerOf.has(a.agentId)) answerOf.set(a.agentId, a);
  const avoid = new Set(job.previousAgentIds ?? []);

  const bids: { agentId: string; score: number; avoided: boolean; siblings: number; gone: string | null }[] = [];
  const declines: Outcome[] = [];
  const silent: Outcome[] = [];
  for (const agent of offered) {
    const answer = answerOf.get(agent.id);
    if (answer?.decline) {
      declines.push({ agentId: agent.id, outcome: "declined", score: 0, reason: answer.decline.reason });
    } else if (answer?.bid) {
      const gone = verdict(agent, job)?.detail ?? null;
      const score = BID_WEIGHT * clamp01(answer.bid.score) + FIT_WEIGHT * (gone === null ? fitEligible(agent, job) : 0);
      bids.push({ agentId: agent.id, score, avoided: avoid.has(agent.id), siblings: siblingsOn(job, agent.id), gone });
    } else {
      silent.push({ agentId: agent.id, outcome: "no_answer", score: 0, reason: "did not answer in time" });
    }
  }
  bids.sort(
    (a, b) =>
      Number(a.gone !== null) - Number(b.gone !== null) ||
      Number(a.avoided) - Number(b.avoided) ||
      a.siblings - b.siblings ||
      b.score - a.score ||
      compareIds(a.agentId, b.agentId),
  );
  // A bid from an agent that is no longer eligible wins nothing, even alone.
  const usable = bids.filter((b) => b.gone === null);
  declines.sort((a, b) => compareIds(a.agentId, b.agentId));
  silent.sort((a, b) => compareIds(a.agentId, b.agentId));

  const best = usable[0];
  const spreader = best && spreadFirst ? silent.find((s) => (!avoid.has(s.agentId) || best.avoided) && siblingsOn(job, s.agentId) < best.siblings) : undefined;
  const winner = spreader ? undefined : best;
  const bidOutcomes: Outcome[] = bids.map((b, i) => {
    if (b.gone !== null) return { agentId: b.agentId, outcome: "outbid", score: b.score, reason: `no longer eligible when the auction closed: ${b.gone}` };
    if (i === 0 && spreader) {
      const reason = `runs ${b.siblings} ${b.siblings === 1 ? "replica" : "replicas"} of the service; ${spreader.agentId} runs ${siblingsOn(job, spreader.agentId)} and did not answer in time, so the job is auctioned again to hear from it`;
      return { agentId: b.agentId, outcome: "deferred", score: b.score, reason };
    }
    if (i === 0) return { agentId: b.agentId, outcome: "won", score: b.score, reason: usable.length === 1 ? "the only bid" : `best of ${usable.length} bids` };
    const reason =
      b.avoided && !best.avoided
        ? `ran a previous attempt; ${best.agentId} preferred`
        : b.siblings > best.siblings
          ? `runs ${b.siblings} ${b.siblings === 1 ? "replica" : "replicas"} of the service, ${best.agentId} ${best.siblings}; replicas are spread`
          : b.score === best.score
            ? `tied with ${best.agentId} at ${score2(b.score)}; ${best.agentId} sorts first`
            : `outbid by ${best.agentId} (${score2(best.score)} > ${score2(b.score)})`;
    return { agentId: b.agentId, outcome: "outbid", score: b.score, reason };
  });
  const candidates = [...bidOutcomes, ...declines, ...silent];

  const parts: string[] = [];
  if (winner) parts.push(`placed on agent ${winner.agentId} (score ${score2(winner.score)}): ${bidOutcomes[0]!.reason}`);
  else if (spreader) parts.push(`not placed yet: ${best!.agentId} ${bidOutcomes[0]!.reason}`);
  else if (bids.length > 0) parts.push(`no usable bid: ${bidOutcomes.map((b) => `${b.agentId} ${b.reason}`).join("; ")}`);
  else parts.push(offered.length === 0 ? "no agent was offered the job" : "no agent bid");
  parts.push(...answerParts(declines, silent));
  if (selection && selection.ineligible.length > 0) {
    const total = selection.ineligible.reduce((sum, g) => sum + g.count, 0);
    parts.push(`${total} ${total === 1 ? "agent" : "agents"} ineligible (${countedReasons(selection)})`);
  }
  const decision: Decision = { candidates, summary: parts.join("; ") };
  if (winner) decision.winnerAgentId = winner.agentId;
  return decision;
}

/**
 * A bid that lost its auction: the agent said it would take a job needing
 * `needs` (with these drivers) and was not given it. It stands for a short
 * while (see decideStanding) as an answer to the next job that needs no more.
 */
export interface StandingBid {
  agentId: string;
  /** The agent's own score for the offer it answered, 0-1. */
  score: number;
  /** What the job it bid for needed; a job needing no more of anything may use the bid. */
  needs: Res;
  /** The drivers that job needed (requiredDrivers). */
  drivers: string[];
  /** The job it bid for, named in the explanation. */
  jobId: string;
  /** When the bid was collected, ms on the caller's clock. */
  at: number;
}

/**
 * Places a job at once on a standing bid, without offering it to anyone: an
 * agent that bid for a job needing at least as much (same drivers), lost,
 * and is still eligible now (pins, avoids, liveness, labels, free minus
 * reserved) already answered the offer this job would make. Bids older than
 * `maxAgeMs` are not used: the agent's answer describes it as it was then.
 * An agent of a previous attempt is not used (the auction offers it last).
 * Among usable bids the highest combined score wins (as in decide), then
 * agent id. Resolves the index of the bid used and a decision whose single
 * candidate is the winner; undefined when no bid can be used (then the job
 * is auctioned).
 */
export function decideStanding(
  job: JobNeeds,
  standing: readonly StandingBid[],
  agentOf: (id: string) => AgentView | undefined,
  now: number,
  maxAgeMs: number,
): { index: number; decision: Decision } | undefined {
  const drivers = requiredDrivers(job);
  const avoid = new Set(job.previousAgentIds ?? []);
  // An agent stands behind many bids: it is judged once for the job (its fit, or null when not eligible).
  const fitOf = new Map<string, number | null>();
  let best: { index: number; score: number; bid: StandingBid } | undefined;
  standing.forEach((bid, index) => {
    if (now - bid.at > maxAgeMs || avoid.has(bid.agentId)) return;
    const need = job.resources;
    if (need.cpuMillis > bid.needs.cpuMillis || need.memoryBytes > bid.needs.memoryBytes || need.diskBytes > bid.needs.diskBytes) return;
    if (!drivers.every((d) => bid.drivers.includes(d))) return;
    let agentFit = fitOf.get(bid.agentId);
    if (agentFit === undefined) {
      const agent = agentOf(bid.agentId);
      fitOf.set(bid.agentId, (agentFit = agent && verdict(agent, job, drivers) === null ? fitEligible(agent, job) : null));
    }
    if (agentFit === null) return;
    const score = BID_WEIGHT * clamp01(bid.score) + FIT_WEIGHT * agentFit;
    if (!best || score > best.score || (score === best.score && compareIds(bid.agentId, best.bid.agentId) < 0)) best = { index, score, bid };
  });
  if (!best) return undefined;
  const { bid, score } = best;
  const age = Math.max(0, Math.round(now - bid.at));
  const reason = `a standing bid: it bid for job ${bid.jobId} ${age} ms ago, which needed as much or more, and lost`;
  return {
    index: best.index,
    decision: {
      winnerAgentId: bid.agentId,
      candidates: [{ agentId: bid.agentId, outcome: "won", score, reason }],
      summary: `placed on agent ${bid.agentId} (score ${score2(score)}) without an auction: ${reason}`,
    },
  };
}

/** Why a job waits after an auction nobody won, e.g. 'no agent bid: a-7 declined: "disk full"; 1 offered agent did not answer in time'. */
export function explainNoWinner(decision: Decision): string {
  if (decision.winnerAgentId !== undefined) return `placed on agent ${decision.winnerAgentId}`;
  if (decision.candidates.some((c) => c.outcome === "deferred")) return decision.summary;
  if (decision.candidates.length === 0) return "no agent was offered the job";
  const declines = decision.candidates.filter((c) => c.outcome === "declined");
  const silent = decision.candidates.filter((c) => c.outcome === "no_answer");
  const gone = decision.candidates.filter((c) => c.outcome === "outbid");
  const head = gone.length > 0 ? `no usable bid: ${gone.map((b) => `${b.agentId} ${b.reason}`).join("; ")}` : "no agent bid";
  return [head, ...answerParts(declines, silent)].join("; ");
}

// ---------------------------------------------------------------------------
// Words

function answerParts(declines: readonly Outcome[], silent: readonly Outcome[]): string[] {
  const parts = declines.map((d) => `${d.agentId} declined: ${JSON.stringify(d.reason)}`);
  if (silent.length === 1) parts.push(`1 offered agent did not answer in time (${silent[0]!.agentId})`);
  else if (silent.length > 1) parts.push(`${silent.length} offered agents did not answer in time (${silent.map((s) => s.agentId).join(", ")})`);
  return parts;
}

// "30 lack label zone=eu, 7 draining": group reasons open with "lacks" or
// "has" when they open with a verb, and those two agree with the count.
function countedReasons(selection: CandidateSelection): string {
  return selection.ineligible
    .map(({ reason, count }) => {
      if (count === 1) return `1 ${reason}`;
      return `${count} ${reason.replace(/^lacks /, "lack ").replace(/^has /, "have ")}`;
    })
    .join(", ");
}

function offerCount(k: number): number {
  return Number.isFinite(k) ? Math.max(1, Math.floor(k)) : 1;
}

function clamp01(x: number): number {
  if (!(x > 0)) return 0; // also NaN
  return x > 1 ? 1 : x;
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function score2(score: number): string {
  return score.toFixed(2);
}

// "4", "1.5", "0.25": cores with at most two decimals, no trailing zeros.
function cores(millis: number): string {
  return String(Math.round(millis / 10) / 100);
}

type ByteUnit = "GiB" | "MiB" | "KiB" | "bytes";

// The unit is chosen by the amount needed and used for both numbers, so
// "needs 4.0 GiB memory, 0.5 GiB free" compares at a glance.
function byteUnit(n: number): ByteUnit {
  if (n >= GiB) return "GiB";
  if (n >= MiB) return "MiB";
  if (n >= KiB) return "KiB";
  return "bytes";
}

function bytes(n: number, unit: ByteUnit): string {
  switch (unit) {
    case "GiB":
      return `${(n / GiB).toFixed(1)} GiB`;
    case "MiB":
      return `${Math.round(n / MiB)} MiB`;
    case "KiB":
      return `${Math.round(n / KiB)} KiB`;
    case "bytes":
      return `${n} bytes`;
  }
}
