// drover.common.v1: the messages the services share (exec specs, resources).
export * from "../../gen/ts/drover/common/v1/exec_pb.ts";
export * from "../../gen/ts/drover/common/v1/resources_pb.ts";
