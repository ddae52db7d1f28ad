// Package drover dials a Drover control plane and hands out a client for
// each of its services, every call carrying the caller's bearer token.
//
//	c, err := drover.Dial(ctx, "127.0.0.1:7070", os.Getenv("DROVER_TOKEN"))
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Scheduler.SubmitJob(ctx, &schedulerv1.SubmitJobRequest{...})
//
// Errors are gRPC statuses: status.Code(err) is one of the 16 codes
// (codes.InvalidArgument for a request that is wrong whatever the state, with
// a message naming the field; codes.FailedPrecondition for one that is wrong
// in the current state; codes.Unauthenticated for a missing or bad token).
package drover

import (
	"context"

	"google.golang.org/grpc"

	bidv1 "drover/sdk/go/gen/drover/bid/v1"
	deployv1 "drover/sdk/go/gen/drover/deploy/v1"
	fleetv1 "drover/sdk/go/gen/drover/fleet/v1"
	logv1 "drover/sdk/go/gen/drover/log/v1"
	schedulerv1 "drover/sdk/go/gen/drover/scheduler/v1"
)

// Clients holds one connection to a Drover process and a client for each
// service on it; they share the connection and are safe for concurrent use.
type Clients struct {
	// Conn is the connection the clients share; Close closes it.
	Conn *grpc.ClientConn
	// Scheduler submits, watches and cancels jobs, runs and schedules.
	Scheduler schedulerv1.SchedulerServiceClient
	// Fleet manages agents and API tokens.
	Fleet fleetv1.FleetServiceClient
	// Deploy applies long-running deployments.
	Deploy deployv1.DeployServiceClient
	// Bid lists auctions and explains placements.
	Bid bidv1.BidServiceClient
	// Log reads and follows the output of jobs, attempts and runs.
	Log logv1.LogServiceClient
}

// Dial connects to the Drover process at addr (host:port of its gRPC port,
// 7070 in dev mode) and returns its clients. Every call made through them
// sends "authorization: Bearer <token>"; an empty token sends none.
//
// Drover serves gRPC over cleartext HTTP/2 (h2c), so the connection is not
// encrypted and neither is the token: use it on loopback or a network you
// trust. Like grpc.DialContext, Dial does not wait for the connection unless
// opts include grpc.WithBlock(); ctx only bounds that wait. opts are added
// after Drover's own options.
func Dial(ctx context.Context, addr, token string, opts ...grpc.DialOption) (*Clients, error) {
	dialOpts := []grpc.DialOption{grpc.WithInsecure()}
	if token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.DialContext(ctx, addr, append(dialOpts, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Clients{
		Conn:      conn,
		Scheduler: schedulerv1.NewSchedulerServiceClient(conn),
		Fleet:     fleetv1.NewFleetServiceClient(conn),
		Deploy:    deployv1.NewDeployServiceClient(conn),
		Bid:       bidv1.NewBidServiceClient(conn),
		Log:       logv1.NewLogServiceClient(conn),
	}, nil
}

// Close closes the connection; calls in flight fail with codes.Canceled.
func (c *Clients) Close() error {
	return c.Conn.Close()
}

// bearer is a token sent as per-call credentials, on unary and streaming
// calls alike.
type bearer string

// GetRequestMetadata adds the authorization header to one call.
func (t bearer) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity is false because Drover serves h2c: with true,
// gRPC refuses to send the credentials over an insecure connection.
func (bearer) RequireTransportSecurity() bool {
	return false
}
