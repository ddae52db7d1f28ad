import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import {
  ApiTokenSchema,
  FleetService,
  Role,
  type ApiToken,
  type AuthenticateTokenRequest,
  type CreateApiTokenRequest,
  type ListApiTokensRequest,
  type RevokeApiTokenRequest,
} from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/host/paging.ts";
import { durationMs } from "../../lib/host/time.ts";
import type { TokenRecord, TokenStore } from "./token_store.ts";

/** Who may call what on FleetService (methods not listed: admin and operator). */
export const fleetAccess: Record<string, AccessRule> = {
  CreateApiToken: [Role.ADMIN],
  ListApiTokens: [Role.ADMIN],
  RevokeApiToken: [Role.ADMIN],
  // Services call it with an admin token; agents do not need it.
  AuthenticateToken: [Role.ADMIN],
};

function ts(date: Date | null): Timestamp | undefined {
  return date ? timestampFromDate(date) : undefined;
}

function apiToken(t: TokenRecord): ApiToken {
  return create(ApiTokenSchema, {
    id: t.id,
    name: t.name,
    role: t.role,
    createTime: ts(t.createdAt),
    expireTime: ts(t.expiresAt),
    revokeTime: ts(t.revokedAt),
  });
}

/**
 * FleetService: tokens now; the agent stream, liveness and the operator API
 * arrive with the Fleet issue (Connect answers UNIMPLEMENTED until then).
 */
export class FleetServiceImpl implements Omit<ServiceImpl<typeof FleetService>, "connect"> {
  constructor(private readonly tokens: TokenStore) {}

  async createApiToken(req: CreateApiTokenRequest) {
    const { token, secret } = await this.tokens.create(req.name, req.role, req.ttl ? durationMs(req.ttl) : undefined);
    return { token: apiToken(token), secret };
  }

  async listApiTokens(req: ListApiTokensRequest) {
    const size = pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    if (after !== undefined && !(await this.tokens.exists(after))) {
      throw new ConnectError("page_token: does not name a token (was it deleted?)", Code.InvalidArgument);
    }
    const rows = await this.tokens.list(size + 1, after);
    const page = rows.slice(0, size);
    return {
      tokens: page.map(apiToken),
      nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.id) : "",
    };
  }

  async revokeApiToken(req: RevokeApiTokenRequest) {
    const token = await this.tokens.revoke(req.id);
    if (!token) throw new ConnectError(`token ${req.id} not found`, Code.NotFound);
    return { token: apiToken(token) };
  }

  async authenticateToken(req: AuthenticateTokenRequest) {
    const principal = await this.tokens.authenticate(req.secret);
    if (!principal) throw new ConnectError("token is unknown, revoked or expired", Code.Unauthenticated);
    return { tokenId: principal.tokenId, role: principal.role, name: principal.name };
  }
}

export function fleetRoutes(impl: FleetServiceImpl) {
  return (router: ConnectRouter) => router.service(FleetService, impl);
}
