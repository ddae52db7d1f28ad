import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient, createRouterTransport } from "@connectrpc/connect";

import { BidService } from "../../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { DeployService } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { LogService } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import * as v1 from "../../gen/ts/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "../../gen/ts/grpc/reflection/v1alpha/reflection_pb.ts";
import { Reflector, reflectionRoutes } from "./reflection.ts";

const droverServices = [FleetService, SchedulerService, BidService, DeployService, LogService];

const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

type Ask = MessageInitShape<typeof v1.ServerReflectionRequestSchema>["messageRequest"];

/** Asks one question on a stream whose already-sent files are `sent`. */
function ask(reflector: Reflector, messageRequest: Ask, sent = new Set<string>()) {
  return reflector.answer(create(v1.ServerReflectionRequestSchema, { host: "localhost:7070", messageRequest }), sent);
}

/** The names of the files in a file_descriptor_response, in the order sent. */
function fileNames(res: v1.ServerReflectionResponse): string[] {
  const r = res.messageResponse;
  assert.equal(r.case, "fileDescriptorResponse", `expected files, got ${r.case}: ${JSON.stringify(r.value)}`);
  return r.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

/** The error code of an error_response. */
function errorCode(res: v1.ServerReflectionResponse): number {
  const r = res.messageResponse;
  assert.equal(r.case, "errorResponse", `expected an error, got ${r.case}`);
  return r.value.errorCode;
}

const schedulerFile = "drover/scheduler/v1/scheduler_service.proto";
// scheduler_service.proto and everything it imports, directly or not.
const schedulerClosure = [
  schedulerFile,
  "buf/validate/validate.proto",
  "drover/common/v1/exec.proto",
  "drover/common/v1/resources.proto",
  "drover/common/v1/service.proto",
  "drover/fleet/v1/agent_stream.proto",
  "google/protobuf/descriptor.proto",
  "google/protobuf/duration.proto",
  "google/protobuf/field_mask.proto",
  "google/protobuf/timestamp.proto",
];

describe("Reflector", () => {
  const reflector = new Reflector(droverServices);

  it("lists the five Drover services, health and both reflection versions", () => {
    const res = ask(reflector, { case: "listServices", value: "*" });
    assert.equal(res.messageResponse.case, "listServicesResponse");
    assert.deepEqual(
      res.messageResponse.value.service.map((s) => s.name),
      [
        "drover.bid.v1.BidService",
        "drover.deploy.v1.DeployService",
        "drover.fleet.v1.FleetService",
        "drover.log.v1.LogService",
        "drover.scheduler.v1.SchedulerService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ],
    );
  });

  it("echoes the host and the original request", () => {
    const res = ask(reflector, { case: "listServices", value: "" });
    assert.equal(res.validHost, "localhost:7070");
    assert.equal(res.originalRequest?.messageRequest.case, "listServices");
  });

  it("answers file_by_filename with the file first, then its dependencies, each once", () => {
    const names = fileNames(ask(reflector, { case: "fileByFilename", value: schedulerFile }));
    assert.equal(names[0], schedulerFile);
    assert.deepEqual([...names].sort(), [...schedulerClosure].sort());
  });

  it("does not resend dependencies a stream already received", () => {
    const sent = new Set<string>();
    assert.equal(fileNames(ask(reflector, { case: "fileByFilename", value: schedulerFile }, sent)).length, schedulerClosure.length);
    // deploy_service.proto imports nothing the scheduler's closure lacks.
    assert.deepEqual(fileNames(ask(reflector, { case: "fileByFilename", value: "drover/deploy/v1/deploy_service.proto" }, sent)), [
      "drover/deploy/v1/deploy_service.proto",
    ]);
    // A file asked for again is sent again, alone: the client asked for it.
    assert.deepEqual(fileNames(ask(reflector, { case: "fileByFilename", value: schedulerFile }, sent)), [schedulerFile]);
    // A fresh stream gets everything again.
    assert.equal(fileNames(ask(reflector, { case: "fileByFilename", value: schedulerFile })).length, schedulerClosure.length);
  });

  it("answers an unknown file name with NOT_FOUND", () => {
    assert.equal(errorCode(ask(reflector, { case: "fileByFilename", value: "drover/nope/v1/nope.proto" })), NOT_FOUND);
  });

  it("finds the file of a service", () => {
    assert.equal(fileNames(ask(reflector, { case: "fileContainingSymbol", value: "drover.fleet.v1.FleetService" }))[0], "drover/fleet/v1/fleet_service.proto");
  });

  it("finds the file of a method", () => {
    const names = fileNames(ask(reflector, { case: "fileContainingSymbol", value: "drover.scheduler.v1.SchedulerService.SubmitJob" }));
    assert.equal(names[0], schedulerFile);
  });

  it("finds the file of a message, a nested message and a field", () => {
    const first = (symbol: string) => fileNames(ask(reflector, { case: "fileContainingSymbol", value: symbol }))[0];
    assert.equal(first("drover.common.v1.Command"), "drover/common/v1/exec.proto");
    assert.equal(first("google.protobuf.DescriptorProto.ExtensionRange"), "google/protobuf/descriptor.proto");
    assert.equal(first("drover.scheduler.v1.SubmitJobRequest.spec"), schedulerFile);
    // Fully-qualified names with a leading dot, as in descriptors.
    assert.equal(first(".drover.log.v1.ReadLogsRequest"), "drover/log/v1/log_service.proto");
  });

  it("finds the file of a oneof", () => {
    const names = fileNames(ask(reflector, { case: "fileContainingSymbol", value: "drover.fleet.v1.ConnectRequest.message" }));
    assert.equal(names[0], "drover/fleet/v1/agent_stream.proto");
  });

  it("finds the file of an enum and of enum values, which are scoped as siblings of their enum", () => {
    const first = (symbol: string) => fileNames(ask(reflector, { case: "fileContainingSymbol", value: symbol }))[0];
    assert.equal(first("grpc.health.v1.HealthCheckResponse.ServingStatus"), "grpc/health/v1/health.proto");
    // A nested enum's values live in the enclosing message: HealthCheckResponse.SERVING.
    assert.equal(first("grpc.health.v1.HealthCheckResponse.SERVING"), "grpc/health/v1/health.proto");
    // A top-level enum's values live in the package: drover.fleet.v1.ROLE_ADMIN.
    assert.equal(first("drover.fleet.v1.ROLE_ADMIN"), "drover/fleet/v1/fleet_service.proto");
  });

  it("answers an unknown symbol with NOT_FOUND", () => {
    for (const symbol of [
      "drover.nope.v1.Nope",
      "drover.scheduler.v1.SchedulerService.Nope",
      "drover.scheduler.v1.SubmitJobRequest.nope",
      "drover.fleet.v1.ROLE_ROOT",
      "Nope",
    ]) {
      const res = ask(reflector, { case: "fileContainingSymbol", value: symbol });
      assert.equal(errorCode(res), NOT_FOUND, symbol);
      assert.equal(res.messageResponse.case === "errorResponse" && /not found/.test(res.messageResponse.value.errorMessage), true);
    }
  });

  it("lists the extension numbers of google.protobuf.FieldOptions, including buf.validate.field (1159)", () => {
    const res = ask(reflector, { case: "allExtensionNumbersOfType", value: "google.protobuf.FieldOptions" });
    assert.equal(res.messageResponse.case, "allExtensionNumbersResponse");
    assert.equal(res.messageResponse.value.baseTypeName, "google.protobuf.FieldOptions");
    assert.ok(res.messageResponse.value.extensionNumber.includes(1159), `got ${res.messageResponse.value.extensionNumber}`);
  });

  it("answers all_extension_numbers_of_type for an unknown type with NOT_FOUND", () => {
    assert.equal(errorCode(ask(reflector, { case: "allExtensionNumbersOfType", value: "drover.nope.v1.Nope" })), NOT_FOUND);
  });

  it("finds the file that declares an extension", () => {
    const ext = create(v1.ExtensionRequestSchema, { containingType: "google.protobuf.FieldOptions", extensionNumber: 1159 });
    assert.equal(fileNames(ask(reflector, { case: "fileContainingExtension", value: ext }))[0], "buf/validate/validate.proto");
    const unknown = create(v1.ExtensionRequestSchema, { containingType: "google.protobuf.FieldOptions", extensionNumber: 999_999 });
    assert.equal(errorCode(ask(reflector, { case: "fileContainingExtension", value: unknown })), NOT_FOUND);
  });

  it("answers a request with nothing set with INVALID_ARGUMENT", () => {
    assert.equal(errorCode(ask(reflector, { case: undefined })), INVALID_ARGUMENT);
  });
});

describe("reflectionRoutes", () => {
  const transport = createRouterTransport(reflectionRoutes(droverServices));

  async function* requests<T>(...items: T[]) {
    yield* items;
  }

  it("serves v1 over a stream that remembers what it sent", async () => {
    const client = createClient(v1.ServerReflection, transport);
    const answers: v1.ServerReflectionResponse[] = [];
    for await (const res of client.serverReflectionInfo(
      requests(
        create(v1.ServerReflectionRequestSchema, { messageRequest: { case: "fileByFilename", value: schedulerFile } }),
        create(v1.ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "drover.deploy.v1.DeployService" } }),
      ),
    )) {
      answers.push(res);
    }
    assert.equal(answers.length, 2);
    assert.equal(fileNames(answers[0]!).length, schedulerClosure.length);
    assert.deepEqual(fileNames(answers[1]!), ["drover/deploy/v1/deploy_service.proto"]);
  });

  it("serves v1alpha with the same answers", async () => {
    const client = createClient(v1alpha.ServerReflection, transport);
    const answers: v1alpha.ServerReflectionResponse[] = [];
    for await (const res of client.serverReflectionInfo(
      requests(
        create(v1alpha.ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "*" } }),
        create(v1alpha.ServerReflectionRequestSchema, {
          messageRequest: { case: "fileContainingSymbol", value: "drover.scheduler.v1.SchedulerService.SubmitJob" },
        }),
        create(v1alpha.ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "drover.nope.v1.Nope" } }),
      ),
    )) {
      answers.push(res);
    }
    const [list, files, missing] = answers;
    assert.equal(list?.messageResponse.case, "listServicesResponse");
    assert.equal(list.messageResponse.value.service.length, 8);
    assert.equal(files?.messageResponse.case, "fileDescriptorResponse");
    const names = files.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
    assert.equal(names[0], schedulerFile);
    assert.equal(missing?.messageResponse.case, "errorResponse");
    assert.equal(missing.messageResponse.value.errorCode, NOT_FOUND);
  });
});
