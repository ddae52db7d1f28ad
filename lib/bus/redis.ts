// The bus for split mode, over Redis with ioredis.
//
// Connections, by role:
//
//   commands ──── every non-blocking command; created with the bus
//   subscriber ── SUBSCRIBE/UNSUBSCRIBE only; created on the first subscribe
//   blocking ×n ─ one per XREAD BLOCK in flight, kept in a small idle pool
//
// A blocked XREAD occupies its connection until Redis answers, and Redis has
// no way to cancel it from that connection, so abort and close() end one by
// destroying its connection: Redis then drops the blocked client at once. A
// destroyed connection never returns to the pool.
//
// Keys and channels are named `${keyPrefix}${kind}:${name}` by this file
// rather than by ioredis's keyPrefix, which SCAN patterns and pub/sub channels
// would bypass.

import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
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

/** Options for createRedisBus. */
export interface RedisBusOptions {
  /** Where Redis is, e.g. "redis://127.0.0.1:6379". */
  url: string;
  /** Prefixed to every key and channel, e.g. "drover:", so deployments or test runs sharing one Redis never collide. */
  keyPrefix: string;
  /** Receives connection errors and handler failures; without one they are dropped, never thrown. */
  logger?: Logger;
}

// Idle blocking connections kept for the next read; more than this many
// concurrent tails pay a connect each.
const MAX_IDLE_BLOCKING = 4;
// How long past blockMs a blocked read waits for Redis before deciding the
// connection is dead (a half-open TCP connection never errors by itself).
const BLOCK_GRACE_MS = 2_000;
// How long close() lets QUIT drain pending replies before dropping the socket.
const QUIT_TIMEOUT_MS = 1_000;
// The stream field holding an entry's payload.
const FIELD = "d";

// Both compare the stored token first so a lock that expired and passed to
// another owner is never extended or freed by its previous holder.
const EXTEND_LUA = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE_LUA = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`;

// A presence set is a sorted set scored by when each member's mark lapses,
// on Redis's clock (TIME), so processes on hosts whose clocks disagree still
// agree on who is present. The key itself lapses with its last member.
const NOW_MS_LUA = `local t = redis.call("time") local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
const MARK_MEMBER_LUA = `${NOW_MS_LUA}
redis.call("zremrangebyscore", KEYS[1], "-inf", string.format("%d", now))
redis.call("zadd", KEYS[1], string.format("%d", now + tonumber(ARGV[2])), ARGV[1])
local last = redis.call("zrange", KEYS[1], -1, -1, "withscores")
redis.call("pexpireat", KEYS[1], last[2])
return 1`;
const LIVE_MEMBERS_LUA = `${NOW_MS_LUA}
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call("zrangebyscore", key, string.format("(%d", now), "+inf") end
return out`;

interface LockScripts {
  droverLockExtend(key: string, token: string, ttlMs: number): Promise<number>;
  droverLockRelease(key: string, token: string): Promise<number>;
  droverMarkMember(key: string, member: string, ttlMs: number): Promise<number>;
  droverLiveMembers(numberOfKeys: number, ...keys: string[]): Promise<string[][]>;
}

type XReadReply = [key: Buffer, items: [id: Buffer, fields: Buffer[]][]][] | null;
type XRead = (...args: (string | number)[]) => Promise<XReadReply>;

interface Subscription {
  handler: MessageHandler;
  active: boolean;
}

interface Channel {
  subscriptions: Set<Subscription>;
  // Resolves once Redis confirms SUBSCRIBE; later subscribers wait on it too.
  ready: Promise<unknown>;
}

/** Creates a bus over the Redis at `url`; see Bus for what each method promises. */
export function createRedisBus(options: RedisBusOptions): Bus {
  const log = options.logger?.child({ component: "bus", bus: "redis" });
  const prefix = options.keyPrefix;
  const key = {
    channel: (name: string) => `${prefix}channel:${name}`,
    stream: (name: string) => `${prefix}stream:${name}`,
    lock: (name: string) => `${prefix}lock:${name}`,
    presence: (name: string) => `${prefix}presence:${name}`,
    presenceSet: (name: string) => `${prefix}presence-set:${name}`,
  };

  function connect(role: string): Redis {
    // The prefix in the name tells whose connection it is in CLIENT LIST;
    // Redis refuses names with spaces or control characters.
    const connectionName = `${prefix}bus-${role}`.replace(/[^\x21-\x7e]/g, "_");
    const conn = new Redis(options.url, { connectionName });
    // Without a listener ioredis would throw these; they are expected while
    // Redis restarts, and ioredis reconnects by itself.
    conn.on("error", (err) => log?.warn({ err, role }, "redis connection error"));
    return conn;
  }

  const cmd = connect("commands") as Redis & LockScripts;
  cmd.defineCommand("droverLockExtend", { numberOfKeys: 1, lua: EXTEND_LUA });
  cmd.defineCommand("droverLockRelease", { numberOfKeys: 1, lua: RELEASE_LUA });
  cmd.defineCommand("droverMarkMember", { numberOfKeys: 1, lua: MARK_MEMBER_LUA });
  cmd.defineCommand("droverLiveMembers", { lua: LIVE_MEMBERS_LUA }); // the number of keys comes first

  let closed = false;
  let closing: Promise<void> | undefined;
  function open(): void {
    if (closed) throw new BusClosedError();
  }

  // Pub/sub.

  let sub: Redis | undefined;
  const channels = new Map<string, Channel>();

  function subscriber(): Redis {
    if (sub) return sub;
    sub = connect("subscriber");
    sub.on("messageBuffer", (channel: Buffer, message: Buffer) => {
      const subscriptions = channels.get(channel.toString())?.subscriptions;
      if (!subscriptions) return;
      for (const s of [...subscriptions]) {
        if (!s.active) continue;
        try {
          // Each handler gets its own copy when there are several, as with the memory bus.
          s.handler(subscriptions.size === 1 ? message : Buffer.from(message));
        } catch (err) {
          log?.error({ err, channel: channel.toString() }, "a bus message handler threw");
        }
      }
    });
    return sub;
  }

  // Blocking reads.

  const blocking = new Set<Redis>();
  const idleBlocking: Redis[] = [];

  function takeBlocking(): Redis {
    const conn = idleBlocking.pop() ?? connect("blocking");
    blocking.add(conn);
    return conn;
  }

  function returnBlocking(conn: Redis): void {
    if (!blocking.has(conn)) return; // already destroyed by abort or close
    if (closed || idleBlocking.length >= MAX_IDLE_BLOCKING) return destroyBlocking(conn);
    idleBlocking.push(conn);
  }

  function destroyBlocking(conn: Redis): void {
    if (!blocking.delete(conn)) return;
    const idle = idleBlocking.indexOf(conn);
    if (idle >= 0) idleBlocking.splice(idle, 1);
    conn.disconnect();
  }

  async function blockingRead(args: (string | number)[], blockMs: number, signal?: AbortSignal): Promise<XReadReply> {
    const conn = takeBlocking();
    let timedOut = false;
    const onAbort = () => destroyBlocking(conn);
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(() => {
      timedOut = true;
      destroyBlocking(conn);
    }, blockMs + BLOCK_GRACE_MS);
    try {
      const reply = await (conn.xreadBuffer as unknown as XRead)(...args);
      // Abort or close may have won the race with a reply; they still decide.
      signal?.throwIfAborted();
      open();
      returnBlocking(conn);
      return reply;
    } catch (err) {
      signal?.throwIfAborted();
      open();
      destroyBlocking(conn);
      if (timedOut) {
        throw new Error(`redis did not answer a blocking read within ${blockMs + BLOCK_GRACE_MS} ms`, { cause: err });
      }
      throw err;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  function entriesOf(reply: XReadReply): StreamEntry[] {
    const entries: StreamEntry[] = [];
    for (const [, items] of reply ?? []) {
      for (const [id, fields] of items) {
        for (let i = 0; i + 1 < fields.length; i += 2) {
          if (fields[i]!.toString() === FIELD) entries.push({ id: id.toString(), data: fields[i + 1]! });
        }
      }
    }
    return entries;
  }

  // Shut down.

  async function quit(conn: Redis): Promise<void> {
    try {
      // QUIT lets replies already on their way arrive; a connection that is
      // not ready has none, and QUIT would wait in its offline queue.
      if (conn.status === "ready") {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise((resolve) => (timer = setTimeout(resolve, QUIT_TIMEOUT_MS)));
        await Promise.race([conn.quit(), timeout]).finally(() => clearTimeout(timer));
      }
    } catch (err) {
      log?.debug({ err }, "redis QUIT failed; dropping the connection");
    } finally {
      conn.disconnect();
    }
  }

  async function shutdown(): Promise<void> {
    closed = true;
    for (const conn of [...blocking]) destroyBlocking(conn);
    for (const channel of channels.values()) {
      for (const s of channel.subscriptions) s.active = false;
    }
    channels.clear();
    await Promise.all([quit(cmd), sub && quit(sub)]);
  }

  return {
    async publish(channel, message) {
      open();
      await cmd.publish(key.channel(channel), toBuffer(message));
    },

    async subscribe(channel, handler): Promise<Unsubscribe> {
      open();
      const name = key.channel(channel);
      const s: Subscription = { handler, active: true };
      let entry = channels.get(name);
      if (!entry) {
        const conn = subscriber();
        entry = { subscriptions: new Set(), ready: conn.subscribe(name) };
        channels.set(name, entry);
      }
      const joined = entry;
      joined.subscriptions.add(s);

      const unsubscribe = async () => {
        s.active = false;
        if (!joined.subscriptions.delete(s)) return;
        if (joined.subscriptions.size > 0 || channels.get(name) !== joined) return;
        channels.delete(name);
        // Redis orders this after the SUBSCRIBE, and before any SUBSCRIBE a
        // later subscriber sends, so the channel ends up in the right state.
        if (!closed) await sub!.unsubscribe(name);
      };

      try {
        await joined.ready;
      } catch (err) {
        await unsubscribe().catch(() => {});
        open(); // a SUBSCRIBE cut short by close() is the bus closing, not a Redis failure
        throw err;
      }
      return unsubscribe;
    },

    async append(stream, data, opts: AppendOptions) {
      open();
      checkPositiveInt("maxLen", opts.maxLen);
      // "~" lets Redis trim whole radix-tree nodes only, which is far cheaper
      // than exact trimming; the stream may keep up to a node's worth more.
      const id = await cmd.xadd(key.stream(stream), "MAXLEN", "~", opts.maxLen, "*", FIELD, toBuffer(data));
      return id!;
    },

    async read(stream, afterId, opts: ReadOptions = {}) {
      open();
      const { count, blockMs, signal } = opts;
      if (count !== undefined) checkPositiveInt("count", count);
      if (blockMs !== undefined && blockMs !== 0) checkTtl("blockMs", blockMs);
      // Refuse a bad id the same way the memory bus does, not with a Redis error.
      if (afterId !== "$") parseStreamId(afterId);
      signal?.throwIfAborted();

      const countArgs = count === undefined ? [] : ["COUNT", count];
      const streamArgs = ["STREAMS", key.stream(stream), afterId];
      if (!blockMs) {
        return entriesOf(await (cmd.xreadBuffer as unknown as XRead)(...countArgs, ...streamArgs));
      }
      const ms = Math.ceil(blockMs);
      return entriesOf(await blockingRead([...countArgs, "BLOCK", ms, ...streamArgs], ms, signal));
    },

    async tryLock(name, ttlMs) {
      open();
      checkTtl("ttlMs", ttlMs);
      const k = key.lock(name);
      const token = randomUUID();
      if ((await cmd.set(k, token, "PX", Math.ceil(ttlMs), "NX")) !== "OK") return null;
      const lock: Lock = {
        name,
        token,
        async extend(ttlMs) {
          open();
          checkTtl("ttlMs", ttlMs);
          return (await cmd.droverLockExtend(k, token, Math.ceil(ttlMs))) === 1;
        },
        async release() {
          open();
          await cmd.droverLockRelease(k, token);
        },
      };
      return lock;
    },

    async setPresence(name, value, ttlMs) {
      open();
      checkTtl("ttlMs", ttlMs);
      await cmd.set(key.presence(name), value, "PX", Math.ceil(ttlMs));
    },

    async getPresence(name) {
      open();
      return cmd.get(key.presence(name));
    },

    async deletePresence(name) {
      open();
      await cmd.del(key.presence(name));
    },

    async listPresence(namePrefix) {
      open();
      const base = key.presence("");
      const pattern = `${escapeGlob(base + namePrefix)}*`;
      const found = new Map<string, string>();
      // SCAN, unlike KEYS, never holds Redis for the whole keyspace; it may
      // repeat a key, which the Map absorbs.
      let cursor = "0";
      do {
        const [next, keys] = await cmd.scan(cursor, "MATCH", pattern, "COUNT", 500);
        cursor = next;
        if (keys.length === 0) continue;
        const values = await cmd.mget(keys);
        keys.forEach((k, i) => {
          const value = values[i];
          // null: expired between SCAN and MGET.
          if (value !== null && value !== undefined) found.set(k.slice(base.length), value);
        });
      } while (cursor !== "0");
      return found;
    },

    async setPresenceMember(name, member, ttlMs) {
      open();
      checkTtl("ttlMs", ttlMs);
      await cmd.droverMarkMember(key.presenceSet(name), member, Math.ceil(ttlMs));
    },

    async getPresenceMembers(names) {
      open();
      if (names.length === 0) return [];
      return cmd.droverLiveMembers(names.length, ...names.map((name) => key.presenceSet(name)));
    },

    close() {
      closing ??= shutdown();
      return closing;
    },
  };
}

// ioredis sends a Buffer as bytes but would stringify a plain Uint8Array.
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, "\\$&");
}
