// The stages of a run form a DAG: a stage runs once every stage it requires
// has succeeded. Two pure functions: validateDag checks a definition once, at
// submission, and release says, for the current stage states, which stages to
// start, which will never run, and what that makes of the run. The scheduler
// calls release after every stage changes state and applies the answer.
//
//   blocked ──release──▶ pending ──▶ running ──▶ succeeded | failed | cancelled
//      └─────skip──────▶ skipped (a requirement failed, was cancelled or skipped)

/** One stage of a run: its name, unique in the run, and the stages that must succeed before it starts. */
export interface StageDef {
  name: string;
  requires: string[];
}

/** One problem with a definition, at a field path like "stages[2].requires[0]", or "stages" for a cycle. */
export type DagError = { field: string; message: string };

/**
 * Every problem with the stages, in the order of the fields they concern,
 * cycles last; empty when the definition is valid. Reports empty and
 * duplicate names, empty, unknown, repeated and self requirements, and one
 * cycle per tangle, named in the order stages run: 'cycle: build → test →
 * package → build' means test requires build, package requires test, and
 * build requires package. A cycle starts at its earliest-defined stage.
 */
export function validateDag(stages: readonly StageDef[]): DagError[] {
  const errors: DagError[] = [];
  const indexOf = new Map<string, number>(); // first definition wins; later ones are reported

  stages.forEach((stage, i) => {
    if (stage.name.trim() === "") {
      errors.push({ field: `stages[${i}].name`, message: "a stage needs a name" });
    } else if (indexOf.has(stage.name)) {
      errors.push({ field: `stages[${i}].name`, message: `duplicate stage name "${stage.name}" (also stages[${indexOf.get(stage.name)}])` });
    } else {
      indexOf.set(stage.name, i);
    }
  });

  stages.forEach((stage, i) => {
    const seen = new Set<string>();
    stage.requires.forEach((req, j) => {
      const field = `stages[${i}].requires[${j}]`;
      if (req.trim() === "") errors.push({ field, message: "a requirement needs a stage name" });
      else if (req === stage.name) errors.push({ field, message: `stage "${req}" requires itself` });
      else if (!indexOf.has(req)) errors.push({ field, message: `no stage named "${req}"` });
      else if (seen.has(req)) errors.push({ field, message: `"${req}" is already required` });
      seen.add(req);
    });
  });

  for (const cycle of findCycles(stages, indexOf)) {
    errors.push({ field: "stages", message: `cycle: ${cycle.join(" → ")}` });
  }
  return errors;
}

// Depth-first search along the direction stages run (from a requirement to
// the stages that require it). Every edge back to a stage still on the path
// closes a cycle; the same cycle reached from elsewhere is reported once.
// Self-requirements and unknown names are left out: they are reported above.
// Iterative, so a long chain cannot exhaust the call stack.
function findCycles(stages: readonly StageDef[], indexOf: ReadonlyMap<string, number>): string[][] {
  const n = stages.length;
  const next: number[][] = Array.from({ length: n }, () => []);
  stages.forEach((stage, i) => {
    if (indexOf.get(stage.name) !== i) return; // a duplicate: its edges belong to nobody
    for (const req of new Set(stage.requires)) {
      const from = indexOf.get(req);
      if (from !== undefined && from !== i) next[from]!.push(i);
    }
  });

  const state = new Uint8Array(n); // 0 unvisited, 1 on the path, 2 done
  const cycles: string[][] = [];
  const reported = new Set<string>();
  for (let root = 0; root < n; root++) {
    if (state[root] !== 0 || indexOf.get(stages[root]!.name) !== root) continue;
    const path: number[] = [root];
    const cursor: number[] = [0];
    state[root] = 1;
    while (path.length > 0) {
      const at = path.at(-1)!;
      const k = cursor[cursor.length - 1]!++;
      const to = next[at]![k];
      if (to === undefined) {
        state[at] = 2;
        path.pop();
        cursor.pop();
      } else if (state[to] === 0) {
        state[to] = 1;
        path.push(to);
        cursor.push(0);
      } else if (state[to] === 1) {
        const loop = path.slice(path.indexOf(to));
        const start = loop.indexOf(Math.min(...loop));
        const rotated = [...loop.slice(start), ...loop.slice(0, start)];
        const key = rotated.join(",");
        if (!reported.has(key)) {
          reported.add(key);
          cycles.push([...rotated, rotated[0]!].map((i) => stages[i]!.name));
        }
      }
    }
  }
  return cycles;
}

/** Where a stage is in its life; "blocked" waits for requirements, "pending" is released and waits for an agent. */
export type StageState = "blocked" | "pending" | "running" | "succeeded" | "failed" | "cancelled" | "skipped";

/** What the scheduler does next: start `release` (blocked → pending), mark `skip` skipped, and set the run to runState. */
export interface ReleaseResult {
  /** Stage names, in definition order. */
  release: string[];
  /** Stage names, in definition order. */
  skip: string[];
  /** The run's state once release and skip are applied. */
  runState: "running" | "succeeded" | "failed" | "cancelled";
}

/**
 * The stages to release and skip given the current states, and the run's
 * state after that. A blocked stage is released when all its requirements
 * succeeded, and skipped when any requirement failed, was cancelled or was
 * skipped, including by this same call (so a failure skips everything
 * downstream at once). A stage missing from `states` counts as blocked.
 *
 * The run is running while any stage is blocked, pending or running after
 * that; otherwise succeeded when every stage succeeded, cancelled when some
 * stage was cancelled and none failed, and failed in every other case
 * (including a run whose stages only succeeded or were skipped: a skip has a
 * cause, and the run did not do all it was asked to).
 *
 * Assumes validateDag found no errors: a requirement naming no stage never
 * succeeds, so its stage stays blocked and the run keeps running.
 */
export function release(stages: readonly StageDef[], states: Readonly<Record<string, StageState>>): ReleaseResult {
  const now = new Map<string, StageState>();
  for (const stage of stages) now.set(stage.name, states[stage.name] ?? "blocked");
  const stateOf = (name: string): StageState | undefined => now.get(name);

  // Skips spread along chains, so repeat until a pass skips nothing new. Each
  // pass skips at least one stage or ends, so this ends within n passes.
  const skipped = new Set<string>();
  for (let changed = true; changed; ) {
    changed = false;
    for (const stage of stages) {
      if (stateOf(stage.name) !== "blocked") continue;
      if (stage.requires.some((r) => isDeadEnd(stateOf(r)))) {
        now.set(stage.name, "skipped");
        skipped.add(stage.name);
        changed = true;
      }
    }
  }

  const released: string[] = [];
  for (const stage of stages) {
    if (stateOf(stage.name) === "blocked" && stage.requires.every((r) => stateOf(r) === "succeeded")) released.push(stage.name);
  }
  for (const name of released) now.set(name, "pending");

  return {
    release: released,
    skip: stages.map((s) => s.name).filter((name, i, all) => skipped.has(name) && all.indexOf(name) === i),
    runState: runStateOf([...now.values()]),
  };
}

function isDeadEnd(state: StageState | undefined): boolean {
  return state === "failed" || state === "cancelled" || state === "skipped";
}

function runStateOf(states: readonly StageState[]): ReleaseResult["runState"] {
  if (states.some((s) => s === "blocked" || s === "pending" || s === "running")) return "running";
  if (states.every((s) => s === "succeeded")) return "succeeded";
  if (states.includes("cancelled") && !states.includes("failed")) return "cancelled";
  return "failed";
}
