from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ["argv", "cwd", "env", "timeout"]
    class EnvEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    env: _containers.ScalarMap[str, str]
    timeout: _duration_pb2.Duration
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ["duration", "exit_code", "index", "message", "peak_rss_bytes", "signal", "start_time"]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    exit_code: int
    index: int
    message: str
    peak_rss_bytes: int
    signal: str
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, index: _Optional[int] = ..., exit_code: _Optional[int] = ..., signal: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., peak_rss_bytes: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ExecSpec(_message.Message):
    __slots__ = ["allow_shell", "commands", "continue_on_failure", "env", "image", "inherit_env", "memory_limit_bytes", "nice", "secret_env", "stop_grace_period"]
    class EnvEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ALLOW_SHELL_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    INHERIT_ENV_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    allow_shell: bool
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    continue_on_failure: bool
    env: _containers.ScalarMap[str, str]
    image: str
    inherit_env: bool
    memory_limit_bytes: int
    nice: int
    secret_env: _containers.RepeatedScalarFieldContainer[str]
    stop_grace_period: _duration_pb2.Duration
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ..., allow_shell: bool = ..., continue_on_failure: bool = ..., env: _Optional[_Mapping[str, str]] = ..., secret_env: _Optional[_Iterable[str]] = ..., image: _Optional[str] = ..., inherit_env: bool = ..., memory_limit_bytes: _Optional[int] = ..., nice: _Optional[int] = ..., stop_grace_period: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...
