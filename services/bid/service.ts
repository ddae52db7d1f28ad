import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/bid/client.ts";
import {
  AuctionSchema,
  AuctionState,
  BidService,
  type Auction,
  type ListAuctionsRequest,
} from "../../gen/ts/drover/bid/v1/bid_service_pb.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { decodePageToken, encodePageToken, pageSize } from "../../lib/host/paging.ts";

/** Who may call what on BidService (methods not listed: admin and operator). */
export const bidAccess: Record<string, AccessRule> = {};

type AuctionRow = {
  id: string;
  jobId: string;
  state: string;
  winnerAgentId: string | null;
  explanation: unknown;
  createdAt: Date;
  closedAt: Date | null;
};

function stateOf(name: string): AuctionState {
  const value = AuctionState[name.toUpperCase() as keyof typeof AuctionState];
  return typeof value === "number" ? value : AuctionState.UNSPECIFIED;
}

function auction(row: AuctionRow): Auction {
  const explanation = row.explanation as { summary?: unknown };
  return create(AuctionSchema, {
    id: row.id,
    jobId: row.jobId,
    state: stateOf(row.state),
    winnerAgentId: row.winnerAgentId ?? "",
    explanation: typeof explanation?.summary === "string" ? explanation.summary : "",
    createTime: timestampFromDate(row.createdAt),
    closeTime: row.closedAt ? timestampFromDate(row.closedAt) : undefined,
  });
}

/** BidService: the auction record. Running auctions arrives with the scheduling issue. */
export class BidServiceImpl implements Partial<ServiceImpl<typeof BidService>> {
  constructor(private readonly db: PrismaClient) {}

  async listAuctions(req: ListAuctionsRequest) {
    const size = pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    if (after !== undefined && (await this.db.auction.count({ where: { id: after } })) === 0) {
      throw new ConnectError("page_token: does not name an auction", Code.InvalidArgument);
    }
    const rows = await this.db.auction.findMany({
      where: req.jobId ? { jobId: req.jobId } : {},
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: size + 1,
      ...(after ? { cursor: { id: after }, skip: 1 } : {}),
    });
    const page = rows.slice(0, size);
    return {
      auctions: page.map(auction),
      nextPageToken: rows.length > size ? encodePageToken(page[page.length - 1]!.id) : "",
    };
  }
}

export function bidRoutes(impl: BidServiceImpl) {
  return (router: ConnectRouter) => router.service(BidService, impl);
}
