package sockhop

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// restartable runs a server at a fixed address that a test can stop and
// start again, as a crashed and restarted peer.
type restartable struct {
	t    *testing.T
	addr string
	o    ServerOptions
	h    Handler
	mu   sync.Mutex
	srv  *Server
}

func newRestartable(t *testing.T, o ServerOptions, h Handler) *restartable {
	r := &restartable{t: t, o: o, h: h, addr: "127.0.0.1:0"}
	r.start()
	r.addr = r.srv.Addr().String()
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.t.Helper()
	o := r.o
	o.Addr = r.addr
	srv := NewServer(o)
	srv.HandleDefault(r.h)
	noErr(r.t, srv.Listen())
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
}

func (r *restartable) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// reconnectOpts reconnect fast.
func reconnectOpts(addr string) ClientOptions {
	return ClientOptions{Addr: addr, ConnOptions: fastOpts(), AutoReconnect: true,
		ReconnectInterval: 20 * time.Millisecond, MaxReconnectInterval: 40 * time.Millisecond}
}

// TestReconnectAfterRestart: the server goes away and comes back; the
// client reconnects with a fresh handshake and carries on.
func TestReconnectAfterRestart(t *testing.T) {
	got := make(chan string, 16)
	r := newRestartable(t, ServerOptions{ConnOptions: fastOpts()}, func(ctx context.Context, m *Message) error {
		got <- string(m.JSON())
		return nil
	})
	hs := make(chan bool, 4)
	down := make(chan error, 4)
	o := reconnectOpts(r.addr)
	o.OnHandshake = func(c *Client, ok bool, err error) { hs <- ok }
	o.OnDisconnect = func(c *Client, err error) { down <- err }
	c := NewClient(o)
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	equal(t, "first handshake", recv(t, hs, "first handshake"), true)
	for round := range 3 {
		r.stop()
		recv(t, down, "disconnect")
		errorIs(t, c.Send(testCtx(t), "while down"), ErrNotConnected)
		r.start()
		equal(t, "handshake after restart", recv(t, hs, "handshake after restart"), true)
		eventually(t, "binary again", func() bool { return c.State().TxBinary })
		noErr(t, c.Send(testCtx(t), round))
		equal(t, "message after restart", recv(t, got, "message after restart"), fmt.Sprint(round))
	}
	st := c.Stats()
	equal(t, "reconnects", st.Reconnects, 3)
	equal(t, "connections", st.Connections, 4)
}

// TestReconnectFirstConnectFails: unlike the reference, a failed first
// connect is retried when AutoReconnect is on.
func TestReconnectFirstConnectFails(t *testing.T) {
	r := newRestartable(t, ServerOptions{ConnOptions: fastOpts()}, func(ctx context.Context, m *Message) error {
		return m.Reply(ctx, "up")
	})
	r.stop()
	attempts := make(chan int, 64)
	o := reconnectOpts(r.addr)
	o.OnReconnect = func(c *Client, attempt int, err error, next time.Duration) { attempts <- attempt }
	c := NewClient(o)
	defer c.Close()
	if err := c.Connect(testCtx(t)); err == nil {
		t.Fatal("Connect succeeded with no server")
	}
	equal(t, "first failed attempt", recv(t, attempts, "a failed reconnect attempt"), 1)
	r.start()
	eventually(t, "connected", func() bool { return c.State().HandshakeOK })
	reply, err := c.Request(testCtx(t), "are you up?")
	noErr(t, err)
	equal(t, "reply", string(reply.JSON()), `"up"`)
}

// TestReconnectBackoffAndGiveUp: waits double up to MaxReconnectInterval,
// the last attempt reports next 0, and held requests fail when it gives up.
func TestReconnectBackoffAndGiveUp(t *testing.T) {
	r := newRestartable(t, ServerOptions{ConnOptions: fastOpts()}, func(ctx context.Context, m *Message) error { return nil })
	type attempt struct {
		n    int
		next time.Duration
	}
	attempts := make(chan attempt, 16)
	o := reconnectOpts(r.addr)
	o.ReconnectInterval, o.MaxReconnectInterval = 10*time.Millisecond, 40*time.Millisecond
	o.MaxReconnectAttempts = 4
	o.ReconnectBufferSize = 1 << 10
	o.OnReconnect = func(c *Client, n int, err error, next time.Duration) { attempts <- attempt{n, next} }
	c := NewClient(o)
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	r.stop()
	eventually(t, "disconnected", func() bool { return !c.State().Connected })
	reqErr := make(chan error, 1)
	go func() {
		_, err := c.Request(testCtx(t), "held")
		reqErr <- err
	}()
	want := []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond, 0}
	for i, w := range want {
		a := recv(t, attempts, "a reconnect attempt")
		equal(t, "attempt number", a.n, i+1)
		equal(t, fmt.Sprint("next delay after attempt ", a.n), a.next, w)
	}
	if err := recv(t, reqErr, "the held request failing"); err == nil {
		t.Fatal("held request succeeded with no server")
	}
	errorIs(t, c.Send(testCtx(t), 1), ErrNotConnected)
}

// TestReconnectBuffer: with ReconnectBufferSize, sends and requests made
// while the server is down wait and go out, in order, after the new
// handshake; a request whose ctx ends while held is dropped; a full buffer
// refuses with ErrBufferFull; Close reports what was still held.
func TestReconnectBuffer(t *testing.T) {
	got := make(chan string, 64)
	r := newRestartable(t, ServerOptions{ConnOptions: fastOpts()}, func(ctx context.Context, m *Message) error {
		if m.IsRequest() {
			return m.Reply(ctx, "answered:"+string(m.JSON()))
		}
		got <- string(m.JSON())
		return nil
	})
	connected := make(chan struct{}, 4)
	errs := make(chan error, 4)
	o := reconnectOpts(r.addr)
	o.ReconnectBufferSize = 4 << 10
	o.OnConnect = func(c *Client) { connected <- struct{}{} }
	o.OnError = func(c *Client, err error) { errs <- err }
	c := NewClient(o)
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	recv(t, connected, "first connect")
	r.stop()
	eventually(t, "reconnect loop running", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.loop != nil
	})
	for i := range 10 {
		noErr(t, c.Send(testCtx(t), i))
	}
	// A request that gives up while held is dropped from the buffer.
	short, cancel := context.WithTimeout(testCtx(t), 30*time.Millisecond)
	_, err := c.Request(short, "impatient")
	cancel()
	errorIs(t, err, context.DeadlineExceeded)
	// The buffer holds whole messages up to its size.
	errorIs(t, c.Send(testCtx(t), make([]byte, 8<<10)), ErrBufferFull)
	reply := make(chan string, 1)
	go func() {
		m, err := c.Request(testCtx(t), "patient")
		if err != nil {
			reply <- err.Error()
			return
		}
		reply <- string(m.JSON())
	}()
	eventually(t, "request held", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.buf.items) == 11
	})
	r.start()
	recv(t, connected, "reconnect")
	for i := range 10 {
		equal(t, "held message in order", recv(t, got, "a held message"), fmt.Sprint(i))
	}
	equal(t, "held request answered", recv(t, reply, "held request's reply"), `"answered:\"patient\""`)
	select {
	case err := <-errs:
		t.Fatalf("unexpected error: %v", err)
	default:
	}

	// Held at Close: reported, counted, never silently lost.
	r.stop()
	eventually(t, "reconnect loop running again", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.loop != nil
	})
	noErr(t, c.Send(testCtx(t), "never sent"))
	err = c.Close()
	if err == nil || !strings.Contains(err.Error(), "1 message(s) held while reconnecting") {
		t.Errorf("Close with a message held: %v, want an error saying one was never sent", err)
	}
	errorIs(t, recv(t, errs, "drop report"), ErrClosed)
	equal(t, "dropped", c.Stats().BufferDropped, 1)
}

// TestRequireHandshake: a reconnection to a peer that does not handshake
// (a 1.x server came back in place of ours) is dropped and retried until a
// 2.x server answers.
func TestRequireHandshake(t *testing.T) {
	compat := ServerOptions{ConnOptions: silentOpts()}
	compat.CompatibilityMode = true
	r := newRestartable(t, ServerOptions{ConnOptions: fastOpts()}, func(ctx context.Context, m *Message) error { return nil })
	failures := make(chan error, 16)
	o := reconnectOpts(r.addr)
	o.HandshakeTimeout = 300 * time.Millisecond
	o.RequireHandshake = true
	o.OnReconnect = func(c *Client, n int, err error, next time.Duration) { failures <- err }
	c := NewClient(o)
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	r.stop()
	r.o = compat
	r.start()
	errorIs(t, recv(t, failures, "a reconnection refused for its handshake"), ErrHandshakeTimeout)
	r.stop()
	r.o = ServerOptions{ConnOptions: fastOpts()}
	r.start()
	eventually(t, "handshaked with the 2.x server", func() bool { return c.State().HandshakeOK })
}
