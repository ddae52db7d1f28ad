// How the agent answers an Offer: decline with a reason a user can read, or
// bid a score saying how well the job fits here right now.
//
// Pure: it reads plain data (what the offer needs, what the agent has, what
// its running attempts hold) and returns a decision. JobHandler gathers that
// data from the last machine sample and its attempts; nothing here measures,
// waits or sends, because an answer has to be ready within the auction's
// ~50 ms window.
//
// Order of the checks: driver, then the count (of attempts, or of service
// replicas for a service's offer), then each resource.
// The first that fails is the reason given, so a user sees the most basic
// mismatch first (no docker here says more than "not enough memory").

/** Amounts of CPU, memory and disk; the generated Resources message fits this shape. */
export interface Amounts {
  /** Thousandths of a core. */
  cpuMillis: number;
  /** Bytes. */
  memoryBytes: bigint;
  /** Bytes. */
  diskBytes: bigint;
}

/** What an Offer asks for. */
export interface OfferNeeds {
  /** The driver that would run the job; empty means the default, "process". */
  driver: string;
  /** What the job needs; a zero amount is no requirement. Undefined: needs nothing. */
  resources: Amounts | undefined;
  /** A service replica (Offer.service): counted against maxServices, not maxAttempts. */
  service?: boolean;
}

/** The agent as the decision sees it. */
export interface AgentView {
  /** Drivers this agent runs. */
  drivers: readonly string[];
  /** The machine's capacity (last sample); undefined until the first sample. */
  total: Amounts | undefined;
  /** Capacity free at the last sample; undefined until the first sample. */
  free: Amounts | undefined;
  /** Resources held by attempts the agent runs (what their assignments reserved). */
  reserved: Amounts;
  /** Attempts running now that are not service replicas. */
  running: number;
  /** The most of those this agent runs at once (DROVER_MAX_ATTEMPTS). */
  maxAttempts: number;
  /** Service replicas running now. */
  runningServices: number;
  /** The most service replicas this agent runs (DROVER_MAX_SERVICES). */
  maxServices: number;
  /** CPU busy at the last sample, 0-100 across all cores. */
  cpuPercent: number;
  /** Load average over one minute. */
  load1: number;
  /** Cores, to read load1 against. */
  cores: number;
}

/** The answer to an Offer. */
export type OfferDecision =
  | { kind: "bid"; score: number; free: Amounts }
  | { kind: "decline"; reason: string };

/** DROVER_MAX_SERVICES when unset: replicas mostly wait on the network, so many more than cores. */
export const DEFAULT_MAX_SERVICES = 128;

/** The driver an offer or assignment means when it names none. */
export const DEFAULT_DRIVER = "process";

// Weights of the score's parts. Headroom counts most: a job placed where it
// leaves room is least likely to be starved or to starve a later one. Load
// and the number of attempts break ties between machines with similar room,
// spreading work rather than stacking it on the first agent that answers.
const HEADROOM_WEIGHT = 0.5;
const IDLE_WEIGHT = 0.25;
const SLOTS_WEIGHT = 0.25;

const MiB = 1024n * 1024n;

/** Decides whether to bid for an offer, and how much. */
export function decideOffer(offer: OfferNeeds, agent: AgentView): OfferDecision {
  const driver = offer.driver || DEFAULT_DRIVER;
  if (!agent.drivers.includes(driver)) {
    return { kind: "decline", reason: `driver ${driver} not available here (this agent has: ${agent.drivers.join(", ") || "none"})` };
  }
  if (offer.service && agent.runningServices >= agent.maxServices) {
    const replicas = agent.runningServices === 1 ? "replica" : "replicas";
    return { kind: "decline", reason: `running ${agent.runningServices} service ${replicas}, the most this agent takes (DROVER_MAX_SERVICES)` };
  }
  if (!offer.service && agent.running >= agent.maxAttempts) {
    return { kind: "decline", reason: `running ${agent.running} attempts, the most this agent takes (DROVER_MAX_ATTEMPTS)` };
  }
  const need = offer.resources ?? ZERO;
  const available = agent.free ? subtract(agent.free, agent.reserved) : undefined;
  if (!available) {
    // Not measured yet (the first sample comes before Hello, so this is rare):
    // a job with no requirement can still go here; one with needs cannot be checked.
    if (isZero(need)) return { kind: "bid", score: score(agent, ZERO, ZERO, offer.service), free: ZERO };
    return { kind: "decline", reason: "this agent has not measured its free resources yet" };
  }
  if (need.cpuMillis > 0 && need.cpuMillis > available.cpuMillis) {
    return { kind: "decline", reason: `needs ${cores(need.cpuMillis)} CPU cores, ${cores(available.cpuMillis)} free` };
  }
  if (need.memoryBytes > 0n && need.memoryBytes > available.memoryBytes) {
    return { kind: "decline", reason: `needs ${mibUp(need.memoryBytes)} MiB memory, ${mibDown(available.memoryBytes)} MiB free` };
  }
  if (need.diskBytes > 0n && need.diskBytes > available.diskBytes) {
    return { kind: "decline", reason: `needs ${mibUp(need.diskBytes)} MiB disk, ${mibDown(available.diskBytes)} MiB free` };
  }
  return { kind: "bid", score: score(agent, available, need, offer.service), free: available };
}

/** Adds amounts, for the resources running attempts reserve. */
export function addAmounts(a: Amounts, b: Amounts): Amounts {
  return { cpuMillis: a.cpuMillis + b.cpuMillis, memoryBytes: a.memoryBytes + b.memoryBytes, diskBytes: a.diskBytes + b.diskBytes };
}

/** No resources. */
export const ZERO: Amounts = Object.freeze({ cpuMillis: 0, memoryBytes: 0n, diskBytes: 0n });

/**
 * A score in [0, 1]: headroom left after placing the job (the mean over CPU,
 * memory and disk of what stays free as a share of the machine), how idle the
 * machine is (the busier of CPU percent and load per core), and how many
 * slots of the offer's kind (attempts, or service replicas) stay open.
 */
function score(agent: AgentView, available: Amounts, need: Amounts, service = false): number {
  const shares: number[] = [];
  const total = agent.total;
  if (total) {
    if (total.cpuMillis > 0) shares.push((available.cpuMillis - need.cpuMillis) / total.cpuMillis);
    if (total.memoryBytes > 0n) shares.push(ratio(available.memoryBytes - need.memoryBytes, total.memoryBytes));
    if (total.diskBytes > 0n) shares.push(ratio(available.diskBytes - need.diskBytes, total.diskBytes));
  }
  // Nothing to measure against: neither rewarded nor punished.
  const headroom = shares.length ? shares.reduce((sum, s) => sum + clamp01(s), 0) / shares.length : 0.5;
  const busy = Math.max(agent.cpuPercent / 100, agent.cores > 0 ? agent.load1 / agent.cores : 0);
  const idle = 1 - clamp01(Number.isFinite(busy) ? busy : 1);
  const [used, most] = service ? [agent.runningServices, agent.maxServices] : [agent.running, agent.maxAttempts];
  const slots = most > 0 ? 1 - clamp01(used / most) : 0;
  return clamp01(HEADROOM_WEIGHT * headroom + IDLE_WEIGHT * idle + SLOTS_WEIGHT * slots);
}

/** Free minus reserved, never below zero (the sample may already count part of what is reserved). */
function subtract(free: Amounts, reserved: Amounts): Amounts {
  return {
    cpuMillis: Math.max(0, free.cpuMillis - reserved.cpuMillis),
    memoryBytes: free.memoryBytes > reserved.memoryBytes ? free.memoryBytes - reserved.memoryBytes : 0n,
    diskBytes: free.diskBytes > reserved.diskBytes ? free.diskBytes - reserved.diskBytes : 0n,
  };
}

function isZero(a: Amounts): boolean {
  return a.cpuMillis === 0 && a.memoryBytes === 0n && a.diskBytes === 0n;
}

function ratio(part: bigint, whole: bigint): number {
  // Through MiB so that the numbers stay well inside a double's exact range.
  return Number(part / MiB) / Math.max(1, Number(whole / MiB));
}

/** Needs round up and free rounds down, so the reason never reads "needs 1024 MiB, 1024 MiB free". */
function mibUp(bytes: bigint): string {
  return ((bytes + MiB - 1n) / MiB).toString();
}

function mibDown(bytes: bigint): string {
  return (bytes / MiB).toString();
}

function cores(millis: number): string {
  return String(Math.round(millis) / 1000);
}

function clamp01(n: number): number {
  return Math.min(1, Math.max(0, n));
}
