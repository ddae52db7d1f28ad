// The live publisher on both buses: what ingestion stored goes to this
// replica's follows at once, and onto the live streams that another replica
// follows, in order, and nowhere else.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";

import type { Bus } from "../../lib/bus/bus.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { createRedisBus } from "../../lib/bus/redis.ts";
import { createLogger } from "../../lib/logger.ts";
import { requireRedis } from "../../lib/testing/services.ts";
import { BusLivePublisher, decodeEntry, FOLLOWED_TTL_MS, followersKey, jobStream, runStream, type LiveEntry, type LocalTaps } from "./live.ts";
import type { StoredPiece } from "./types.ts";

const logger = createLogger("silent");
const redisUrl = await requireRedis();

/** A piece of a new attempt's stdout at offset, holding text. */
function piece(jobId: string, offset: number, text: string, runId = ""): StoredPiece {
  const data = new TextEncoder().encode(text);
  return {
    attempt: { attemptId: `attempt-of-${jobId}`, jobId, agentId: "agent-1", runId, stageName: runId ? "build" : "" },
    stream: "stdout",
    commandIndex: 0,
    offset: BigInt(offset),
    endOffset: BigInt(offset + data.length),
    data,
    times: [[0, 1_000 + offset]],
    complete: false,
  };
}

/** Publishes the pieces through a publisher of its own and waits until they reached the bus. */
async function publish(bus: Bus, pieces: StoredPiece[], local?: LocalTaps): Promise<void> {
  const publisher = new BusLivePublisher({ bus, logger, local });
  publisher.publish(pieces);
  await publisher.close();
}

/** The texts on a live stream, oldest first. */
async function texts(bus: Bus, stream: string): Promise<string[]> {
  return (await bus.read(stream, "0")).map((e) => new TextDecoder().decode(decodeEntry(e.data)!.data));
}

const buses: Array<{ name: string; open(): Bus }> = [
  { name: "the memory bus", open: () => createMemoryBus() },
  ...(redisUrl ? [{ name: "Redis", open: () => createRedisBus({ url: redisUrl, keyPrefix: `drover-test-${randomUUID()}` }) }] : []),
];

for (const setup of buses) {
  describe(`the live publisher on ${setup.name}`, () => {
    it("appends nothing to the live stream of a job nobody follows", async () => {
      const bus = setup.open();
      try {
        const job = `job-${randomUUID()}`;
        await publish(bus, [piece(job, 0, "unseen\n")]);
        assert.deepEqual(await texts(bus, jobStream(job)), []);
      } finally {
        await bus.close();
      }
    });

    it("appends a followed job's pieces in offset order, and a run stage's to its run only when the run is followed", async () => {
      const bus = setup.open();
      try {
        const job = `job-${randomUUID()}`;
        const run = `run-${randomUUID()}`;
        await bus.setPresenceMember(followersKey(jobStream(job)), "another-replica", FOLLOWED_TTL_MS);
        await publish(bus, [piece(job, 0, "one\n", run), piece(job, 4, "two\n", run), piece(job, 8, "three\n", run)]);
        assert.deepEqual(await texts(bus, jobStream(job)), ["one\n", "two\n", "three\n"]);
        assert.deepEqual(await texts(bus, runStream(run)), []);
      } finally {
        await bus.close();
      }
    });

    it("hands this replica's follows their pieces, and appends them only once another replica follows too", async () => {
      const bus = setup.open();
      try {
        const job = `job-${randomUUID()}`;
        const run = `run-${randomUUID()}`;
        const handed: Array<[string, string]> = [];
        const here: LocalTaps = {
          replicaId: "replica-here",
          deliver: (stream: string, entry: LiveEntry) => handed.push([stream, new TextDecoder().decode(entry.data)]),
        };
        await bus.setPresenceMember(followersKey(jobStream(job)), here.replicaId, FOLLOWED_TTL_MS);
        await publish(bus, [piece(job, 0, "one\n", run)], here);
        assert.deepEqual(handed, [
          [jobStream(job), "one\n"],
          [runStream(run), "one\n"],
        ]);
        assert.deepEqual(await texts(bus, jobStream(job)), [], "appended though only this replica follows");

        await bus.setPresenceMember(followersKey(jobStream(job)), "replica-there", FOLLOWED_TTL_MS);
        await publish(bus, [piece(job, 4, "two\n", run)], here);
        assert.deepEqual(await texts(bus, jobStream(job)), ["two\n"]);
        assert.deepEqual(await texts(bus, runStream(run)), [], "nobody follows the run");
        assert.equal(handed.length, 4);
      } finally {
        await bus.close();
      }
    });
  });
}
