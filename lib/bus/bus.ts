// The bus is everything Drover keeps in Redis: presence, messages routed to
// whichever process holds an agent's stream, live log tails and locks. All of
// it may be lost (a restart, an eviction, a failover) and rebuilt by its
// owners, so nothing here is a source of truth — PostgreSQL is. Two
// implementations pass one contract (bus.contract.ts): memory.ts for dev mode
// in a single process, redis.ts for split mode across processes.

/** Receives one message, synchronously; a throw is logged and does not stop delivery to others. */
export type MessageHandler = (message: Uint8Array) => void;

/** Stops one subscription: from the moment it is called the handler is not called again. Calling it twice is harmless. */
export type Unsubscribe = () => Promise<void>;

/** One stream entry; ids are "ms-seq" and strictly increase along a stream. */
export interface StreamEntry {
  /** Where the entry sits in its stream; pass it back as `afterId` to read what follows. */
  id: string;
  /** The bytes given to append, unchanged. */
  data: Uint8Array;
}

/** How append bounds a stream. */
export interface AppendOptions {
  /** The stream keeps at least this many newest entries and drops older ones; Redis trims approximately, so a few more may remain. */
  maxLen: number;
}

/** How read waits and how much it returns. */
export interface ReadOptions {
  /** At most this many entries are returned; unset means all that are available. */
  count?: number;
  /** When nothing is there yet, wait up to this long for an entry and return [] on timeout; unset or 0 returns at once. */
  blockMs?: number;
  /** Aborting ends a waiting read at once; it rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** An exclusive lease on a name, held until released or until its TTL runs out. */
export interface Lock {
  /** The name that was locked. */
  readonly name: string;
  /** Proves ownership: only the holder of this token can extend or release the lock. */
  readonly token: string;
  /** Resets the TTL to `ttlMs` from now; resolves false if the lock had already expired or passed to another owner. */
  extend(ttlMs: number): Promise<boolean>;
  /** Frees the lock if this token still owns it, and does nothing otherwise; never frees another owner's lock. */
  release(): Promise<void>;
}

/**
 * What Drover asks of Redis. Every method rejects with BusClosedError once
 * close() has been called; keys, streams and channels live in the bus's own
 * namespace, so two buses with different prefixes never see each other.
 */
export interface Bus {
  /** Delivers the message to every subscriber of the channel at that moment, at most once and without history. */
  publish(channel: string, message: Uint8Array): Promise<void>;
  /** Calls handler with every message published on the channel after this resolves, until the returned function is called. */
  subscribe(channel: string, handler: MessageHandler): Promise<Unsubscribe>;

  /** Adds an entry at the end of the stream, trims it to about maxLen, and resolves its id. */
  append(stream: string, data: Uint8Array, opts: AppendOptions): Promise<string>;
  /** Resolves entries with ids after `afterId` ("0" for the beginning, "$" for only entries appended after this call), oldest first. */
  read(stream: string, afterId: string, opts?: ReadOptions): Promise<StreamEntry[]>;

  /** Resolves a Lock if nobody holds `name`, or null if someone does; the lock frees itself after ttlMs unless extended. */
  tryLock(name: string, ttlMs: number): Promise<Lock | null>;

  /** Sets key to value for ttlMs; setting it again before then refreshes both. */
  setPresence(key: string, value: string, ttlMs: number): Promise<void>;
  /** Resolves the value, or null if the key was never set, was deleted or has expired. */
  getPresence(key: string): Promise<string | null>;
  /** Removes the key at once; removing an absent key is harmless. */
  deletePresence(key: string): Promise<void>;
  /** Resolves every live key starting with prefix, with its value; keys that expire during the listing may be missing. */
  listPresence(prefix: string): Promise<Map<string, string>>;
  /**
   * Marks `member` present in the set `key` for ttlMs; marking it again before
   * then refreshes it. Each member lapses on its own, so several processes can
   * say "I am here" under one key without overwriting each other.
   */
  setPresenceMember(key: string, member: string, ttlMs: number): Promise<void>;
  /** Resolves, for each key, its members whose marks have not lapsed, in no particular order ([] for a key never set); one round trip for all. */
  getPresenceMembers(keys: readonly string[]): Promise<string[][]>;

  /** Releases connections and ends waiting reads (they reject with BusClosedError); later calls resolve the same promise. */
  close(): Promise<void>;
}

/** Thrown by every bus operation attempted after, or still waiting at, close(). */
export class BusClosedError extends Error {
  constructor() {
    super("the bus is closed");
    this.name = "BusClosedError";
  }
}

// Shared argument checks, so both implementations reject the same inputs the
// same way instead of one silently rounding what the other refuses.

/** Throws RangeError unless ms is a positive finite number of milliseconds. */
export function checkTtl(what: string, ms: number): void {
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new RangeError(`${what} must be a positive number of milliseconds, got ${ms}`);
  }
}

/** Throws RangeError unless n is a positive integer. */
export function checkPositiveInt(what: string, n: number): void {
  if (!Number.isInteger(n) || n <= 0) {
    throw new RangeError(`${what} must be a positive integer, got ${n}`);
  }
}

/** Parses a stream id ("0", "ms" or "ms-seq") into its two parts; throws RangeError on anything else. */
export function parseStreamId(id: string): [ms: number, seq: number] {
  const match = /^(\d+)(?:-(\d+))?$/.exec(id);
  if (!match) throw new RangeError(`not a stream id: ${JSON.stringify(id)}`);
  return [Number(match[1]), match[2] === undefined ? 0 : Number(match[2])];
}
