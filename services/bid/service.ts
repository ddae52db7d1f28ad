import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/bid/client.ts";
import {
  AuctionSchema,
  AuctionState,
  BidService,
  Candidate_Outcome,
  type Auction,
  type ExplainPlacementRequest,
  type ListAuctionsRequest,
} from "../../gen/ts/drover/bid/v1/bid_service_pb.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { decodePageToken, pageSize, splitPage } from "../../lib/host/paging.ts";

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

// What auctioneer.ts stores in auctions.explanation.
interface StoredExplanation {
  summary?: string;
  candidates?: { agentId: string; outcome: string; score: number; reason: string }[];
  ineligible?: { reason: string; count: number; exampleAgentIds: string[] }[];
  eligibleCount?: number;
  attempt?: number;
  /** The Bid replica that ran the auction (createBid's bidder name), to tell replicas apart when debugging. */
  bidder?: string;
}

const OUTCOMES: Record<string, Candidate_Outcome> = {
  won: Candidate_Outcome.WON,
  outbid: Candidate_Outcome.OUTBID,
  declined: Candidate_Outcome.DECLINED,
  no_answer: Candidate_Outcome.NO_ANSWER,
  deferred: Candidate_Outcome.DEFERRED,
};

function auction(row: AuctionRow): Auction {
  const e = (row.explanation ?? {}) as StoredExplanation;
  return create(AuctionSchema, {
    id: row.id,
    jobId: row.jobId,
    state: stateOf(row.state),
    winnerAgentId: row.winnerAgentId ?? "",
    explanation: typeof e.summary === "string" ? e.summary : "",
    createTime: timestampFromDate(row.createdAt),
    closeTime: row.closedAt ? timestampFromDate(row.closedAt) : undefined,
    candidates: (e.candidates ?? []).map((c) => ({ agentId: c.agentId, outcome: OUTCOMES[c.outcome] ?? Candidate_Outcome.UNSPECIFIED, score: c.score, reason: c.reason })),
    ineligible: e.ineligible ?? [],
    eligibleCount: e.eligibleCount ?? 0,
  });
}

/** BidService: the auction record; the auctions themselves run in auctioneer.ts. */
export class BidServiceImpl implements ServiceImpl<typeof BidService> {
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
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.id);
    return { auctions: page.map(auction), nextPageToken };
  }

  async explainPlacement(req: ExplainPlacementRequest) {
    const rows = await this.db.auction.findMany({ where: { jobId: req.jobId }, orderBy: [{ createdAt: "desc" }, { id: "desc" }], take: 10 });
    if (rows.length === 0) {
      return { explanation: `job ${req.jobId} has not been auctioned (yet): it is waiting to be placed, or it does not exist`, auctions: [] };
    }
    const auctions = rows.map(auction);
    const lines = rows.map((row, i) => {
      const e = (row.explanation ?? {}) as StoredExplanation;
      const when = row.createdAt.toISOString();
      const which = e.attempt ? `attempt ${e.attempt}` : "an auction";
      return `${i === 0 ? "Latest" : "Earlier"}, ${which} at ${when}: ${e.summary ?? row.state}.`;
    });
    return { explanation: lines.join("\n"), auctions };
  }
}

export function bidRoutes(impl: BidServiceImpl) {
  return (router: ConnectRouter) => router.service(BidService, impl);
}
