package sockhop

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFragmentedRelay (R4): 10,000 messages of every kind through a relay
// that forwards a few bytes at a time arrive complete and in order, in both
// modes.
func TestFragmentedRelay(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			const n = 10000
			seen := make(chan string, n)
			srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
			srv.HandleDefault(func(ctx context.Context, m *Message) error {
				if m.IsRequest() {
					return m.Reply(ctx, m.JSON())
				}
				if m.IsBytes() {
					seen <- fmt.Sprintf("%s:%x", m.Type, m.Bytes())
				} else {
					seen <- m.Type + ":" + string(m.JSON())
				}
				return nil
			})
			r := newRelay(t, srv.Addr().String(), 3)
			o := ClientOptions{Addr: r.addr(), ConnOptions: fastOpts()}
			o.NoBinary = md.noBinary
			c := NewClient(o)
			defer c.Close()
			noErr(t, c.Start(testCtx(t)))
			ctx := testCtx(t)
			want := make([]string, 0, n)
			for i := range n {
				switch i % 4 {
				case 0:
					noErr(t, c.Send(ctx, Widget{ID: i, Tags: []string{"\n", "é"}}))
					want = append(want, fmt.Sprintf(`Widget:{"id":%d,"tags":["\n","é"]}`, i))
				case 1:
					noErr(t, c.Send(ctx, []byte{byte(i), 10, 0}))
					want = append(want, fmt.Sprintf("Buffer:%02x0a00", byte(i)))
				case 2:
					if md.noBinary {
						noErr(t, c.Send(ctx, fmt.Sprint(i)))
						want = append(want, fmt.Sprintf(`String:"%d"`, i))
					} else {
						noErr(t, c.SendTyped(ctx, "Tile", []byte{byte(i)}))
						want = append(want, fmt.Sprintf("Tile:%02x", byte(i)))
					}
				case 3:
					if i%100 == 3 {
						r, err := c.Request(ctx, i)
						noErr(t, err)
						equal(t, "reply", string(r.JSON()), fmt.Sprint(i))
					}
					noErr(t, c.Send(ctx, i))
					want = append(want, fmt.Sprintf("Number:%d", i))
				}
			}
			for i, w := range want {
				if got := recv(t, seen, "message "+fmt.Sprint(i)); got != w {
					t.Fatalf("message %d: got %s, want %s", i, got, w)
				}
			}
		})
	}
}

// TestConcurrentSendsAndClose (R12): 100 goroutines send while the server
// broadcasts and the client closes midway: no race, no interleaved frame
// (the server sees only whole messages), every Send after Close fails with
// ErrClosed.
func TestConcurrentSendsAndClose(t *testing.T) {
	var log errLog
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts(), OnError: log.add})
	received := make(chan struct{}, 1<<20)
	srv.Handle("Widget", func(ctx context.Context, m *Message) error {
		var w Widget
		if err := m.Decode(&w); err != nil {
			return err
		}
		received <- struct{}{}
		return nil
	})
	c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var afterClose sync.Map
	stopBroadcast := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopBroadcast:
				return
			default:
				_ = srv.SendAll(ctx, "tick")
			}
		}
	}()
	closed := make(chan struct{})
	var senders sync.WaitGroup
	for g := range 100 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := range 1000 {
				err := c.Send(ctx, Widget{ID: g*1000 + i, Tags: []string{strings.Repeat("z", i%50)}})
				select {
				case <-closed:
					if err == nil {
						afterClose.Store(g, "Send after Close returned nil")
					} else if !isClosedErr(err) {
						afterClose.Store(g, err.Error())
					}
				default:
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	noErr(t, c.Close())
	close(closed)
	noErr(t, c.Close())
	senders.Wait()
	close(stopBroadcast)
	wg.Wait()
	afterClose.Range(func(k, v any) bool {
		t.Errorf("sender %v after Close: %v", k, v)
		return true
	})
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, err := range log.errs {
		// The server reports the broadcasts it had queued and never wrote
		// when the client went away: that is not a protocol error.
		if !errors.Is(err, ErrDisconnected) {
			t.Fatalf("server saw protocol errors (an interleaved frame?): %v", err)
		}
	}
	t.Logf("server handled %d whole messages before the close", len(received))
}

func isClosedErr(err error) bool { return err != nil && (errors.Is(err, ErrClosed)) }

// TestChurn (R6): connect, handshake, one request, close, many times over
// TCP and Unix, with some abrupt closes; goroutines, fds and sessions
// return to their baseline.
func TestChurn(t *testing.T) {
	// 2,000 per transport in CI; SOCKHOP_CHURN=10000 for the long run.
	cycles := 2000
	if testing.Short() {
		cycles = 200
	}
	if s := os.Getenv("SOCKHOP_CHURN"); s != "" {
		fmt.Sscan(s, &cycles)
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
			srv.Handle("Number", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
			baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
			var worst time.Duration
			for i := range cycles {
				begin := time.Now()
				o := ClientOptions{ConnOptions: fastOpts()}
				tr.client(srv, &o)
				c := NewClient(o)
				noErr(t, c.Start(testCtx(t)))
				r, err := c.Request(testCtx(t), i)
				noErr(t, err)
				equal(t, "reply", string(r.JSON()), fmt.Sprint(i))
				if i%10 == 0 {
					// Abrupt: a reset instead of a graceful close.
					if tc, ok := c.cur.nc.(*net.TCPConn); ok {
						tc.SetLinger(0)
					}
					c.cur.nc.Close()
				}
				noErr(t, c.Close())
				worst = max(worst, time.Since(begin))
			}
			eventually(t, "no sessions left", func() bool { return len(srv.Sessions()) == 0 })
			eventually(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseG+2 })
			eventually(t, "fds back to baseline", func() bool { return openFDs(t) <= baseFD+2 })
			st := srv.Stats()
			t.Logf("%d cycles over %s: slowest %s; server saw %d connections, %d protocol errors", cycles, tr.name, worst, st.Connections, st.ProtocolErrors)
		})
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err) // not Linux
	}
	return len(ents)
}

// TestGarbageAmidGoodFrames (R10): bad frames interleaved with good ones on
// one binary connection: every good frame is delivered in order, every bad
// one reported; with the default budget the connection is closed once it
// is exceeded, and others carry on.
func TestGarbageAmidGoodFrames(t *testing.T) {
	frame := func(id byte, payload []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
		return append(append(b, id), payload...)
	}
	good := func(i int) []byte {
		data := []byte(fmt.Sprint(i))
		p := append([]byte{6}, "Number"...)
		p = binary.LittleEndian.AppendUint32(p, uint32(len(data)))
		return frame(10, append(p, data...))
	}
	bad := [][]byte{
		frame(99, []byte("x")), // unknown id
		frame(12, append(append([]byte{6}, "Object"...), append([]byte{2, 0, 0, 0, '{', '}'}, []byte(strings.Repeat("u", 36))...)...)), // unknown callback id
		frame(10, []byte{200, 'a'}),                                     // type length overruns
		frame(10, append(append([]byte{1, 0xff}, 2, 0, 0, 0), "{}"...)), // invalid UTF-8 type: decodable, delivered as U+FFFD
		frame(10, append(append([]byte{1, 'T'}, 9, 0, 0, 0), "{}"...)),  // data length overruns
		frame(10, append(append([]byte{1, 'T'}, 3, 0, 0, 0), "{x}"...)), // invalid JSON
	}
	run := func(t *testing.T, budget, rounds int) (delivered []int, reported int, closed bool) {
		var log errLog
		ended := make(chan struct{})
		o := ServerOptions{ConnOptions: fastOpts(), OnError: log.add,
			OnSessionEnd: func(*Session, error) { close(ended) }}
		o.MaxProtocolErrors = budget
		srv := startServer(t, transports[0], o)
		got := make(chan int, rounds)
		srv.Handle("Number", func(ctx context.Context, m *Message) error {
			var i int
			if err := m.Decode(&i); err != nil {
				return err
			}
			got <- i
			return nil
		})
		raw, err := net.Dial("tcp", srv.Addr().String())
		noErr(t, err)
		defer raw.Close()
		go io.Copy(io.Discard, raw)
		var stream []byte
		stream = append(stream, `{"type":"SockhopBinaryModeTransition","data":{}}`+"\n"...)
		for i := range rounds {
			stream = append(stream, bad[i%len(bad)]...)
			stream = append(stream, good(i)...)
		}
		raw.Write(stream)
		deadline := time.After(10 * time.Second)
		for {
			select {
			case i := <-got:
				delivered = append(delivered, i)
				if len(delivered) == rounds {
					log.mu.Lock()
					defer log.mu.Unlock()
					return delivered, len(log.errs), false
				}
			case <-deadline:
				t.Fatalf("after %d good frames, neither all delivered nor the connection closed", len(delivered))
			case <-ended:
				log.mu.Lock()
				defer log.mu.Unlock()
				return delivered, len(log.errs), true
			}
		}
	}
	t.Run("raised budget", func(t *testing.T) {
		const rounds = 10000
		delivered, _, _ := run(t, -1, rounds)
		for i, v := range delivered {
			if v != i {
				t.Fatalf("good frame %d arrived as %d", i, v)
			}
		}
		equal(t, "delivered", len(delivered), rounds)
	})
	t.Run("default budget", func(t *testing.T) {
		delivered, reported, closed := run(t, 0, 300)
		equal(t, "connection closed", closed, true)
		// Reports are rate limited (peererrors.go): the first burst one by
		// one, the rest summed up when the connection ends.
		if reported < peerErrBurst {
			t.Fatalf("only %d errors reported before the close", reported)
		}
		t.Logf("closed after %d good frames and %d reported errors", len(delivered), reported)
	})
}

// TestChurnConcurrent (R6, concurrent variant): 50 workers connect,
// handshake, make one request and close, at the same time, with one cycle
// in ten closing abruptly and one in ten dropping the connection during the
// handshake. No cycle fails that should succeed, and nothing is left.
func TestChurnConcurrent(t *testing.T) {
	cycles := 2000
	if testing.Short() {
		cycles = 400
	}
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
	srv.Handle("Number", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	jobs := make(chan int)
	errs := make(chan error, cycles)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				errs <- churnCycle(t, srv, i)
			}
		}()
	}
	begin := time.Now()
	for i := range cycles {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, err)
	}
	eventually(t, "no sessions left", func() bool { return len(srv.Sessions()) == 0 })
	eventually(t, "goroutines back to baseline", func() bool { return runtime.NumGoroutine() <= baseG+2 })
	eventually(t, "fds back to baseline", func() bool { return openFDs(t) <= baseFD+2 })
	t.Logf("%d cycles by 50 workers in %s; server saw %d connections", cycles, time.Since(begin).Round(time.Millisecond), srv.Stats().Connections)
}

// churnCycle is one R6 cycle; i picks its ending.
func churnCycle(t *testing.T, srv *Server, i int) error {
	if i%10 == 5 {
		// Dropped during the handshake: the server must shrug it off.
		raw, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			return err
		}
		raw.Read(make([]byte, 16)) // part of the server's handshake
		return raw.Close()
	}
	c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
	defer c.Close()
	ctx := testCtx(t)
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("cycle %d: Start: %w", i, err)
	}
	r, err := c.Request(ctx, i)
	if err != nil {
		return fmt.Errorf("cycle %d: Request: %w", i, err)
	}
	if string(r.JSON()) != fmt.Sprint(i) {
		return fmt.Errorf("cycle %d: reply %s", i, r.JSON())
	}
	if i%10 == 0 {
		c.mu.Lock()
		nc := c.cur.nc
		c.mu.Unlock()
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset instead of a FIN
		}
		nc.Close()
	}
	return nil
}
