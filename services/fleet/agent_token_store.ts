import type { PrismaClient, AgentToken as AgentTokenRow } from "../../gen/prisma/fleet/client.ts";
import { hashSecret, newSecret } from "../../lib/auth/tokens.ts";
import type { Labels } from "./labels.ts";

export type { AgentTokenRow };

/** Registration tokens in the fleet schema. Secrets never touch the database, only their hashes. */
export class AgentTokenStore {
  constructor(
    private readonly db: PrismaClient,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Creates a registration token and returns it with its secret, which is not kept. */
  async create(name: string, labels: Labels, ttlMs?: number): Promise<{ token: AgentTokenRow; secret: string }> {
    const secret = newSecret();
    const token = await this.db.agentToken.create({
      data: {
        name,
        labels,
        tokenHash: hashSecret(secret),
        expiresAt: ttlMs === undefined ? null : new Date(this.now().getTime() + ttlMs),
      },
    });
    return { token, secret };
  }

  /** Newest first; `after` is the id of the last token of the previous page. */
  list(limit: number, after?: string): Promise<AgentTokenRow[]> {
    return this.db.agentToken.findMany({
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: limit,
      ...(after ? { cursor: { id: after }, skip: 1 } : {}),
    });
  }

  async exists(id: string): Promise<boolean> {
    return (await this.db.agentToken.count({ where: { id } })) > 0;
  }

  /** Revokes a token; revoking twice keeps the first time. Null when no such token. */
  async revoke(id: string): Promise<AgentTokenRow | null> {
    await this.db.agentToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: this.now() } });
    return this.db.agentToken.findUnique({ where: { id } });
  }
}
