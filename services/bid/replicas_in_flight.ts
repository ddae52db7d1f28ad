// Service replicas this Bid replica is placing, or placed so recently that a
// claim made meanwhile may not count them.
//
// A claimed replica's PlaceableJob.sibling_agent_ids is what the Scheduler
// counted when it claimed: its deployment's assigned and running replicas.
// Rounds overlap (DROVER_AUCTION_ROUNDS), so a replica that another round is
// auctioning, or whose placement it is still recording, is not in that count,
// and two rounds would put replicas of one deployment side by side. The
// auctioneer counts these too, except those the claim did count
// (PlaceableJob.sibling_job_ids). A replica is forgotten once every round
// open now sent its claim after its placement was recorded, or when its own
// round ends without recording it. Another Bid replica's rounds are not seen
// here: replicas of one deployment claimed at the same moment by two Bid
// replicas may still share an agent.

interface InFlight {
  deployment: string;
  agentId: string;
  round: number;
  /** When the Scheduler accepted its placement (performance.now()); undefined: not yet. */
  settledAt?: number;
}

export class ReplicasInFlight {
  private readonly byJob = new Map<string, InFlight>();
  /** The job ids of byJob, by deployment. */
  private readonly byDeployment = new Map<string, Set<string>>();
  /** Open rounds: when each sent its claim (performance.now()). */
  private readonly open = new Map<number, number>();
  private lastRound = 0;

  /** A round begins, before it sends its claim; resolves its id. */
  begin(): number {
    const round = ++this.lastRound;
    this.open.set(round, performance.now());
    return round;
  }

  /** The agent a round's replica is likely to go to, or went to; undefined: nowhere (it is forgotten). */
  note(round: number, deployment: string, jobId: string, agentId: string | undefined): void {
    if (agentId === undefined) return this.forget(jobId);
    this.byJob.set(jobId, { deployment, agentId, round });
    let jobs = this.byDeployment.get(deployment);
    if (!jobs) this.byDeployment.set(deployment, (jobs = new Set()));
    jobs.add(jobId);
  }

  /** The Scheduler answered a placement: accepted, claims sent from now on count it; refused, it is forgotten. */
  settled(jobId: string, accepted: boolean): void {
    const entry = this.byJob.get(jobId);
    if (!entry) return;
    if (accepted) entry.settledAt = performance.now();
    else this.forget(jobId);
  }

  /**
   * Adds to `counts` (agent → replicas) the deployment's replicas, other
   * than `jobId` itself, that other rounds placed, or are placing, and that
   * the given round's claim did not count: not among the job's `counted`
   * siblings (the Scheduler's, PlaceableJob.sibling_job_ids), and not
   * recorded before the claim was sent (one recorded before that and not
   * counted has ended since).
   */
  addUncounted(counts: Map<string, number>, round: number, deployment: string, jobId: string, counted: readonly string[]): void {
    const jobs = this.byDeployment.get(deployment);
    if (!jobs) return;
    const claimedAt = this.open.get(round) ?? 0;
    const known = new Set(counted);
    for (const id of jobs) {
      const e = this.byJob.get(id)!;
      if (e.round === round || id === jobId || known.has(id)) continue;
      if (e.settledAt !== undefined && e.settledAt < claimedAt) continue;
      counts.set(e.agentId, (counts.get(e.agentId) ?? 0) + 1);
    }
  }

  /** A round ended: what it did not record is forgotten, and so is what every open round's claim counted. */
  end(round: number): void {
    this.open.delete(round);
    const oldestClaim = Math.min(...this.open.values());
    for (const [id, e] of this.byJob) {
      if (e.settledAt === undefined ? e.round === round : e.settledAt < oldestClaim) this.forget(id);
    }
  }

  /** Replicas remembered. */
  get size(): number {
    return this.byJob.size;
  }

  private forget(jobId: string): void {
    const entry = this.byJob.get(jobId);
    if (!entry) return;
    this.byJob.delete(jobId);
    const jobs = this.byDeployment.get(entry.deployment)!;
    jobs.delete(jobId);
    if (jobs.size === 0) this.byDeployment.delete(entry.deployment);
  }
}
