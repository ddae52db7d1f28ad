// The in-memory tier: real generated services with fake implementations,
// served through createRouterTransport with the standard interceptors, so
// every call crosses the same interceptor chain a server runs.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type ConnectRouter,
  type ServiceImpl,
  type Transport,
} from "@connectrpc/connect";
import { pino } from "pino";

import { DeployService } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { FleetService, Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { Health, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../../gen/ts/grpc/health/v1/health_pb.ts";
import { fleetAccess } from "../../services/fleet/service.ts";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import { createLogger, type Logger } from "../logger.ts";
import { kPrincipal } from "./context.ts";
import { HealthState, healthRoutes } from "./health.ts";
import { REQUEST_ID_HEADER, accessPolicy } from "./interceptors.ts";
import { standardInterceptors } from "./server.ts";
import { failure } from "../testing/connect.ts";

const ADMIN = "admin-secret";
const OPERATOR = "operator-secret";
const AGENT = "agent-secret";

/** Resolves the three secrets above; everything else is unknown. */
class TableAuthenticator implements Authenticator {
  private readonly principals = new Map<string, Principal>([
    [ADMIN, { tokenId: "t-admin", role: Role.ADMIN, name: "root" }],
    [OPERATOR, { tokenId: "t-operator", role: Role.OPERATOR, name: "ci" }],
    [AGENT, { tokenId: "t-agent", role: Role.AGENT, name: "node-1" }],
  ]);

  async authenticate(secret: string): Promise<Principal | null> {
    return this.principals.get(secret) ?? null;
  }
}

const policy = accessPolicy({ [FleetService.typeName]: fleetAccess });

// Job ids the fake scheduler treats specially.
const MISSING = "00000000-0000-4000-8000-000000000404";
const BROKEN = "00000000-0000-4000-8000-000000000500";
const SECRET_DETAIL = "connection to postgres://drover:hunter2@db failed";

/** A SchedulerService that remembers who called it; getJob fails on request. */
function fakeScheduler(seen: (Principal | undefined)[]): Partial<ServiceImpl<typeof SchedulerService>> {
  return {
    submitJob(req, ctx) {
      seen.push(ctx.values.get(kPrincipal));
      return { job: { id: "11111111-1111-4111-8111-111111111111", state: JobState.PENDING, spec: req.spec }, created: true };
    },
    getJob(req) {
      if (req.id === MISSING) throw new ConnectError(`job ${req.id} not found`, Code.NotFound);
      if (req.id === BROKEN) throw new Error(SECRET_DETAIL);
      return { job: { id: req.id, state: JobState.RUNNING } };
    },
  };
}

const fakeDeploy: Partial<ServiceImpl<typeof DeployService>> = {
  applyDeployment(req) {
    return { deployment: { name: req.name }, changed: true };
  },
};

const fakeFleet: Partial<ServiceImpl<typeof FleetService>> = {
  createApiToken(req) {
    return { token: { name: req.name, role: req.role }, secret: "drv_new" };
  },
};

function transportFor(routes: (router: ConnectRouter) => void, logger: Logger = createLogger("silent")): Transport {
  return createRouterTransport(routes, {
    router: { interceptors: standardInterceptors(logger, new TableAuthenticator(), policy) },
  });
}

/** Everything served by the chain under test, with the callers' principals as the scheduler saw them. */
function setup(logger?: Logger) {
  const seen: (Principal | undefined)[] = [];
  const transport = transportFor((router) => {
    router.service(SchedulerService, fakeScheduler(seen));
    router.service(DeployService, fakeDeploy);
    router.service(FleetService, fakeFleet);
    healthRoutes(new HealthState([SchedulerService.typeName]))(router);
  }, logger);
  return {
    seen,
    scheduler: createClient(SchedulerService, transport),
    deploy: createClient(DeployService, transport),
    fleet: createClient(FleetService, transport),
    health: createClient(Health, transport),
  };
}

const bearer = (secret: string) => ({ headers: { authorization: `Bearer ${secret}` } });

const validJob = { spec: { exec: { commands: [{ argv: ["echo", "hi"] }] } } };


/** A pino logger that keeps its lines, to check what was logged. */
function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe("auth interceptor", () => {
  it("refuses a call without a token with UNAUTHENTICATED", async () => {
    const { scheduler, seen } = setup();
    const err = await failure(scheduler.submitJob(validJob));
    assert.equal(err.code, Code.Unauthenticated);
    assert.match(err.rawMessage, /authorization: Bearer/);
    assert.equal(seen.length, 0);
  });

  it("refuses a malformed authorization header with UNAUTHENTICATED", async () => {
    const { scheduler } = setup();
    const err = await failure(scheduler.submitJob(validJob, { headers: { authorization: `Basic ${OPERATOR}` } }));
    assert.equal(err.code, Code.Unauthenticated);
  });

  it("refuses an unknown token with UNAUTHENTICATED", async () => {
    const { scheduler, seen } = setup();
    const err = await failure(scheduler.submitJob(validJob, bearer("drv_nobody")));
    assert.equal(err.code, Code.Unauthenticated);
    assert.match(err.rawMessage, /unknown, revoked or expired/);
    assert.equal(seen.length, 0);
  });

  it("lets an operator call a staff method and hands the handler its principal", async () => {
    const { scheduler, seen } = setup();
    const res = await scheduler.submitJob(validJob, bearer(OPERATOR));
    assert.equal(res.created, true);
    assert.deepEqual(seen, [{ tokenId: "t-operator", role: Role.OPERATOR, name: "ci" }]);
  });

  it("refuses an operator calling an admin-only method with PERMISSION_DENIED", async () => {
    const { fleet } = setup();
    const err = await failure(fleet.createApiToken({ name: "x", role: Role.AGENT }, bearer(OPERATOR)));
    assert.equal(err.code, Code.PermissionDenied);
    assert.match(err.rawMessage, /role operator may not call drover\.fleet\.v1\.FleetService\/CreateApiToken/);
    // The admin may.
    const res = await fleet.createApiToken({ name: "x", role: Role.AGENT }, bearer(ADMIN));
    assert.equal(res.secret, "drv_new");
  });

  it("refuses an agent calling a staff method with PERMISSION_DENIED", async () => {
    const { scheduler } = setup();
    const err = await failure(scheduler.submitJob(validJob, bearer(AGENT)));
    assert.equal(err.code, Code.PermissionDenied);
  });

  it("leaves health open to callers without a token", async () => {
    const { health } = setup();
    const res = await health.check({ service: SchedulerService.typeName });
    assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING);
  });
});

describe("validation interceptor", () => {
  it("answers a SubmitJob without exec with INVALID_ARGUMENT naming spec.exec", async () => {
    const { scheduler, seen } = setup();
    const err = await failure(scheduler.submitJob({ spec: { name: "no-exec" } }, bearer(OPERATOR)));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /^invalid SubmitJobRequest: spec\.exec: .*\[required\]$/);
    assert.equal(seen.length, 0, "the handler must not run");
  });

  it("names the path of an empty argv inside the first command", async () => {
    const { scheduler } = setup();
    const err = await failure(scheduler.submitJob({ spec: { exec: { commands: [{ argv: [] }] } } }, bearer(OPERATOR)));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /spec\.exec\.commands\[0\]\.argv: .*\[repeated\.min_items\]/);
  });

  it("names the field of a bad deployment name", async () => {
    const { deploy } = setup();
    const err = await failure(
      deploy.applyDeployment({ name: "Not_A_Label", spec: { exec: validJob.spec.exec } }, bearer(OPERATOR)),
    );
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /^invalid ApplyDeploymentRequest: name: .*\[string\.pattern\]$/);
  });

  it("lists every violation of a request in the one message", async () => {
    const { scheduler } = setup();
    const err = await failure(
      scheduler.submitJob({ spec: { priority: 5000, exec: validJob.spec.exec }, idempotencyKey: "k".repeat(200) }, bearer(OPERATOR)),
    );
    assert.match(err.rawMessage, /spec\.priority: .*; idempotency_key: /);
  });

  it("runs after auth, so an unauthenticated invalid request gets UNAUTHENTICATED", async () => {
    const { scheduler } = setup();
    const noToken = await failure(scheduler.submitJob({ spec: {} }));
    assert.equal(noToken.code, Code.Unauthenticated);
    assert.doesNotMatch(noToken.rawMessage, /spec/);
    const badToken = await failure(scheduler.submitJob({ spec: {} }, bearer("drv_nobody")));
    assert.equal(badToken.code, Code.Unauthenticated);
  });
});

describe("error interceptor", () => {
  it("turns a plain Error into INTERNAL \"internal error\" without its message", async () => {
    const { scheduler } = setup();
    const err = await failure(scheduler.getJob({ id: BROKEN }, bearer(OPERATOR)));
    assert.equal(err.code, Code.Internal);
    assert.equal(err.rawMessage, "internal error");
    assert.doesNotMatch(JSON.stringify({ message: err.message, metadata: [...err.metadata] }), /hunter2/);
  });

  it("logs the original error with service and method", async () => {
    const { logger, lines } = capturingLogger();
    const { scheduler } = setup(logger);
    await failure(scheduler.getJob({ id: BROKEN }, bearer(OPERATOR)));
    const logged = lines.find((l) => l.msg === "unexpected error");
    assert.ok(logged, `no "unexpected error" line in ${JSON.stringify(lines)}`);
    assert.equal(logged.service, SchedulerService.typeName);
    assert.equal(logged.method, "GetJob");
    assert.equal((logged.err as { message?: string }).message, SECRET_DETAIL);
    assert.equal(typeof logged.requestId, "string");
  });

  it("passes a ConnectError from the handler through unchanged", async () => {
    const { logger, lines } = capturingLogger();
    const { scheduler } = setup(logger);
    const err = await failure(scheduler.getJob({ id: MISSING }, bearer(OPERATOR)));
    assert.equal(err.code, Code.NotFound);
    assert.equal(err.rawMessage, `job ${MISSING} not found`);
    // A deliberate code is an answer, not an incident.
    assert.equal(lines.filter((l) => l.msg === "unexpected error").length, 0);
  });

  it("translates and logs an Error thrown in the middle of a server stream", async () => {
    const { logger, lines } = capturingLogger();
    const transport = transportFor(
      (router) =>
        router.service(Health, {
          async *watch() {
            yield create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
            throw new Error(SECRET_DETAIL);
          },
        }),
      logger,
    );
    const received: HealthCheckResponse_ServingStatus[] = [];
    let caught: unknown;
    try {
      for await (const res of createClient(Health, transport).watch({})) received.push(res.status);
    } catch (err) {
      caught = err;
    }
    assert.deepEqual(received, [HealthCheckResponse_ServingStatus.SERVING]);
    assert.ok(caught instanceof ConnectError, `expected a ConnectError, got ${String(caught)}`);
    assert.equal(caught.code, Code.Internal);
    assert.equal(caught.rawMessage, "internal error");
    // Connect itself would hide the message too; what the interceptor adds is
    // the log line that says where it happened.
    const logged = lines.find((l) => l.msg === "unexpected error");
    assert.ok(logged, `no "unexpected error" line in ${JSON.stringify(lines)}`);
    assert.equal(logged.service, "grpc.health.v1.Health");
    assert.equal(logged.method, "Watch");
    assert.equal((logged.err as { message?: string }).message, SECRET_DETAIL);
  });

  it("passes a ConnectError thrown in the middle of a server stream through unchanged", async () => {
    const transport = transportFor((router) =>
      router.service(Health, {
        async *watch() {
          yield create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
          throw new ConnectError("going away", Code.Unavailable);
        },
      }),
    );
    const err = await failure(
      (async () => {
        for await (const _ of createClient(Health, transport).watch({}));
      })(),
    );
    assert.equal(err.code, Code.Unavailable);
    assert.equal(err.rawMessage, "going away");
  });
});

describe("logging interceptor", () => {
  it("gives every response an x-request-id header", async () => {
    const { health } = setup();
    const ids: (string | null)[] = [];
    for (let i = 0; i < 2; i++) await health.check({}, { onHeader: (h) => ids.push(h.get(REQUEST_ID_HEADER)) });
    assert.equal(ids.length, 2);
    for (const id of ids) assert.match(id ?? "", /^[0-9a-f-]{36}$/);
    assert.notEqual(ids[0], ids[1]);
  });

  it("echoes a caller-supplied x-request-id", async () => {
    const { health } = setup();
    let echoed: string | null = null;
    await health.check({}, { headers: { [REQUEST_ID_HEADER]: "req-42.a" }, onHeader: (h) => (echoed = h.get(REQUEST_ID_HEADER)) });
    assert.equal(echoed, "req-42.a");
  });

  it("replaces a request id that is not safe to log", async () => {
    const { health } = setup();
    let echoed: string | null = null;
    await health.check({}, { headers: { [REQUEST_ID_HEADER]: "bad id\twith spaces" }, onHeader: (h) => (echoed = h.get(REQUEST_ID_HEADER)) });
    assert.match(echoed ?? "", /^[0-9a-f-]{36}$/);
  });

  it("puts the request id on failed calls too", async () => {
    const { scheduler } = setup();
    const err = await failure(scheduler.getJob({ id: MISSING }, { headers: { ...bearer(OPERATOR).headers, [REQUEST_ID_HEADER]: "req-404" } }));
    assert.equal(err.metadata.get(REQUEST_ID_HEADER), "req-404");
  });

  it("logs each call once with its request id, service and method", async () => {
    const { logger, lines } = capturingLogger();
    const { scheduler } = setup(logger);
    await scheduler.submitJob(validJob, { headers: { ...bearer(OPERATOR).headers, [REQUEST_ID_HEADER]: "req-ok" } });
    await failure(scheduler.submitJob(validJob, { headers: { [REQUEST_ID_HEADER]: "req-denied" } }));
    const calls = lines.filter((l) => l.msg === "call ok" || l.msg === "call failed");
    assert.deepEqual(
      calls.map((l) => [l.requestId, l.service, l.method, l.msg, l.code]),
      [
        ["req-ok", SchedulerService.typeName, "SubmitJob", "call ok", undefined],
        ["req-denied", SchedulerService.typeName, "SubmitJob", "call failed", "Unauthenticated"],
      ],
    );
  });
});
