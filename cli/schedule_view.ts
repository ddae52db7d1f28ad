// How cron schedules read on a terminal. Fire times are shown in the
// schedule's own time zone, so they can be checked against its expression
// ("0 9 * * *" in Europe/Paris fires at 09:00 +01:00 or +02:00), with the
// offset and how far away they are. Pure: `now` is a parameter.

import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { MissedPolicy, OverlapPolicy, type Schedule, type ScheduleSpec } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { commandText, truncate } from "./job_view.ts";
import { ago, formatFields, formatTable } from "./output.ts";
import { enumWords } from "./parse.ts";

/** `--overlap` words: skip, allow, cancel-previous. */
export const OVERLAP_WORDS: Record<string, OverlapPolicy> = enumWords<OverlapPolicy>(OverlapPolicy, "-");

/** `--missed` words: skip, run-once, backfill. */
export const MISSED_WORDS: Record<string, MissedPolicy> = enumWords<MissedPolicy>(MissedPolicy, "-");

/** The word for a policy; unspecified reads as the server's default, which it is. */
function policyWord<E extends number>(words: Record<string, E>, value: E, fallback: E): string {
  const chosen = value === 0 ? fallback : value;
  return Object.entries(words).find(([, v]) => v === chosen)?.[0] ?? String(value);
}

/** "2026-03-29 03:00:00 +02:00": the wall-clock time in `timeZone` (empty: UTC) and its offset from UTC. */
export function zonedTime(ms: number, timeZone: string): string {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: timeZone || "UTC",
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      timeZoneName: "longOffset",
    });
  } catch {
    // A zone this Node does not know (the server accepted it): UTC, which says so.
    return zonedTime(ms, "UTC");
  }
  const part = Object.fromEntries(format.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
  const offset = (part.timeZoneName ?? "GMT").replace(/^GMT/, "") || "+00:00";
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second} ${offset}`;
}

/** A fire time in the schedule's zone and relative to now: "2030-01-01 13:00:00 +01:00 (in 1h)", or "-". */
export function fireText(t: Timestamp | undefined, timeZone: string, now = Date.now()): string {
  return t ? `${zonedTime(timestampMs(t), timeZone)} (${ago(timestampMs(t), now)})` : "-";
}

/** What each tick fires: "job: make test" or "run: nightly (3 stages: build, test, deploy)". */
export function templateText(spec: ScheduleSpec | undefined): string {
  const template = spec?.template;
  if (template?.case === "job") {
    return `job: ${template.value.exec?.commands.map((c) => commandText(c.argv)).join(" && ") || "-"}`;
  }
  if (template?.case === "run") {
    const names = template.value.stages.map((s) => s.name);
    return `run: ${template.value.name || "(no name)"} (${names.length} stage${names.length === 1 ? "" : "s"}: ${names.join(", ")})`;
  }
  return "-";
}

export const SCHEDULE_LIST_HEADERS = ["NAME", "CRON", "TZ", "PAUSED", "NEXT FIRE", "LAST FIRE", "FIRED", "SKIPPED"];

/** One schedule in `schedules ls`. */
export function scheduleRow(s: Schedule, now = Date.now()): string[] {
  const tz = s.spec?.timeZone ?? "";
  return [
    s.spec?.name ?? "-",
    s.spec?.cron ?? "-",
    tz || "UTC",
    s.paused ? "yes" : "no",
    fireText(s.nextFireTime, tz, now),
    s.lastFireTime ? ago(timestampMs(s.lastFireTime), now) : "-",
    String(s.fireCount),
    String(s.skipCount),
  ];
}

/** One schedule in detail: when it fires, what, its policies, and what it last did. */
export function scheduleDetails(s: Schedule, opts: { now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const spec = s.spec;
  const tz = spec?.timeZone ?? "";
  const missed = policyWord(MISSED_WORDS, spec?.missed ?? 0, MissedPolicy.RUN_ONCE);
  const fields: [string, string][] = [
    ["id", s.id],
    ["name", spec?.name ?? "-"],
    ["cron", spec?.cron ?? "-"],
    ["time zone", tz || "UTC"],
    ["fires", templateText(spec)],
    ["overlap", policyWord(OVERLAP_WORDS, spec?.overlap ?? 0, OverlapPolicy.SKIP)],
    ["missed", missed === "backfill" ? `backfill, at most ${spec?.backfillLimit || 10}` : missed],
    ["paused", s.paused ? "yes" : "no"],
    ["next fire", s.paused ? "- (paused)" : fireText(s.nextFireTime, tz, now)],
    ["last fire", fireText(s.lastFireTime, tz, now)],
  ];
  if (s.lastJobId) fields.push(["last job", s.lastJobId]);
  if (s.lastRunId) fields.push(["last run", s.lastRunId]);
  fields.push(["fired", String(s.fireCount)], ["skipped", String(s.skipCount)]);
  if (s.lastSkipReason) fields.push(["last skipped", truncate(s.lastSkipReason, 200)]);
  fields.push(["created", s.createTime ? new Date(timestampMs(s.createTime)).toISOString() : "-"]);
  return formatFields(fields);
}
