"""Submits a job that runs `echo hello from python`, follows its output with
LogService.FollowLogs until the job has ended and its output is complete
(stdout to stdout, stderr to stderr, byte for byte), then prints the state it
ended in. Exits 0 if the job succeeded, 1 if it ended otherwise or a call
failed.

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
from drover.log.v1 import log_service_pb2 as log
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

        # FollowLogs sends what is stored of every attempt of the job, then
        # each line as it is stored, and ends the stream once the job has
        # ended and its output is complete. Lines of the system stream (what
        # the agent writes about the attempt) are left out. The timeout
        # bounds the whole stream.
        out = {log.STREAM_STDOUT: sys.stdout.buffer, log.STREAM_STDERR: sys.stderr.buffer}
        try:
            for res in drover.log.FollowLogs(log.FollowLogsRequest(job_id=job_id), timeout=args.timeout):
                for line in res.lines:
                    if line.stream in out:
                        out[line.stream].write(line.data)
                        out[line.stream].flush()
        except grpc.RpcError as err:
            return failed("FollowLogs", err)

        # The follow ended, so the job has too: ask how.
        try:
            job = drover.scheduler.GetJob(scheduler.GetJobRequest(id=job_id), timeout=args.timeout).job
        except grpc.RpcError as err:
            return failed("GetJob", err)

    print(f"job {job_id}: {state_name(job.state)}", flush=True)
    if job.state != scheduler.JOB_STATE_SUCCEEDED:
        print(f"job {job_id} ended {state_name(job.state)}: {job.end_reason}", file=sys.stderr)
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
