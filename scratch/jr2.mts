import { create } from "@bufbuild/protobuf";
import { ExecSpecSchema } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { JobRunner } from "../agent/job_runner.ts";
import { ProcessRunner } from "../agent/process_runner.ts";
import { rmSync, statSync } from "node:fs";
rmSync("/tmp/jrstate", { recursive: true, force: true });
const pr = new ProcessRunner({ warmShims: Number(process.env.WARM ?? 2) });
await pr.availability();
const firsts: number[] = [];
const acc = new Map<string, number>(); let last = 0;
(globalThis as any).T = (n: string) => { const x = performance.now(); acc.set(n, (acc.get(n) ?? 0) + x - last); last = x; };
for (let i = 0; i < 200; i++) {
  await new Promise((r) => setTimeout(r, Number(process.env.GAP ?? 0)));
  const t0 = performance.now(); last = t0;
  const r = new JobRunner({ attemptId: `a${i}`, jobId: `j${i}`, exec: create(ExecSpecSchema, { commands: [{ argv: ["/bin/echo", "x"] }] }), driver: "process", runner: pr, stateDir: "/tmp/jrstate", allowShell: false, onUpdate: () => {}, logger: createLogger("silent") });
  const p = r.run();
  const f = `${r.directory}/cmd-000.stdout.log`;
  let first = 0;
  while (!first) { try { if (statSync(f).size > 0) first = performance.now() - t0; } catch {} if (!first) await new Promise((r) => setImmediate(r)); }
  await p; last = performance.now();
  firsts.push(first); (globalThis as any).T("firstbyte"); 
}
const q = (a: number[], p: number) => a.slice().sort((x, y) => x - y)[Math.floor(a.length * p)]!.toFixed(2);
console.log("warm", process.env.WARM ?? 2, "gap", process.env.GAP ?? 0, "first p50", q(firsts, 0.5), "p90", q(firsts, 0.9));
pr.close();
console.log([...acc].map(([k, v]) => `${k} ${(v / 200).toFixed(2)}`).join("\n"));
