from buf.validate import validate_pb2 as _validate_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

AUCTION_STATE_CLOSED: AuctionState
AUCTION_STATE_NO_CANDIDATES: AuctionState
AUCTION_STATE_OPEN: AuctionState
AUCTION_STATE_UNSPECIFIED: AuctionState
DESCRIPTOR: _descriptor.FileDescriptor

class Auction(_message.Message):
    __slots__ = ["candidates", "close_time", "create_time", "eligible_count", "explanation", "id", "ineligible", "job_id", "state", "winner_agent_id"]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WINNER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    close_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    eligible_count: int
    explanation: str
    id: str
    ineligible: _containers.RepeatedCompositeFieldContainer[IneligibleGroup]
    job_id: str
    state: AuctionState
    winner_agent_id: str
    def __init__(self, id: _Optional[str] = ..., job_id: _Optional[str] = ..., state: _Optional[_Union[AuctionState, str]] = ..., winner_agent_id: _Optional[str] = ..., explanation: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., close_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., ineligible: _Optional[_Iterable[_Union[IneligibleGroup, _Mapping]]] = ..., eligible_count: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ["agent_id", "outcome", "reason", "score"]
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = []
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_DECLINED: Candidate.Outcome
    OUTCOME_DEFERRED: Candidate.Outcome
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_NO_ANSWER: Candidate.Outcome
    OUTCOME_OUTBID: Candidate.Outcome
    OUTCOME_UNSPECIFIED: Candidate.Outcome
    OUTCOME_WON: Candidate.Outcome
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    outcome: Candidate.Outcome
    reason: str
    score: float
    def __init__(self, agent_id: _Optional[str] = ..., outcome: _Optional[_Union[Candidate.Outcome, str]] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ExplainPlacementRequest(_message.Message):
    __slots__ = ["job_id"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ExplainPlacementResponse(_message.Message):
    __slots__ = ["auctions", "explanation"]
    AUCTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    auctions: _containers.RepeatedCompositeFieldContainer[Auction]
    explanation: str
    def __init__(self, explanation: _Optional[str] = ..., auctions: _Optional[_Iterable[_Union[Auction, _Mapping]]] = ...) -> None: ...

class IneligibleGroup(_message.Message):
    __slots__ = ["count", "example_agent_ids", "reason"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    count: int
    example_agent_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ..., example_agent_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAuctionsRequest(_message.Message):
    __slots__ = ["job_id", "page_size", "page_token"]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuctionsResponse(_message.Message):
    __slots__ = ["auctions", "next_page_token"]
    AUCTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    auctions: _containers.RepeatedCompositeFieldContainer[Auction]
    next_page_token: str
    def __init__(self, auctions: _Optional[_Iterable[_Union[Auction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AuctionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
