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

DEPLOYMENT_STATE_FAILED: DeploymentState
DEPLOYMENT_STATE_PAUSED: DeploymentState
DEPLOYMENT_STATE_REVERTING: DeploymentState
DEPLOYMENT_STATE_ROLLING_OUT: DeploymentState
DEPLOYMENT_STATE_RUNNING: DeploymentState
DEPLOYMENT_STATE_STOPPED: DeploymentState
DEPLOYMENT_STATE_STOPPING: DeploymentState
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_WAITING_PROMOTION: DeploymentState
DESCRIPTOR: _descriptor.FileDescriptor
REPLICA_STATE_FAILED: ReplicaState
REPLICA_STATE_PENDING: ReplicaState
REPLICA_STATE_RUNNING: ReplicaState
REPLICA_STATE_STOPPED: ReplicaState
REPLICA_STATE_STOPPING: ReplicaState
REPLICA_STATE_UNSPECIFIED: ReplicaState

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

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDeploymentResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Deployment(_message.Message):
    __slots__ = ["create_time", "current_revision", "desired_replicas", "healthy_replicas", "id", "name", "replicas", "rollout", "stable_revision", "state", "status_message", "update_time"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    STABLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    current_revision: Revision
    desired_replicas: int
    healthy_replicas: int
    id: str
    name: str
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    rollout: Rollout
    stable_revision: int
    state: DeploymentState
    status_message: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., current_revision: _Optional[_Union[Revision, _Mapping]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., status_message: _Optional[str] = ..., desired_replicas: _Optional[int] = ..., stable_revision: _Optional[int] = ..., rollout: _Optional[_Union[Rollout, _Mapping]] = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., healthy_replicas: _Optional[int] = ...) -> None: ...

class DeploymentEvent(_message.Message):
    __slots__ = ["kind", "message", "replica_id", "revision", "sequence", "time"]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    replica_id: str
    revision: int
    sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., revision: _Optional[int] = ..., replica_id: _Optional[str] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ["ended_replicas", "name"]
    ENDED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ended_replicas: int
    name: str
    def __init__(self, name: _Optional[str] = ..., ended_replicas: _Optional[int] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ["deployment", "ended_replicas", "events"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    ENDED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    ended_replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    events: _containers.RepeatedCompositeFieldContainer[DeploymentEvent]
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., events: _Optional[_Iterable[_Union[DeploymentEvent, _Mapping]]] = ..., ended_replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ["deployments", "next_page_token"]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRevisionsRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListRevisionsResponse(_message.Message):
    __slots__ = ["current_revision", "revisions", "stable_revision"]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    STABLE_REVISION_FIELD_NUMBER: _ClassVar[int]
    current_revision: int
    revisions: _containers.RepeatedCompositeFieldContainer[Revision]
    stable_revision: int
    def __init__(self, revisions: _Optional[_Iterable[_Union[Revision, _Mapping]]] = ..., current_revision: _Optional[int] = ..., stable_revision: _Optional[int] = ...) -> None: ...

class PauseDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class PerAgent(_message.Message):
    __slots__ = ["labels"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PromoteDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PromoteDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ["agent_id", "canary", "create_time", "generation", "health", "id", "job_id", "message", "revision", "slot", "state"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    canary: bool
    create_time: _timestamp_pb2.Timestamp
    generation: int
    health: _service_pb2.HealthStatus
    id: str
    job_id: str
    message: str
    revision: int
    slot: str
    state: ReplicaState
    def __init__(self, id: _Optional[str] = ..., revision: _Optional[int] = ..., slot: _Optional[str] = ..., agent_id: _Optional[str] = ..., job_id: _Optional[str] = ..., state: _Optional[_Union[ReplicaState, str]] = ..., health: _Optional[_Union[_service_pb2.HealthStatus, _Mapping]] = ..., canary: bool = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class RestartDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RestartDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ResumeDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeDeploymentResponse(_message.Message):
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

class RollbackDeploymentRequest(_message.Message):
    __slots__ = ["name", "revision"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class RollbackDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ["batch", "batches", "desired", "end_time", "from_revision", "healthy", "in_flight", "start_time", "to_revision"]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    batch: int
    batches: int
    desired: int
    end_time: _timestamp_pb2.Timestamp
    from_revision: int
    healthy: int
    in_flight: int
    start_time: _timestamp_pb2.Timestamp
    to_revision: int
    def __init__(self, from_revision: _Optional[int] = ..., to_revision: _Optional[int] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., desired: _Optional[int] = ..., healthy: _Optional[int] = ..., in_flight: _Optional[int] = ..., batch: _Optional[int] = ..., batches: _Optional[int] = ...) -> None: ...

class ScaleDeploymentRequest(_message.Message):
    __slots__ = ["name", "replicas"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    name: str
    replicas: int
    def __init__(self, name: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class ScaleDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ["assign_port", "constraints", "driver", "exec", "health_check", "per_agent", "replace_unhealthy_after", "replicas", "resources", "restart", "update"]
    ASSIGN_PORT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    PER_AGENT_FIELD_NUMBER: _ClassVar[int]
    REPLACE_UNHEALTHY_AFTER_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    assign_port: bool
    constraints: _resources_pb2.Constraints
    driver: str
    exec: _exec_pb2.ExecSpec
    health_check: _service_pb2.HealthCheck
    per_agent: PerAgent
    replace_unhealthy_after: _duration_pb2.Duration
    replicas: int
    resources: _resources_pb2.Resources
    restart: _service_pb2.RestartPolicy
    update: UpdateStrategy
    def __init__(self, exec: _Optional[_Union[_exec_pb2.ExecSpec, _Mapping]] = ..., driver: _Optional[str] = ..., resources: _Optional[_Union[_resources_pb2.Resources, _Mapping]] = ..., constraints: _Optional[_Union[_resources_pb2.Constraints, _Mapping]] = ..., replicas: _Optional[int] = ..., per_agent: _Optional[_Union[PerAgent, _Mapping]] = ..., health_check: _Optional[_Union[_service_pb2.HealthCheck, _Mapping]] = ..., restart: _Optional[_Union[_service_pb2.RestartPolicy, _Mapping]] = ..., update: _Optional[_Union[UpdateStrategy, _Mapping]] = ..., assign_port: bool = ..., replace_unhealthy_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StopDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopDeploymentResponse(_message.Message):
    __slots__ = ["deployment"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class UpdateStrategy(_message.Message):
    __slots__ = ["auto_promote", "auto_revert", "canary", "healthy_deadline", "max_parallel", "min_healthy_time"]
    AUTO_PROMOTE_FIELD_NUMBER: _ClassVar[int]
    AUTO_REVERT_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    MAX_PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MIN_HEALTHY_TIME_FIELD_NUMBER: _ClassVar[int]
    auto_promote: bool
    auto_revert: bool
    canary: int
    healthy_deadline: _duration_pb2.Duration
    max_parallel: int
    min_healthy_time: _duration_pb2.Duration
    def __init__(self, max_parallel: _Optional[int] = ..., min_healthy_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., healthy_deadline: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., auto_revert: bool = ..., canary: _Optional[int] = ..., auto_promote: bool = ...) -> None: ...

class WatchDeploymentRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchDeploymentResponse(_message.Message):
    __slots__ = ["deployment", "events"]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    events: _containers.RepeatedCompositeFieldContainer[DeploymentEvent]
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., events: _Optional[_Iterable[_Union[DeploymentEvent, _Mapping]]] = ...) -> None: ...

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReplicaState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
