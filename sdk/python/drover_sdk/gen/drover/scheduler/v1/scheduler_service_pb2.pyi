from buf.validate import validate_pb2 as _validate_pb2
from drover.common.v1 import exec_pb2 as _exec_pb2
from drover.common.v1 import resources_pb2 as _resources_pb2
from drover.common.v1 import service_pb2 as _service_pb2
from drover.fleet.v1 import agent_stream_pb2 as _agent_stream_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ATTEMPT_STATE_ASSIGNED: AttemptState
ATTEMPT_STATE_CANCELLED: AttemptState
ATTEMPT_STATE_FAILED: AttemptState
ATTEMPT_STATE_LOST: AttemptState
ATTEMPT_STATE_RUNNING: AttemptState
ATTEMPT_STATE_SUCCEEDED: AttemptState
ATTEMPT_STATE_TIMED_OUT: AttemptState
ATTEMPT_STATE_UNSPECIFIED: AttemptState
DESCRIPTOR: _descriptor.FileDescriptor
JOB_STATE_ASSIGNED: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_DEAD: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_OFFERED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_TIMED_OUT: JobState
JOB_STATE_UNSPECIFIED: JobState
MISSED_POLICY_BACKFILL: MissedPolicy
MISSED_POLICY_RUN_ONCE: MissedPolicy
MISSED_POLICY_SKIP: MissedPolicy
MISSED_POLICY_UNSPECIFIED: MissedPolicy
OVERLAP_POLICY_ALLOW: OverlapPolicy
OVERLAP_POLICY_CANCEL_PREVIOUS: OverlapPolicy
OVERLAP_POLICY_SKIP: OverlapPolicy
OVERLAP_POLICY_UNSPECIFIED: OverlapPolicy
RUN_STATE_CANCELLED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_UNSPECIFIED: RunState
STAGE_STATE_BLOCKED: StageState
STAGE_STATE_CANCELLED: StageState
STAGE_STATE_FAILED: StageState
STAGE_STATE_PENDING: StageState
STAGE_STATE_RUNNING: StageState
STAGE_STATE_SKIPPED: StageState
STAGE_STATE_SUCCEEDED: StageState
STAGE_STATE_UNSPECIFIED: StageState

class AgentJobEvent(_message.Message):
    __slots__ = ["agent_id", "event"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    event: _agent_stream_pb2.JobEvent
    def __init__(self, agent_id: _Optional[str] = ..., event: _Optional[_Union[_agent_stream_pb2.JobEvent, _Mapping]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ["agent_id", "auction_id", "commands", "create_time", "end_time", "exit_code", "health", "id", "lease_expire_time", "number", "reason", "signal", "start_time", "state"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    auction_id: str
    commands: _containers.RepeatedCompositeFieldContainer[_exec_pb2.CommandResult]
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    exit_code: int
    health: _service_pb2.HealthStatus
    id: str
    lease_expire_time: _timestamp_pb2.Timestamp
    number: int
    reason: str
    signal: str
    start_time: _timestamp_pb2.Timestamp
    state: AttemptState
    def __init__(self, id: _Optional[str] = ..., number: _Optional[int] = ..., agent_id: _Optional[str] = ..., state: _Optional[_Union[AttemptState, str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., reason: _Optional[str] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., auction_id: _Optional[str] = ..., commands: _Optional[_Iterable[_Union[_exec_pb2.CommandResult, _Mapping]]] = ..., health: _Optional[_Union[_service_pb2.HealthStatus, _Mapping]] = ...) -> None: ...

class AttemptInfo(_message.Message):
    __slots__ = ["agent_id", "attempt_id", "job_ended", "job_id", "run_id", "secret_values", "stage_name"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ENDED_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_VALUES_FIELD_NUMBER: _ClassVar[int]
    STAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    attempt_id: str
    job_ended: bool
    job_id: str
    run_id: str
    secret_values: _containers.RepeatedScalarFieldContainer[str]
    stage_name: str
    def __init__(self, attempt_id: _Optional[str] = ..., job_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., run_id: _Optional[str] = ..., stage_name: _Optional[str] = ..., secret_values: _Optional[_Iterable[str]] = ..., job_ended: bool = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ["grace_period", "id", "reason"]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grace_period: _duration_pb2.Duration
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobsRequest(_message.Message):
    __slots__ = ["jobs"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[CancelJobRequest]
    def __init__(self, jobs: _Optional[_Iterable[_Union[CancelJobRequest, _Mapping]]] = ...) -> None: ...

class CancelJobsResponse(_message.Message):
    __slots__ = ["jobs"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ["grace_period", "id", "reason"]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grace_period: _duration_pb2.Duration
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ["run"]
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ClaimPlaceableJobsRequest(_message.Message):
    __slots__ = ["bidder", "max_jobs", "wait"]
    BIDDER_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    bidder: str
    max_jobs: int
    wait: _duration_pb2.Duration
    def __init__(self, bidder: _Optional[str] = ..., max_jobs: _Optional[int] = ..., wait: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ClaimPlaceableJobsResponse(_message.Message):
    __slots__ = ["claim_expire_time", "jobs"]
    CLAIM_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    claim_expire_time: _timestamp_pb2.Timestamp
    jobs: _containers.RepeatedCompositeFieldContainer[PlaceableJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[PlaceableJob, _Mapping]]] = ..., claim_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ["paused", "spec"]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    spec: ScheduleSpec
    def __init__(self, spec: _Optional[_Union[ScheduleSpec, _Mapping]] = ..., paused: bool = ...) -> None: ...

class CreateScheduleResponse(_message.Message):
    __slots__ = ["schedule"]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DescribeAttemptsRequest(_message.Message):
    __slots__ = ["attempt_ids"]
    ATTEMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    attempt_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, attempt_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeAttemptsResponse(_message.Message):
    __slots__ = ["attempts"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptInfo]
    def __init__(self, attempts: _Optional[_Iterable[_Union[AttemptInfo, _Mapping]]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ["run"]
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ["schedule"]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ["attempt_count", "attempts", "concurrency_holders", "create_time", "end_reason", "id", "idempotency_key", "next_job_id", "repeat_index", "repeat_of", "retry_time", "run_id", "schedule_id", "spec", "stage_name", "state", "update_time", "wait_reason"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_HOLDERS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REPEAT_INDEX_FIELD_NUMBER: _ClassVar[int]
    REPEAT_OF_FIELD_NUMBER: _ClassVar[int]
    RETRY_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    attempt_count: int
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    concurrency_holders: int
    create_time: _timestamp_pb2.Timestamp
    end_reason: str
    id: str
    idempotency_key: str
    next_job_id: str
    repeat_index: int
    repeat_of: str
    retry_time: _timestamp_pb2.Timestamp
    run_id: str
    schedule_id: str
    spec: JobSpec
    stage_name: str
    state: JobState
    update_time: _timestamp_pb2.Timestamp
    wait_reason: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., attempt_count: _Optional[int] = ..., wait_reason: _Optional[str] = ..., retry_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_reason: _Optional[str] = ..., run_id: _Optional[str] = ..., stage_name: _Optional[str] = ..., repeat_of: _Optional[str] = ..., repeat_index: _Optional[int] = ..., next_job_id: _Optional[str] = ..., schedule_id: _Optional[str] = ..., concurrency_holders: _Optional[int] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ["concurrency_key", "concurrency_limit", "constraints", "driver", "exec", "name", "priority", "resources", "retry", "run_mode", "service", "timeout"]
    CONCURRENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    RUN_MODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    concurrency_key: str
    concurrency_limit: int
    constraints: _resources_pb2.Constraints
    driver: str
    exec: _exec_pb2.ExecSpec
    name: str
    priority: int
    resources: _resources_pb2.Resources
    retry: RetryPolicy
    run_mode: RunMode
    service: _service_pb2.ServiceRun
    timeout: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., exec: _Optional[_Union[_exec_pb2.ExecSpec, _Mapping]] = ..., driver: _Optional[str] = ..., resources: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., constraints: _Optional[_Union[_resources_pb2.Constraints, _Mapping]] = ..., priority: _Optional[int] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., concurrency_key: _Optional[str] = ..., concurrency_limit: _Optional[int] = ..., run_mode: _Optional[_Union[RunMode, _Mapping]] = ..., service: _Optional[_Union[_service_pb2.ServiceRun, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ["ids", "page_size", "page_token", "state"]
    IDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    state: JobState
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ["jobs", "next_page_token"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "state"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: RunState
    def __init__(self, state: _Optional[_Union[RunState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ["next_page_token", "runs"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ["next_page_token", "schedules"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseScheduleRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PauseScheduleResponse(_message.Message):
    __slots__ = ["schedule"]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class PlaceableJob(_message.Message):
    __slots__ = ["attempt_number", "claim_id", "job_id", "previous_agent_ids", "sibling_agent_ids", "sibling_job_ids", "spec"]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    SIBLING_AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    SIBLING_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    attempt_number: int
    claim_id: str
    job_id: str
    previous_agent_ids: _containers.RepeatedScalarFieldContainer[str]
    sibling_agent_ids: _containers.RepeatedScalarFieldContainer[str]
    sibling_job_ids: _containers.RepeatedScalarFieldContainer[str]
    spec: JobSpec
    def __init__(self, job_id: _Optional[str] = ..., claim_id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., attempt_number: _Optional[int] = ..., previous_agent_ids: _Optional[_Iterable[str]] = ..., sibling_agent_ids: _Optional[_Iterable[str]] = ..., sibling_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ["agent_id", "auction_id", "claim_id", "job_id", "retry_after", "wait_reason"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    WAIT_REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    auction_id: str
    claim_id: str
    job_id: str
    retry_after: _duration_pb2.Duration
    wait_reason: str
    def __init__(self, job_id: _Optional[str] = ..., claim_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., auction_id: _Optional[str] = ..., wait_reason: _Optional[str] = ..., retry_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PlacementResult(_message.Message):
    __slots__ = ["accepted", "attempt_id", "job_id"]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    attempt_id: str
    job_id: str
    def __init__(self, job_id: _Optional[str] = ..., accepted: bool = ..., attempt_id: _Optional[str] = ...) -> None: ...

class RecordPlacementsRequest(_message.Message):
    __slots__ = ["placements"]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    placements: _containers.RepeatedCompositeFieldContainer[Placement]
    def __init__(self, placements: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ...) -> None: ...

class RecordPlacementsResponse(_message.Message):
    __slots__ = ["results"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PlacementResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PlacementResult, _Mapping]]] = ...) -> None: ...

class ReportJobEventsRequest(_message.Message):
    __slots__ = ["events"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AgentJobEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AgentJobEvent, _Mapping]]] = ...) -> None: ...

class ReportJobEventsResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ReportRunningAttemptsRequest(_message.Message):
    __slots__ = ["agent_id", "running"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    running: _containers.RepeatedCompositeFieldContainer[_agent_stream_pb2.RunningAttempt]
    def __init__(self, agent_id: _Optional[str] = ..., running: _Optional[_Iterable[_Union[_agent_stream_pb2.RunningAttempt, _Mapping]]] = ...) -> None: ...

class ReportRunningAttemptsResponse(_message.Message):
    __slots__ = ["cancelled_attempt_ids"]
    CANCELLED_ATTEMPT_IDS_FIELD_NUMBER: _ClassVar[int]
    cancelled_attempt_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cancelled_attempt_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ResubmitJobRequest(_message.Message):
    __slots__ = ["id", "idempotency_key"]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    idempotency_key: str
    def __init__(self, id: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ResubmitJobResponse(_message.Message):
    __slots__ = ["created", "job"]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    created: bool
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: bool = ...) -> None: ...

class ResumeScheduleRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ResumeScheduleResponse(_message.Message):
    __slots__ = ["schedule"]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ["initial_backoff", "max_backoff", "max_retries", "multiplier", "non_retryable_exit_codes"]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_EXIT_CODES_FIELD_NUMBER: _ClassVar[int]
    initial_backoff: _duration_pb2.Duration
    max_backoff: _duration_pb2.Duration
    max_retries: int
    multiplier: float
    non_retryable_exit_codes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, max_retries: _Optional[int] = ..., initial_backoff: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ..., non_retryable_exit_codes: _Optional[_Iterable[int]] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ["create_time", "end_time", "id", "idempotency_key", "schedule_id", "spec", "stages", "state", "update_time"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    id: str
    idempotency_key: str
    schedule_id: str
    spec: RunSpec
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    state: RunState
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., spec: _Optional[_Union[RunSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., schedule_id: _Optional[str] = ...) -> None: ...

class RunMode(_message.Message):
    __slots__ = ["delay", "forever", "n_times"]
    DELAY_FIELD_NUMBER: _ClassVar[int]
    FOREVER_FIELD_NUMBER: _ClassVar[int]
    N_TIMES_FIELD_NUMBER: _ClassVar[int]
    delay: _duration_pb2.Duration
    forever: bool
    n_times: int
    def __init__(self, n_times: _Optional[int] = ..., forever: bool = ..., delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RunSpec(_message.Message):
    __slots__ = ["name", "stages"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    stages: _containers.RepeatedCompositeFieldContainer[StageSpec]
    def __init__(self, name: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageSpec, _Mapping]]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ["create_time", "fire_count", "id", "last_fire_time", "last_job_id", "last_run_id", "last_skip_reason", "next_fire_time", "paused", "skip_count", "spec", "update_time"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SKIP_REASON_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    SKIP_COUNT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    fire_count: int
    id: str
    last_fire_time: _timestamp_pb2.Timestamp
    last_job_id: str
    last_run_id: str
    last_skip_reason: str
    next_fire_time: _timestamp_pb2.Timestamp
    paused: bool
    skip_count: int
    spec: ScheduleSpec
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[ScheduleSpec, _Mapping]] = ..., paused: bool = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., next_fire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_fire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_id: _Optional[str] = ..., last_run_id: _Optional[str] = ..., fire_count: _Optional[int] = ..., skip_count: _Optional[int] = ..., last_skip_reason: _Optional[str] = ...) -> None: ...

class ScheduleSpec(_message.Message):
    __slots__ = ["backfill_limit", "cron", "job", "missed", "name", "overlap", "run", "time_zone"]
    BACKFILL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    backfill_limit: int
    cron: str
    job: JobSpec
    missed: MissedPolicy
    name: str
    overlap: OverlapPolicy
    run: RunSpec
    time_zone: str
    def __init__(self, name: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., job: _Optional[_Union[JobSpec, _Mapping]] = ..., run: _Optional[_Union[RunSpec, _Mapping]] = ..., overlap: _Optional[_Union[OverlapPolicy, str]] = ..., missed: _Optional[_Union[MissedPolicy, str]] = ..., backfill_limit: _Optional[int] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ["attempt_count", "end_time", "job_id", "job_state", "name", "reason", "requires", "start_time", "state"]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    attempt_count: int
    end_time: _timestamp_pb2.Timestamp
    job_id: str
    job_state: JobState
    name: str
    reason: str
    requires: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    state: StageState
    def __init__(self, name: _Optional[str] = ..., requires: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[StageState, str]] = ..., job_id: _Optional[str] = ..., job_state: _Optional[_Union[JobState, str]] = ..., attempt_count: _Optional[int] = ..., reason: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StageSpec(_message.Message):
    __slots__ = ["job", "name", "requires"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    job: JobSpec
    name: str
    requires: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., requires: _Optional[_Iterable[str]] = ..., job: _Optional[_Union[JobSpec, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ["idempotency_key", "spec"]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    spec: JobSpec
    def __init__(self, spec: _Optional[_Union[JobSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ["created", "job"]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    created: bool
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: bool = ...) -> None: ...

class SubmitJobsRequest(_message.Message):
    __slots__ = ["jobs"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[SubmitJobRequest]
    def __init__(self, jobs: _Optional[_Iterable[_Union[SubmitJobRequest, _Mapping]]] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ["jobs"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[SubmitJobResponse]
    def __init__(self, jobs: _Optional[_Iterable[_Union[SubmitJobResponse, _Mapping]]] = ...) -> None: ...

class SubmitRunRequest(_message.Message):
    __slots__ = ["idempotency_key", "spec"]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    spec: RunSpec
    def __init__(self, spec: _Optional[_Union[RunSpec, _Mapping]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SubmitRunResponse(_message.Message):
    __slots__ = ["created", "run"]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    created: bool
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ..., created: bool = ...) -> None: ...

class WakeWaitingJobsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class WakeWaitingJobsResponse(_message.Message):
    __slots__ = ["woken"]
    WOKEN_FIELD_NUMBER: _ClassVar[int]
    woken: int
    def __init__(self, woken: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AttemptState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class StageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class OverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class MissedPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
