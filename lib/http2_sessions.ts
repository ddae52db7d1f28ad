// A hook on every HTTP/2 session a connect-node Http2SessionManager opens.
//
// connect-node does not expose its sessions; its private setState sees each
// one as it connects. That ties this to connect-node 2.2 (pinned); the
// agent's netns test fails if a new version changes it.

import type { ClientHttp2Session } from "node:http2";
import type { Http2SessionManager } from "@connectrpc/connect-node";

/** Calls `fn` with every session `manager` opens from now on; returns the manager. */
export function onEachSession(manager: Http2SessionManager, fn: (session: ClientHttp2Session) => void): Http2SessionManager {
  type State = { t: string; conn?: Promise<ClientHttp2Session> };
  const internals = manager as unknown as { setState(state: State): void };
  const setState = internals.setState.bind(manager);
  if (typeof setState !== "function") throw new Error("connect-node changed: Http2SessionManager.setState is gone");
  internals.setState = (state: State) => {
    if (state.t === "connecting" && state.conn) state.conn.then(fn, () => {});
    setState(state);
  };
  return manager;
}
