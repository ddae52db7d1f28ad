import { createHash, randomBytes } from "node:crypto";
import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";

/** Who made a call: the token it presented, resolved. */
export interface Principal {
  tokenId: string;
  role: Role;
  name: string;
}

/** Resolves a bearer secret to its principal, or null when unknown, revoked or expired. */
export interface Authenticator {
  authenticate(secret: string): Promise<Principal | null>;
}

/**
 * A new bearer secret: 32 random bytes, base64url, behind a prefix that makes
 * leaked Drover tokens easy to recognise in logs and secret scanners.
 */
export function newSecret(): string {
  return `drv_${randomBytes(32).toString("base64url")}`;
}

/** The only form in which secrets are stored. SHA-256 suffices: secrets are random, not passwords. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

const roleNames: Record<string, Role> = {
  admin: Role.ADMIN,
  operator: Role.OPERATOR,
  agent: Role.AGENT,
};

/** Role as stored in the database ("admin", ...) to the proto enum. */
export function roleFromName(name: string): Role {
  return roleNames[name] ?? Role.UNSPECIFIED;
}

/** The proto enum to the stored name. */
export function roleName(role: Role): string {
  const found = Object.entries(roleNames).find(([, r]) => r === role);
  if (!found) throw new Error(`role ${role} has no name`);
  return found[0];
}

/**
 * Remembers answers of a slower authenticator (a call to Fleet) for a short
 * time. Revocation therefore takes effect within `ttlMs`; unknown secrets are
 * remembered for less time so a freshly created token works at once.
 */
/**
 * Revocations in this process: token stores announce them, and every
 * CachingAuthenticator in the process forgets what it remembered, so a token
 * revoked here is refused here at once. (Other processes' caches hold an
 * answer for at most their ttl.)
 */
export const tokenRevocations = new EventTarget();

/** Tells this process's caches that a token was revoked. */
export function announceRevocation(): void {
  tokenRevocations.dispatchEvent(new Event("revoked"));
}

export class CachingAuthenticator implements Authenticator {
  private readonly cache = new Map<string, { principal: Principal | null; until: number }>();
  // Checks under way, by secret hash: a burst of calls with one token on a
  // cold or expired entry asks once, not once per call (a stampede of
  // AuthenticateToken calls to Fleet is what a loaded replica can least afford).
  private readonly inFlight = new Map<string, Promise<Principal | null>>();

  constructor(
    private readonly inner: Authenticator,
    private readonly ttlMs = 5000,
    private readonly negativeTtlMs = 500,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    // Weakly held, so a dropped authenticator is not kept alive by the listener.
    const self = new WeakRef(this);
    const forget = () => {
      const cache = self.deref();
      if (cache) cache.forget();
      else tokenRevocations.removeEventListener("revoked", forget);
    };
    tokenRevocations.addEventListener("revoked", forget);
  }

  /** Drops every remembered answer (a token was revoked). */
  forget(): void {
    this.cache.clear();
    this.inFlight.clear();
  }

  async authenticate(secret: string): Promise<Principal | null> {
    const key = hashSecret(secret);
    const hit = this.cache.get(key);
    const now = this.now();
    if (hit && hit.until > now) {
      // In the last fifth of its time a known token is checked again in the background,
      // so that a caller who keeps calling never waits for the check (a round trip to
      // Fleet every ttl, on whatever call came first). It is never answered past `until`.
      if (hit.principal && hit.until - now <= this.ttlMs / 5 && !this.inFlight.has(key)) this.check(key, secret).catch(() => {});
      return hit.principal;
    }
    return this.check(key, secret);
  }

  /** Asks the inner authenticator, once for all callers of one secret at a time, and remembers the answer. */
  private check(key: string, secret: string): Promise<Principal | null> {
    let check = this.inFlight.get(key);
    if (!check) {
      check = this.inner.authenticate(secret).then((principal) => {
        if (this.cache.size >= this.maxEntries) this.cache.clear();
        this.cache.set(key, { principal, until: this.now() + (principal ? this.ttlMs : this.negativeTtlMs) });
        return principal;
      });
      this.inFlight.set(key, check);
      // A failed check is not cached: the next call asks again.
      const forget = () => this.inFlight.delete(key);
      check.then(forget, forget);
    }
    return check;
  }
}
