import type { PrismaClient } from "../../gen/prisma/fleet/client.ts";
import { announceRevocation, hashSecret, newSecret, roleFromName, roleName, type Authenticator, type Principal } from "../../lib/auth/tokens.ts";
import type { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { isUniqueViolation } from "../../lib/db/errors.ts";

/** A token row as the service sees it. */
export interface TokenRecord {
  id: string;
  name: string;
  role: Role;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** The agent an agent credential speaks for; null for every other token. */
  agentId: string | null;
}

type Row = {
  id: string;
  name: string;
  role: string;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  agentId: string | null;
};

function record(row: Row): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    role: roleFromName(row.role),
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    revokedAt: row.revokedAt,
    agentId: row.agentId,
  };
}

/** An agent credential, resolved. */
export interface AgentCredential {
  tokenId: string;
  agentId: string;
}

/** Bearer tokens in the fleet schema. Secrets never touch the database, only their hashes. */
export class TokenStore implements Authenticator {
  constructor(
    private readonly db: PrismaClient,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Creates a token and returns it with its secret, which is not kept. */
  async create(name: string, role: Role, ttlMs?: number): Promise<{ token: TokenRecord; secret: string }> {
    const secret = newSecret();
    const row = await this.db.apiToken.create({
      data: {
        name,
        role: roleName(role),
        tokenHash: hashSecret(secret),
        expiresAt: ttlMs === undefined ? null : new Date(this.now().getTime() + ttlMs),
      },
    });
    return { token: record(row), secret };
  }

  /** Makes sure a token with this exact secret exists (for bootstrap tokens given by configuration). */
  async ensure(secret: string, role: Role, name: string): Promise<TokenRecord> {
    const tokenHash = hashSecret(secret);
    try {
      const row = await this.db.apiToken.upsert({
        where: { tokenHash },
        create: { name, role: roleName(role), tokenHash },
        update: {},
      });
      return record(row);
    } catch (err) {
      // Prisma's upsert reads, then inserts: replicas starting together can
      // both miss the row and race to insert it. The loser reads the winner's.
      if (!isUniqueViolation(err)) throw err;
      return record(await this.db.apiToken.findUniqueOrThrow({ where: { tokenHash } }));
    }
  }

  /** Newest first; `after` is the id of the last token of the previous page. */
  async list(limit: number, after?: string): Promise<TokenRecord[]> {
    const rows = await this.db.apiToken.findMany({
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: limit,
      ...(after ? { cursor: { id: after }, skip: 1 } : {}),
    });
    return rows.map(record);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.db.apiToken.count({ where: { id } })) > 0;
  }

  /** Revokes a token; revoking twice keeps the first time. Null when no such token. */
  async revoke(id: string): Promise<TokenRecord | null> {
    await this.db.apiToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: this.now() } });
    announceRevocation();
    const row = await this.db.apiToken.findUnique({ where: { id } });
    return row ? record(row) : null;
  }

  /**
   * Resolves an agent's own credential (role agent, linked to an agent) to
   * the agent; null when unknown, revoked, expired, not an agent's, or its
   * agent was deleted.
   */
  async agentCredential(secret: string): Promise<AgentCredential | null> {
    const row = await this.db.apiToken.findUnique({ where: { tokenHash: hashSecret(secret) } });
    if (!row || row.revokedAt || row.role !== "agent" || row.agentId === null) return null;
    if (row.expiresAt && row.expiresAt.getTime() <= this.now().getTime()) return null;
    return { tokenId: row.id, agentId: row.agentId };
  }

  async authenticate(secret: string): Promise<Principal | null> {
    const row = await this.db.apiToken.findUnique({ where: { tokenHash: hashSecret(secret) } });
    if (!row || row.revokedAt) return null;
    if (row.expiresAt && row.expiresAt.getTime() <= this.now().getTime()) return null;
    return { tokenId: row.id, role: roleFromName(row.role), name: row.name };
  }
}
