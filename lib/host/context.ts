import { createContextKey } from "@connectrpc/connect";
import type { Logger } from "../logger.ts";
import type { Principal } from "../auth/tokens.ts";

/** The call's logger, carrying service, method and request id. Set by the logging interceptor. */
export const kLogger = createContextKey<Logger | undefined>(undefined, { description: "logger" });

/** The authenticated caller. Set by the auth interceptor; undefined on open methods. */
export const kPrincipal = createContextKey<Principal | undefined>(undefined, { description: "principal" });
