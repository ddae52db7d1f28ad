import { createHash } from "node:crypto";
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { ServiceSpecSchema, type ServiceSpec } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";

/**
 * SHA-256 of a spec's canonical JSON (keys sorted, defaults omitted), so that
 * two specs that mean the same thing hash the same whatever the order of
 * their map entries or the client that built them. The replica count is left
 * out: changing only it scales, it is not a new revision.
 */
export function specHash(spec: ServiceSpec): string {
  const json = toJson(ServiceSpecSchema, spec) as Record<string, JsonValue>;
  delete json["replicas"];
  return createHash("sha256").update(canonical(json)).digest("hex");
}

function canonical(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, JsonValue>)[k]!)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
