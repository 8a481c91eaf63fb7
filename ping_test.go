package sockhop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// The ping timer logic runs under testing/synctest over net.Pipe: the
// library's goroutines (reader, writer, dispatcher, ping loop, handshake
// timer) only block on channels, mutexes, timers and the pipe, all of which
// belong to the bubble, so fake time advances exactly from tick to tick and
// the assertions below are exact, not "about 4 x interval". The tests over
// real sockets (flood, Go to Go over TCP and Unix) use short real timers.

// pipeListener is an in-memory net.Listener over net.Pipe, so that a Server
// can Serve inside a synctest bubble (a real socket blocks outside it).
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial has ClientOptions.Dial's signature: it returns one end of a new pipe
// and hands the other to Accept.
func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
	case <-ctx.Done():
	}
	c.Close()
	s.Close()
	return nil, errors.New("pipe listener closed")
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// lineReader collects the lines a raw peer reads, until EOF or error.
type lineReader struct {
	mu    sync.Mutex
	lines []string
	err   error
	done  chan struct{}
}

// pipeClient connects a client, configured by edit, to the returned peer
// end of a net.Pipe (inside a synctest bubble); disc receives the reason of
// its disconnect. Both are closed when the test ends.
func pipeClient(t *testing.T, edit func(*ClientOptions)) (*Client, net.Conn, *lineReader, chan error) {
	t.Helper()
	cliEnd, peer := net.Pipe()
	lines := readLines(peer)
	disc := make(chan error, 1)
	o := ClientOptions{
		Dial:         func(context.Context, string, string) (net.Conn, error) { return cliEnd, nil },
		OnDisconnect: func(_ *Client, err error) { disc <- err },
	}
	edit(&o)
	c := NewClient(o)
	t.Cleanup(func() {
		c.Close()
		peer.Close()
	})
	noErr(t, c.Connect(context.Background()))
	return c, peer, lines, disc
}

func readLines(c net.Conn) *lineReader {
	r := &lineReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			r.mu.Lock()
			if err != nil {
				r.err = err
				r.mu.Unlock()
				return
			}
			r.lines = append(r.lines, l)
			r.mu.Unlock()
		}
	}()
	return r
}

// snapshot returns the lines so far and whether the stream has ended.
func (r *lineReader) snapshot() ([]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), r.err != nil
}

// pings returns the SockhopPing lines so far.
func (r *lineReader) pings() []string {
	lines, _ := r.snapshot()
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, `{"type":"SockhopPing"`) {
			out = append(out, l)
		}
	}
	return out
}

// pingLine is the reference's ping line (PROTOCOL.md 7.1), 149 bytes.
var pingLine = regexp.MustCompile(`^\{"type":"SockhopPing","data":\{"_id":"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})","_created":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)","_returned":null,"_finished":null\}\}\n$`)

// checkPings checks that lines are n pings in the reference format, with
// distinct ids, the k-th stamped start + k x interval (exact under
// synctest), and returns their ids.
func checkPings(t *testing.T, lines []string, n int, start time.Time, interval time.Duration) []string {
	t.Helper()
	if len(lines) != n {
		t.Fatalf("peer read %d pings, want %d: %q", len(lines), n, lines)
	}
	seen := map[string]bool{}
	var ids []string
	for k, l := range lines {
		m := pingLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("ping %d is not in the reference format: %q", k+1, l)
		}
		equal(t, "ping line length", len(l), 149)
		if seen[m[1]] {
			t.Fatalf("ping id %s used twice", m[1])
		}
		seen[m[1]] = true
		ids = append(ids, m[1])
		equal(t, fmt.Sprintf("ping %d _created", k+1), m[2], wire.ISODate(start.Add(time.Duration(k+1)*interval)))
	}
	return ids
}

func codeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestPingTimeoutClient: a compatibility-mode client pinging a peer that
// never answers writes 3 pings and disconnects at the 4th tick, without
// writing a 4th (PROTOCOL.md 7.3, transcripts/ping-timeout-client.json).
func TestPingTimeoutClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const P = 100 * time.Millisecond
		c, _, lines, disc := pipeClient(t, func(o *ClientOptions) {
			o.CompatibilityMode = true
			o.PingInterval = P
		})
		start := time.Now()

		time.Sleep(4*P - time.Millisecond)
		synctest.Wait()
		got, eof := lines.snapshot()
		checkPings(t, got, 3, start, P)
		equal(t, "stream ended before the 4th tick", eof, false)
		equal(t, "connected before the 4th tick", c.State().Connected, true)

		time.Sleep(time.Millisecond)
		synctest.Wait()
		got, eof = lines.snapshot()
		checkPings(t, got, 3, start, P) // no 4th ping
		equal(t, "stream ended at the 4th tick", eof, true)
		equal(t, "connected after the 4th tick", c.State().Connected, false)
		select {
		case err := <-disc:
			equal(t, "disconnect code", codeOf(err), CodePingTimeout)
			t.Logf("disconnect after %s: %v", time.Since(start), err)
		default:
			t.Fatal("OnDisconnect did not run at the 4th tick")
		}
		errorIs(t, c.Send(context.Background(), 1), ErrNotConnected)
	})
}

// TestPingTimeoutServer: a compatibility-mode server writes its 4th ping and
// then ends the connection (transcripts/ping-timeout-server.json).
func TestPingTimeoutServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const P = 100 * time.Millisecond
		ln := newPipeListener()
		ended := make(chan error, 1)
		o := ServerOptions{OnSessionEnd: func(_ *Session, err error) { ended <- err }}
		o.CompatibilityMode = true
		o.PingInterval = P
		srv := NewServer(o)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		defer func() {
			srv.Close()
			errorIs(t, <-served, ErrClosed)
		}()
		peer, err := ln.dial(context.Background(), "", "")
		noErr(t, err)
		defer peer.Close()
		lines := readLines(peer)
		synctest.Wait()
		start := time.Now()

		time.Sleep(4*P - time.Millisecond)
		synctest.Wait()
		got, eof := lines.snapshot()
		checkPings(t, got, 3, start, P)
		equal(t, "stream ended before the 4th tick", eof, false)
		equal(t, "sessions before the 4th tick", len(srv.Sessions()), 1)

		time.Sleep(time.Millisecond)
		synctest.Wait()
		got, eof = lines.snapshot()
		equal(t, "stream ended at the 4th tick", eof, true)
		checkPings(t, got, 4, start, P) // the 4th ping is written, then the FIN
		equal(t, "sessions after the 4th tick", len(srv.Sessions()), 0)
		select {
		case err := <-ended:
			equal(t, "session end code", codeOf(err), CodePingTimeout)
		default:
			t.Fatal("OnSessionEnd did not run at the 4th tick")
		}
	})
}

// TestPingLatePongCounts: a pong that arrives late, but before the next
// check, keeps the connection alive; the client dies 4 ticks after the last
// answered ping (PROTOCOL.md 7.3).
func TestPingLatePongCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const P = 100 * time.Millisecond
		c, peer, lines, disc := pipeClient(t, func(o *ClientOptions) {
			o.CompatibilityMode = true
			o.PingInterval = P
		})
		start := time.Now()

		// Pings 1 and 2 go unanswered; ping 3 is answered just before the
		// 4th tick.
		time.Sleep(4*P - time.Millisecond)
		synctest.Wait()
		ids := checkPings(t, lines.pings(), 3, start, P)
		_, err := fmt.Fprintf(peer, `{"type":"SockhopPong","data":{"_id":"%s","_created":null,"_returned":"%s","_finished":null}}`+"\n", ids[2], wire.ISODate(time.Now()))
		noErr(t, err)
		// Ticks 4, 5 and 6 see ping 3 answered among the last four; tick 7
		// sees pings 4 to 7 unanswered and ends the connection.
		time.Sleep(3 * P) // 7P - 1 ms
		synctest.Wait()
		equal(t, "connected after 7 intervals - 1 ms", c.State().Connected, true)
		checkPings(t, lines.pings(), 6, start, P)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		equal(t, "connected after 7 intervals", c.State().Connected, false)
		checkPings(t, lines.pings(), 6, start, P)
		equal(t, "disconnect code", codeOf(<-disc), CodePingTimeout)
	})
}

// TestPingGoToGoSynctest: a Go client and a Go server that both ping every
// 20 ms over a handshaked (binary) pipe answer each other for 10 intervals,
// and nobody disconnects.
func TestPingGoToGoSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const P = 20 * time.Millisecond
		ln := newPipeListener()
		var ends atomic.Int32
		so := ServerOptions{OnSessionEnd: func(*Session, error) { ends.Add(1) }}
		so.PingInterval = P
		srv := NewServer(so)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		defer func() {
			srv.Close()
			<-served
		}()
		var discs atomic.Int32
		co := ClientOptions{Dial: ln.dial, OnDisconnect: func(*Client, error) { discs.Add(1) }}
		co.PingInterval = P
		c := NewClient(co)
		defer c.Close()
		noErr(t, c.Start(context.Background()))
		// Start returns once our side is done (5.6); the server's transition
		// line may still be on its way: a write that met the peer's own
		// write on this unbuffered pipe is cut after inlineWriteMax and
		// finished by the writer goroutine.
		time.Sleep(inlineWriteMax + time.Millisecond)
		synctest.Wait()
		st := c.State()
		equal(t, "tx binary", st.TxBinary, true)
		equal(t, "rx binary", st.RxBinary, true)

		time.Sleep(10*P + P/2)
		synctest.Wait()
		equal(t, "client disconnects", discs.Load(), 0)
		equal(t, "session ends", ends.Load(), 0)
		equal(t, "client connected", c.State().Connected, true)
		sessions := srv.Sessions()
		equal(t, "sessions", len(sessions), 1)
		for _, side := range []struct {
			name string
			c    *conn
		}{{"client", c.cur}, {"server", sessions[0].c}} {
			n, answered := pingCounts(side.c)
			equal(t, side.name+" pings kept", n, pingsKept)
			equal(t, side.name+" pings answered", answered, pingsKept)
		}
	})
}

// pingCounts returns how many pings cn keeps and how many were answered.
func pingCounts(cn *conn) (n, answered int) {
	cn.pingMu.Lock()
	defer cn.pingMu.Unlock()
	for _, p := range cn.pings {
		if p.answered {
			answered++
		}
	}
	return len(cn.pings), answered
}

// TestPingGoToGo: the same over real TCP and Unix sockets, in binary and
// JSON mode, with a 20 ms interval for about 12 intervals.
func TestPingGoToGo(t *testing.T) {
	for _, tr := range transports {
		for _, md := range modes {
			t.Run(tr.name+"/"+md.name, func(t *testing.T) {
				const P = 20 * time.Millisecond
				var ends atomic.Int32
				so := ServerOptions{ConnOptions: fastOpts(), OnSessionEnd: func(*Session, error) { ends.Add(1) }}
				so.PingInterval = P
				srv := startServer(t, tr, so)
				srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
				var discs atomic.Int32
				co := ClientOptions{ConnOptions: fastOpts(), OnDisconnect: func(*Client, error) { discs.Add(1) }}
				co.PingInterval = P
				co.NoBinary = md.noBinary
				c := startClient(t, tr, srv, co)
				equal(t, "tx binary", c.State().TxBinary, !md.noBinary)
				time.Sleep(12 * P)
				sessions := srv.Sessions()
				equal(t, "sessions", len(sessions), 1)
				// On a loaded 2-core box a ticker can lag (ticks are dropped,
				// not queued), so wait for four pings rather than count ticks.
				// The newest ping may still be on its way back.
				for name, cn := range map[string]*conn{"client": c.cur, "server": sessions[0].c} {
					eventually(t, name+" has 4 pings, 3 or more answered", func() bool {
						n, answered := pingCounts(cn)
						return n == pingsKept && answered >= pingsKept-1
					})
				}
				equal(t, "client disconnects", discs.Load(), 0)
				equal(t, "session ends", ends.Load(), 0)
				r, err := c.Request(testCtx(t), Named{Type: "Echo", Data: "still here"})
				noErr(t, err)
				equal(t, "reply", string(r.JSON()), `"still here"`)
			})
		}
	}
}

// TestPingAnswered: pings are answered at once, before any handshake, with
// _id and _created copied (null when absent) and _returned our clock; they
// never reach the application (PROTOCOL.md 7.1, 7.2).
func TestPingAnswered(t *testing.T) {
	const id = "3ec582cb-f087-464f-a008-216d68ee0032"
	pings := []struct{ name, in, id, created string }{
		{"full", `{"type":"SockhopPing","data":{"_id":"` + id + `","_created":"2026-11-24T15:35:03.714Z","_returned":null,"_finished":null}}`, `"` + id + `"`, `"2026-11-24T15:35:03.714Z"`},
		{"no data", `{"type":"SockhopPing"}`, `null`, `null`},
		{"minimal", `{"type":"SockhopPing","data":{"_id":"p1"}}`, `"p1"`, `null`},
		{"odd values", `{"type":"SockhopPing","data":{"_id":7,"_created":{"a":[1,2]}}}`, `7`, `{"a":[1,2]}`},
	}
	for _, side := range []string{"server", "client"} {
		t.Run(side, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var delivered atomic.Int32
				count := func(context.Context, *Message) error { delivered.Add(1); return nil }
				var peer net.Conn
				var state func() State
				if side == "server" {
					ln := newPipeListener()
					srv := NewServer(ServerOptions{})
					srv.HandleDefault(count)
					served := make(chan error, 1)
					go func() { served <- srv.Serve(ln) }()
					defer func() {
						srv.Close()
						<-served
					}()
					var err error
					peer, err = ln.dial(context.Background(), "", "")
					noErr(t, err)
					state = func() State { return srv.Sessions()[0].State() }
				} else {
					cliEnd, p := net.Pipe()
					peer = p
					c := NewClient(ClientOptions{Dial: func(context.Context, string, string) (net.Conn, error) { return cliEnd, nil }})
					c.HandleDefault(count)
					defer c.Close()
					noErr(t, c.Connect(context.Background()))
					state = c.State
				}
				defer peer.Close()
				lines := readLines(peer)
				synctest.Wait()
				got, _ := lines.snapshot()
				if len(got) != 1 || !strings.HasPrefix(got[0], `{"type":"SockhopHandshake"`) {
					t.Fatalf("peer read %q, want the handshake line only", got)
				}
				for i, p := range pings {
					time.Sleep(7 * time.Millisecond) // a distinct _returned each time
					_, err := io.WriteString(peer, p.in+"\n")
					noErr(t, err)
					synctest.Wait()
					got, _ := lines.snapshot()
					equal(t, "lines read", len(got), i+2)
					want := `{"type":"SockhopPong","data":{"_id":` + p.id + `,"_created":` + p.created + `,"_returned":"` + wire.ISODate(time.Now()) + `","_finished":null}}` + "\n"
					equal(t, p.name+" pong", got[i+1], want)
					if p.name == "full" {
						equal(t, "pong line length", len(got[i+1]), 171)
					}
				}
				// All answered before the handshake finished (the raw peer
				// never handshakes; the timeout is 3 s).
				equal(t, "handshake done", state().HandshakeDone, false)
				equal(t, "messages delivered", delivered.Load(), 0)
			})
		})
	}
}

// TestPingFlood: a raw peer writes 20,000 pings and reads nothing, with a
// small receive buffer. The answers it does not read may not pile up: with
// MaxQueueBytes 64 KiB the server cuts it off as a slow consumer, and another
// client's requests are answered meanwhile (RELIABILITY.md R8 c).
func TestPingFlood(t *testing.T) {
	tr := transports[0]
	var log errLog
	ended := make(chan error, 4)
	o := ServerOptions{
		ConnOptions: fastOpts(),
		OnError:     log.add,
		OnSessionStart: func(_ context.Context, s *Session) error {
			// Loopback send buffers autotune to MiBs; keep the server's
			// small too so that the queue, not the kernel, absorbs the pongs.
			if tc, ok := s.c.nc.(*net.TCPConn); ok {
				noErr(t, tc.SetWriteBuffer(4096))
			}
			return nil
		},
		OnSessionEnd: func(_ *Session, err error) { ended <- err },
	}
	o.MaxQueueBytes = 64 << 10
	srv := startServer(t, tr, o)
	srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	healthy := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	raw, err := d.DialContext(testCtx(t), "tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	const n = 20000
	ping := `{"type":"SockhopPing","data":` + string(wire.MarshalPing(wire.NewUUID(), time.Now())) + "}\n"
	flood := []byte(strings.Repeat(ping, n))
	begin := time.Now()
	wrote := make(chan error, 1)
	go func() {
		raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := raw.Write(flood)
		wrote <- err
	}()

	// Requests from the healthy client while the flood runs.
	rtts, floodErr := echoUntilEnded(t, healthy, ended, 5*time.Millisecond, 5*time.Second, nil)
	t.Logf("flooder closed after %s: %v; worst healthy round trip meanwhile %s", time.Since(begin), floodErr, slices.Max(rtts))
	equal(t, "flooder's end code", codeOf(floodErr), CodeSlowConsumer)
	if err := <-wrote; err == nil {
		t.Log("the flooder's 3 MB write was taken whole by the kernel before the close")
	}
	equal(t, "sessions left", len(srv.Sessions()), 1)
	r, err := healthy.Request(testCtx(t), Named{Type: "Echo", Data: "after"})
	noErr(t, err)
	equal(t, "reply after", string(r.JSON()), `"after"`)
}

// TestSilentPeersAfterHandshakeTimeout (R7-lite): 50 TCP connections that
// send nothing to a default server whose HandshakeTimeout is 200 ms. Each
// handshake fails after 200 ms. RELIABILITY.md R7 wants them closed within
// HandshakeTimeout + 0.5 s; PROTOCOL.md 5.6 (the reference) leaves them open
// in JSON mode. The "default" case records which one the library does and
// fails only on what both agree on (the handshake outcome, a healthy client
// served meanwhile). The "pings" case shows today's remedy: with
// PingInterval P the server pings once init is complete (at the handshake
// timeout) and cuts each silent peer 4P later.
func TestSilentPeersAfterHandshakeTimeout(t *testing.T) {
	const hsTimeout = 200 * time.Millisecond
	const P = 50 * time.Millisecond
	for _, pings := range []bool{false, true} {
		name := "default"
		if pings {
			name = "pings"
		}
		t.Run(name, func(t *testing.T) {
			tr := transports[0]
			var failed atomic.Int32
			o := ServerOptions{
				ConnOptions: ConnOptions{HandshakeTimeout: hsTimeout},
				OnHandshake: func(_ *Session, ok bool, err error) {
					if !ok && errors.Is(err, ErrHandshakeTimeout) {
						failed.Add(1)
					}
				},
			}
			bound := hsTimeout + 500*time.Millisecond
			if pings {
				o.PingInterval = P
				bound = hsTimeout + 4*P + 3*time.Second // lenient: real timers on a busy machine
			}
			srv := startServer(t, tr, o)
			srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
			const n = 50
			begin := time.Now()
			closedAt := make([]time.Duration, n)
			var wg sync.WaitGroup
			for i := range n {
				c, err := net.Dial("tcp", srv.Addr().String())
				noErr(t, err)
				defer c.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.SetReadDeadline(begin.Add(bound + 100*time.Millisecond))
					_, err := io.Copy(io.Discard, c)
					if err == nil || !isTimeout(err) {
						closedAt[i] = time.Since(begin)
					}
				}()
			}
			// A healthy client meanwhile.
			var worst time.Duration
			for range 5 {
				t0 := time.Now()
				o := ClientOptions{ConnOptions: fastOpts()}
				tr.client(srv, &o)
				c := NewClient(o)
				noErr(t, c.Start(testCtx(t)))
				_, err := c.Request(testCtx(t), Named{Type: "Echo", Data: 1})
				noErr(t, err)
				c.Close()
				worst = max(worst, time.Since(t0))
			}
			t.Logf("healthy connect+handshake+request+close, worst of 5 during the silent connections: %s", worst)
			eventually(t, "50 handshake timeouts reported", func() bool { return failed.Load() == n })
			wg.Wait()
			closed, last := 0, time.Duration(0)
			for _, d := range closedAt {
				if d > 0 {
					closed++
					last = max(last, d)
				}
			}
			left := len(srv.Sessions())
			switch {
			case closed == n:
				t.Logf("all %d silent connections closed by the server, the last after %s; %d sessions left", n, last, left)
				eventually(t, "no session left", func() bool { return len(srv.Sessions()) == 0 })
			case pings:
				t.Fatalf("%d of %d silent connections still open after %s with PingInterval %s", n-closed, n, bound, P)
			default:
				t.Logf("%d of %d silent connections still open %s after connecting (HandshakeTimeout %s); %d sessions alive: by default the library keeps a connection whose handshake timed out, as the reference does (DropFailedHandshake and IdleTimeout close them: TestSilentPeersDropped, TestIdleTimeout)", n-closed, n, time.Since(begin).Round(time.Millisecond), hsTimeout, left)
			}
		})
	}
}

// TestPingTimeoutTCP: the same two cuts over real TCP with P = 50 ms: the
// raw peer sees 3 (client) or 4 (server) pings, then EOF, about 4P after the
// start, and the Go side reports the end at once, not after a linger.
func TestPingTimeoutTCP(t *testing.T) {
	const P = 50 * time.Millisecond
	const slack = 3 * time.Second // RELIABILITY.md R8 a says 150 ms; see the synctest tests for exact timing
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			ended := make(chan time.Time, 1)
			var raw net.Conn
			var begin time.Time
			want := 4
			if side == "server" {
				o := ServerOptions{OnSessionEnd: func(_ *Session, err error) {
					if codeOf(err) == CodePingTimeout {
						ended <- time.Now()
					}
				}}
				o.CompatibilityMode = true
				o.PingInterval = P
				srv := startServer(t, transports[0], o)
				var err error
				raw, err = net.Dial("tcp", srv.Addr().String())
				noErr(t, err)
				begin = time.Now()
			} else {
				want = 3
				addr, conns := rawListener(t)
				o := ClientOptions{Addr: addr, OnDisconnect: func(_ *Client, err error) {
					if codeOf(err) == CodePingTimeout {
						ended <- time.Now()
					}
				}}
				o.CompatibilityMode = true
				o.PingInterval = P
				c := NewClient(o)
				defer c.Close()
				noErr(t, c.Connect(testCtx(t)))
				begin = time.Now()
				raw = recv(t, conns, "the connection")
			}
			defer raw.Close()
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(raw)
			eof := time.Since(begin)
			noErr(t, err)
			lines := strings.SplitAfter(string(b), "\n")
			lines = lines[:len(lines)-1]
			equal(t, "pings read", len(lines), want)
			for _, l := range lines {
				if !pingLine.MatchString(l) {
					t.Fatalf("not a reference ping line: %q", l)
				}
			}
			end := recv(t, ended, "the ping timeout reported").Sub(begin)
			t.Logf("%s: EOF after %s, end reported after %s (4P = %s)", side, eof, end, 4*P)
			for what, d := range map[string]time.Duration{"EOF": eof, "end reported": end} {
				// Never before 4P; the upper bound is loose because real
				// timers on a busy machine are late (the exact timing is
				// checked under synctest in TestPingTimeoutClient/Server).
				if d < 4*P-10*time.Millisecond || d > 4*P+slack {
					t.Errorf("%s after %s, want within [4P, 4P + %s]", what, d, slack)
				}
			}
		})
	}
}

// TestPingWaitsForInit: a client's ping timer starts only once init is
// complete, here when the handshake times out against a silent peer
// (behaviour.jsonl#client-ping-before-init): nothing but the handshake is
// written for 400 ms, then 3 pings, then the cut at the 4th tick.
func TestPingWaitsForInit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const P = 100 * time.Millisecond
		const hs = 400 * time.Millisecond
		c, _, lines, disc := pipeClient(t, func(o *ClientOptions) {
			o.HandshakeTimeout = hs
			o.PingInterval = P
		})
		start := time.Now()

		time.Sleep(hs + P - time.Millisecond)
		synctest.Wait()
		got, _ := lines.snapshot()
		equal(t, "lines before the first tick after init", len(got), 1)
		equal(t, "handshake done", c.State().HandshakeDone, true)
		time.Sleep(3*P + time.Millisecond) // hs + 4P
		synctest.Wait()
		checkPings(t, lines.pings(), 3, start.Add(hs), P)
		equal(t, "connected", c.State().Connected, false)
		equal(t, "disconnect code", codeOf(<-disc), CodePingTimeout)
	})
}

// echoUntilEnded makes healthy do Echo round trips, pause between them and
// call each (if not nil) after each one, until a session end arrives on
// ended, which it returns with the round-trip times. It fails the test if
// none arrives within limit.
func echoUntilEnded(t *testing.T, healthy *Client, ended <-chan error, pause, limit time.Duration, each func()) ([]time.Duration, error) {
	t.Helper()
	begin := time.Now()
	var rtts []time.Duration
	for {
		t0 := time.Now()
		r, err := healthy.Request(testCtx(t), Named{Type: "Echo", Data: "ok"})
		noErr(t, err)
		equal(t, "reply", string(r.JSON()), `"ok"`)
		rtts = append(rtts, time.Since(t0))
		if each != nil {
			each()
		}
		select {
		case err := <-ended:
			return rtts, err
		case <-time.After(pause):
		}
		if time.Since(begin) > limit {
			t.Fatalf("the flooding connection was not closed within %s", limit)
		}
	}
}
