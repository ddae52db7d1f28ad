// `drover deploy` as people run it: a child process (cli/bin.mjs, see
// lib/testing/cli.ts) against one real dev-mode server with no agents, so every deployment stays rolling_out
// with pending replicas (or fails, when its healthy_deadline passes). The
// tests run concurrently, each on deployments of its own name.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { removeDir, startDev, tempDir, type DevProcess } from "../integration/harness.ts";
import { drover, prepareCli } from "../lib/testing/cli.ts";

describe("drover deploy against dev mode", { concurrency: true }, () => {
  let dev: DevProcess;
  let dir: string;
  const admin = (...args: string[]) => drover(["--addr", dev.grpcUrl, "--token", dev.adminToken, ...args]);
  /** Writes a deployment file and returns its path. */
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const service = (name: string, replicas: number, argv = "[./server, --port, '8080']", extra = "") =>
    `name: ${name}\nreplicas: ${replicas}\nexec:\n  commands:\n    - argv: ${argv}\n${extra}`;

  before(async () => {
    // The CLI's bundle made current while the server starts (lib/testing/cli.ts).
    const preparing = prepareCli();
    try {
      dev = await startDev({ prepared: true, env: { DROVER_DEPLOY_TICK_MS: "200" } });
    } finally {
      await preparing;
    }
    dir = tempDir("drover-cli-deploy-");
  });
  after(async () => {
    await dev?.stop();
    if (dev) removeDir(dev.dataDir);
    if (dir) removeDir(dir);
  });

  // One deployment's life, in order: each test starts where the one before left it.
  describe("one deployment from apply to rm", { concurrency: false }, () => {
    test("apply creates a deployment, then says unchanged, scaled, or a new revision", async () => {
      const path = file("web.yaml", service("web", 2));
      const created = await admin("deploy", "apply", path);
      assert.equal(created.code, 0, created.stderr);
      assert.equal(created.stdout, "web: created, revision 1 rolling out (2 replicas)\n");
      assert.equal((await admin("deploy", "apply", path)).stdout, "web: unchanged (revision 1)\n");
      writeFileSync(path, service("web", 5));
      assert.equal((await admin("deploy", "apply", path)).stdout, "web: scaled to 5 (from 2)\n");
      writeFileSync(path, service("web", 5, "[./server, --port, '9090']"));
      assert.equal((await admin("deploy", "apply", path)).stdout, "web: revision 2 applied, rolling out (was 1)\n");
    });

    test("ls, status and history show its revision, state, replicas and events", async () => {
      const listed = await admin("deploy", "ls");
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /^NAME\s+REVISION\s+STATE\s+HEALTHY\s+AGE\n/);
      assert.match(listed.stdout, /^web\s+2\s+rolling_out\s+0\/5\s+\d+s ago$/m);

      const status = await admin("deploy", "status", "web");
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /^state:\s+rolling_out$/m);
      assert.match(status.stdout, /^revision:\s+2 \(none stable yet\)$/m);
      assert.match(status.stdout, /^rollout:\s+revision 1 → 2: batch \d of 5, 0\/5 healthy/m);
      assert.match(status.stdout, /^command:\s+\.\/server --port 9090$/m);
      assert.match(status.stdout, /^SLOT\s+REPLICA\s+REVISION\s+STATE\s+HEALTH\s+AGENT\s+RESTARTS\s+PORT\s+JOB\s+MESSAGE$/m);
      assert.match(status.stdout, /^0\s+[0-9a-f]{8}\s+1\s+pending\s+-\s+-\s+0\s+-\s+[0-9a-f-]{36}\s+slot is empty$/m, "no agent: replicas wait, each with its job");
      assert.match(status.stdout, /^Events:\nTIME\s+REVISION\s+EVENT\s+MESSAGE\n\d+s ago\s+1\s+applied\s+revision 1 applied$/m);
      assert.match(status.stdout, /^\d+s ago\s+1\s+scaled\s+scaled from 2 to 5 replicas$/m);

      const history = await admin("deploy", "history", "web");
      assert.equal(history.code, 0, history.stderr);
      const rows = history.stdout.split("\n");
      assert.match(rows[0]!, /^REVISION\s+CREATED\s+HASH\s+COMMAND$/);
      assert.match(rows[1]!, /^2\s+current\s+\d+s ago\s+[0-9a-f]{12}\s+\.\/server --port 9090$/);
      assert.match(rows[2]!, /^1\s+\d+s ago\s+[0-9a-f]{12}\s+\.\/server --port 8080$/);
      assert.match(history.stdout, /\nEvents:\n/);

      const yaml = await admin("deploy", "status", "web", "-o", "yaml");
      assert.match(yaml.stdout, /^deployment:\n {2}id: "[0-9a-f-]{36}"\n {2}name: "web"$/m);
      assert.match(yaml.stdout, /^ {2}state: "DEPLOYMENT_STATE_ROLLING_OUT"$/m);
    });

    test("rollback to a revision that does not exist is an error; to one that does rolls it out again", async () => {
      const unknown = await admin("deploy", "rollback", "web", "7");
      assert.equal(unknown.code, 2);
      assert.equal(unknown.stderr, "drover: invalid_argument: revision: deployment web has no revision 7\n");

      const back = await admin("deploy", "rollback", "web", "1");
      assert.equal(back.code, 0, back.stderr);
      assert.equal(back.stdout, "web: rolling back to revision 1; rolling_out at revision 1\n");
      const history = await admin("deploy", "history", "web", "-o", "json");
      const revs = JSON.parse(history.stdout) as { revisions: { number: number }[]; currentRevision: number; events: { kind: string }[] };
      assert.deepEqual(revs.revisions.map((r) => r.number), [2, 1]);
      assert.equal(revs.currentRevision, 1);
      assert.ok(revs.events.some((e) => e.kind === "rollback"), JSON.stringify(revs.events));
    });

    test("pause, resume and scale answer with the state after them; promote without canaries waiting is refused", async () => {
      const paused = await admin("deploy", "pause", "web");
      assert.equal(paused.stdout, "web: paused; paused at revision 1\n", paused.stderr);
      const resumed = await admin("deploy", "resume", "web");
      assert.equal(resumed.stdout, "web: resumed; rolling_out at revision 1\n", resumed.stderr);
      const scaled = await admin("deploy", "scale", "web", "3", "-o", "json");
      assert.equal(scaled.code, 0, scaled.stderr);
      assert.equal((JSON.parse(scaled.stdout) as { desiredReplicas: number }).desiredReplicas, 3);
      // A rollback is promoted from the start: there are no canaries to wait for.
      const promoted = await admin("deploy", "promote", "web");
      assert.equal(promoted.code, 1);
      assert.equal(promoted.stderr, "drover: failed_precondition: deployment web has no canaries waiting for promotion (it is rolling out)\n");
    });

    test("rm refuses a deployment that is not stopped; stop then rm deletes it", async () => {
      const early = await admin("deploy", "rm", "web");
      assert.equal(early.code, 1);
      assert.equal(early.stderr, "drover: failed_precondition: deployment web is not stopped: stop it first (StopDeployment)\n");

      // Its pending replicas' jobs are cancelled by the controller; --wait returns once none is left.
      const stopped = await admin("deploy", "stop", "web", "--wait");
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.match(stopped.stdout, /^web: stop requested; stopping at revision 1\n/);
      assert.match(stopped.stdout, /\bstopped\s+every replica stopped\nweb: stopped, no replica runs\n$/);
      const removed = await admin("deploy", "rm", "web");
      assert.equal(removed.stdout, "deleted deployment web\n", removed.stderr);
      const status = await admin("deploy", "status", "web");
      assert.equal(status.code, 3);
      assert.equal(status.stderr, "drover: not_found: deployment web not found\n");
    });
  });

  test("a bad deployment file exits 2 naming the file, the line and the field, before any call", async () => {
    const path = file("typo.yaml", service("typo", 2, "[x]", "update:\n  max_parallel: 1\n  healthy_deadline: 5m\n"));
    const out = await admin("deploy", "apply", path);
    assert.equal(out.code, 2);
    assert.equal(out.stderr, `drover: invalid_argument: ${path}:8: update.healthy_deadline: "5m" is not a duration; write seconds with an "s": "90s", "0.5s", "3600s"\n`);
    assert.equal(out.stdout, "");
    const unknown = await admin("deploy", "apply", file("unknown.yaml", service("typo", 2, "[x]", "replica: 3\n")));
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^drover: invalid_argument: \S+unknown\.yaml:6: replica: unknown field \(did you mean replicas\?\)\n$/);
  });

  test("a spec the service refuses is one readable invalid_argument line and exit 2", async () => {
    const out = await admin("deploy", "apply", file("zero.yaml", service("zero", 0)));
    assert.equal(out.code, 2);
    assert.equal(out.stderr, "drover: invalid_argument: spec.replicas: must be at least 1 (or set per_agent)\n");
    assert.equal(out.stdout, "");
  });

  test("apply --wait follows the rollout and exits 1 with the status once it fails", async () => {
    // No agent: the replicas stay pending past their healthy_deadline, which fails the first rollout.
    const path = file("doomed.yaml", service("doomed", 2, "[sleep, '600']", "update: {max_parallel: 2, healthy_deadline: 1s}\n"));
    const out = await admin("deploy", "apply", "--wait", path);
    assert.equal(out.code, 1, out.stderr);
    const lines = out.stdout.trimEnd().split("\n");
    assert.equal(lines[0], "doomed: created, revision 1 rolling out (2 replicas)");
    assert.match(lines[1]!, /^\d\d:\d\d:\d\d {2}applied {12}revision 1 applied$/);
    assert.equal(lines.filter((l) => / replica_started /.test(l)).length, 2, out.stdout);
    assert.ok(lines.some((l) => /^\d\d:\d\d:\d\d {2}\(progress\) {9}rolling out revision 1: batch 1 of 1, 0\/2 healthy/.test(l)), out.stdout);
    // Never placed: the failure gives the Scheduler's reason (services/deploy/rollout.ts), not health.
    assert.match(lines.at(-1)!, /^doomed: revision 1 failed: replica [0-9a-f]{8} not placed within 1s: (no eligible agent|no agent took it)/);

    // Waiting on a deployment that already failed ends at once, with the same status.
    const again = await admin("deploy", "apply", "--wait", path, "-o", "json");
    assert.equal(again.code, 1);
    const last = JSON.parse(again.stdout.trimEnd().split("\n").at(-1)!) as { deployment: { state: string } };
    assert.equal(last.deployment.state, "DEPLOYMENT_STATE_FAILED");
  });

  test("watch on a deployment that does not exist exits 3", async () => {
    const out = await admin("deploy", "watch", "nowhere");
    assert.equal(out.code, 3);
    assert.equal(out.stderr, "drover: not_found: deployment nowhere not found\n");
  });
});
