// One client process of the agent stream benchmark: loads one library, runs
// one scenario against the server, and reports to its parent over IPC. A
// process per (library, scenario) keeps memory figures apart.
//
// Started by agent_stream_client.ts with fork(), argv[2] = JSON WorkerConfig,
// and `--expose-gc` so memory is read after a full collection.
//
// Messages to the parent: { type, ... } as documented on each scenario; it
// always ends with "done" (or "failed") and then exits. The worker exits by
// itself after `deadlineMs`, so a parent that died cannot leave it behind.

import { createHealthClient, type HealthStreamClient, type Keepalive, type Library, type StreamEnd } from "./client.ts";

export type WorkerConfig = {
  library: Library;
  baseUrl: string;
  deadlineMs: number;
} & (
  | { scenario: "memory"; streams: number }
  | { scenario: "reconnect"; streams: number; retryDelayMs: number }
  | { scenario: "keepalive"; keepalive?: Keepalive }
  | { scenario: "throughput"; concurrency: number; durationMs: number }
);

/** Messages from the parent. */
export type ParentMessage = { type: "finish" };

const config = JSON.parse(process.argv[2]!) as WorkerConfig;
const send = (message: Record<string, unknown>) => process.send!(message);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

setTimeout(() => {
  send({ type: "failed", error: `worker deadline of ${config.deadlineMs} ms passed` });
  process.exit(3);
}, config.deadlineMs).unref();
// Without its parent there is nobody to report to.
let leaving = false;
process.on("disconnect", () => {
  if (!leaving) process.exit(4);
});

const finishRequested = new Promise<void>((resolve) =>
  process.on("message", (m: ParentMessage) => {
    if (m.type === "finish") resolve();
  }),
);

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error("run the worker with --expose-gc");
  collect();
  collect();
}

function memory() {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

/** Resolves when `count()` reaches `n`; rejects after `ms`. */
async function until(what: string, ms: number, done: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * memory: "opened" { before, after, openMs } once all streams got their first
 * message; waits for "finish"; then "done".
 */
async function memoryScenario(client: HealthStreamClient, streams: number) {
  await client.check(5_000);
  // One stream opened and closed first, so that loading and compiling the
  // streaming code is not counted as the cost of a stream.
  {
    const warm = new AbortController();
    let got = false;
    const ended = client.watch(() => (got = true), warm.signal);
    await until("the warm-up stream", 5_000, () => got);
    warm.abort();
    await ended;
  }
  await sleep(100);
  gc();
  const before = memory();
  const abort = new AbortController();
  let opened = 0;
  const ends: Promise<StreamEnd>[] = [];
  const started = performance.now();
  for (let i = 0; i < streams; i++) {
    let first = true;
    ends.push(
      client.watch(() => {
        if (first) opened++;
        first = false;
      }, abort.signal),
    );
  }
  await until(`${streams} streams to open`, 30_000, () => opened === streams);
  const openMs = performance.now() - started;
  await sleep(500);
  gc();
  const after = memory();
  send({ type: "opened", before, after, openMs });
  await finishRequested;
  abort.abort();
  const codes = count((await Promise.all(ends)).map((e) => e.code));
  send({ type: "done", endCodesOnCancel: codes });
}

/**
 * reconnect: each stream is kept open by a loop that re-opens it
 * `retryDelayMs` (±50% jitter) after it ends. Sends "allUp" { at } whenever
 * every stream has received its first message, "firstDown" / "allDown" { at }
 * as streams end; on "finish", "done" with what ended the streams and why
 * re-opening failed meanwhile.
 */
async function reconnectScenario(client: HealthStreamClient, streams: number, retryDelayMs: number) {
  const abort = new AbortController();
  let up = 0;
  const streamEnds: Record<string, number> = {};
  const endMessages: Record<string, string> = {};
  const failedAttempts: Record<string, number> = {};
  const failedMessages: Record<string, string> = {};
  const statuses: Record<string, number> = {};
  let attempts = 0;
  const loop = async () => {
    while (!abort.signal.aborted) {
      let isUp = false;
      attempts++;
      const end = await client.watch((status) => {
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (isUp) return;
        isUp = true;
        up++;
        if (up === streams) send({ type: "allUp", at: Date.now() });
      }, abort.signal);
      if (abort.signal.aborted) return;
      if (isUp) {
        up--;
        if (up === streams - 1) send({ type: "firstDown", at: Date.now() });
        if (up === 0) send({ type: "allDown", at: Date.now() });
        streamEnds[end.code] = (streamEnds[end.code] ?? 0) + 1;
        endMessages[end.code] ??= end.message;
      } else {
        failedAttempts[end.code] = (failedAttempts[end.code] ?? 0) + 1;
        failedMessages[end.code] ??= end.message;
      }
      await sleep(retryDelayMs * (0.5 + Math.random()));
    }
  };
  const loops = Array.from({ length: streams }, loop);
  await finishRequested;
  abort.abort();
  await Promise.all(loops);
  send({ type: "done", attempts, streamEnds, endMessages, failedAttempts, failedMessages, statusMessages: statuses });
}

/**
 * keepalive: one stream; "up" { at } on its first message, "ended" { at, code,
 * message } if it ends; on "finish", "done" { open } (whether it is still open).
 */
async function keepaliveScenario(client: HealthStreamClient) {
  const abort = new AbortController();
  let open = true;
  let first = true;
  const ended = client.watch(() => {
    if (first) send({ type: "up", at: Date.now() });
    first = false;
  }, abort.signal);
  void ended.then((end) => {
    open = false;
    if (!abort.signal.aborted) send({ type: "ended", at: Date.now(), ...end });
  });
  await finishRequested;
  const wasOpen = open;
  abort.abort();
  await ended;
  send({ type: "done", open: wasOpen });
}

/** throughput: Health/Check in `concurrency` loops for `durationMs`; "done" { calls, errors, seconds, cpuMs }. */
async function throughputScenario(client: HealthStreamClient, concurrency: number, durationMs: number) {
  const run = async (ms: number) => {
    let calls = 0;
    let errors = 0;
    const firstError: string[] = [];
    const deadline = performance.now() + ms;
    const loop = async () => {
      while (performance.now() < deadline) {
        try {
          await client.check(5_000);
          calls++;
        } catch (err) {
          errors++;
          if (firstError.length === 0) firstError.push(String(err));
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    return { calls, errors, firstError: firstError[0] };
  };
  await run(300); // warm-up: connection, JIT
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await run(durationMs);
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  send({ type: "done", ...result, seconds, cpuMs: (used.user + used.system) / 1000, rss: process.memoryUsage().rss });
}

function count(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

const client = await createHealthClient(config.library, config.baseUrl, config.scenario === "keepalive" ? config.keepalive : undefined);
try {
  switch (config.scenario) {
    case "memory":
      await memoryScenario(client, config.streams);
      break;
    case "reconnect":
      await reconnectScenario(client, config.streams, config.retryDelayMs);
      break;
    case "keepalive":
      await keepaliveScenario(client);
      break;
    case "throughput":
      await throughputScenario(client, config.concurrency, config.durationMs);
      break;
  }
} catch (err) {
  send({ type: "failed", error: String((err as Error).stack ?? err) });
  process.exitCode = 1;
} finally {
  client.close();
  // The open IPC channel keeps the process alive: close it (pending messages
  // are still delivered), and leave within a second even if a handle lingers.
  leaving = true;
  process.disconnect();
  setTimeout(() => process.exit(), 1_000).unref();
}
