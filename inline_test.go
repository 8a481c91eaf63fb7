package sockhop

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Handlers of requests that may start at once run on the goroutine that
// read them (inline.go). These tests make such handlers block in the ways
// that would stop a connection whose reader waited for its handler, and
// check that nothing stops: the reading moves on.

// sessionStats returns the Stats of the server's only session.
func sessionStats(t *testing.T, srv *Server) Stats {
	t.Helper()
	ss := srv.Sessions()
	if len(ss) != 1 {
		t.Fatalf("server has %d sessions, want 1", len(ss))
	}
	return ss[0].Stats()
}

// TestInlineHandlerWaitsForLaterMessage: a request handler blocks until a
// message sent after the request is handled. Only a reader that moved on
// can read that message.
func TestInlineHandlerWaitsForLaterMessage(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			release := make(chan struct{})
			srv.Handle("Wait", func(ctx context.Context, m *Message) error {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				return m.Reply(ctx, "released")
			})
			srv.Handle("Release", func(context.Context, *Message) error {
				close(release)
				return nil
			})
			c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
			ctx := testCtx(t)
			replies := make(chan *Message, 1)
			errs := make(chan error, 1)
			go func() {
				r, err := c.Request(ctx, Named{Type: "Wait", Data: 1})
				if err != nil {
					errs <- err
					return
				}
				replies <- r
			}()
			// The request is on its way first (same connection, in order).
			eventually(t, "the request to be pending", func() bool { return c.Stats().RequestsPending == 1 })
			noErr(t, c.Send(ctx, Named{Type: "Release", Data: 1}))
			select {
			case r := <-replies:
				equal(t, "reply", string(r.JSON()), `"released"`)
			case err := <-errs:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatal("the blocked handler was never released: the connection stopped reading")
			}
			if n := sessionStats(t, srv).HandlerHandoffs; n < 1 {
				t.Errorf("HandlerHandoffs = %d, want at least 1", n)
			}
		})
	}
}

// TestInlineReplyWhileBlocked: a handler replies and then blocks until the
// client has the reply. Replying at once, the reply is left for the reader,
// and whoever moves the reading on must write it; replying after the
// handler lost the reader, the reply must leave at once, not when the
// handler returns.
func TestInlineReplyWhileBlocked(t *testing.T) {
	for _, lostFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "reply at once", true: "reply after losing the reader"}[lostFirst], func(t *testing.T) {
			tr := transports[0]
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			gotReply := make(chan struct{})
			srv.Handle("Ask", func(ctx context.Context, m *Message) error {
				if lostFirst {
					eventually(t, "the handler to be moved off the reader", func() bool {
						return m.Session().Stats().HandlerHandoffs > 0
					})
				}
				if err := m.Reply(ctx, "answer"); err != nil {
					return err
				}
				select {
				case <-gotReply:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
			r, err := c.Request(testCtx(t), Named{Type: "Ask", Data: 1})
			close(gotReply)
			noErr(t, err)
			equal(t, "reply", string(r.JSON()), `"answer"`)
		})
	}
}

// TestInlineReplyAfterReturn: the handler hands the request to another
// goroutine and returns; the reply comes later and must not be left for
// a reader that is already blocked in a read.
func TestInlineReplyAfterReturn(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	later := make(chan *Message, 1)
	srv.Handle("Later", func(ctx context.Context, m *Message) error {
		later <- m
		return nil
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case m := <-later:
			time.Sleep(20 * time.Millisecond) // the reader is back in its read
			_ = m.Reply(context.Background(), "done later")
		case <-time.After(10 * time.Second):
		}
	}()
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	r, err := c.Request(testCtx(t), Named{Type: "Later", Data: 1})
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"done later"`)
}

// TestInlineHandlersOverlap: the first request's handler waits for the
// second request's handler, both on one connection: the second must run
// while the first still blocks.
func TestInlineHandlersOverlap(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	secondRan := make(chan struct{})
	srv.Handle("First", func(ctx context.Context, m *Message) error {
		select {
		case <-secondRan:
		case <-ctx.Done():
			return ctx.Err()
		}
		return m.Reply(ctx, 1)
	})
	srv.Handle("Second", func(ctx context.Context, m *Message) error {
		close(secondRan)
		return m.Reply(ctx, 2)
	})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	ctx := testCtx(t)
	errs := make(chan error, 2)
	for _, typ := range []string{"First", "Second"} {
		go func() {
			_, err := c.Request(ctx, Named{Type: typ, Data: 0})
			errs <- err
		}()
		if typ == "First" {
			eventually(t, "the first request to be pending", func() bool { return c.Stats().RequestsPending == 1 })
		}
	}
	for range 2 {
		noErr(t, recv(t, errs, "a reply"))
	}
}

// TestInlinePlainOrder: a plain message's handler that outlasts the
// reader's patience is moved off it, and the messages after it still run
// one after another, in order, only once it has returned.
func TestInlinePlainOrder(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			var mu sync.Mutex
			var order []int
			running := false
			overlap := false
			done := make(chan struct{})
			const n = 200
			srv.Handle("Step", func(ctx context.Context, m *Message) error {
				var i int
				if err := m.Decode(&i); err != nil {
					return err
				}
				mu.Lock()
				overlap = overlap || running
				running = true
				mu.Unlock()
				if i == 0 || i == n/2 {
					// Long enough for the watcher to move the reading on
					// while later messages arrive.
					eventually(t, "the handler to be moved off the reader", func() bool {
						return m.Session().Stats().HandlerHandoffs > 0
					})
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				running = false
				order = append(order, i)
				if len(order) == n {
					close(done)
				}
				mu.Unlock()
				return nil
			})
			c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
			ctx := testCtx(t)
			for i := range n {
				noErr(t, c.Send(ctx, Named{Type: "Step", Data: i}))
			}
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("not every message was handled")
			}
			mu.Lock()
			defer mu.Unlock()
			if overlap {
				t.Error("two plain handlers of one connection ran at once")
			}
			for i, v := range order {
				if v != i {
					t.Fatalf("handled out of order at %d: %v", i, order[max(0, i-3):min(len(order), i+3)])
				}
			}
		})
	}
}

// TestBidirectionalFlood: both sides answer each other's requests for large
// buffers at once, so readers write replies while the peer's reader may
// be writing too; a reader that waited for such a write to finish could
// wait for a peer waiting for it (inlineWriteMax hands the rest to the
// writer). Every request must be answered, none cut as a slow consumer.
func TestBidirectionalFlood(t *testing.T) {
	tr := transports[1] // Unix sockets, whose buffers are small
	o := fastOpts()
	o.WriteTimeout = 3 * time.Second
	echo := func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.Bytes()) }
	srv := startServer(t, tr, ServerOptions{ConnOptions: o})
	srv.Handle("Buffer", echo)
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: o})
	c.Handle("Buffer", echo)
	eventually(t, "the session to start", func() bool { return len(srv.Sessions()) == 1 })
	sess := srv.Sessions()[0]
	ctx := testCtx(t)
	payload := make([]byte, 1<<20)
	const workers, each = 16, 4
	errs := make(chan error, 2*workers)
	var wg sync.WaitGroup
	for _, req := range []func(context.Context, any) (*Message, error){c.Request, sess.Request} {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					r, err := req(ctx, payload)
					if err == nil && len(r.Bytes()) != len(payload) {
						err = fmt.Errorf("reply of %d bytes", len(r.Bytes()))
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestInlineRepliesFillQueue: a request handler running on the reader
// replies, then sends more than MaxQueueBytes on its own connection. Its
// reply was left for the reader, which is this handler; the send waiting
// for room must get the queue written anyway.
func TestInlineRepliesFillQueue(t *testing.T) {
	tr := transports[0]
	o := fastOpts()
	o.MaxQueueBytes = 64 << 10
	srv := startServer(t, tr, ServerOptions{ConnOptions: o})
	srv.Handle("Ask", func(ctx context.Context, m *Message) error {
		if err := m.Reply(ctx, "answer"); err != nil {
			return err
		}
		chunk := make([]byte, 40<<10)
		for range 8 { // 320 KiB through a 64 KiB queue
			if err := m.Session().Send(ctx, chunk); err != nil {
				return err
			}
		}
		return nil
	})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	got := make(chan int, 8)
	c.Handle("Buffer", func(ctx context.Context, m *Message) error {
		got <- len(m.Bytes())
		return nil
	})
	r, err := c.Request(testCtx(t), Named{Type: "Ask", Data: 1})
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"answer"`)
	for range 8 {
		equal(t, "chunk", recv(t, got, "a chunk"), 40<<10)
	}
	if n := sessionStats(t, srv).HandlerHandoffs; n != 0 {
		t.Logf("handler moved off the reader %d times (the sends waited for room)", n)
	}
}
