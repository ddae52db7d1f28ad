// Command example submits a job that runs `echo hello from go`, follows its
// output with LogService.FollowLogs until the job has ended and its output is
// complete (stdout to stdout, stderr to stderr, byte for byte), then prints
// the state it ended in. It exits 0 if the job succeeded, 1 if it ended
// otherwise or a call failed.
//
// With -without-exec it submits a job with no exec instead, to show how the
// server refuses a bad request: it prints the status code (InvalidArgument)
// and the message, which names the field, and exits 1.
//
// Environment: DROVER_ADDR, the host:port of Drover's gRPC port (default
// 127.0.0.1:7070, dev mode's); DROVER_TOKEN, an API or admin token (dev mode
// prints its admin token and keeps it in .drover/admin-token).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/status"

	"drover/sdk/go/drover"
	commonv1 "drover/sdk/go/gen/drover/common/v1"
	logv1 "drover/sdk/go/gen/drover/log/v1"
	schedulerv1 "drover/sdk/go/gen/drover/scheduler/v1"
)

func main() {
	withoutExec := flag.Bool("without-exec", false, "submit a job with no exec, to see the server refuse it")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	flag.Parse()

	addr := os.Getenv("DROVER_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7070"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	os.Exit(run(ctx, addr, os.Getenv("DROVER_TOKEN"), *withoutExec))
}

// run does the work and returns the exit code, so that deferred calls run
// before main exits.
func run(ctx context.Context, addr, token string, withoutExec bool) int {
	c, err := drover.Dial(ctx, addr, token)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial %s: %v\n", addr, err)
		return 1
	}
	defer c.Close()

	spec := &schedulerv1.JobSpec{
		Name: "go-sdk-example",
		Exec: &commonv1.ExecSpec{Commands: []*commonv1.Command{{Argv: []string{"echo", "hello from go"}}}},
	}
	if withoutExec {
		spec.Exec = nil
	}
	submitted, err := c.Scheduler.SubmitJob(ctx, &schedulerv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		printError("SubmitJob", err)
		return 1
	}
	id := submitted.GetJob().GetId()
	fmt.Printf("submitted job %s\n", id)

	// FollowLogs sends what is stored of every attempt of the job, then each
	// line as it is stored, and ends the stream once the job has ended and
	// its output is complete. Lines of the system stream (what the agent
	// writes about the attempt) are left out.
	follow, err := c.Log.FollowLogs(ctx, &logv1.FollowLogsRequest{JobId: id})
	if err != nil {
		printError("FollowLogs", err)
		return 1
	}
	out := map[logv1.Stream]*os.File{logv1.Stream_STREAM_STDOUT: os.Stdout, logv1.Stream_STREAM_STDERR: os.Stderr}
	for {
		res, err := follow.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			printError("FollowLogs", err)
			return 1
		}
		for _, line := range res.GetLines() {
			if f, ok := out[line.GetStream()]; ok {
				f.Write(line.GetData())
			}
		}
	}

	// The follow ended, so the job has too: ask how.
	got, err := c.Scheduler.GetJob(ctx, &schedulerv1.GetJobRequest{Id: id})
	if err != nil {
		printError("GetJob", err)
		return 1
	}
	job := got.GetJob()
	fmt.Printf("job %s: %s\n", id, stateName(job.GetState()))
	if job.GetState() != schedulerv1.JobState_JOB_STATE_SUCCEEDED {
		fmt.Fprintf(os.Stderr, "job %s ended %s: %s\n", id, stateName(job.GetState()), job.GetEndReason())
		return 1
	}
	return 0
}

// stateName is a job state without its enum prefix: "SUCCEEDED".
func stateName(s schedulerv1.JobState) string {
	return strings.TrimPrefix(s.String(), "JOB_STATE_")
}

// printError prints a failed call's gRPC status code and message.
func printError(call string, err error) {
	st := status.Convert(err)
	fmt.Fprintf(os.Stderr, "%s failed: code=%s message=%q\n", call, st.Code(), st.Message())
}
