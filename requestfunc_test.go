package sockhop

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/nodepeer"
)

// echoServer answers every request with its own data.
func echoServer(t *testing.T, tr transport, o ServerOptions) *Server {
	t.Helper()
	srv := startServer(t, tr, o)
	srv.HandleDefault(func(ctx context.Context, m *Message) error {
		if m.IsRequest() {
			return m.Reply(ctx, m.JSON())
		}
		return nil
	})
	return srv
}

// pipeline makes n requests from one goroutine, at most window in flight,
// with RequestFunc, and checks every reply answers its own request.
func pipeline(t *testing.T, ctx context.Context, send func(context.Context, any, func(*Message, error)) error, n, window int) {
	t.Helper()
	sem := make(chan struct{}, window)
	calls := make([]atomic.Int32, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		err := send(ctx, map[string]int{"i": i}, func(m *Message, err error) {
			defer wg.Done()
			defer func() { <-sem }()
			calls[i].Add(1)
			if err != nil {
				errs <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			var v map[string]int
			if err := m.Decode(&v); err != nil || v["i"] != i {
				errs <- fmt.Errorf("request %d got reply %s (%v)", i, m.JSON(), err)
			}
		})
		if err != nil {
			t.Fatalf("RequestFunc %d: %v", i, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range calls {
		if k := calls[i].Load(); k != 1 {
			t.Errorf("request %d: function called %d times, want once", i, k)
		}
	}
}

// TestRequestFuncPipelined: one goroutine keeps 64 requests in flight on
// each transport and mode, from a client and from a session; every reply
// reaches the function of its own request, once.
func TestRequestFuncPipelined(t *testing.T) {
	for _, tr := range transports {
		for _, md := range modes {
			t.Run(tr.name+"/"+md.name, func(t *testing.T) {
				co := fastOpts()
				co.NoBinary = md.noBinary
				srv := echoServer(t, tr, ServerOptions{ConnOptions: co})
				c := startClient(t, tr, srv, ClientOptions{ConnOptions: co})
				c.HandleDefault(func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
				ctx := testCtx(t)
				pipeline(t, ctx, c.RequestFunc, 2000, 64)
				eventually(t, "the session", func() bool { return len(srv.Sessions()) == 1 })
				sess := srv.Sessions()[0]
				pipeline(t, ctx, sess.RequestFunc, 500, 16)
				equal(t, "client requests waiting", c.cur.pendingCount(), 0)
			})
		}
	}
}

// TestRequestFuncErrors: what RequestFunc refuses, it returns and never
// calls the function; what ends the wait later, the function gets once:
// its ctx's end (counted as timed out), the connection's end.
func TestRequestFuncErrors(t *testing.T) {
	tr := transports[0]
	release := make(chan struct{})
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	srv.Handle("Never", func(ctx context.Context, m *Message) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	t.Cleanup(func() { close(release) })
	co := fastOpts()
	co.MaxPendingRequests = 2
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: co})
	ctx := testCtx(t)
	never := func(m *Message, err error) { t.Errorf("function called for a request that was refused: %v", err) }

	errorIs(t, c.RequestFunc(ctx, Named{Type: "Never"}, nil), errNoFunc)
	done, cancel := context.WithCancel(ctx)
	cancel()
	errorIs(t, c.RequestFunc(done, Named{Type: "Never"}, never), context.Canceled)
	if err := c.RequestFunc(ctx, make(chan int), never); err == nil {
		t.Error("a value that cannot be encoded was accepted")
	}

	// The ctx's end: the function gets the ctx's error, once.
	got := make(chan error, 4)
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	noErr(t, c.RequestFunc(short, Named{Type: "Never"}, func(m *Message, err error) { got <- err }))
	errorIs(t, recv(t, got, "the timeout"), context.DeadlineExceeded)
	equal(t, "timed out", c.Stats().RequestsTimedOut, uint64(1))

	// MaxPendingRequests refuses at once.
	noErr(t, c.RequestFunc(ctx, Named{Type: "Never"}, func(m *Message, err error) { got <- err }))
	noErr(t, c.RequestFunc(ctx, Named{Type: "Never"}, func(m *Message, err error) { got <- err }))
	var se *Error
	err := c.RequestFunc(ctx, Named{Type: "Never"}, never)
	if !errors.As(err, &se) || se.Code != CodeTooManyRequests {
		t.Fatalf("third request over MaxPendingRequests 2: %v, want %s", err, CodeTooManyRequests)
	}

	// The connection's end fails both, once each.
	noErr(t, c.Close())
	errorIs(t, recv(t, got, "the first request failing"), ErrDisconnected)
	errorIs(t, recv(t, got, "the second request failing"), ErrDisconnected)
	select {
	case err := <-got:
		t.Fatalf("a function was called again: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestRequestFuncRace: replies and deadlines meet (deadlines about as long
// as a round trip): each function is still called exactly once, with a
// reply or the deadline.
func TestRequestFuncRace(t *testing.T) {
	tr := transports[1]
	srv := echoServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	ctx := testCtx(t)
	const n = 2000
	calls := make([]atomic.Int32, n)
	var replied, timedOut atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		rctx, cancel := context.WithTimeout(ctx, time.Duration(i%50)*time.Microsecond)
		defer cancel()
		wg.Add(1)
		err := c.RequestFunc(rctx, i, func(m *Message, err error) {
			defer wg.Done()
			calls[i].Add(1)
			switch {
			case err == nil:
				replied.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				timedOut.Add(1)
			default:
				t.Errorf("request %d: %v", i, err)
			}
		})
		if err != nil {
			wg.Done() // refused: its deadline had passed already
			errorIs(t, err, context.DeadlineExceeded)
		}
	}
	wg.Wait()
	for i := range calls {
		if k := calls[i].Load(); k > 1 {
			t.Errorf("request %d: function called %d times", i, k)
		}
	}
	t.Logf("%d replied, %d timed out", replied.Load(), timedOut.Load())
	eventually(t, "no request left waiting", func() bool { return c.cur.pendingCount() == 0 })
}

// TestRequestFuncPanic: a function that panics on the reading goroutine is
// reported; the connection keeps working.
func TestRequestFuncPanic(t *testing.T) {
	tr := transports[0]
	srv := echoServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	errs := make(chan error, 2)
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts(), OnError: func(c *Client, err error) { errs <- err }})
	ctx := testCtx(t)
	noErr(t, c.RequestFunc(ctx, "boom", func(*Message, error) { panic("boom") }))
	err := recv(t, errs, "the panic reported")
	if err == nil || !strings.Contains(err.Error(), "RequestFunc function panicked: boom") {
		t.Fatalf("reported %v", err)
	}
	m, err := c.Request(ctx, "after")
	noErr(t, err)
	equal(t, "reply after the panic", string(m.JSON()), `"after"`)
}

// TestRequestFuncHeld: a RequestFunc made while the client reconnects with
// a buffer is held, sent after the new handshake and answered.
func TestRequestFuncHeld(t *testing.T) {
	r := newRestartable(t, ServerOptions{ConnOptions: fastOpts()}, func(ctx context.Context, m *Message) error {
		return m.Reply(ctx, "answered:"+string(m.JSON()))
	})
	o := reconnectOpts(r.addr)
	o.ReconnectBufferSize = 4 << 10
	c := NewClient(o)
	defer c.Close()
	ctx := testCtx(t)
	noErr(t, c.Start(ctx))
	r.stop()
	eventually(t, "reconnect loop running", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.loop != nil
	})
	got := make(chan string, 1)
	noErr(t, c.RequestFunc(ctx, "held", func(m *Message, err error) {
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(m.JSON())
	}))
	r.start()
	equal(t, "held request's reply", recv(t, got, "the held request's reply"), `"answered:\"held\""`)
}

// TestNode2RequestFunc: pipelined requests to an emulated Node 2.1.0
// server right after Start, on both transports: the first ones go out
// while the switch to binary is being proven; every one is answered.
func TestNode2RequestFunc(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := node2Server(t, network, node2Addr(t, network), nodepeer.Options{ReadDelay: node2ReadDelay, Echo: true})
			c := node2Client(t, network, srv.Addr().String(), ClientOptions{})
			ctx := testCtx(t)
			noErr(t, c.Start(ctx))
			pipeline(t, ctx, c.RequestFunc, 200, 32)
			noErr(t, c.Close())
			p := node2Peer(t, srv, 0)
			node2Done(t, p)
			// Probes that share the peer's first read with the transition
			// line are skipped as corrupted, by design (transition.go);
			// every request was answered above.
			t.Logf("the Node peer reported %d corrupted pieces", p.Corrupted())
		})
	}
}
