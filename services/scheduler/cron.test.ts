import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CronError, DEFAULT_BACKFILL_LIMIT, MAX_COUNTED_TICKS, dueTicks, overlapAction, parseCron, type CronSchedule } from "./cron.ts";

const at = (iso: string) => new Date(iso);
const iso = (ds: readonly (Date | null)[]) => ds.map((d) => d?.toISOString() ?? null);

/** The first n ticks after `from`. */
function ticks(cron: CronSchedule, from: string, n: number): (string | null)[] {
  const out: (Date | null)[] = [];
  let d: Date | null = at(from);
  for (let i = 0; i < n && d; i++) out.push((d = cron.next(d)));
  return iso(out);
}

function cronError(fn: () => unknown): CronError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CronError, `not a CronError: ${String(err)}`);
    return err;
  }
  assert.fail("did not throw");
}

describe("parseCron", () => {
  it("reads five fields as minute precision and six fields with seconds first", () => {
    assert.deepEqual(ticks(parseCron("*/15 * * * *", ""), "2026-01-01T00:00:00Z", 2), ["2026-01-01T00:15:00.000Z", "2026-01-01T00:30:00.000Z"]);
    assert.deepEqual(ticks(parseCron("*/1 * * * * *", "UTC"), "2026-01-01T00:00:00.500Z", 3), [
      "2026-01-01T00:00:01.000Z",
      "2026-01-01T00:00:02.000Z",
      "2026-01-01T00:00:03.000Z",
    ]);
  });

  it("gives ticks strictly after the instant asked about", () => {
    assert.deepEqual(ticks(parseCron("0 0 1 1 *", "UTC"), "2026-01-01T00:00:00Z", 1), ["2027-01-01T00:00:00.000Z"]);
  });

  it("understands day and month names, in any case, and ranges of them", () => {
    assert.deepEqual(ticks(parseCron("0 9 * JAN MON", "UTC"), "2026-01-01T00:00:00Z", 2), ["2026-01-05T09:00:00.000Z", "2026-01-12T09:00:00.000Z"]);
    assert.deepEqual(ticks(parseCron("0 0 * * mon-fri", "UTC"), "2026-01-02T12:00:00Z", 1), ["2026-01-05T00:00:00.000Z"]);
  });

  it("understands macros", () => {
    assert.deepEqual(ticks(parseCron("@hourly", "UTC"), "2026-01-01T00:30:00Z", 1), ["2026-01-01T01:00:00.000Z"]);
    assert.deepEqual(ticks(parseCron("@daily", "UTC"), "2026-01-01T00:30:00Z", 1), ["2026-01-02T00:00:00.000Z"]);
    assert.deepEqual(ticks(parseCron("@weekly", "UTC"), "2026-01-01T00:00:00Z", 1), ["2026-01-04T00:00:00.000Z"]); // a Sunday
    assert.deepEqual(ticks(parseCron("@monthly", "UTC"), "2026-01-01T00:00:00Z", 1), ["2026-02-01T00:00:00.000Z"]);
    assert.deepEqual(ticks(parseCron("@yearly", "UTC"), "2026-01-01T00:00:00Z", 1), ["2027-01-01T00:00:00.000Z"]);
  });

  it("understands L, W and #", () => {
    assert.deepEqual(ticks(parseCron("0 0 L * *", "UTC"), "2026-01-01T00:00:00Z", 2), ["2026-01-31T00:00:00.000Z", "2026-02-28T00:00:00.000Z"]);
    assert.deepEqual(ticks(parseCron("0 0 * * FRI#2", "UTC"), "2026-01-01T00:00:00Z", 1), ["2026-01-09T00:00:00.000Z"]);
    assert.deepEqual(ticks(parseCron("0 0 1W * *", "UTC"), "2026-01-15T00:00:00Z", 1), ["2026-02-02T00:00:00.000Z"]); // Feb 1 is a Sunday
  });

  it("computes ticks in the time zone given", () => {
    assert.deepEqual(ticks(parseCron("0 12 * * *", "Asia/Kolkata"), "2026-01-01T00:00:00Z", 1), ["2026-01-01T06:30:00.000Z"]);
    assert.deepEqual(ticks(parseCron("@daily", "America/New_York"), "2026-07-01T12:00:00Z", 1), ["2026-07-02T04:00:00.000Z"]); // EDT
    assert.deepEqual(ticks(parseCron("@daily", "America/New_York"), "2026-01-01T12:00:00Z", 1), ["2026-01-02T05:00:00.000Z"]); // EST
  });

  it("fires a 02:30 daily job once at 03:00 on Berlin's spring-forward day, when 02:30 does not exist", () => {
    // 2026-03-29 02:00 CET → 03:00 CEST.
    assert.deepEqual(ticks(parseCron("30 2 * * *", "Europe/Berlin"), "2026-03-27T12:00:00Z", 3), [
      "2026-03-28T01:30:00.000Z", // 02:30 CET
      "2026-03-29T01:00:00.000Z", // 03:00 CEST: the first valid time after the gap
      "2026-03-30T00:30:00.000Z", // 02:30 CEST
    ]);
  });

  it("fires a 02:30 daily job once, at the first occurrence, on Berlin's fall-back day", () => {
    // 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens twice.
    assert.deepEqual(ticks(parseCron("30 2 * * *", "Europe/Berlin"), "2026-10-24T12:00:00Z", 2), [
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
      "2026-10-26T01:30:00.000Z", // 02:30 CET, the next day
    ]);
  });

  it("keeps an interval job's rhythm across DST: skips the gap, fires both occurrences of the repeated hour", () => {
    assert.deepEqual(ticks(parseCron("*/30 * * * *", "Europe/Berlin"), "2026-03-29T00:15:00Z", 3), [
      "2026-03-29T00:30:00.000Z", // 01:30 CET
      "2026-03-29T01:00:00.000Z", // 03:00 CEST (02:00 and 02:30 do not exist)
      "2026-03-29T01:30:00.000Z",
    ]);
    assert.deepEqual(ticks(parseCron("*/30 * * * *", "Europe/Berlin"), "2026-10-25T00:15:00Z", 4), [
      "2026-10-25T00:30:00.000Z", // 02:30 CEST
      "2026-10-25T01:00:00.000Z", // 02:00 CET
      "2026-10-25T01:30:00.000Z", // 02:30 CET
      "2026-10-25T02:00:00.000Z", // 03:00 CET
    ]);
  });

  it("gives previous ticks strictly before an instant, latest first", () => {
    assert.deepEqual(iso(parseCron("*/5 * * * *", "UTC").previous(at("2026-01-01T00:10:00Z"), 2)), ["2026-01-01T00:05:00.000Z", "2026-01-01T00:00:00.000Z"]);
  });

  it("parses an expression that never fires, whose next tick is null", () => {
    assert.equal(parseCron("0 0 30 2 *", "UTC").next(at("2026-01-01T00:00:00Z")), null);
  });

  it("refuses bad expressions, naming the cron field and what is wrong", () => {
    for (const [expr, why] of [
      ["bogus", /exactly five, six, or seven/],
      ["* * * *", /exactly five/],
      ["61 * * * *", /minute: 61/],
      ["*/0 * * * *", /stepping/],
      ["0 0 0 1 1 * 2027", /5 or 6 parts/],
      ["", /exactly five/],
      ["@every 5m", /invalid/],
    ] as const) {
      const err = cronError(() => parseCron(expr, "UTC"));
      assert.equal(err.field, "cron", expr);
      assert.match(err.message, why, expr);
      assert.ok(err.message.startsWith(JSON.stringify(expr)), err.message);
    }
  });

  it("refuses an unknown time zone, naming the time_zone field", () => {
    const err = cronError(() => parseCron("* * * * *", "Mars/Olympus_Mons"));
    assert.equal(err.field, "time_zone");
    assert.equal(err.message, 'unknown time zone "Mars/Olympus_Mons"');
  });
});

describe("dueTicks", () => {
  const everyMinute = parseCron("* * * * *", "UTC");
  const base = { cron: everyMinute, missed: "run_once" as const, backfillLimit: 0 };

  it("fires an on-time tick and waits for the next", () => {
    const due = dueTicks({ ...base, nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:05:00.040Z"), 1000);
    assert.deepEqual(iso(due.fire), ["2026-01-01T00:05:00.000Z"]);
    assert.equal(due.skipped, 0);
    assert.equal(due.next?.toISOString(), "2026-01-01T00:06:00.000Z");
  });

  it("fires a tick exactly at now, and a tick late by no more than the tolerance", () => {
    assert.equal(dueTicks({ ...base, nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:05:00Z"), 1000).fire.length, 1);
    const late = dueTicks({ ...base, missed: "skip", nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:05:01Z"), 1000);
    assert.deepEqual(iso(late.fire), ["2026-01-01T00:05:00.000Z"]);
    assert.equal(late.skipped, 0);
  });

  it("fires every on-time tick of a seconds expression when the ticker woke late within the tolerance", () => {
    const due = dueTicks({ ...base, cron: parseCron("* * * * * *", "UTC"), nextFireAt: at("2026-01-01T00:00:01Z") }, at("2026-01-01T00:00:02.500Z"), 2000);
    assert.deepEqual(iso(due.fire), ["2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z"]);
    assert.equal(due.next?.toISOString(), "2026-01-01T00:00:03.000Z");
  });

  it("with missed SKIP fires nothing after downtime, counts the missed ticks and waits for the next", () => {
    const due = dueTicks({ ...base, missed: "skip", nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:09:30Z"), 1000);
    assert.deepEqual(due.fire, []);
    assert.equal(due.skipped, 5); // 00:05 … 00:09
    assert.equal(due.skippedAtLeast, false);
    assert.match(due.skipReason!, /^5 missed ticks skipped \(missed policy SKIP\), from 2026-01-01T00:05:00.000Z/);
    assert.equal(due.next?.toISOString(), "2026-01-01T00:10:00.000Z");
  });

  it("with missed RUN_ONCE fires the latest missed tick only, and counts no skip", () => {
    const due = dueTicks({ ...base, nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:09:30Z"), 1000);
    assert.deepEqual(iso(due.fire), ["2026-01-01T00:09:00.000Z"]);
    assert.equal(due.skipped, 0);
    assert.equal(due.next?.toISOString(), "2026-01-01T00:10:00.000Z");
  });

  it("with missed BACKFILL fires every missed tick, oldest first, when they are within the limit", () => {
    const due = dueTicks({ ...base, missed: "backfill", backfillLimit: 5, nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:09:30Z"), 1000);
    assert.deepEqual(iso(due.fire), ["00:05", "00:06", "00:07", "00:08", "00:09"].map((m) => `2026-01-01T${m}:00.000Z`));
    assert.equal(due.skipped, 0);
    assert.equal(due.next?.toISOString(), "2026-01-01T00:10:00.000Z");
  });

  it("with missed BACKFILL fires the latest backfill_limit missed ticks, oldest first, and counts the older ones as skipped", () => {
    const due = dueTicks({ ...base, missed: "backfill", backfillLimit: 3, nextFireAt: at("2026-01-01T00:05:00Z") }, at("2026-01-01T00:09:30Z"), 1000);
    assert.deepEqual(iso(due.fire), ["00:07", "00:08", "00:09"].map((m) => `2026-01-01T${m}:00.000Z`));
    assert.equal(due.skipped, 2);
    assert.match(due.skipReason!, /2 missed ticks beyond the backfill limit of 3 not fired/);
  });

  it("with missed BACKFILL and a large limit fires every missed tick once, in order, however many", () => {
    const due = dueTicks({ ...base, missed: "backfill", backfillLimit: 1000, nextFireAt: at("2026-01-01T00:00:00Z") }, at("2026-01-01T00:40:30Z"), 1000);
    assert.equal(due.fire.length, 41);
    assert.deepEqual(due.fire.map((d) => d.getTime() - due.fire[0]!.getTime()), Array.from({ length: 41 }, (_, i) => i * 60_000));
    assert.equal(due.fire[0]!.toISOString(), "2026-01-01T00:00:00.000Z");
    assert.equal(due.skipped, 0);
  });

  it("with missed BACKFILL and a limit of 0 fires at most 10", () => {
    const due = dueTicks({ ...base, missed: "backfill", nextFireAt: at("2026-01-01T00:00:00Z") }, at("2026-01-01T01:00:30Z"), 1000);
    assert.equal(due.fire.length, DEFAULT_BACKFILL_LIMIT);
    assert.equal(due.fire[0]!.toISOString(), "2026-01-01T00:51:00.000Z");
    assert.equal(due.fire[9]!.toISOString(), "2026-01-01T01:00:00.000Z");
    assert.equal(due.skipped, 51);
  });

  it("fires the missed ticks and then an on-time one, in order", () => {
    const due = dueTicks({ ...base, missed: "backfill", nextFireAt: at("2026-01-01T00:08:00Z") }, at("2026-01-01T00:10:00.500Z"), 1000);
    assert.deepEqual(iso(due.fire), ["00:08", "00:09", "00:10"].map((m) => `2026-01-01T${m}:00.000Z`));
    assert.equal(due.next?.toISOString(), "2026-01-01T00:11:00.000Z");
  });

  it("stops counting skipped ticks after a long downtime and says the count is a lower bound", () => {
    const due = dueTicks({ ...base, missed: "skip", nextFireAt: at("2026-01-01T00:00:00Z") }, at("2026-01-03T00:00:30Z"), 1000);
    assert.equal(due.skipped, MAX_COUNTED_TICKS);
    assert.equal(due.skippedAtLeast, true);
    assert.match(due.skipReason!, /^at least 100 missed ticks skipped/);
    assert.equal(due.next?.toISOString(), "2026-01-03T00:01:00.000Z");
  });

  it("applies the missed policy in the schedule's time zone across a DST change", () => {
    // Down from before Berlin's spring-forward night until 06:00 UTC: 02:30 fired as 03:00 CEST is the one missed tick.
    const cron = parseCron("30 2 * * *", "Europe/Berlin");
    const due = dueTicks({ cron, missed: "backfill", backfillLimit: 0, nextFireAt: at("2026-03-29T01:00:00Z") }, at("2026-03-29T06:00:00Z"), 1000);
    assert.deepEqual(iso(due.fire), ["2026-03-29T01:00:00.000Z"]);
    assert.equal(due.next?.toISOString(), "2026-03-30T00:30:00.000Z");
  });

  it("says there is no next tick when the expression has none left", () => {
    const once: CronSchedule = { next: (after) => (after < at("2026-01-01T00:00:00Z") ? at("2026-01-01T00:00:00Z") : null), previous: () => [] };
    const due = dueTicks({ ...base, cron: once, nextFireAt: at("2026-01-01T00:00:00Z") }, at("2026-01-01T00:00:00.100Z"), 1000);
    assert.deepEqual(iso(due.fire), ["2026-01-01T00:00:00.000Z"]);
    assert.equal(due.next, null);
  });
});

describe("overlapAction", () => {
  it("fires whatever the policy when nothing from the previous tick is going", () => {
    for (const p of ["skip", "allow", "cancel_previous"] as const) assert.equal(overlapAction(p, false), "fire");
  });

  it("skips, fires anyway, or cancels the previous, by policy, while the previous tick's work is going", () => {
    assert.equal(overlapAction("skip", true), "skip");
    assert.equal(overlapAction("allow", true), "fire");
    assert.equal(overlapAction("cancel_previous", true), "cancel_previous");
  });
});
