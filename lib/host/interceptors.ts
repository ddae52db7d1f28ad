// The interceptors every Drover service runs, outermost first:
//
//   logging (request id, one line per call) → errors (unexpected → INTERNAL)
//   → auth (bearer token, role) → validation (protovalidate) → handler
//
// Order matters: validation runs after auth so that unauthenticated callers
// learn nothing about a method's rules, and the error interceptor sits
// outside auth and validation so their ConnectErrors pass through untouched.

import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { createValidator, type Validator } from "@bufbuild/protovalidate";
import type { Logger } from "../logger.ts";
import type { Authenticator, Principal } from "../auth/tokens.ts";
import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { kLogger, kPrincipal } from "./context.ts";

/** The header carrying a caller-chosen request id; generated when absent. */
export const REQUEST_ID_HEADER = "x-request-id";

/**
 * Gives each call a request id and a child logger, and logs its outcome once:
 * for a stream, when the stream ends.
 */
export function loggingInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const requestId = sanitizeRequestId(req.header.get(REQUEST_ID_HEADER)) ?? randomUUID();
    const log = logger.child({ requestId, service: req.service.typeName, method: req.method.name });
    req.contextValues.set(kLogger, log);
    const started = performance.now();
    try {
      const res = await next(req);
      res.header.set(REQUEST_ID_HEADER, requestId);
      if (!res.stream) {
        log.debug({ ms: elapsed(started) }, "call ok");
        return res;
      }
      return {
        ...res,
        message: new TappedStream(res.message, {
          done() {
            log.debug({ ms: elapsed(started) }, "stream ok");
          },
          error(err) {
            callFailed(log, requestId, started, err);
            return err;
          },
        }),
      };
    } catch (err) {
      callFailed(log, requestId, started, err);
      throw err;
    }
  };
}

/** Logs a failed call and puts its request id on the error. */
export function callFailed(log: Logger, requestId: string, started: number, err: unknown): void {
  const code = ConnectError.from(err).code;
  log.info({ ms: elapsed(started), code: Code[code] }, "call failed");
  if (err instanceof ConnectError) err.metadata.set(REQUEST_ID_HEADER, requestId);
}

/** A caller's request id if it is a sane one (letters, digits, `._:-`, ≤ 128). */
export function sanitizeRequestId(value: string | null): string | undefined {
  return value && /^[A-Za-z0-9._:-]{1,128}$/.test(value) ? value : undefined;
}

/** Milliseconds since `started` (performance.now()), to 0.01 ms. */
export function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

/**
 * Lets ConnectErrors (which carry a deliberate code) through, and turns every
 * other error into INTERNAL without its message, after logging it with the
 * service and method. Streams are covered too: an error thrown while the
 * handler yields responses is translated the same way.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  const translate = (err: unknown, req: UnaryRequest | StreamRequest): ConnectError => {
    if (err instanceof ConnectError) return err;
    const log = req.contextValues.get(kLogger) ?? logger;
    log.error({ err, service: req.service.typeName, method: req.method.name }, "unexpected error");
    return new ConnectError("internal error", Code.Internal);
  };
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return {
        ...res,
        message: new TappedStream(res.message, {
          error(err) {
            return translate(err, req);
          },
        }),
      };
    } catch (err) {
      throw translate(err, req);
    }
  };
}

/** Which roles may call a method; "open" needs no token at all. */
export type AccessRule = readonly Role[] | "open";

/** Decides the AccessRule of each method. */
export type AccessPolicy = (method: DescMethod) => AccessRule;

/** Operators and admins: the default for Drover's own methods. */
export const STAFF: readonly Role[] = [Role.ADMIN, Role.OPERATOR];

/** Services that answer without a token: health checks and reflection. */
const OPEN_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/**
 * Builds a policy from per-service tables of method name → roles. Methods not
 * listed get `fallback`; health and reflection are always open.
 */
export function accessPolicy(tables: Record<string, Record<string, AccessRule>>, fallback: AccessRule = STAFF): AccessPolicy {
  return (method) => {
    if (OPEN_SERVICES.has(method.parent.typeName)) return "open";
    return tables[method.parent.typeName]?.[method.name] ?? fallback;
  };
}

/**
 * Rejects calls without a valid bearer token (UNAUTHENTICATED) and calls
 * whose token's role the method does not allow (PERMISSION_DENIED).
 */
export function authInterceptor(authenticator: Authenticator, policy: AccessPolicy): Interceptor {
  return (next) => async (req) => {
    const rule = policy(req.method);
    if (rule === "open") return next(req);
    req.contextValues.set(kPrincipal, await authorize(authenticator, rule, req.method, req.header.get("authorization")));
    return next(req);
  };
}

/**
 * The caller a bearer token in `header` names, if `rule` lets it call
 * `method`; else throws UNAUTHENTICATED or PERMISSION_DENIED. The auth
 * interceptor's check, shared with the raw gRPC unary path (grpc_unary.ts).
 */
export async function authorize(authenticator: Authenticator, rule: readonly Role[], method: DescMethod, header: string | null | undefined): Promise<Principal> {
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (!match) {
    throw new ConnectError("missing bearer token: send the header \"authorization: Bearer <token>\"", Code.Unauthenticated);
  }
  const principal = await authenticator.authenticate(match[1]!);
  if (!principal) throw new ConnectError("token is unknown, revoked or expired", Code.Unauthenticated);
  if (!rule.includes(principal.role)) {
    throw new ConnectError(`role ${Role[principal.role].toLowerCase()} may not call ${method.parent.typeName}/${method.name}`, Code.PermissionDenied);
  }
  return principal;
}

/**
 * Checks every request message against its protovalidate rules and answers
 * INVALID_ARGUMENT naming the field. For client and bidi streams each message
 * is checked as it arrives; a bad one ends the call.
 */
export function validationInterceptor(validator: Validator = createValidator()): Interceptor {
  const check = (schema: DescMessage, message: unknown) => validateMessage(validator, schema, message);
  return (next) => async (req) => {
    if (!req.stream) {
      check(req.method.input, req.message);
      return next(req);
    }
    const input = req.method.input;
    return next({
      ...req,
      message: new TappedStream(req.message, {
        item(message) {
          check(input, message);
        },
      }),
    });
  };
}

/**
 * Throws INVALID_ARGUMENT naming the fields when a request message breaks
 * its protovalidate rules (INTERNAL when the rules cannot be evaluated).
 * `message` must have been decoded from `schema`.
 */
export function validateMessage(validator: Validator, schema: DescMessage, message: unknown): void {
  const result = validator.validate(schema, message as Parameters<Validator["validate"]>[1]);
  if (result.kind === "valid") return;
  if (result.kind === "error") throw new ConnectError(`cannot validate request: ${result.error.message}`, Code.Internal);
  // Violation.toString() reads "spec.exec.commands[0].argv: value must ... [rule.id]".
  const detail = result.violations.map((v) => v.toString()).join("; ");
  throw new ConnectError(`invalid ${schema.name}: ${detail}`, Code.InvalidArgument);
}

/** What a TappedStream tells about the stream it passes on. */
interface StreamTaps<T> {
  /** Sees each item before the consumer; throwing ends the stream with that error (the source is closed). */
  item?(value: T): void;
  /** The source ended normally. */
  done?(): void;
  /** The source failed: returns the error the consumer gets instead. */
  error?(err: unknown): unknown;
}

/**
 * Passes an async iterable on, item by item, through `taps`. Not an async
 * generator on purpose: a generator layer keeps a frame, a request queue and
 * promises of its own for every open stream, and on Fleet's agent streams
 * (one per agent, open for days) the three stream interceptors cost ~2.5 KiB
 * per agent that way, half of it with this class. For the same reason the
 * taps are methods and the callbacks are assigned in the constructor: tsx
 * compiles with keepNames, which gives every named closure made at run time
 * (`const f = () => …`, `{ key: () => … }`, a class field) a property array
 * of its own, ~300 bytes. Like a generator it is iterated once, and
 * return()/throw() reach the source.
 */
class TappedStream<T> implements AsyncIterableIterator<T> {
  private iterator: AsyncIterator<T> | undefined;
  private readonly onResult: (result: IteratorResult<T>) => IteratorResult<T>;
  private readonly onError: (err: unknown) => never;

  constructor(
    private readonly source: AsyncIterable<T>,
    taps: StreamTaps<T>,
  ) {
    this.onResult = (result) => {
      if (result.done) {
        taps.done?.();
        return result;
      }
      try {
        taps.item?.(result.value);
      } catch (err) {
        // As a for-await loop that throws would: close the source, then fail.
        void this.iterator!.return?.()?.catch(() => {});
        throw err;
      }
      return result;
    };
    this.onError = (err) => {
      throw taps.error ? taps.error(err) : err;
    };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    return this.open().next().then(this.onResult, this.onError);
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    const it = this.open();
    return it.return ? it.return(value) : Promise.resolve({ done: true, value: value as T });
  }

  throw(err?: unknown): Promise<IteratorResult<T>> {
    const it = this.open();
    return it.throw ? it.throw(err).then(this.onResult, this.onError) : Promise.reject(err);
  }

  private open(): AsyncIterator<T> {
    return (this.iterator ??= this.source[Symbol.asyncIterator]());
  }
}
