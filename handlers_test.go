package sockhop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Handlers run on goroutines of their own (the dispatcher and request
// workers), or, with InlineHandlers, on the reader. These tests make
// handlers block, reply late, overlap and flood in the ways that would
// stop a connection whose reading waited for the wrong goroutine.

// handlerModes are the two ways handlers run.
var handlerModes = []struct {
	name   string
	inline bool
}{{"dispatched", false}, {"inline", true}}

// TestHandlerWaitsForLaterMessage: a request handler blocks until a
// message sent after the request is handled: the reading goes on while it
// waits, and the later message's handler runs.
func TestHandlerWaitsForLaterMessage(t *testing.T) {
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
		})
	}
}

// TestReplyWhileBlocked: a handler replies and then blocks until the
// client has the reply: the reply must leave at once, not when the handler
// returns. With InlineHandlers the reply is left for the reader, which
// writes it when the handler returns... which is after the client has it:
// so inline, the handler must not wait for its own reply, and the test
// checks the dispatched mode only.
func TestReplyWhileBlocked(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	gotReply := make(chan struct{})
	srv.Handle("Ask", func(ctx context.Context, m *Message) error {
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
}

// TestReplyAfterReturn: the handler hands the request to another
// goroutine and returns; the reply comes later and must not be left for
// a reader that is already blocked in a read.
func TestReplyAfterReturn(t *testing.T) {
	for _, hm := range handlerModes {
		t.Run(hm.name, func(t *testing.T) { testReplyAfterReturn(t, hm.inline) })
	}
}

func testReplyAfterReturn(t *testing.T, inline bool) {
	tr := transports[0]
	o := fastOpts()
	o.InlineHandlers = inline
	srv := startServer(t, tr, ServerOptions{ConnOptions: o})
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

// TestHandlersOverlap: the first request's handler waits for the second
// request's handler, both on one connection: the second must run while the
// first still blocks.
func TestHandlersOverlap(t *testing.T) {
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

// TestPlainOrder: plain handlers, some of them slow, run one after another
// in arrival order, in either handler mode.
func TestPlainOrder(t *testing.T) {
	for _, tr := range transports {
		for _, hm := range handlerModes {
			t.Run(tr.name+"/"+hm.name, func(t *testing.T) { testPlainOrder(t, tr, hm.inline) })
		}
	}
}

func testPlainOrder(t *testing.T, tr transport, inline bool) {
	o := fastOpts()
	o.InlineHandlers = inline
	srv := startServer(t, tr, ServerOptions{ConnOptions: o})
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
			// Slow, while later messages arrive.
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
}

// TestBidirectionalFlood: both sides answer each other's requests for large
// buffers at once, so replies are written while the peer may be writing
// too; a reader that waited for such a write to finish could wait for a
// peer waiting for it (inlineWriteMax hands the rest to the writer).
// Every request must be answered, none cut as a slow consumer.
func TestBidirectionalFlood(t *testing.T) {
	for _, hm := range handlerModes {
		t.Run(hm.name, func(t *testing.T) { testBidirectionalFlood(t, hm.inline) })
	}
}

func testBidirectionalFlood(t *testing.T, inline bool) {
	tr := transports[1] // Unix sockets, whose buffers are small
	o := fastOpts()
	o.WriteTimeout = 3 * time.Second
	o.InlineHandlers = inline
	echo := func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.Bytes()) }
	srv := startServer(t, tr, ServerOptions{ConnOptions: o})
	srv.Handle("Buffer", echo)
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: o})
	c.Handle("Buffer", echo)
	eventually(t, "the session to start", func() bool { return len(srv.Sessions()) == 1 })
	sess := srv.Sessions()[0]
	ctx := testCtx(t)
	payload := make([]byte, 1<<20)
	flood(t, ctx, []requester{c.Request, sess.Request}, 16, 4, payload, replyOf(len(payload)))
}

// TestRepliesFillQueue: a request handler replies, then sends more than
// MaxQueueBytes on its own connection. Inline, its reply was left for the
// reader, which is this handler; the send waiting for room must get the
// queue written anyway.
func TestRepliesFillQueue(t *testing.T) {
	for _, hm := range handlerModes {
		t.Run(hm.name, func(t *testing.T) { testRepliesFillQueue(t, hm.inline) })
	}
}

func testRepliesFillQueue(t *testing.T, inline bool) {
	tr := transports[0]
	o := fastOpts()
	o.MaxQueueBytes = 64 << 10
	o.InlineHandlers = inline
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
}

// TestInlineRequestOwnConnection: with InlineHandlers, a handler's Request
// on its own connection fails at once with ErrInlineRequest instead of
// waiting for a reply that could never be read; on another connection it
// works.
func TestInlineRequestOwnConnection(t *testing.T) {
	tr := transports[0]
	o := fastOpts()
	o.InlineHandlers = true
	other := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	other.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	srv := startServer(t, tr, ServerOptions{ConnOptions: o})
	oc := startClient(t, tr, other, ClientOptions{ConnOptions: fastOpts()})
	srv.Handle("Ask", func(ctx context.Context, m *Message) error {
		_, err := m.Session().Request(ctx, "back?")
		if !errors.Is(err, ErrInlineRequest) {
			return m.Reply(ctx, fmt.Sprintf("own connection: %v", err))
		}
		r, err := oc.Request(ctx, Named{Type: "Echo", Data: "elsewhere"})
		if err != nil {
			return m.Reply(ctx, fmt.Sprintf("other connection: %v", err))
		}
		return m.Reply(ctx, string(r.JSON()))
	})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	r, err := c.Request(testCtx(t), Named{Type: "Ask", Data: 1})
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"\"elsewhere\""`)
}
