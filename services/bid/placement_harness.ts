// A harness of fake agents and jobs for placement tests, so a test reads as a
// script: build a fleet, select, answer, assert one decision. Every builder
// starts from a healthy default and takes only what the test is about.

import type { AgentView, Answer, JobNeeds, Res } from "./placement.ts";

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/** Resources in cores and GiB, the units people think in; disk defaults to 0. */
export function res(cores: number, memoryGiB: number, diskGiB = 0): Res {
  return { cpuMillis: Math.round(cores * 1000), memoryBytes: Math.round(memoryGiB * GiB), diskBytes: Math.round(diskGiB * GiB) };
}

/** An online, schedulable agent with the process driver, 8 cores, 16 GiB and 100 GiB disk, all free, nothing reserved. */
export function agent(id: string, overrides: Partial<AgentView> = {}): AgentView {
  return {
    id,
    status: "online",
    schedulability: "schedulable",
    labels: {},
    drivers: ["process"],
    total: res(8, 16, 100),
    free: res(8, 16, 100),
    reserved: res(0, 0, 0),
    ...overrides,
  };
}

/** n agents named `${prefix}-0` … `${prefix}-(n-1)`, each shaped by `shape(i)`. */
export function fleet(n: number, shape: (i: number) => Partial<AgentView> = () => ({}), prefix = "a"): AgentView[] {
  return Array.from({ length: n }, (_, i) => agent(`${prefix}-${i}`, shape(i)));
}

/** A process job needing 1 core and 1 GiB, no labels. */
export function job(overrides: Partial<JobNeeds> = {}): JobNeeds {
  return { jobId: "job-1", driver: "", resources: res(1, 1), labels: {}, drivers: [], ...overrides };
}

/** A bid from an agent. */
export function bid(agentId: string, score: number): Answer {
  return { agentId, bid: { score } };
}

/** A decline from an agent, with its reason. */
export function decline(agentId: string, reason: string): Answer {
  return { agentId, decline: { reason } };
}

/** A deterministic random source (mulberry32), so a sampling test sees the same draws every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random source that counts its draws, to assert how much sampling did. */
export function counting(random: () => number): { random: () => number; draws: () => number } {
  let n = 0;
  return { random: () => (n++, random()), draws: () => n };
}
