// Schedules in the dev-mode control plane (all five services in one process,
// PGlite with its single connection, the in-process bus) over real gRPC:
// the ticker that scheduler.ts starts fires jobs and runs on time, and
// stops with the plane.

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { JobState, OverlapPolicy, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../../lib/clients.ts";
import { readDevConfig } from "../../lib/config.ts";
import { createLogger } from "../../lib/logger.ts";
import { preparedDataDir } from "../../lib/testing/dev_data.ts";
import { startDev, type DevPlane } from "../dev/dev.ts";
import { eventually } from "../fleet/testing.ts";

let dir: string;
let plane: DevPlane;
let scheduler: Client<typeof SchedulerService>;

before(async () => {
  // Its database already created and migrated: these tests are not about a first start.
  dir = await preparedDataDir("drover-schedules-");
  const config = readDevConfig({ DROVER_DATA_DIR: dir, DROVER_GRPC_PORT: "0", DROVER_HTTP_PORT: "0", DROVER_SCHEDULER_SWEEP_MS: "100" });
  plane = await startDev(config, createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent"));
  scheduler = createClient(SchedulerService, createGrpcTransport({ baseUrl: plane.server.grpcUrl, interceptors: [bearer(plane.adminToken)] }));
});

after(async () => {
  await plane?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// No agent connects: jobs stay pending, which is all these tests look at.
const exec = { commands: [{ argv: ["echo", "tick"] }] };

describe("schedules in the dev plane", () => {
  it("fires a job template every second on PGlite: jobs carry the schedule id, ListSchedules shows the next fire time", async () => {
    const { schedule } = await scheduler.createSchedule({ spec: { name: "dev-jobs", cron: "* * * * * *", template: { case: "job", value: { name: "ticked", exec } }, overlap: OverlapPolicy.ALLOW } });
    const id = schedule!.id;
    const jobs = await eventually(async () => {
      const mine = (await scheduler.listJobs({ pageSize: 1000 })).jobs.filter((j) => j.scheduleId === id);
      return mine.length >= 2 ? mine : undefined;
    }, 10_000, "two jobs from the schedule");
    assert.ok(jobs.every((j) => j.state === JobState.PENDING && j.spec?.name === "ticked" && j.idempotencyKey.startsWith(`schedule:${id}:`)));
    const listed = (await scheduler.listSchedules({})).schedules.find((s) => s.id === id)!;
    assert.ok(listed.nextFireTime && timestampDate(listed.nextFireTime).getTime() > Date.now() - 1000);
    assert.ok(listed.fireCount >= 2n);
    await scheduler.deleteSchedule({ id: "dev-jobs" });
  });

  it("fires a run template: each tick's run carries the schedule id", async () => {
    const { schedule } = await scheduler.createSchedule({
      spec: { name: "dev-runs", cron: "* * * * * *", template: { case: "run", value: { name: "nightly", stages: [{ name: "build", job: { exec } }, { name: "test", requires: ["build"], job: { exec } }] } }, overlap: OverlapPolicy.ALLOW },
    });
    const id = schedule!.id;
    const runs = await eventually(async () => {
      const mine = (await scheduler.listRuns({ pageSize: 1000 })).runs.filter((r) => r.scheduleId === id);
      return mine.length >= 1 ? mine : undefined;
    }, 10_000, "a run from the schedule");
    await scheduler.pauseSchedule({ id });
    assert.equal(runs[0]!.spec?.name, "nightly");
    assert.ok(runs[0]!.idempotencyKey.startsWith(`schedule:${id}:`));
    const got = (await scheduler.getSchedule({ id })).schedule!;
    assert.ok(got.lastRunId !== "" && got.lastJobId === "", "last_run_id names the run; last_job_id is for job templates");
    assert.equal(got.nextFireTime, undefined, "no next fire time while paused");
  });
});
