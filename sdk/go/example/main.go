// Command example submits a job that runs `echo hello from go` and follows it
// with WatchJob until it ends, printing each state it passes through. It
// exits 0 if the job succeeded, 1 if it ended otherwise or a call failed.
//
// The job's output is not printed: logs are not served yet (the Log service
// is a later issue); the agent keeps them in the attempt's bundle.
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

	// WatchJob sends the job as it stands, then again after each change, and
	// ends the stream once the job has reached a final state.
	stream, err := c.Scheduler.WatchJob(ctx, &schedulerv1.WatchJobRequest{Id: id})
	if err != nil {
		printError("WatchJob", err)
		return 1
	}
	var last *schedulerv1.Job
	for {
		res, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			printError("WatchJob", err)
			return 1
		}
		job := res.GetJob()
		if last == nil || job.GetState() != last.GetState() {
			fmt.Printf("job %s: %s\n", id, stateName(job.GetState()))
		}
		last = job
	}
	if last.GetState() != schedulerv1.JobState_JOB_STATE_SUCCEEDED {
		fmt.Fprintf(os.Stderr, "job %s ended %s: %s\n", id, stateName(last.GetState()), last.GetEndReason())
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
