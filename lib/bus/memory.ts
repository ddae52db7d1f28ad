// The bus for dev mode, where every service runs in one process. It keeps the
// Redis bus's semantics rather than the simplest ones — copies of payloads,
// asynchronous delivery, TTLs — so code that works here works in split mode.
//
// TTLs are deadlines checked when a key is read, never timers, so an idle bus
// holds the process open for nothing. The one timer, a blocked read's
// timeout, deliberately does hold it open: the caller is awaiting that read,
// it lasts at most blockMs, and an unref'd timer would let the process exit
// with the read never settled (as the Redis bus's socket would not).

import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import {
  BusClosedError,
  checkPositiveInt,
  checkTtl,
  parseStreamId,
  type AppendOptions,
  type Bus,
  type Lock,
  type MessageHandler,
  type ReadOptions,
  type StreamEntry,
  type Unsubscribe,
} from "./bus.ts";

/** Options for createMemoryBus. */
export interface MemoryBusOptions {
  /** Where handler failures are reported; without one they go nowhere. */
  logger?: Logger;
}

/** A value that reads as absent from `expiresAt` (ms since the epoch) on. */
interface Expiring<T> {
  value: T;
  expiresAt: number;
}

interface StoredEntry {
  id: string;
  ms: number;
  seq: number;
  data: Uint8Array;
}

interface Stream {
  entries: StoredEntry[];
  lastMs: number;
  lastSeq: number;
  // Woken by append; each decides for itself whether the new entry is after its id.
  waiters: Set<() => void>;
}

/** Creates a bus that lives and dies with this process; see Bus for what each method promises. */
export function createMemoryBus(options: MemoryBusOptions = {}): Bus {
  const log = options.logger?.child({ component: "bus", bus: "memory" });
  const channels = new Map<string, Set<{ handler: MessageHandler; active: boolean }>>();
  const streams = new Map<string, Stream>();
  const locks = new Map<string, Expiring<string>>();
  const presence = new Map<string, Expiring<string>>();
  // Presence sets: member → until when its mark holds (epoch ms).
  const memberSets = new Map<string, Map<string, number>>();
  // A presence set without its lapsed members; undefined (and forgotten) once none is left.
  const liveMembers = (key: string, now: number): Map<string, number> | undefined => {
    const members = memberSets.get(key);
    if (!members) return undefined;
    for (const [m, until] of members) if (until <= now) members.delete(m);
    if (members.size > 0) return members;
    memberSets.delete(key);
    return undefined;
  };
  // Waiting reads to reject when the bus closes.
  const closers = new Set<() => void>();
  let closed = false;

  function open(): void {
    if (closed) throw new BusClosedError();
  }

  function live<T>(map: Map<string, Expiring<T>>, key: string, now = Date.now()): T | undefined {
    const item = map.get(key);
    if (item === undefined) return undefined;
    if (item.expiresAt <= now) {
      map.delete(key);
      return undefined;
    }
    return item.value;
  }

  function streamOf(name: string): Stream {
    let stream = streams.get(name);
    if (!stream) {
      stream = { entries: [], lastMs: 0, lastSeq: 0, waiters: new Set() };
      streams.set(name, stream);
    }
    return stream;
  }

  function after(stream: Stream, ms: number, seq: number, count: number | undefined): StreamEntry[] {
    // Entries are few (maxLen-bounded) in dev mode, so a scan from the end is enough.
    let start = stream.entries.length;
    while (start > 0) {
      const e = stream.entries[start - 1]!;
      if (e.ms < ms || (e.ms === ms && e.seq <= seq)) break;
      start--;
    }
    const end = count === undefined ? stream.entries.length : Math.min(stream.entries.length, start + count);
    return stream.entries.slice(start, end).map((e) => ({ id: e.id, data: e.data.slice() }));
  }

  const bus: Bus = {
    async publish(channel, message) {
      open();
      const subscribers = channels.get(channel);
      if (!subscribers) return;
      const copy = message.slice();
      for (const sub of subscribers) {
        // A microtask, so a handler never runs inside publish's caller; the
        // flag, so one unsubscribed in the meantime is not called.
        queueMicrotask(() => {
          if (!sub.active) return;
          try {
            sub.handler(copy.slice());
          } catch (err) {
            log?.error({ err, channel }, "a bus message handler threw");
          }
        });
      }
    },

    async subscribe(channel, handler): Promise<Unsubscribe> {
      open();
      const sub = { handler, active: true };
      let subscribers = channels.get(channel);
      if (!subscribers) channels.set(channel, (subscribers = new Set()));
      subscribers.add(sub);
      return async () => {
        sub.active = false;
        const current = channels.get(channel);
        if (!current) return;
        current.delete(sub);
        if (current.size === 0) channels.delete(channel);
      };
    },

    async append(name, data, opts: AppendOptions) {
      open();
      checkPositiveInt("maxLen", opts.maxLen);
      const stream = streamOf(name);
      // Like Redis, ids never go backwards even if the clock does.
      const now = Date.now();
      if (now > stream.lastMs) {
        stream.lastMs = now;
        stream.lastSeq = 0;
      } else {
        stream.lastSeq++;
      }
      const id = `${stream.lastMs}-${stream.lastSeq}`;
      stream.entries.push({ id, ms: stream.lastMs, seq: stream.lastSeq, data: data.slice() });
      if (stream.entries.length > opts.maxLen) {
        stream.entries.splice(0, stream.entries.length - opts.maxLen);
      }
      for (const wake of [...stream.waiters]) wake();
      return id;
    },

    async read(name, afterId, opts: ReadOptions = {}) {
      open();
      const { count, blockMs, signal } = opts;
      if (count !== undefined) checkPositiveInt("count", count);
      if (blockMs !== undefined && blockMs !== 0) checkTtl("blockMs", blockMs);
      signal?.throwIfAborted();

      const stream = streamOf(name);
      const [ms, seq] = afterId === "$" ? [stream.lastMs, stream.lastSeq] : parseStreamId(afterId);
      const ready = after(stream, ms, seq, count);
      if (ready.length > 0 || !blockMs) return ready;

      return new Promise<StreamEntry[]>((resolve, reject) => {
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          stream.waiters.delete(wake);
          closers.delete(onClose);
          signal?.removeEventListener("abort", onAbort);
          settle();
        };
        const wake = () => {
          const entries = after(stream, ms, seq, count);
          if (entries.length > 0) finish(() => resolve(entries));
        };
        const onAbort = () => finish(() => reject(signal!.reason));
        const onClose = () => finish(() => reject(new BusClosedError()));
        const timer = setTimeout(() => finish(() => resolve([])), blockMs);
        stream.waiters.add(wake);
        closers.add(onClose);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },

    async tryLock(name, ttlMs) {
      open();
      checkTtl("ttlMs", ttlMs);
      if (live(locks, name) !== undefined) return null;
      const token = randomUUID();
      locks.set(name, { value: token, expiresAt: Date.now() + ttlMs });
      const lock: Lock = {
        name,
        token,
        async extend(ttlMs) {
          open();
          checkTtl("ttlMs", ttlMs);
          if (live(locks, name) !== token) return false;
          locks.set(name, { value: token, expiresAt: Date.now() + ttlMs });
          return true;
        },
        async release() {
          open();
          if (live(locks, name) === token) locks.delete(name);
        },
      };
      return lock;
    },

    async setPresence(key, value, ttlMs) {
      open();
      checkTtl("ttlMs", ttlMs);
      presence.set(key, { value, expiresAt: Date.now() + ttlMs });
    },

    async getPresence(key) {
      open();
      return live(presence, key) ?? null;
    },

    async deletePresence(key) {
      open();
      presence.delete(key);
    },

    async listPresence(prefix) {
      open();
      const now = Date.now();
      const found = new Map<string, string>();
      for (const key of [...presence.keys()]) {
        if (!key.startsWith(prefix)) continue;
        const value = live(presence, key, now);
        if (value !== undefined) found.set(key, value);
      }
      return found;
    },

    async setPresenceMember(key, member, ttlMs) {
      open();
      checkTtl("ttlMs", ttlMs);
      const now = Date.now();
      const members = liveMembers(key, now) ?? new Map<string, number>();
      members.set(member, now + ttlMs);
      memberSets.set(key, members);
    },

    async getPresenceMembers(keys) {
      open();
      const now = Date.now();
      return keys.map((key) => [...(liveMembers(key, now)?.keys() ?? [])]);
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const close of [...closers]) close();
      // Deliveries already queued must not reach handlers after close resolves.
      for (const subscribers of channels.values()) for (const sub of subscribers) sub.active = false;
      channels.clear();
    },
  };
  return bus;
}
