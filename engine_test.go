package sockhop

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Regression tests of the engine issue ("correct by construction"): each
// failed on the engine before it (handlers watched on the reader, replies
// left for it, a fixed transition hold).

// TestTLSBothWaysLargeRequests: both sides send 3 MiB requests to each
// other at once over TLS on a Unix socket, and answer each with 2 MiB of
// JSON. A reader that writes a reply to a TLS peer (whose own reader is
// writing to us) could wait on it until WriteTimeout: that failed every
// time with "slow consumer". Nothing on TLS may be written by a reader.
func TestTLSBothWaysLargeRequests(t *testing.T) {
	p := certs(t)
	o := fastOpts()
	o.WriteTimeout = 3 * time.Second
	big := strings.Repeat("r", 2<<20)
	echo := func(ctx context.Context, m *Message) error { return m.Reply(ctx, big) }
	for _, hm := range handlerModes {
		t.Run(hm.name, func(t *testing.T) {
			o.InlineHandlers = hm.inline
			srv := startServer(t, transports[1], ServerOptions{ConnOptions: o,
				TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.server}}})
			srv.Handle("Buffer", echo)
			c := startClient(t, transports[1], srv, ClientOptions{ConnOptions: o,
				TLSConfig: &tls.Config{RootCAs: p.caPool, ServerName: "localhost"}})
			c.Handle("Buffer", echo)
			eventually(t, "the session to start", func() bool { return len(srv.Sessions()) == 1 })
			sess := srv.Sessions()[0]
			eventually(t, "the session to send binary", func() bool { return sess.State().TxBinary })
			ctx := testCtx(t)
			reqs := []requester{c.Request, sess.Request}
			flood(t, ctx, reqs, 1, 8, make([]byte, 3<<20), func(r *Message) error {
				if len(r.JSON()) != len(big)+2 {
					return fmt.Errorf("reply of %d bytes", len(r.JSON()))
				}
				return nil
			})
		})
	}
}

// TestPongDuringBackpressure: a peer that pings while our outbound queue is
// full of our own sends is answered (control messages have headroom); the
// connection used to be cut as a slow consumer at the first such ping,
// although the docs promise that a full queue makes Send wait, not fail.
func TestPongDuringBackpressure(t *testing.T) {
	o := ServerOptions{ConnOptions: fastOpts()}
	o.CompatibilityMode = true // a 1.x-style raw peer: JSON lines only
	o.MaxQueueBytes = 64 << 10
	started := make(chan *Session, 1)
	o.OnSessionStart = func(_ context.Context, s *Session) error { started <- s; return nil }
	srv := startServer(t, transports[1], o) // Unix: small socket buffers
	raw, err := net.Dial("unix", srv.o.Path)
	noErr(t, err)
	defer raw.Close()
	sess := recv(t, started, "the session")
	ctx := testCtx(t)

	// Fill everything between us and the peer, which does not read yet,
	// with small messages, so the queue fills to within a few bytes of
	// MaxQueueBytes.
	chunk := strings.Repeat("s", 100)
	sendErr := make(chan error, 1)
	var sent atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				sendErr <- nil
				return
			default:
			}
			if err := sess.Send(ctx, chunk); err != nil {
				sendErr <- err
				return
			}
			sent.Add(1)
		}
	}()
	eventually(t, "a Send to wait for room", func() bool {
		sess.c.q.mu.Lock()
		defer sess.c.q.mu.Unlock()
		return sess.c.q.waiters > 0
	})
	// Pings, while Send waits for room.
	const pings = 50
	for i := range pings {
		line := fmt.Sprintf(`{"type":"SockhopPing","data":{"_id":"p%d","_created":null,"_returned":null,"_finished":null}}`+"\n", i)
		if _, err := raw.Write([]byte(line)); err != nil {
			t.Fatalf("writing ping %d: %v; the session ended: %v", i, err, sess.Err())
		}
	}
	eventually(t, "the pings to be read", func() bool { return sess.Err() != nil || sess.Stats().JSONMessagesIn >= pings })
	if err := sess.Err(); err != nil {
		t.Fatalf("the session ended while the peer pinged: %v", err)
	}
	// Now the peer reads everything: every pong arrives among our sends.
	close(stop)
	pongs := 0
	br := bufio.NewReaderSize(raw, 64<<10)
	for pongs < pings {
		_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		noErr(t, err)
		if strings.Contains(line, `"SockhopPong"`) {
			pongs++
		}
	}
	noErr(t, recv(t, sendErr, "the sender to stop"))
	t.Logf("%d pongs answered among %d messages sent through a 64 KiB queue", pongs, sent.Load())
}

// TestCloseFromHooks: Client.Close and Server.Close called from inside
// every hook return, and the hook itself returns. Close from OnDisconnect
// used to wait for the closer goroutine that was running that very hook.
func TestCloseFromHooks(t *testing.T) {
	type hookCase struct {
		name string
		run  func(t *testing.T) // makes the hook fire and waits for it
	}
	cases := []hookCase{
		{"client OnDisconnect", func(t *testing.T) {
			srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
			ret := make(chan struct{})
			var c *Client
			c = NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts(),
				OnDisconnect: func(*Client, error) { c.Close(); close(ret) }})
			noErr(t, c.Start(testCtx(t)))
			eventually(t, "the session", func() bool { return len(srv.Sessions()) == 1 })
			srv.Sessions()[0].Close()
			recv(t, ret, "Close to return inside OnDisconnect")
		}},
		{"client OnConnect during a reconnect", func(t *testing.T) {
			srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
			ret := make(chan struct{})
			var connects atomic.Int32
			var c *Client
			c = NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts(),
				AutoReconnect: true, ReconnectInterval: 10 * time.Millisecond,
				OnConnect: func(*Client) {
					if connects.Add(1) == 2 {
						c.Close()
						close(ret)
					}
				}})
			noErr(t, c.Start(testCtx(t)))
			eventually(t, "the session", func() bool { return len(srv.Sessions()) == 1 })
			srv.Sessions()[0].Close()
			recv(t, ret, "Close to return inside OnConnect of a reconnection")
			c.Close()
		}},
		{"client OnHandshake", func(t *testing.T) {
			srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
			ret := make(chan struct{})
			var c *Client
			c = NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts(),
				OnHandshake: func(*Client, bool, error) { c.Close(); close(ret) }})
			_ = c.Connect(testCtx(t))
			recv(t, ret, "Close to return inside OnHandshake")
		}},
		{"client OnError", func(t *testing.T) {
			srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
			srv.Handle("Bad", func(ctx context.Context, m *Message) error {
				// A reply the client is not waiting for: an OnError there.
				return m.Session().c.send(ctx, &wire.Message{Type: "X", Data: []byte("1"), Kind: wire.Response, ID: "nobody"}, false, queued)
			})
			ret := make(chan struct{})
			var once sync.Once
			var c *Client
			c = NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts(),
				OnError: func(*Client, error) { once.Do(func() { c.Close(); close(ret) }) }})
			noErr(t, c.Start(testCtx(t)))
			noErr(t, c.Send(testCtx(t), Named{Type: "Bad", Data: 1}))
			recv(t, ret, "Close to return inside OnError")
		}},
		{"server OnSessionEnd", func(t *testing.T) {
			ret := make(chan struct{})
			var srv *Server
			o := ServerOptions{ConnOptions: fastOpts(),
				OnSessionEnd: func(*Session, error) { srv.Close(); close(ret) }}
			transports[0].server(t, &o)
			srv = NewServer(o)
			noErr(t, srv.Listen())
			t.Cleanup(func() { srv.Close() })
			c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
			c.Close()
			recv(t, ret, "Server.Close to return inside OnSessionEnd")
		}},
		{"server OnHandshake", func(t *testing.T) {
			ret := make(chan struct{})
			var srv *Server
			o := ServerOptions{ConnOptions: fastOpts(),
				OnHandshake: func(*Session, bool, error) { srv.Close(); close(ret) }}
			transports[0].server(t, &o)
			srv = NewServer(o)
			noErr(t, srv.Listen())
			t.Cleanup(func() { srv.Close() })
			c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
			defer c.Close()
			_ = c.Connect(testCtx(t))
			recv(t, ret, "Server.Close to return inside OnHandshake")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

// TestStartCloseRace: a Close that lands between the connection's
// registration and its start (the not-started close path) used to leave
// Start waiting for a handshake that never came, until its ctx ended.
func TestStartCloseRace(t *testing.T) {
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
	c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
	testHookBeforeStart = func() { c.Close() }
	t.Cleanup(func() { testHookBeforeStart = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begun := time.Now()
	err := c.Start(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Start waited for its ctx (%s) after Close: %v", time.Since(begun), err)
	}
	errorIs(t, err, ErrClosed)
}

// TestBlockingRequestsRunConcurrently: 64 requests in flight to a handler
// that blocks for d run min(64, MaxConcurrentRequests) at a time. Handlers
// run on the reader ran one or two at a time (534 round trips/s with
// d = 2 ms instead of about 30,000). Here the handler sleeps 20 ms and
// the test counts how many run at once; the timing-exact version is
// TestBlockingRequestsThroughput, under synctest.
func TestBlockingRequestsRunConcurrently(t *testing.T) {
	for _, limit := range []int{0, 16} {
		t.Run(fmt.Sprintf("MaxConcurrentRequests=%d", limit), func(t *testing.T) {
			o := fastOpts()
			o.MaxConcurrentRequests = limit
			srv := startServer(t, transports[0], ServerOptions{ConnOptions: o})
			var running, peak atomic.Int32
			srv.Handle("Block", func(ctx context.Context, m *Message) error {
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(20 * time.Millisecond)
				running.Add(-1)
				return m.Reply(ctx, 1)
			})
			c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
			want := min(64, srv.o.MaxConcurrentRequests)
			runRequests(t, c, 64, 6*64)
			if got := int(peak.Load()); got < want*8/10 {
				t.Fatalf("at most %d handlers ran at once, want about %d", got, want)
			} else if got > want {
				t.Fatalf("%d handlers ran at once, more than MaxConcurrentRequests (%d)", got, want)
			}
		})
	}
}

// runRequests makes n requests of type "Block", inflight at a time.
func runRequests(t *testing.T, c *Client, inflight, n int) {
	t.Helper()
	flood(t, testCtx(t), []requester{c.Request}, inflight, n/inflight, Named{Type: "Block", Data: 1}, func(*Message) error { return nil })
}
