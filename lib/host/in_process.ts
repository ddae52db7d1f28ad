// The transport between the services of one process (dev mode). A unary
// call runs the same interceptors as a call from outside (the caller's
// bearer token, then logging, errors, auth and protovalidate, as the router
// has them) and then the implementation itself, with the request message
// as the caller made it: no encoding, no decoding, no HTTP exchange in
// memory. Through Connect's router transport a SendToAgents cost 310-320
// µs of CPU with 1 or 10 assignments and 790 µs with 128, through this one
// 28-49 µs and 135 µs (bench/scheduling/transport_cost.ts, one run); at a
// low rate a job crosses five such calls. Streaming methods, and unary
// methods a router registered with options of their own, go through
// `fallback` (the router transport) as before.
//
// The request and the answer are not copied: the implementation and the
// caller share them, so neither may change a message it has handed over
// (services build a request per call, and copy what they change, as
// SendToAgents does).

import { create, isMessage, type DescMethodUnary } from "@bufbuild/protobuf";
import { createContextValues, createHandlerContext, type Interceptor, type Transport, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import type { UnaryRoute } from "./grpc_unary.ts";

export interface InProcessOptions {
  /** The unary implementations (collectUnaryRoutes); read again whenever more were collected. */
  routes: readonly UnaryRoute[];
  /** The caller's interceptors, then the server's, outermost first. */
  interceptors: readonly Interceptor[];
  /** For everything not in `routes`. */
  fallback: Transport;
}

/**
 * The reason a call's signal gives once the call has ended. One error for
 * every call: abort() without a reason builds a DOMException, stack trace
 * and all, per call.
 */
const CALL_ENDED = new Error("the call ended");

/** A Transport that calls the implementations in `routes` directly, through `interceptors`. */
export function createInProcessTransport(opts: InProcessOptions): Transport {
  let byMethod = new Map<DescMethodUnary, UnaryRoute["impl"]>();
  let indexed = 0; // routes in byMethod: a count, so that a method registered twice does not rebuild it on every call
  const lookup = (method: DescMethodUnary) => {
    if (indexed !== opts.routes.length) {
      byMethod = new Map(opts.routes.map((r) => [r.method, r.impl]));
      indexed = opts.routes.length;
    }
    return byMethod.get(method);
  };
  return {
    unary(method, signal, timeoutMs, header, input, contextValues) {
      const impl = lookup(method as DescMethodUnary);
      if (!impl) return opts.fallback.unary(method, signal, timeoutMs, header, input, contextValues);
      const service = method.parent;
      const call = async (req: UnaryRequest): Promise<UnaryResponse> => {
        const ctx = createHandlerContext({
          service,
          method,
          protocolName: "in-process",
          requestMethod: "POST",
          url: req.url,
          timeoutMs,
          requestSignal: req.signal,
          requestHeader: req.header,
          contextValues: req.contextValues,
        });
        try {
          const output = await impl(req.message, ctx);
          return {
            stream: false,
            service,
            method,
            header: ctx.responseHeader,
            trailer: ctx.responseTrailer,
            message: isMessage(output, method.output) ? output : create(method.output, output as never),
          };
        } finally {
          ctx.abort(CALL_ENDED); // as a server does when a call ends: whatever waits on the signal stops
        }
      };
      const run = opts.interceptors.reduceRight<(req: UnaryRequest) => Promise<UnaryResponse>>((next, interceptor) => interceptor(next as never) as never, call);
      return (run as (req: unknown) => ReturnType<Transport["unary"]>)({
        stream: false,
        service,
        method,
        requestMethod: "POST",
        url: `in-process:///${service.typeName}/${method.name}`,
        signal: signal ?? new AbortController().signal,
        header: new Headers(header),
        contextValues: contextValues ?? createContextValues(),
        message: isMessage(input, method.input) ? input : create(method.input, input),
      }) as never;
    },
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return opts.fallback.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  };
}
