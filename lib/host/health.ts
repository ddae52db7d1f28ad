import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponseSchema,
} from "../../gen/ts/grpc/health/v1/health_pb.ts";

export { ServingStatus };

/**
 * The serving status of a process and of each service in it, as reported by
 * grpc.health.v1.Health. The empty name "" is the process as a whole.
 */
export class HealthState {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Set<() => void>();

  constructor(services: readonly string[]) {
    this.statuses.set("", ServingStatus.SERVING);
    for (const s of services) this.statuses.set(s, ServingStatus.SERVING);
  }

  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Sets every service's status at once (for example NOT_SERVING while shutting down). */
  setAll(status: ServingStatus): void {
    for (const key of this.statuses.keys()) this.statuses.set(key, status);
    for (const w of this.watchers) w();
  }

  all(): Map<string, ServingStatus> {
    return new Map(this.statuses);
  }

  /** Calls `fn` after every change until the signal aborts. */
  onChange(fn: () => void, signal: AbortSignal): void {
    this.watchers.add(fn);
    signal.addEventListener("abort", () => this.watchers.delete(fn), { once: true });
  }
}

/** Serves grpc.health.v1.Health from a HealthState. */
export function healthRoutes(state: HealthState) {
  const check = (service: string) => {
    const status = state.get(service);
    if (status === undefined) throw new ConnectError(`unknown service ${JSON.stringify(service)}`, Code.NotFound);
    return create(HealthCheckResponseSchema, { status });
  };
  return (router: ConnectRouter) =>
    router.service(Health, {
      check: (req) => check(req.service),
      list: () => {
        const statuses: Record<string, ReturnType<typeof check>> = {};
        for (const [name, status] of state.all()) statuses[name] = create(HealthCheckResponseSchema, { status });
        return create(HealthListResponseSchema, { statuses });
      },
      async *watch(req, ctx: HandlerContext) {
        // Sends the current status, then every change, until the client goes away.
        // `changed` is set by every change and cleared before each look, so a
        // change (or the abort) that lands while we yield is never missed.
        let changed = false;
        let wake: () => void = () => {};
        const poke = () => {
          changed = true;
          wake();
        };
        state.onChange(poke, ctx.signal);
        ctx.signal.addEventListener("abort", poke, { once: true });
        let last: ServingStatus | undefined;
        while (!ctx.signal.aborted) {
          changed = false;
          const status = state.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
          if (status !== last) {
            last = status;
            yield create(HealthCheckResponseSchema, { status });
          }
          if (!changed && !ctx.signal.aborted) await new Promise<void>((resolve) => (wake = resolve));
        }
        // Ending normally would read as "OK, no more updates"; a shutdown must read as UNAVAILABLE.
        throw ConnectError.from(ctx.signal.reason ?? new ConnectError("watch ended", Code.Canceled));
      },
    });
}
