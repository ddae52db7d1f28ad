// createInProcessTransport (dev mode's transport between its services): a
// real generated service with a fake implementation, the standard
// interceptors, and Connect's router transport behind it for what it does
// not take. A call must be checked as a call from outside is (token,
// protovalidate), reach the implementation with the caller's own message,
// and give the caller the implementation's answer and errors.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, ConnectError, createClient, createConnectRouter, createRouterTransport, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { FleetService, GetAgentRequestSchema, Role, type GetAgentRequest } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Authenticator } from "../auth/tokens.ts";
import { bearer } from "../clients.ts";
import { createLogger } from "../logger.ts";
import { kPrincipal } from "./context.ts";
import { collectUnaryRoutes, type UnaryRoute } from "./grpc_unary.ts";
import { createInProcessTransport } from "./in_process.ts";
import { standardInterceptors } from "./server.ts";

const TOKEN = "in-process-test-token";
const authenticator: Authenticator = {
  authenticate: async (secret) => (secret === TOKEN ? { tokenId: "t1", role: Role.ADMIN, name: "dev admin" } : null),
};

function setup(token = TOKEN) {
  const seen: { request?: GetAgentRequest; ctx?: HandlerContext; principal?: string } = {};
  const register = (router: ConnectRouter) =>
    router.service(FleetService, {
      getAgent(request, ctx) {
        seen.request = request;
        seen.ctx = ctx;
        seen.principal = ctx.values.get(kPrincipal)?.name;
        return { agent: { id: request.id, hostname: "rack-1" } };
      },
      drainAgent() {
        throw new ConnectError("agent a-1 is offline", Code.FailedPrecondition);
      },
      cordonAgent() {
        throw new Error("a bug");
      },
      async *watchAgents() {
        yield { agent: { id: "a-streamed" } };
      },
    });
  const interceptors = standardInterceptors(createLogger("silent"), authenticator, () => [Role.ADMIN]);
  const routes: UnaryRoute[] = [];
  register(collectUnaryRoutes(createConnectRouter(), routes));
  const transport = createInProcessTransport({
    routes,
    interceptors: [bearer(token), ...interceptors],
    fallback: createRouterTransport(register, { router: { interceptors }, transport: { interceptors: [bearer(token)] } }),
  });
  return { client: createClient(FleetService, transport), seen };
}

describe("createInProcessTransport", () => {
  it("calls the implementation with the caller's message, after the auth interceptor saw the caller's token", async () => {
    const { client, seen } = setup();
    const request = create(GetAgentRequestSchema, { id: "a-1" });
    const { agent } = await client.getAgent(request);
    assert.equal(agent?.hostname, "rack-1");
    assert.equal(seen.request, request, "the very message the caller made: not encoded and decoded again");
    assert.equal(seen.principal, "dev admin");
    assert.equal(seen.ctx?.requestHeader.get("authorization"), `Bearer ${TOKEN}`);
    assert.equal(seen.ctx?.signal.aborted, true, "the call's signal ends with the call, as on a server");
  });

  it("refuses a request that breaks its rules, and a bad token, before the implementation runs", async () => {
    const { client, seen } = setup();
    await assert.rejects(client.getAgent({ id: "" }), (err: unknown) => {
      const e = ConnectError.from(err);
      assert.equal(e.code, Code.InvalidArgument);
      assert.match(e.rawMessage, /id/);
      return true;
    });
    assert.equal(seen.request, undefined);
    const other = setup("not-the-token");
    await assert.rejects(other.client.getAgent({ id: "a-1" }), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    assert.equal(other.seen.request, undefined);
  });

  it("gives the caller the implementation's ConnectError as it was, and any other error as INTERNAL", async () => {
    const { client } = setup();
    await assert.rejects(client.drainAgent({ id: "a-1" }), (err: unknown) => {
      const e = ConnectError.from(err);
      return e.code === Code.FailedPrecondition && e.rawMessage === "agent a-1 is offline";
    });
    await assert.rejects(client.cordonAgent({ id: "a-1" }), (err: unknown) => {
      const e = ConnectError.from(err);
      return e.code === Code.Internal && !e.rawMessage.includes("a bug");
    });
  });

  it("leaves streaming methods to the fallback transport", async () => {
    const { client } = setup();
    const ids: string[] = [];
    for await (const res of client.watchAgents({})) ids.push(res.agent?.id ?? "");
    assert.deepEqual(ids, ["a-streamed"]);
  });
});
