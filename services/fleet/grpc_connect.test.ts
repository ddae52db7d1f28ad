// FleetService.Connect on its two paths: gRPC clients (agents) are served
// straight on node:http2 (connect.ts grpcConnectHandler, lib/host/grpc_stream.ts),
// every other protocol by the Connect adapter (connectHandler). Agents must
// not be able to tell them apart: the same codes and messages, the same end
// at shutdown, the same clean-up. Real servers on port 0, PGlite, the
// in-process bus.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { eventually, startTestFleet, TestAgent, type TestFleet } from "./testing.ts";

let t: TestFleet;
let registrationToken: string;

before(async () => {
  t = await startTestFleet({ settings: { helloTimeoutMs: 300, heartbeatIntervalMs: 1000, staleAfterMs: 60_000, offlineAfterMs: 120_000 } });
  ({ secret: registrationToken } = await t.admin.createAgentToken({ name: "two paths" }));
});

after(async () => {
  await t?.close();
});

/** The two ways of reaching Connect: gRPC (the raw path) and the Connect protocol over HTTP/2 (the adapter). */
const paths: [string, (url: string) => Transport][] = [
  ["gRPC", (baseUrl) => createGrpcTransport({ baseUrl })],
  ["Connect protocol", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })],
];

/** How a stream opened with `credential` and sending `first` ends, on each path: [code, message]. */
async function endings(credential: string | undefined, first: (agent: TestAgent) => void): Promise<[Code | null, string][]> {
  const out: [Code | null, string][] = [];
  for (const [, transport] of paths) {
    const agent = new TestAgent(t.grpcUrl, credential, { transport: transport(t.grpcUrl) });
    first(agent);
    const code = await agent.endCode();
    out.push([code, (await agent.ended)?.rawMessage ?? ""]);
  }
  return out;
}

describe("Connect over gRPC and over the Connect protocol", () => {
  it("registers and welcomes an agent on either path", async () => {
    for (const [name, transport] of paths) {
      const agent = await TestAgent.register(t.grpcUrl, registrationToken, { hostname: name.replace(/ /g, "-").toLowerCase() }, { transport: transport(t.grpcUrl) });
      try {
        assert.match(agent.agentId, /^ag_/, name);
        agent.heartbeat(1);
        await eventually(() => (t.fleet.hub.session(agent.agentId)?.heartbeats === 1 ? true : undefined), 5000, `${name}: the heartbeat`);
      } finally {
        await agent.cancel();
      }
    }
  });

  it("ends a handshake that fails with the same code and message on both paths", async () => {
    const cases: [string, string | undefined, (a: TestAgent) => void][] = [
      ["no credential, no token", undefined, (a) => a.send({ message: { case: "hello", value: { hostname: "h" } } })],
      ["a wrong registration token", undefined, (a) => a.send({ message: { case: "hello", value: { hostname: "h", registrationToken: "drv_nope" } } })],
      ["an unknown credential", "drv_forged", (a) => a.send({ message: { case: "hello", value: { hostname: "h" } } })],
      ["a heartbeat first", undefined, (a) => a.heartbeat(1)],
      ["a rule broken in Hello", undefined, (a) => a.send({ message: { case: "hello", value: { hostname: "h", agentId: "x".repeat(65) } } })],
      ["nothing within the Hello timeout", undefined, () => {}],
    ];
    for (const [what, credential, first] of cases) {
      const [grpc, connect] = await endings(credential, first);
      assert.deepEqual(grpc, connect, what);
      assert.notEqual(grpc![0], null, `${what}: the stream must fail`);
    }
    const [[code, message]] = await endings(undefined, (a) => a.send({ message: { case: "hello", value: { hostname: "h", agentId: "x".repeat(65) } } }));
    assert.equal(code, Code.InvalidArgument);
    assert.match(message, /^invalid ConnectRequest: hello\.agent_id: /);
  });

  it("forgets an agent that cancels its stream (RST_STREAM) at once", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    await agent.cancel();
    await eventually(() => (t.fleet.hub.session(agent.agentId) === undefined ? true : undefined), 5000, "the session to be detached");
  });
});

describe("shutdown", () => {
  it("ends agents' gRPC streams with UNAVAILABLE and lets go of their sessions", async () => {
    const own = await startTestFleet();
    try {
      const { secret } = await own.admin.createAgentToken({ name: "shutdown" });
      const agent = await TestAgent.register(own.grpcUrl, secret);
      const closing = own.server.close();
      assert.equal(await agent.endCode(), Code.Unavailable);
      assert.equal((await agent.ended)!.rawMessage, "server is shutting down");
      await closing;
      assert.equal(own.fleet.hub.getStats().sessions, 0);
    } finally {
      await own.close();
    }
  });
});

