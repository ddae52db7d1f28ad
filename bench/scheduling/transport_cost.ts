// CPU of one in-process call, dev mode's two ways: Connect's router
// transport (an HTTP exchange in memory: the request encoded and decoded,
// the answer too) against createInProcessTransport (lib/host/in_process.ts:
// the implementation called with the caller's message). The call is a
// SendToAgents of N assignments, as RecordPlacements makes, to a trivial
// implementation; no interceptors on either side, so the difference is the
// transport's own. A diagnosis, not part of `npm run bench`:
//
//   node --import tsx bench/scheduling/transport_cost.ts 10 128

import { createClient, createConnectRouter, createRouterTransport, type ConnectRouter } from "@connectrpc/connect";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { collectUnaryRoutes, type UnaryRoute } from "../../lib/host/grpc_unary.ts";
import { createInProcessTransport } from "../../lib/host/in_process.ts";

const CALLS = 3000;
const register = (router: ConnectRouter) =>
  router.service(FleetService, { sendToAgents: (req) => ({ results: req.messages.map((m) => ({ messageId: m.message?.messageId ?? "", delivered: true })) }) });
const routes: UnaryRoute[] = [];
register(collectUnaryRoutes(createConnectRouter(), routes));
const router = createRouterTransport(register);
const clients = {
  router: createClient(FleetService, router),
  "in-process": createClient(FleetService, createInProcessTransport({ routes, interceptors: [], fallback: router })),
};

function request(n: number) {
  const attemptId = "3f1c2b8e-8a1e-4d7c-9d3e-1a2b3c4d5e6f";
  return {
    messages: Array.from({ length: n }, (_, i) => ({
      agentId: `agent-${i % 50}`,
      message: {
        messageId: `assign:${i}`,
        message: { case: "assignment" as const, value: { attemptId, jobId: attemptId, attemptNumber: 1, exec: { commands: [{ argv: ["true", `r1:${i}`] }] }, leaseExpireTime: { seconds: 1_800_000_000n, nanos: 0 } } },
      },
    })),
  };
}

for (const n of process.argv.slice(2).map(Number).filter((x) => x > 0).concat(process.argv.length > 2 ? [] : [1, 10, 128])) {
  for (const [name, client] of Object.entries(clients)) {
    const req = request(n);
    for (let i = 0; i < 300; i++) await client.sendToAgents(req); // warm up the JIT
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) await client.sendToAgents(req);
    const cpu = process.cpuUsage(cpu0);
    const perCall = (cpu.user + cpu.system) / CALLS;
    console.log(`${name.padEnd(10)} N=${String(n).padEnd(4)} ${perCall.toFixed(1).padStart(7)} µs CPU per call, ${(perCall / n).toFixed(1).padStart(6)} per assignment, ${(((performance.now() - t0) * 1000) / CALLS).toFixed(1).padStart(7)} µs wall`);
  }
}
