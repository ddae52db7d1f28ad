import { Code, ConnectError } from "@connectrpc/connect";

/** Page size used when a request leaves it 0. */
export const DEFAULT_PAGE_SIZE = 100;

/** The effective page size of a request (validation caps the maximum). */
export function pageSize(requested: number): number {
  return requested === 0 ? DEFAULT_PAGE_SIZE : requested;
}

/**
 * Page tokens are opaque to clients: the id of the last item of the previous
 * page, base64url-encoded so nobody mistakes it for something to build.
 */
export function encodePageToken(lastId: string): string {
  return Buffer.from(`v1:${lastId}`).toString("base64url");
}

/** The id inside a page token; undefined for "from the start". */
export function decodePageToken(token: string): string | undefined {
  if (token === "") return undefined;
  const text = Buffer.from(token, "base64url").toString();
  if (!text.startsWith("v1:") || text.length < 4) {
    throw new ConnectError("page_token: not a token this server issued", Code.InvalidArgument);
  }
  return text.slice(3);
}

/**
 * A page from rows fetched with one more than the page size: the page, and
 * the token for the next (empty when the extra row was not there, so this
 * was the last page). `keyOf` names the row a token continues after.
 */
export function splitPage<R>(rows: readonly R[], size: number, keyOf: (row: R) => string): { page: R[]; nextPageToken: string } {
  const page = rows.slice(0, size);
  return { page, nextPageToken: rows.length > size ? encodePageToken(keyOf(page[page.length - 1]!)) : "" };
}
