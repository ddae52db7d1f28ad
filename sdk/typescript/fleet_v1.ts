// drover.fleet.v1: FleetService and the agent stream's messages.
export * from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
export * from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
