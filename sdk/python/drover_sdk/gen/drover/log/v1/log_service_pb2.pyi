from buf.validate import validate_pb2 as _validate_pb2
from drover.fleet.v1 import agent_stream_pb2 as _agent_stream_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FOLLOW_FROM_END: FollowFrom
FOLLOW_FROM_TAIL: FollowFrom
FOLLOW_FROM_UNSPECIFIED: FollowFrom
STREAM_STDERR: Stream
STREAM_STDOUT: Stream
STREAM_SYSTEM: Stream
STREAM_UNSPECIFIED: Stream

class FollowLogsRequest(_message.Message):
    __slots__ = ["attempt_id", "deployment", "filter", "job_id", "regex", "replica", "run_id", "stage_name", "stream", "tail_lines"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    deployment: str
    filter: str
    job_id: str
    regex: bool
    replica: str
    run_id: str
    stage_name: str
    stream: Stream
    tail_lines: int
    def __init__(self, attempt_id: _Optional[str] = ..., job_id: _Optional[str] = ..., run_id: _Optional[str] = ..., stage_name: _Optional[str] = ..., stream: _Optional[_Union[Stream, str]] = ..., tail_lines: _Optional[int] = ..., filter: _Optional[str] = ..., regex: bool = ..., deployment: _Optional[str] = ..., replica: _Optional[str] = ..., **kwargs) -> None: ...

class FollowLogsResponse(_message.Message):
    __slots__ = ["lines"]
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class IngestLogsRequest(_message.Message):
    __slots__ = ["agent_id", "frames"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    frames: _containers.RepeatedCompositeFieldContainer[_agent_stream_pb2.LogFrame]
    def __init__(self, agent_id: _Optional[str] = ..., frames: _Optional[_Iterable[_Union[_agent_stream_pb2.LogFrame, _Mapping]]] = ...) -> None: ...

class IngestLogsResponse(_message.Message):
    __slots__ = ["acks"]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[_agent_stream_pb2.LogAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[_agent_stream_pb2.LogAck, _Mapping]]] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ["attempt_id", "command_index", "data", "job_id", "marker", "offset", "partial", "replica_id", "replica_slot", "revision", "stage_name", "stream", "time"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_SLOT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    command_index: int
    data: bytes
    job_id: str
    marker: str
    offset: int
    partial: bool
    replica_id: str
    replica_slot: str
    revision: int
    stage_name: str
    stream: Stream
    time: _timestamp_pb2.Timestamp
    def __init__(self, attempt_id: _Optional[str] = ..., job_id: _Optional[str] = ..., stage_name: _Optional[str] = ..., command_index: _Optional[int] = ..., stream: _Optional[_Union[Stream, str]] = ..., offset: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[bytes] = ..., partial: bool = ..., marker: _Optional[str] = ..., replica_id: _Optional[str] = ..., replica_slot: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ReadLogsRequest(_message.Message):
    __slots__ = ["attempt_id", "deployment", "end_offset", "filter", "job_id", "limit_bytes", "offset", "page_token", "regex", "replica", "run_id", "since", "stage_name", "stream", "tail_lines", "until"]
    ATTEMPT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    STAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    attempt_id: str
    deployment: str
    end_offset: int
    filter: str
    job_id: str
    limit_bytes: int
    offset: int
    page_token: str
    regex: bool
    replica: str
    run_id: str
    since: _timestamp_pb2.Timestamp
    stage_name: str
    stream: Stream
    tail_lines: int
    until: _timestamp_pb2.Timestamp
    def __init__(self, attempt_id: _Optional[str] = ..., stream: _Optional[_Union[Stream, str]] = ..., offset: _Optional[int] = ..., limit_bytes: _Optional[int] = ..., job_id: _Optional[str] = ..., run_id: _Optional[str] = ..., stage_name: _Optional[str] = ..., end_offset: _Optional[int] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., tail_lines: _Optional[int] = ..., filter: _Optional[str] = ..., regex: bool = ..., page_token: _Optional[str] = ..., deployment: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class ReadLogsResponse(_message.Message):
    __slots__ = ["lines", "next_page_token", "truncated"]
    LINES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    next_page_token: str
    truncated: bool
    def __init__(self, truncated: bool = ..., lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class FollowFrom(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
