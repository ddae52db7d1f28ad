from buf.validate import validate_pb2 as _validate_pb2
from drover.common.v1 import exec_pb2 as _exec_pb2
from drover.common.v1 import resources_pb2 as _resources_pb2
from drover.common.v1 import service_pb2 as _service_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ATTEMPT_STATE_CANCELLED: AttemptState
ATTEMPT_STATE_FAILED: AttemptState
ATTEMPT_STATE_RUNNING: AttemptState
ATTEMPT_STATE_STARTING: AttemptState
ATTEMPT_STATE_SUCCEEDED: AttemptState
ATTEMPT_STATE_TIMED_OUT: AttemptState
ATTEMPT_STATE_UNSPECIFIED: AttemptState
DESCRIPTOR: _descriptor.FileDescriptor
LOG_STREAM_STDERR: LogStream
LOG_STREAM_STDOUT: LogStream
LOG_STREAM_SYSTEM: LogStream
LOG_STREAM_UNSPECIFIED: LogStream

class Ack(_message.Message):
    __slots__ = ["message_ids"]
    MESSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    message_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ["attempt_id", "driver", "exec", "job_id", "lease_expire_time", "resources", "run_id", "service", "stage_name", "timeout"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    driver: str
    exec: _exec_pb2.ExecSpec
    job_id: str
    lease_expire_time: _timestamp_pb2.Timestamp
    resources: _resources_pb2.Resources
    run_id: str
    service: _service_pb2.ServiceRun
    stage_name: str
    timeout: _duration_pb2.Duration
    def __init__(self, attempt_id: _Optional[str] = ..., job_id: _Optional[str] = ..., exec: _Optional[_Union[_exec_pb2.ExecSpec, _Mapping]] = ..., driver: _Optional[str] = ..., resources: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., lease_expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., run_id: _Optional[str] = ..., stage_name: _Optional[str] = ..., service: _Optional[_Union[_service_pb2.ServiceRun, _Mapping]] = ...) -> None: ...

class Bid(_message.Message):
    __slots__ = ["free", "offer_id", "score"]
    FREE_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    free: _resources_pb2.Resources
    offer_id: str
    score: float
    def __init__(self, offer_id: _Optional[str] = ..., score: _Optional[float] = ..., free: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ["attempt_id", "grace_period", "reason"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    grace_period: _duration_pb2.Duration
    reason: str
    def __init__(self, attempt_id: _Optional[str] = ..., grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ["ack", "bid", "decline", "heartbeat", "hello", "job_event", "log_frame"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    DECLINE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    JOB_EVENT_FIELD_NUMBER: _ClassVar[int]
    LOG_FRAME_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    bid: Bid
    decline: Decline
    heartbeat: Heartbeat
    hello: Hello
    job_event: JobEvent
    log_frame: LogFrame
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., bid: _Optional[_Union[Bid, _Mapping]] = ..., decline: _Optional[_Union[Decline, _Mapping]] = ..., job_event: _Optional[_Union[JobEvent, _Mapping]] = ..., log_frame: _Optional[_Union[LogFrame, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ["assignment", "cancel", "drain", "event_ack", "log_ack", "message_id", "offer", "welcome"]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    EVENT_ACK_FIELD_NUMBER: _ClassVar[int]
    LOG_ACK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    cancel: Cancel
    drain: Drain
    event_ack: EventAck
    log_ack: LogAck
    message_id: str
    offer: Offer
    welcome: Welcome
    def __init__(self, message_id: _Optional[str] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., offer: _Optional[_Union[Offer, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., log_ack: _Optional[_Union[LogAck, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., event_ack: _Optional[_Union[EventAck, _Mapping]] = ...) -> None: ...

class Decline(_message.Message):
    __slots__ = ["offer_id", "reason"]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    offer_id: str
    reason: str
    def __init__(self, offer_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ["deadline", "draining", "reason"]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deadline: _timestamp_pb2.Timestamp
    draining: bool
    reason: str
    def __init__(self, draining: bool = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ["event_ids"]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, event_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ["free", "metrics", "sequence"]
    FREE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    free: _resources_pb2.Resources
    metrics: Metrics
    sequence: int
    def __init__(self, sequence: _Optional[int] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., free: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ["agent_id", "drivers", "free", "hostname", "labels", "log_offsets", "registration_token", "running", "total", "version"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DRIVERS_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LOG_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    drivers: _containers.RepeatedScalarFieldContainer[str]
    free: _resources_pb2.Resources
    hostname: str
    labels: _containers.ScalarMap[str, str]
    log_offsets: _containers.RepeatedCompositeFieldContainer[LogOffset]
    registration_token: str
    running: _containers.RepeatedCompositeFieldContainer[RunningAttempt]
    total: _resources_pb2.Resources
    version: str
    def __init__(self, agent_id: _Optional[str] = ..., registration_token: _Optional[str] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., drivers: _Optional[_Iterable[str]] = ..., total: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., free: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., running: _Optional[_Iterable[_Union[RunningAttempt, _Mapping]]] = ..., log_offsets: _Optional[_Iterable[_Union[LogOffset, _Mapping]]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ["attempt_id", "command", "event_id", "exit_code", "health", "message", "sequence", "signal", "state", "time"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    command: _exec_pb2.CommandResult
    event_id: str
    exit_code: int
    health: _service_pb2.HealthStatus
    message: str
    sequence: int
    signal: str
    state: AttemptState
    time: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., attempt_id: _Optional[str] = ..., state: _Optional[_Union[AttemptState, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., message: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., command: _Optional[_Union[_exec_pb2.CommandResult, _Mapping]] = ..., health: _Optional[_Union[_service_pb2.HealthStatus, _Mapping]] = ...) -> None: ...

class LogAck(_message.Message):
    __slots__ = ["attempt_id", "complete", "offset", "refused", "stream"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    complete: bool
    offset: int
    refused: str
    stream: LogStream
    def __init__(self, attempt_id: _Optional[str] = ..., stream: _Optional[_Union[LogStream, str]] = ..., offset: _Optional[int] = ..., complete: bool = ..., refused: _Optional[str] = ...) -> None: ...

class LogFrame(_message.Message):
    __slots__ = ["attempt_id", "command_index", "data", "final", "offset", "source_length", "stream", "time"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    command_index: int
    data: bytes
    final: bool
    offset: int
    source_length: int
    stream: LogStream
    time: _timestamp_pb2.Timestamp
    def __init__(self, attempt_id: _Optional[str] = ..., command_index: _Optional[int] = ..., stream: _Optional[_Union[LogStream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., source_length: _Optional[int] = ..., final: bool = ...) -> None: ...

class LogOffset(_message.Message):
    __slots__ = ["attempt_id", "offset", "stream"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    offset: int
    stream: LogStream
    def __init__(self, attempt_id: _Optional[str] = ..., stream: _Optional[_Union[LogStream, str]] = ..., offset: _Optional[int] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ["agent_rss_bytes", "cpu_percent", "disk_total_bytes", "disk_used_bytes", "load_1", "load_15", "load_5", "memory_total_bytes", "memory_used_bytes", "uptime_seconds"]
    AGENT_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_15_FIELD_NUMBER: _ClassVar[int]
    LOAD_1_FIELD_NUMBER: _ClassVar[int]
    LOAD_5_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent_rss_bytes: int
    cpu_percent: float
    disk_total_bytes: int
    disk_used_bytes: int
    load_1: float
    load_15: float
    load_5: float
    memory_total_bytes: int
    memory_used_bytes: int
    uptime_seconds: int
    def __init__(self, cpu_percent: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., disk_used_bytes: _Optional[int] = ..., disk_total_bytes: _Optional[int] = ..., load_1: _Optional[float] = ..., load_5: _Optional[float] = ..., load_15: _Optional[float] = ..., uptime_seconds: _Optional[int] = ..., agent_rss_bytes: _Optional[int] = ...) -> None: ...

class Offer(_message.Message):
    __slots__ = ["deadline", "driver", "job_id", "offer_id", "resources", "service"]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OFFER_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    deadline: _timestamp_pb2.Timestamp
    driver: str
    job_id: str
    offer_id: str
    resources: _resources_pb2.Resources
    service: bool
    def __init__(self, offer_id: _Optional[str] = ..., job_id: _Optional[str] = ..., resources: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., driver: _Optional[str] = ..., deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., service: bool = ...) -> None: ...

class RunningAttempt(_message.Message):
    __slots__ = ["attempt_id", "job_id", "state"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    job_id: str
    state: AttemptState
    def __init__(self, attempt_id: _Optional[str] = ..., job_id: _Optional[str] = ..., state: _Optional[_Union[AttemptState, str]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ["agent_credential", "agent_id", "heartbeat_interval", "session_id"]
    AGENT_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    agent_credential: str
    agent_id: str
    heartbeat_interval: _duration_pb2.Duration
    session_id: str
    def __init__(self, session_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., agent_credential: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AttemptState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
