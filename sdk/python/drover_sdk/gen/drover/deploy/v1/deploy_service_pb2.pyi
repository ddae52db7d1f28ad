from buf.validate import validate_pb2 as _validate_pb2
from drover.common.v1 import exec_pb2 as _exec_pb2
from drover.common.v1 import resources_pb2 as _resources_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApplyDeploymentRequest(_message.Message):
    __slots__ = ["name", "spec"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: ServiceSpec
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ...) -> None: ...

class ApplyDeploymentResponse(_message.Message):
    __slots__ = ["changed", "deployment"]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., changed: bool = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ["create_time", "current_revision", "id", "name", "update_time"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    current_revision: Revision
    id: str
    name: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., current_revision: _Optional[_Union[Revision, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ["create_time", "number", "spec", "spec_hash"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPEC_HASH_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    number: int
    spec: ServiceSpec
    spec_hash: str
    def __init__(self, number: _Optional[int] = ..., spec: _Optional[_Union[ServiceSpec, _Mapping]] = ..., spec_hash: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ["constraints", "driver", "exec", "replicas", "resources"]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    constraints: _resources_pb2.Constraints
    driver: str
    exec: _exec_pb2.ExecSpec
    replicas: int
    resources: _resources_pb2.Resources
    def __init__(self, exec: _Optional[_Union[_exec_pb2.ExecSpec, _Mapping]] = ..., driver: _Optional[str] = ..., resources: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., constraints: _Optional[_Union[_resources_pb2.Constraints, _Mapping]] = ..., replicas: _Optional[int] = ...) -> None: ...
