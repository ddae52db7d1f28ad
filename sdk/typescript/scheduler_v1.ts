// drover.scheduler.v1: SchedulerService, jobs, runs and schedules.
export * from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
