from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
HEALTH_STATE_HEALTHY: HealthState
HEALTH_STATE_UNHEALTHY: HealthState
HEALTH_STATE_UNSPECIFIED: HealthState

class CommandCheck(_message.Message):
    __slots__ = ["argv"]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argv: _Optional[_Iterable[str]] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ["command", "healthy_threshold", "http", "initial_delay", "interval", "process", "tcp", "timeout", "unhealthy_threshold"]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    TCP_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    UNHEALTHY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    command: CommandCheck
    healthy_threshold: int
    http: HttpCheck
    initial_delay: _duration_pb2.Duration
    interval: _duration_pb2.Duration
    process: ProcessCheck
    tcp: TcpCheck
    timeout: _duration_pb2.Duration
    unhealthy_threshold: int
    def __init__(self, process: _Optional[_Union[ProcessCheck, _Mapping]] = ..., tcp: _Optional[_Union[TcpCheck, _Mapping]] = ..., http: _Optional[_Union[HttpCheck, _Mapping]] = ..., command: _Optional[_Union[CommandCheck, _Mapping]] = ..., interval: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., healthy_threshold: _Optional[int] = ..., unhealthy_threshold: _Optional[int] = ..., initial_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HealthStatus(_message.Message):
    __slots__ = ["message", "port", "restarts", "since", "state"]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    message: str
    port: int
    restarts: int
    since: _timestamp_pb2.Timestamp
    state: HealthState
    def __init__(self, state: _Optional[_Union[HealthState, str]] = ..., message: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., restarts: _Optional[int] = ..., port: _Optional[int] = ...) -> None: ...

class HttpCheck(_message.Message):
    __slots__ = ["path", "port"]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    path: str
    port: int
    def __init__(self, port: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...

class ProcessCheck(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ["initial_delay", "max_delay"]
    INITIAL_DELAY_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_FIELD_NUMBER: _ClassVar[int]
    initial_delay: _duration_pb2.Duration
    max_delay: _duration_pb2.Duration
    def __init__(self, initial_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., max_delay: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ServiceRun(_message.Message):
    __slots__ = ["assign_port", "deployment", "health_check", "replica_id", "restart", "revision"]
    ASSIGN_PORT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    assign_port: bool
    deployment: str
    health_check: HealthCheck
    replica_id: str
    restart: RestartPolicy
    revision: int
    def __init__(self, deployment: _Optional[str] = ..., revision: _Optional[int] = ..., replica_id: _Optional[str] = ..., health_check: _Optional[_Union[HealthCheck, _Mapping]] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., assign_port: bool = ...) -> None: ...

class TcpCheck(_message.Message):
    __slots__ = ["port"]
    PORT_FIELD_NUMBER: _ClassVar[int]
    port: int
    def __init__(self, port: _Optional[int] = ...) -> None: ...

class HealthState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
