// gRPC server reflection (grpc.reflection.v1 and v1alpha) for connect-node,
// which has no package for it (connect-es issue 507). With it, grpcurl and
// `buf curl` list and call Drover's services without any .proto file.
//
// The answer to every lookup is the descriptor of a file plus its transitive
// dependencies, each sent at most once per stream: clients cache what they
// have seen, and re-sending google/protobuf/descriptor.proto on every lookup
// would waste most of the stream.
//
// v1alpha has the same messages, field for field, as v1; its handler
// re-decodes each message into the other version rather than duplicating the
// logic.

import { create, createRegistry, fromBinary, toBinary, type DescFile, type DescService, type Registry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/ts/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "../../gen/ts/grpc/reflection/v1alpha/reflection_pb.ts";
import { file_grpc_health_v1_health } from "../../gen/ts/grpc/health/v1/health_pb.ts";

/** The reflection and health services, which every Drover server also serves. */
export const hostServices: readonly DescService[] = [
  v1.ServerReflection,
  v1alpha.ServerReflection,
  ...file_grpc_health_v1_health.services,
];

/** Every file a set of services needs, dependencies first. */
function filesOf(services: readonly DescService[]): DescFile[] {
  const seen = new Set<string>();
  const out: DescFile[] = [];
  const visit = (file: DescFile) => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependencies) visit(dep);
    out.push(file);
  };
  for (const s of services) visit(s.file);
  return out;
}

// gRPC status codes used in ErrorResponse.error_code.
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

/** Answers reflection requests about `services` (and the host's own services). */
export class Reflector {
  private readonly registry: Registry;
  /** Files by their path as in descriptors and imports ("drover/.../x.proto"); DescFile.name lacks ".proto". */
  private readonly files: Map<string, DescFile>;
  /** Files by the full names of enum values, which the registry does not index. */
  private readonly enumValues = new Map<string, DescFile>();
  private readonly serviceNames: string[];

  constructor(services: readonly DescService[]) {
    const all = [...services, ...hostServices];
    const files = filesOf(all);
    this.files = new Map(files.map((f) => [f.proto.name, f]));
    this.registry = createRegistry(...files);
    this.serviceNames = [...new Set(all.map((s) => s.typeName))].sort();
    // Enum values are siblings of their enum (C++ scoping): ROLE_ADMIN of
    // drover.fleet.v1.Role is drover.fleet.v1.ROLE_ADMIN, and SERVING of
    // grpc.health.v1.HealthCheckResponse.ServingStatus is
    // grpc.health.v1.HealthCheckResponse.SERVING.
    for (const desc of this.registry) {
      if (desc.kind !== "enum") continue;
      const scope = desc.typeName.slice(0, desc.typeName.lastIndexOf(".") + 1);
      for (const value of desc.values) this.enumValues.set(scope + value.name, desc.file);
    }
  }

  /** Answers one request; `sent` holds the names of files this stream already received. */
  answer(req: v1.ServerReflectionRequest, sent: Set<string>): v1.ServerReflectionResponse {
    const response = create(v1.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req });
    const r = req.messageRequest;
    const files = (file: DescFile | undefined, what: string) => {
      if (!file) return error(NOT_FOUND, `${what} not found`);
      return {
        case: "fileDescriptorResponse" as const,
        value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: this.closure(file, sent) }),
      };
    };
    switch (r.case) {
      case "listServices":
        response.messageResponse = {
          case: "listServicesResponse",
          value: create(v1.ListServiceResponseSchema, {
            service: this.serviceNames.map((name) => create(v1.ServiceResponseSchema, { name })),
          }),
        };
        break;
      case "fileByFilename":
        response.messageResponse = files(this.files.get(r.value), `file ${r.value}`);
        break;
      case "fileContainingSymbol":
        response.messageResponse = files(this.fileOfSymbol(r.value), `symbol ${r.value}`);
        break;
      case "fileContainingExtension": {
        const message = this.registry.getMessage(r.value.containingType);
        const ext = message && this.registry.getExtensionFor(message, r.value.extensionNumber);
        response.messageResponse = files(ext?.file, `extension ${r.value.extensionNumber} of ${r.value.containingType}`);
        break;
      }
      case "allExtensionNumbersOfType": {
        const message = this.registry.getMessage(r.value);
        if (!message) {
          response.messageResponse = error(NOT_FOUND, `type ${r.value} not found`);
          break;
        }
        const numbers: number[] = [];
        for (const desc of this.registry) {
          if (desc.kind === "extension" && desc.extendee.typeName === message.typeName) numbers.push(desc.number);
        }
        response.messageResponse = {
          case: "allExtensionNumbersResponse",
          value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: message.typeName, extensionNumber: numbers.sort((a, b) => a - b) }),
        };
        break;
      }
      default:
        response.messageResponse = error(INVALID_ARGUMENT, "no request set");
    }
    return response;
  }

  /** A symbol may be a type, a service, a method, a field, a oneof or an enum value: look up its nearest declared parent. */
  private fileOfSymbol(symbol: string): DescFile | undefined {
    const name = symbol.replace(/^\./, "");
    const direct = this.registry.get(name);
    if (direct) return direct.file;
    const enumValue = this.enumValues.get(name);
    if (enumValue) return enumValue;
    const dot = name.lastIndexOf(".");
    if (dot < 0) return undefined;
    const parent = this.registry.get(name.slice(0, dot));
    if (!parent) return undefined;
    const member = name.slice(dot + 1);
    const has =
      (parent.kind === "service" && parent.methods.some((m) => m.name === member)) ||
      (parent.kind === "message" && (parent.fields.some((f) => f.name === member) || parent.oneofs.some((o) => o.name === member))) ||
      (parent.kind === "enum" && parent.values.some((v) => v.name === member));
    return has ? parent.file : undefined;
  }

  /** The file and the dependencies this stream has not received yet, dependencies last as grpc-go does. */
  private closure(file: DescFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [];
    const visit = (f: DescFile, force: boolean) => {
      if (sent.has(f.name) && !force) return;
      sent.add(f.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      for (const dep of f.dependencies) visit(dep, false);
    };
    // The requested file is always sent, even if sent before: the client asked for it.
    visit(file, true);
    return out;
  }
}

function error(errorCode: number, errorMessage: string) {
  return { case: "errorResponse" as const, value: create(v1.ErrorResponseSchema, { errorCode, errorMessage }) };
}

/** Serves both reflection versions for `services`. */
export function reflectionRoutes(services: readonly DescService[]) {
  const reflector = new Reflector(services);
  return (router: ConnectRouter) => {
    router.service(v1.ServerReflection, {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const req of requests) yield reflector.answer(req, sent);
      },
    });
    router.service(v1alpha.ServerReflection, {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const req of requests) {
          const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
          const answer = reflector.answer(asV1, sent);
          yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, answer));
        }
      },
    });
  };
}
