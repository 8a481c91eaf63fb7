package sockhop

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// The production engine under testing/synctest: a Server and a Client over
// net.Pipe inside a bubble, where every timer the engine uses is the
// bubble's fake clock, so durations below are exact, not "about".

// syncPair starts a server with so and a client with co over net.Pipe
// inside the current bubble; both are closed at cleanup.
func syncPair(t *testing.T, so ServerOptions, co ClientOptions) (*Server, *Client) {
	t.Helper()
	l := newMemListener()
	l.size = 0 // net.Pipe
	return syncPairOn(t, l, so, co)
}

// TestBlockingRequestsThroughput: with 64 requests in flight to a handler
// that blocks for d, min(64, MaxConcurrentRequests) run at once, so n
// requests take n/min(64, limit) * d (at least 80% of that rate is asked
// for; in fake time it is exact).
func TestBlockingRequestsThroughput(t *testing.T) {
	for _, limit := range []int{0, 16} {
		t.Run(fmt.Sprintf("MaxConcurrentRequests=%d", limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const d = 2 * time.Millisecond
				const n = 640
				so := ServerOptions{ConnOptions: fastOpts()}
				so.MaxConcurrentRequests = limit
				srv, c := syncPair(t, so, ClientOptions{ConnOptions: fastOpts()})
				srv.Handle("Block", func(ctx context.Context, m *Message) error {
					time.Sleep(d)
					return m.Reply(ctx, 1)
				})
				noErr(t, c.Start(context.Background()))
				width := min(64, srv.o.MaxConcurrentRequests)
				start := time.Now()
				runRequests(t, c, 64, n)
				took := time.Since(start)
				ideal := time.Duration(n/width) * d
				t.Logf("%d requests, %d at a time, %s each: %s (ideal %s)", n, width, d, took, ideal)
				if took > ideal*10/8 {
					t.Fatalf("took %s, more than ideal/0.8 (%s): handlers did not run %d at a time", took, ideal*10/8, width)
				}
			})
		})
	}
}
