// The services' implementations against a real (embedded) PostgreSQL: one
// in-memory PGlite for the file, migrated for all five services, with the
// impl methods called directly.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { create, equals } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";

import { ListApiTokensRequestSchema, Role } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { GetJobRequestSchema, JobSpecSchema, JobState, SubmitJobRequestSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { SERVICE_NAMES, defaultSchedulingSettings } from "../lib/config.ts";
import { openPglite, type Database } from "../lib/db/database.ts";
import { migrate } from "../lib/db/migrate.ts";
import { encodePageToken } from "../lib/host/paging.ts";
import { FleetServiceImpl } from "./fleet/service.ts";
import { TokenStore } from "./fleet/token_store.ts";
import { SchedulerServiceImpl } from "./scheduler/service.ts";
import { JobStore } from "./scheduler/job_store.ts";
import { SchedulerSignals } from "./scheduler/signals.ts";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { createMemoryBus } from "../lib/bus/memory.ts";
import { createLogger } from "../lib/logger.ts";
import { failure } from "../lib/testing/connect.ts";

let db: Database;
const bus = createMemoryBus();
const silent = createLogger("silent");

before(async () => {
  db = await openPglite("memory://");
  for (const service of SERVICE_NAMES) await migrate(db.executor, service);
});

after(async () => {
  await db?.close();
});


const exec = { commands: [{ argv: ["make", "test"], env: { CI: "1" } }] };

describe("SchedulerService", () => {
  // Only submit and get here: nothing reaches Fleet (the whole path runs in
  // services/scheduling.test.ts and the integration tests).
  const scheduler = () =>
    new SchedulerServiceImpl({
      store: new JobStore(db.prismaFor("scheduler")),
      signals: new SchedulerSignals(bus, silent),
      clients: { fleet: createClient(FleetService, createRouterTransport(() => {})) },
      settings: defaultSchedulingSettings(),
      log: silent,
    });

  it("stores a submitted job as pending and GetJob returns it", async () => {
    const spec = create(JobSpecSchema, { name: "build", exec, priority: 7, driver: "process" });
    const submitted = await scheduler().submitJob(create(SubmitJobRequestSchema, { spec }));
    assert.equal(submitted.created, true);
    const job = submitted.job;
    assert.match(job.id, /^[0-9a-f-]{36}$/);
    assert.equal(job.state, JobState.PENDING);
    assert.equal(job.idempotencyKey, "");
    assert.ok(job.createTime && job.updateTime);

    const got = await scheduler().getJob(create(GetJobRequestSchema, { id: job.id }));
    assert.equal(got.job.id, job.id);
    assert.equal(got.job.state, JobState.PENDING);
    assert.ok(got.job.spec && equals(JobSpecSchema, got.job.spec, spec), "the stored spec reads back unchanged");
    // Priority is also a column, for ordering.
    const row = await db.prismaFor("scheduler").job.findUniqueOrThrow({ where: { id: job.id } });
    assert.equal(row.priority, 7);
  });

  it("returns the first job with created=false for a repeated idempotency key", async () => {
    const key = `key-${randomUUID()}`;
    const first = await scheduler().submitJob(create(SubmitJobRequestSchema, { spec: { name: "first", exec }, idempotencyKey: key }));
    const again = await scheduler().submitJob(create(SubmitJobRequestSchema, { spec: { name: "second", exec }, idempotencyKey: key }));
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.job.id, first.job.id);
    assert.equal(again.job.spec?.name, "first");
    assert.equal(again.job.idempotencyKey, key);
  });

  it("creates one job when two submissions with one key race", async () => {
    const key = `race-${randomUUID()}`;
    const submit = () => scheduler().submitJob(create(SubmitJobRequestSchema, { spec: { exec }, idempotencyKey: key }));
    const results = await Promise.all([submit(), submit(), submit()]);
    assert.equal(new Set(results.map((r) => r.job.id)).size, 1);
    assert.deepEqual(results.map((r) => r.created).sort(), [false, false, true]);
    assert.equal(await db.prismaFor("scheduler").job.count({ where: { idempotencyKey: key } }), 1);
  });

  it("creates separate jobs for submissions without a key", async () => {
    const a = await scheduler().submitJob(create(SubmitJobRequestSchema, { spec: { exec } }));
    const b = await scheduler().submitJob(create(SubmitJobRequestSchema, { spec: { exec } }));
    assert.notEqual(a.job.id, b.job.id);
    assert.equal(b.created, true);
  });

  it("answers GetJob of an unknown id with NOT_FOUND", async () => {
    const id = randomUUID();
    const err = await failure(scheduler().getJob(create(GetJobRequestSchema, { id })));
    assert.equal(err.code, Code.NotFound);
    assert.match(err.rawMessage, new RegExp(id));
  });
});

describe("TokenStore", () => {
  it("authenticates a token it created, as its role and name", async () => {
    const store = new TokenStore(db.prismaFor("fleet"));
    const { token, secret } = await store.create("ci", Role.OPERATOR);
    assert.match(secret, /^drv_/);
    assert.equal(token.role, Role.OPERATOR);
    assert.equal(token.expiresAt, null);
    assert.deepEqual(await store.authenticate(secret), { tokenId: token.id, role: Role.OPERATOR, name: "ci" });
    assert.equal(await store.authenticate(`${secret}x`), null);
  });

  it("stores only the hash of the secret", async () => {
    const store = new TokenStore(db.prismaFor("fleet"));
    const { token, secret } = await store.create("hashed", Role.AGENT);
    const row = await db.prismaFor("fleet").apiToken.findUniqueOrThrow({ where: { id: token.id } });
    assert.notEqual(row.tokenHash, secret);
    assert.doesNotMatch(JSON.stringify(row), new RegExp(secret));
  });

  it("does not authenticate a revoked token, and revoking again keeps the first time", async () => {
    let now = new Date("2030-01-01T00:00:00Z");
    const store = new TokenStore(db.prismaFor("fleet"), () => now);
    const { token, secret } = await store.create("leaver", Role.ADMIN);
    const revoked = await store.revoke(token.id);
    assert.deepEqual(revoked?.revokedAt, new Date("2030-01-01T00:00:00Z"));
    assert.equal(await store.authenticate(secret), null);
    now = new Date("2030-01-02T00:00:00Z");
    assert.deepEqual((await store.revoke(token.id))?.revokedAt, new Date("2030-01-01T00:00:00Z"));
    assert.equal(await store.revoke(randomUUID()), null);
  });

  it("does not authenticate an expired token", async () => {
    let now = new Date("2030-01-01T00:00:00Z");
    const store = new TokenStore(db.prismaFor("fleet"), () => now);
    const { token, secret } = await store.create("short-lived", Role.OPERATOR, 60_000);
    assert.deepEqual(token.expiresAt, new Date("2030-01-01T00:01:00Z"));
    now = new Date("2030-01-01T00:00:59.999Z");
    assert.equal((await store.authenticate(secret))?.tokenId, token.id);
    now = new Date("2030-01-01T00:01:00Z");
    assert.equal(await store.authenticate(secret), null);
  });

  it("ensures a bootstrap token exactly once", async () => {
    const store = new TokenStore(db.prismaFor("fleet"));
    const secret = "bootstrap-admin-token-0123456789";
    const first = await store.ensure(secret, Role.ADMIN, "bootstrap");
    const second = await store.ensure(secret, Role.ADMIN, "bootstrap");
    assert.equal(second.id, first.id);
    assert.equal((await store.authenticate(secret))?.role, Role.ADMIN);
  });
});

describe("FleetService.listApiTokens", () => {
  it("pages through tokens newest first with page tokens", async () => {
    const fleetDb = db.prismaFor("fleet");
    await fleetDb.apiToken.deleteMany();
    const store = new TokenStore(fleetDb);
    const fleet = new FleetServiceImpl(store);
    for (const name of ["t1", "t2", "t3", "t4", "t5"]) await store.create(name, Role.OPERATOR);

    const pages: string[][] = [];
    let pageToken = "";
    do {
      const res = await fleet.listApiTokens(create(ListApiTokensRequestSchema, { pageSize: 2, pageToken }));
      pages.push(res.tokens.map((t) => t.name));
      pageToken = res.nextPageToken;
    } while (pageToken !== "" && pages.length < 10);
    assert.deepEqual(pages, [["t5", "t4"], ["t3", "t2"], ["t1"]]);

    // Page size 0 means the default, which holds them all.
    const all = await fleet.listApiTokens(create(ListApiTokensRequestSchema, {}));
    assert.deepEqual(all.tokens.map((t) => t.name), ["t5", "t4", "t3", "t2", "t1"]);
    assert.equal(all.nextPageToken, "");
  });

  it("answers a page token it did not issue, or one naming a deleted token, with INVALID_ARGUMENT", async () => {
    const fleet = new FleetServiceImpl(new TokenStore(db.prismaFor("fleet")));
    for (const pageToken of ["garbage", encodePageToken(randomUUID())]) {
      const err = await failure(fleet.listApiTokens(create(ListApiTokensRequestSchema, { pageToken })));
      assert.equal(err.code, Code.InvalidArgument, pageToken);
    }
  });
});

// LogService.readLogs is covered in services/log/read.test.ts.

