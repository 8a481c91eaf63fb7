package sockhop

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The server-wide memory budget (budget.go, issue 15 item 1). These tests
// run small: a budget of a few MiB, short stalls; the heap figures at full
// size are TestLoadBudget* (budget_load_test.go).

// budgetOpts is a server with a budget of budget bytes, messages up to
// msg bytes (before the handshake too: the raw peers here never
// handshake) and stall as MemoryBudgetStall.
func budgetOpts(budget int64, msg int, stall time.Duration) ServerOptions {
	o := ServerOptions{Addr: "127.0.0.1:0", ConnOptions: fastOpts(), MemoryBudget: budget, MemoryBudgetStall: stall}
	o.MaxMessageSize = msg
	o.MaxPreHandshakeSize = msg
	return o
}

// blobFrame is a binary frame (a typed buffer "Blob") of exactly size
// bytes on the wire.
func blobFrame(t testing.TB, size int) []byte {
	t.Helper()
	m := &wire.Message{Type: "Blob", Bytes: true}
	m.Data = make([]byte, size-wire.FrameSize(m))
	f, err := wire.AppendFrame(nil, m)
	noErr(t, err)
	if len(f) != size {
		t.Fatalf("frame of %d bytes, want %d", len(f), size)
	}
	return f
}

// rawBinaryPeer dials addr and switches its sending side to binary frames
// (a transition line), as a 1.x-style peer that never handshakes would.
func rawBinaryPeer(t testing.TB, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	noErr(t, err)
	t.Cleanup(func() { nc.Close() })
	line := wire.AppendJSONLine(nil, &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}, []byte("\n"))
	_, err = nc.Write(line)
	noErr(t, err)
	return nc
}

// budgetWatch samples a server's budget use until stopped and keeps the
// highest figure.
type budgetWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchBudget(srv *Server) *budgetWatch {
	w := &budgetWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if u := srv.bud.used.Load(); u > w.peak.Load() {
				w.peak.Store(u)
			}
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return w
}

func (w *budgetWatch) end() int64 {
	close(w.stop)
	<-w.done
	return w.peak.Load()
}

// healthyExchange checks that a fresh client gets a request answered.
func healthyExchange(t *testing.T, srv *Server) {
	t.Helper()
	c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	r, err := c.Request(testCtx(t), Named{Type: "Echo", Data: "healthy"})
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"healthy"`)
}

func budgetEchoServer(t *testing.T, o ServerOptions) (*Server, *errLog) {
	t.Helper()
	errs := &errLog{}
	o.OnError = errs.add
	srv := NewServer(o)
	srv.Handle("Echo", func(ctx context.Context, m *Message) error {
		if m.IsRequest() {
			return m.Reply(ctx, m.JSON())
		}
		return m.Session().Send(ctx, Named{Type: "Echo", Data: m.JSON()})
	})
	srv.Handle("Blob", func(ctx context.Context, m *Message) error { m.Release(); return nil })
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })
	return srv, errs
}

// TestBudgetHeaderOnlyPeers: 60 peers each send the header of a frame
// just under MaxMessageSize and nothing more. The budget is never
// exceeded (a header costs a first step of 64 KiB once the budget is half
// used, not the size announced); with the budget short, peers holding it
// without progress are cut with ErrMemoryBudget; a healthy client is
// served throughout; once the peers are gone the budget is all back.
func TestBudgetHeaderOnlyPeers(t *testing.T) {
	const budget, msg, peers = 4 << 20, 1 << 20, 60
	srv, errs := budgetEchoServer(t, budgetOpts(budget, msg, 200*time.Millisecond))
	w := watchBudget(srv)
	frame := blobFrame(t, msg-100)
	conns := make([]net.Conn, peers)
	for i := range conns {
		conns[i] = rawBinaryPeer(t, srv.Addr().String())
		_, err := conns[i].Write(frame[:16])
		noErr(t, err)
	}
	eventually(t, "all peers connected", func() bool { return len(srv.Sessions()) == peers })
	healthyExchange(t, srv)
	eventually(t, "peers holding budget without progress cut", func() bool { return srv.Stats().MemoryBudgetCuts > 0 })
	eventually(t, "the cut reported", func() bool { return errs.first(CodeMemoryBudget) != nil })
	t.Logf("budget cut: %v", errs.first(CodeMemoryBudget))
	healthyExchange(t, srv)
	for _, nc := range conns {
		nc.Close()
	}
	eventually(t, "no peer left", func() bool { return len(srv.Sessions()) == 0 })
	peak := w.end()
	st := srv.Stats()
	t.Logf("budget %d, peak use %d, cuts %d", budget, peak, st.MemoryBudgetCuts)
	// Beyond the budget: our handshake to each peer (queued whatever the
	// budget, as any connection's first message is) and the healthy
	// client's exchange.
	if allowed := int64(budget + (peers+1)*1024); peak > allowed {
		t.Errorf("budget use peaked at %d bytes, over the budget of %d + 1 KiB per connection", peak, budget)
	}
	equal(t, "budget limit in Stats", st.MemoryBudgetLimit, int64(budget))
	eventually(t, "the budget all given back", func() bool { return srv.Stats().MemoryBudgetUsed == 0 })
}

// TestBudgetNearlyCompleteFrames: 12 peers each send all but the last byte
// of a frame just under MaxMessageSize. No more than the budget is ever
// held for them: those that do not fit wait, unread (TCP backpressure);
// those holding budget without progress while it is short are cut; the
// healthy client is served; the budget is all back at the end.
func TestBudgetNearlyCompleteFrames(t *testing.T) {
	const budget, msg, peers = 4 << 20, 1 << 20, 12
	srv, errs := budgetEchoServer(t, budgetOpts(budget, msg, 300*time.Millisecond))
	w := watchBudget(srv)
	frame := blobFrame(t, msg-100)
	var wg sync.WaitGroup
	conns := make([]net.Conn, peers)
	for i := range conns {
		nc := rawBinaryPeer(t, srv.Addr().String())
		conns[i] = nc
		wg.Go(func() {
			_ = nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			_, _ = nc.Write(frame[:len(frame)-1]) // fails once the peer is cut
		})
	}
	eventually(t, "peers cut for holding budget", func() bool { return srv.Stats().MemoryBudgetCuts >= 2 })
	eventually(t, "the cut reported", func() bool { return errs.first(CodeMemoryBudget) != nil })
	errorIs(t, errs.first(CodeMemoryBudget), ErrMemoryBudget)
	healthyExchange(t, srv)
	for _, nc := range conns {
		nc.Close()
	}
	wg.Wait()
	eventually(t, "no peer left", func() bool { return len(srv.Sessions()) == 0 })
	peak := w.end()
	t.Logf("budget %d, peak use %d, cuts %d", budget, peak, srv.Stats().MemoryBudgetCuts)
	// Beyond the budget: our handshake to each peer (queued whatever the
	// budget, as any connection's first message is) and the healthy
	// client's exchange.
	if allowed := int64(budget + (peers+1)*1024); peak > allowed {
		t.Errorf("budget use peaked at %d bytes, over the budget of %d + 1 KiB per connection", peak, budget)
	}
	eventually(t, "the budget all given back", func() bool { return srv.Stats().MemoryBudgetUsed == 0 })
}

// TestBudgetPlentyNoCut: with room to spare, a peer that stops in the
// middle of a frame is not cut (slow senders are no threat then), and
// its frame, finished later, is delivered.
func TestBudgetPlentyNoCut(t *testing.T) {
	const msg = 256 << 10
	got := make(chan int, 1)
	o := budgetOpts(64<<20, msg, 50*time.Millisecond)
	srv := NewServer(o)
	srv.Handle("Blob", func(ctx context.Context, m *Message) error { got <- len(m.Bytes()); return nil })
	noErr(t, srv.Listen())
	defer srv.Close()
	nc := rawBinaryPeer(t, srv.Addr().String())
	frame := blobFrame(t, msg-100)
	_, err := nc.Write(frame[:msg/2])
	noErr(t, err)
	time.Sleep(200 * time.Millisecond) // four stalls
	_, err = nc.Write(frame[msg/2:])
	noErr(t, err)
	equal(t, "delivered bytes", recv(t, got, "the frame"), len(frame)-wire.FrameSize(&wire.Message{Type: "Blob", Bytes: true}))
	equal(t, "cuts", srv.Stats().MemoryBudgetCuts, uint64(0))
}

// stopReadingConn lets a client read its handshake, then stops reading,
// with a small kernel receive buffer, so the server's writes back up.
type stopReadingConn struct {
	net.Conn
	stop   atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (c *stopReadingConn) Read(p []byte) (int, error) {
	if c.stop.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *stopReadingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestBudgetNonReadingEchoPeers: 6 clients send messages to an echo
// server and never read its answers. The server's holding for them
// (queued answers, messages in handlers, frames being read) stays within
// the budget plus one message each way per connection, and comes back to
// nothing when they are gone. Large messages are bounded as frames being
// read, small ones (read through the shared read buffer) as messages
// waiting for handlers and queued answers.
func TestBudgetNonReadingEchoPeers(t *testing.T) {
	for _, size := range []int{256 << 10, 4 << 10} {
		t.Run(strconv.Itoa(size>>10)+"KiB", func(t *testing.T) { testBudgetNonReadingEchoPeers(t, size) })
	}
}

func testBudgetNonReadingEchoPeers(t *testing.T, size int) {
	const budget, msg, peers = 4 << 20, 1 << 20, 6
	o := budgetOpts(budget, msg, 10*time.Second)
	o.WriteTimeout = 30 * time.Second // the budget, not the write timeout, is under test
	srv, _ := budgetEchoServer(t, o)
	w := watchBudget(srv)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	payload := strings.Repeat("x", size)
	for range peers {
		var sc *stopReadingConn
		c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts(),
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				nc, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				nc.(*net.TCPConn).SetReadBuffer(16 << 10)
				sc = &stopReadingConn{Conn: nc, closed: make(chan struct{})}
				return sc, nil
			}})
		defer c.Close()
		noErr(t, c.Start(testCtx(t)))
		sc.stop.Store(true)
		wg.Go(func() {
			for ctx.Err() == nil {
				if c.Send(ctx, Named{Type: "Echo", Data: payload}) != nil {
					return
				}
			}
		})
	}
	wg.Wait() // the senders are blocked until ctx ends: the server stopped reading
	held := srv.Stats().MemoryBudgetUsed
	peak := w.end()
	// Per connection, beyond the budget: one answer queued and one message
	// in its handler.
	allowance := int64(peers * 2 * (size + 4<<10))
	t.Logf("budget %d, held while stalled %d, peak %d (allowed %d)", budget, held, peak, budget+allowance)
	if peak > budget+allowance {
		t.Errorf("budget use peaked at %d, over budget %d + %d", peak, budget, allowance)
	}
	if held == 0 {
		t.Error("nothing held for peers that do not read: the test did not load the server")
	}
	// Neither side reads what the other queued: cut short the flushes.
	sctx, scancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer scancel()
	_ = srv.Shutdown(sctx)
	equal(t, "budget after Shutdown", srv.Stats().MemoryBudgetUsed, int64(0))
}

// TestBudgetOption: a budget too small for a message is refused with an
// error naming the option.
func TestBudgetOption(t *testing.T) {
	o := ServerOptions{Addr: "127.0.0.1:0", MemoryBudget: 1 << 20}
	srv := NewServer(o)
	err := srv.Listen()
	if err == nil {
		srv.Close()
		t.Fatal("Listen accepted a budget smaller than two messages")
	}
	errorIs(t, err, &Error{Code: CodeBadOption})
	t.Logf("Listen: %v", err)
	noErr(t, srv.Close())
	// No budget at all: negative.
	srv = NewServer(ServerOptions{Addr: "127.0.0.1:0", MemoryBudget: -1, MaxHandlers: -1})
	noErr(t, srv.Listen())
	equal(t, "no budget", srv.Stats().MemoryBudgetLimit, int64(0))
	noErr(t, srv.Close())
}

// TestMaxHandlers: request handlers running at once across all sessions
// never exceed MaxHandlers, although each session would allow more, and
// every request is answered once they finish.
func TestMaxHandlers(t *testing.T) {
	const limit, clients, each = 6, 4, 5
	var running, peak atomic.Int32
	release := make(chan struct{})
	o := ServerOptions{Addr: "127.0.0.1:0", ConnOptions: fastOpts(), MaxHandlers: limit}
	srv := NewServer(o)
	srv.Handle("Work", func(ctx context.Context, m *Message) error {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		running.Add(-1)
		return m.Reply(ctx, "done")
	})
	noErr(t, srv.Listen())
	defer srv.Close()
	var wg sync.WaitGroup
	var answered atomic.Int32
	for range clients {
		c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
		defer c.Close()
		noErr(t, c.Start(testCtx(t)))
		for range each {
			wg.Go(func() {
				if _, err := c.Request(testCtx(t), Named{Type: "Work", Data: 1}); err == nil {
					answered.Add(1)
				}
			})
		}
	}
	eventually(t, "the bound reached", func() bool { return running.Load() == limit })
	time.Sleep(50 * time.Millisecond) // room for a handler over the bound to start
	equal(t, "handlers running", running.Load(), int32(limit))
	close(release)
	wg.Wait()
	equal(t, "requests answered", answered.Load(), int32(clients*each))
	equal(t, "most handlers at once", peak.Load(), int32(limit))
	runtime.Gosched()
}

// first returns the first logged error of code, or nil.
func (l *errLog) first(code string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		var e *Error
		if errors.As(err, &e) && e.Code == code {
			return err
		}
	}
	return nil
}
