"""Submits a job that runs `echo hello from python` and follows it with
WatchJob until it ends, printing each state it passes through. Exits 0 if the
job succeeded, 1 if it ended otherwise or a call failed.

The job's output is not printed: logs are not served yet (the Log service is a
later issue); the agent keeps them in the attempt's bundle.

With --without-exec it submits a job with no exec instead, to show how the
server refuses a bad request: it prints the status code (INVALID_ARGUMENT)
and the message, which names the field, and exits 1.

Environment: DROVER_ADDR, the host:port of Drover's gRPC port (default
127.0.0.1:7070, dev mode's); DROVER_TOKEN, an API or admin token (dev mode
prints its admin token and keeps it in .drover/admin-token).

    PYTHONPATH=sdk/python /usr/bin/python3 sdk/python/example.py
"""

import argparse
import json
import os
import sys

import drover_sdk  # first: it makes the generated drover.* modules importable

import grpc
from drover.common.v1 import exec_pb2
from drover.scheduler.v1 import scheduler_service_pb2 as scheduler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--without-exec", action="store_true", help="submit a job with no exec, to see the server refuse it")
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds (default 300)")
    args = parser.parse_args()

    addr = os.environ.get("DROVER_ADDR") or drover_sdk.DEFAULT_ADDR
    with drover_sdk.connect(addr) as drover:
        spec = scheduler.JobSpec(name="python-sdk-example")
        if not args.without_exec:
            spec.exec.CopyFrom(exec_pb2.ExecSpec(commands=[exec_pb2.Command(argv=["echo", "hello from python"])]))
        try:
            submitted = drover.scheduler.SubmitJob(scheduler.SubmitJobRequest(spec=spec), timeout=args.timeout)
        except grpc.RpcError as err:
            return failed("SubmitJob", err)
        job_id = submitted.job.id
        print(f"submitted job {job_id}", flush=True)

        # WatchJob sends the job as it stands, then again after each change,
        # and ends the stream once the job has reached a final state. The
        # timeout bounds the whole stream.
        last = None
        try:
            for res in drover.scheduler.WatchJob(scheduler.WatchJobRequest(id=job_id), timeout=args.timeout):
                if last is None or res.job.state != last.state:
                    print(f"job {job_id}: {state_name(res.job.state)}", flush=True)
                last = res.job
        except grpc.RpcError as err:
            return failed("WatchJob", err)

    if last is None or last.state != scheduler.JOB_STATE_SUCCEEDED:
        state = state_name(last.state) if last else "unknown"
        print(f"job {job_id} ended {state}: {last.end_reason if last else ''}", file=sys.stderr)
        return 1
    return 0


def state_name(state: int) -> str:
    """A job state without its enum prefix: "SUCCEEDED"."""
    return scheduler.JobState.Name(state).removeprefix("JOB_STATE_")


def failed(call: str, err: grpc.RpcError) -> int:
    """Prints a failed call's gRPC status code and message; returns the exit code."""
    print(f"{call} failed: code={err.code().name} message={json.dumps(err.details())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
