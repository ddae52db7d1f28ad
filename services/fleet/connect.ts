// FleetService.Connect: the opening of an agent stream, up to the point
// where the hub holds it.
//
//   1. the bearer header, if any, must be an agent credential (checked
//      before anything is read, so a bad one fails fast)
//   2. the first message must be Hello, within the Hello timeout
//   3. with a credential: Hello.agent_id, if set, must be its agent;
//      without one: Hello.registration_token registers a new agent
//   4. the hub attaches the stream (Welcome, outbox replay) and reads the
//      rest of the agent's messages; this handler writes what the hub queues
//
// Two handlers share these steps: connectHandler for the Connect adapter
// (every protocol, both listeners) and grpcConnectHandler for gRPC clients on
// the HTTP/2 listener, served straight on node:http2 (lib/host/grpc_stream.ts)
// because agents are many and their streams long: that path keeps ~45 KiB
// less per agent (README.md, "What it costs"). Agents use gRPC, so in
// practice they take the second.
//
// Connect is "open" in the access table: the auth interceptor knows bearer
// tokens, not registration tokens, so these handlers authenticate themselves.

import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { ConnectRequest, ConnectResponse, Hello } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { FleetSettings } from "../../lib/config.ts";
import { kLogger } from "../../lib/host/context.ts";
import type { GrpcStreamHandler } from "../../lib/host/grpc_stream.ts";
import type { Logger } from "../../lib/logger.ts";
import type { AgentStore } from "./agent_store.ts";
import type { AgentHub, AgentIdentity } from "./hub.ts";
import type { AgentSession } from "./session.ts";
import type { TokenStore } from "./token_store.ts";

export interface ConnectDeps {
  tokens: TokenStore;
  store: AgentStore;
  hub: AgentHub;
  settings: FleetSettings;
  log: Logger;
}

/** The Connect handler: an async generator of the messages to send. */
export function connectHandler(deps: ConnectDeps) {
  return async function* connect(requests: AsyncIterable<ConnectRequest>, ctx: HandlerContext): AsyncGenerator<ConnectResponse> {
    const iterator = requests[Symbol.asyncIterator]();
    // The handshake is a function of its own so that nothing it used (Hello,
    // rows) stays reachable from this frame for the whole life of the stream.
    const opening = { authorization: ctx.requestHeader.get("authorization"), signal: ctx.signal, log: ctx.values.get(kLogger) ?? deps.log };
    const session = await handshake(deps, iterator, opening);
    const onAbort = endOnAbort(session, ctx.signal);
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    try {
      void deps.hub.read(session, iterator, ctx.signal);
      yield* session.messages();
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      deps.hub.detach(session);
    }
  };
}

/**
 * The same stream for gRPC clients on the raw HTTP/2 path: resolves the
 * session's messages once it is attached. The call's signal is aborted when
 * the call ends, however it ends; that ends and detaches the session.
 */
export function grpcConnectHandler(deps: ConnectDeps): GrpcStreamHandler<ConnectRequest, ConnectResponse> {
  return async (call, header) => {
    const opening = { authorization: header("authorization") ?? null, signal: call.signal, log: call.log };
    const session = await handshake(deps, call.requests, opening);
    const onEnd = endOnAbort(session, call.signal, deps.hub);
    call.signal.addEventListener("abort", onEnd, { once: true });
    if (call.signal.aborted) onEnd();
    void deps.hub.read(session, call.requests, call.signal);
    return session.messages();
  };
}

/**
 * The abort listener that ends the session and, given the hub, detaches
 * it. Made here rather than as a named arrow in the handler: tsx compiles
 * with keepNames, which gives each named closure made at run time a
 * property array of its own (~300 bytes for every stream, held as long as
 * the agent is connected).
 */
function endOnAbort(session: AgentSession, signal: AbortSignal, detachFrom?: AgentHub): () => void {
  return () => {
    session.end(ConnectError.from(signal.reason ?? new ConnectError("the call was cancelled", Code.Canceled)));
    // The raw gRPC path has no `finally` of its own (connectHandler's): it forgets the session here.
    detachFrom?.detach(session);
  };
}

/** What the handshake needs of a call, whichever path it came by. */
interface Opening {
  /** The authorization header; null without one. */
  authorization: string | null;
  /** Aborted when the call ends. */
  signal: AbortSignal;
  /** The call's logger. */
  log: Logger;
}

/** Steps 1 to 3, then the hub's attach: resolves the attached session or throws the ConnectError to end the stream with. */
async function handshake(deps: ConnectDeps, iterator: AsyncIterator<ConnectRequest>, { authorization, signal, log }: Opening) {
  const credential = await unavailableOnFailure(log, () => credentialOf(deps.tokens, authorization));
  const first = await firstMessage(iterator, deps.settings.helloTimeoutMs, signal);
  if (first.message.case !== "hello") {
    throw new ConnectError(`the first message of a stream must be Hello, not ${first.message.case ?? "an empty message"}`, Code.InvalidArgument);
  }
  const hello = first.message.value;
  const identity = await unavailableOnFailure(log, () => (credential ? known(deps.store, credential, hello) : register(deps.store, hello, log)));
  return deps.hub.attach(identity, hello);
}

/**
 * Runs fn; a failure that is not a deliberate ConnectError (the database is
 * overloaded or away, say during a reconnect storm) is logged and answered
 * UNAVAILABLE, which agents treat as "back off and retry".
 */
async function unavailableOnFailure<T>(log: Logger, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ConnectError) throw err;
    log.warn({ err }, "could not authenticate an agent stream now");
    throw new ConnectError("cannot authenticate the agent now; retry", Code.Unavailable);
  }
}

/** The agent credential in the header; undefined without a header; UNAUTHENTICATED for a bad one. */
async function credentialOf(tokens: TokenStore, header: string | null) {
  if (header === null) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw new ConnectError('malformed authorization header: send "authorization: Bearer <agent credential>"', Code.Unauthenticated);
  const credential = await tokens.agentCredential(match[1]!);
  if (!credential) throw new ConnectError("the agent credential is unknown, revoked or expired", Code.Unauthenticated);
  return credential;
}

async function known(store: AgentStore, credential: { tokenId: string; agentId: string }, hello: Hello): Promise<AgentIdentity> {
  if (hello.agentId !== "" && hello.agentId !== credential.agentId) {
    throw new ConnectError(`the credential belongs to agent ${credential.agentId}, not to ${hello.agentId}`, Code.PermissionDenied);
  }
  const agent = await store.get(credential.agentId);
  if (!agent) throw new ConnectError(`agent ${credential.agentId} was deleted`, Code.Unauthenticated);
  return { agent, tokenId: credential.tokenId };
}

async function register(store: AgentStore, hello: Hello, log: Logger): Promise<AgentIdentity> {
  if (hello.registrationToken === "") {
    throw new ConnectError(
      'no credential: send the agent credential as "authorization: Bearer <credential>", or a registration token in Hello',
      Code.Unauthenticated,
    );
  }
  // An agent that lost its credential registers anew; the id it remembers is not
  // taken on a registration token's word, or the token could claim any agent.
  if (hello.agentId !== "") log.info({ claimedAgentId: hello.agentId }, "registering a new agent; the agent id in Hello is ignored without its credential");
  const registered = await store.register(hello.registrationToken, hello);
  if (!registered) throw new ConnectError("the registration token is unknown, revoked or expired", Code.Unauthenticated);
  return { agent: registered.agent, tokenId: registered.credentialId, credential: registered.credential };
}

/** The first message, or INVALID_ARGUMENT when none comes in time or the stream ends first. */
async function firstMessage(iterator: AsyncIterator<ConnectRequest>, timeoutMs: number, signal: AbortSignal): Promise<ConnectRequest> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const next = iterator.next();
  // If the timeout wins, the read may still fail later; nobody waits for it then.
  next.catch(() => {});
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConnectError(`no Hello within ${timeoutMs} ms of opening the stream`, Code.InvalidArgument)), timeoutMs);
  });
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(ConnectError.from(signal.reason ?? new ConnectError("the call was cancelled", Code.Canceled)));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => {});
  timeout.catch(() => {});
  try {
    const result = await Promise.race([next, timeout, aborted]);
    if (result.done) throw new ConnectError("the stream ended before Hello", Code.InvalidArgument);
    return result.value;
  } finally {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}
