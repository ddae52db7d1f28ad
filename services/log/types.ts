// What the parts of the Log service hand each other: ingestion (ingest.ts)
// stores frames and then hands what it stored to the live side (live.ts),
// which makes it visible to followers on every replica (follow.ts).

/** Stored stream names: the enum names in lower case. */
export type StreamName = "stdout" | "stderr" | "system";

/** Whose an attempt's output is (from the Scheduler's DescribeAttempts, kept in log_attempts). */
export interface AttemptOwner {
  attemptId: string;
  jobId: string;
  agentId: string;
  /** "" when the job is not a stage of a run. */
  runId: string;
  stageName: string;
}

/** Bytes of one stream that one ingestion stored (one committed transaction), in stream order. */
export interface StoredPiece {
  attempt: AttemptOwner;
  stream: StreamName;
  commandIndex: number;
  /** Where the piece starts in the stream. */
  offset: bigint;
  /** Where it ends in the stream (offset + bytes of the agent's file it covers; data can be shorter after redaction). */
  endOffset: bigint;
  /** The bytes as stored (redacted); may be empty on a piece that only says complete. */
  data: Uint8Array;
  /** [offset within data, epoch ms] for each frame the piece came from, in order; the first starts at 0. */
  times: Array<[number, number]>;
  /** The stream is complete after this piece: nothing more will be stored. */
  complete: boolean;
}

/** Makes stored pieces visible to followers; never throws (a bus outage is logged, and followers fall back to polling storage). */
export interface LivePublisher {
  publish(pieces: readonly StoredPiece[]): void;
}
