"""Drover's Python SDK: a client for each of Drover's gRPC services, every
call carrying the caller's bearer token.

    import drover_sdk
    from drover.common.v1 import exec_pb2
    from drover.scheduler.v1 import scheduler_service_pb2 as scheduler

    with drover_sdk.connect("127.0.0.1:7070") as drover:   # token: DROVER_TOKEN
        res = drover.scheduler.SubmitJob(scheduler.SubmitJobRequest(spec=scheduler.JobSpec(
            exec=exec_pb2.ExecSpec(commands=[exec_pb2.Command(argv=["echo", "hi"])]))))

Errors are grpc.RpcError with .code() one of the 16 gRPC codes:
INVALID_ARGUMENT for a request that is wrong whatever the state, with a
.details() naming the field ("spec.exec: value is required [required]");
FAILED_PRECONDITION for one that is wrong in the current state;
UNAUTHENTICATED for a missing or bad token.

The message and stub modules are generated into drover_sdk/gen (by
scripts/generate-python-sdk.sh) and import each other by their proto package
path (drover.scheduler.v1, buf.validate), so importing drover_sdk puts that
directory first on sys.path: import drover_sdk before them.
"""

import os
import sys
from typing import Optional

_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
if _GEN not in sys.path:
    sys.path.insert(0, _GEN)

import grpc  # noqa: E402  (after the sys.path change, like the imports below)

from drover.bid.v1 import bid_service_pb2_grpc  # noqa: E402
from drover.deploy.v1 import deploy_service_pb2_grpc  # noqa: E402
from drover.fleet.v1 import fleet_service_pb2_grpc  # noqa: E402
from drover.log.v1 import log_service_pb2_grpc  # noqa: E402
from drover.scheduler.v1 import scheduler_service_pb2_grpc  # noqa: E402

__all__ = ["DEFAULT_ADDR", "Client", "connect"]

#: Dev mode's gRPC port on this machine.
DEFAULT_ADDR = "127.0.0.1:7070"


class Client:
    """One channel to a Drover process and a stub for each service on it.

    The stubs share the channel and are safe to use from several threads.
    Use it as a context manager, or call close().
    """

    def __init__(self, channel: grpc.Channel):
        #: The channel the stubs share (with the token interceptor).
        self.channel = channel
        #: Submits, watches and cancels jobs, runs and schedules.
        self.scheduler = scheduler_service_pb2_grpc.SchedulerServiceStub(channel)
        #: Manages agents and API tokens.
        self.fleet = fleet_service_pb2_grpc.FleetServiceStub(channel)
        #: Lists auctions and explains placements.
        self.bid = bid_service_pb2_grpc.BidServiceStub(channel)
        #: Applies long-running deployments.
        self.deploy = deploy_service_pb2_grpc.DeployServiceStub(channel)
        #: Reads and follows the output of jobs, attempts and runs.
        self.log = log_service_pb2_grpc.LogServiceStub(channel)

    def close(self) -> None:
        """Closes the channel; calls in flight fail with CANCELLED."""
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(addr: str = DEFAULT_ADDR, token: Optional[str] = None) -> Client:
    """Returns a Client for the Drover process at addr (host:port of its gRPC
    port). Every call sends "authorization: Bearer <token>", the token being
    `token` or else the DROVER_TOKEN environment variable; with neither, none.

    Drover serves gRPC over cleartext HTTP/2 (h2c), so the channel is insecure
    and the token travels unencrypted: use it on loopback or a network you
    trust. gRPC refuses call credentials on an insecure channel, hence an
    interceptor. Like grpc.insecure_channel, this does not wait for the
    connection: the first call does.
    """
    if token is None:
        token = os.environ.get("DROVER_TOKEN") or None
    channel = grpc.insecure_channel(addr)
    if token:
        channel = grpc.intercept_channel(channel, _Bearer(token))
    return Client(channel)


class _CallDetails(grpc.ClientCallDetails):
    """A call's details with other metadata: grpc.ClientCallDetails is an
    interface with no constructor of its own."""

    def __init__(self, details: grpc.ClientCallDetails, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = details.wait_for_ready
        self.compression = details.compression


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the authorization header to every call, whatever its kind."""

    def __init__(self, token: str):
        self._header = ("authorization", "Bearer " + token)

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details, [*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)
