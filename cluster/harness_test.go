package cluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
)

// natsServer is a real NATS server embedded in the test process, on a
// loopback port that survives a restart.
type natsServer struct {
	t    testing.TB
	port int
	mu   sync.Mutex
	s    *server.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: server.RANDOM_PORT}
	ns.start()
	ns.port = ns.s.Addr().(*net.TCPAddr).Port
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) start() {
	ns.t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: ns.port, NoLog: true, NoSigs: true})
	if err != nil {
		ns.t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		ns.t.Fatalf("nats-server did not start")
	}
	ns.mu.Lock()
	ns.s = s
	ns.mu.Unlock()
}

// stop shuts the server down and waits for it (idempotent).
func (ns *natsServer) stop() {
	ns.mu.Lock()
	s := ns.s
	ns.s = nil
	ns.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// clients is the number of client connections the NATS server has.
func (ns *natsServer) clients() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.s.NumClients()
}

func (ns *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(ns.port) }

// dial connects to NATS as an application would, with reconnection that
// never gives up, and closes the connection at cleanup.
func dial(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// member is one sockhop server joined to the cluster, with what its
// node's hooks saw.
type member struct {
	name   string
	srv    *sockhop.Server
	node   *Node
	nc     *nats.Conn
	events chan string // "join <id>", "leave <id>"
}

// event records a hook event; past the channel's room (benchmarks with
// hundreds of sessions) events are not kept.
func (m *member) event(ev string) {
	select {
	case m.events <- ev:
	default:
	}
}

// testOptions are short intervals, so that tests of presence run fast;
// the bound on a dead server is DeadAfter + HeartbeatInterval = 300 ms.
func testOptions() Options {
	return Options{Name: "test", HeartbeatInterval: 50 * time.Millisecond, DeadAfter: 250 * time.Millisecond, DefaultTimeout: 10 * time.Second}
}

func startMember(t testing.TB, name, url string, o Options, so sockhop.ServerOptions) *member {
	t.Helper()
	m := &member{name: name, nc: dial(t, url), events: make(chan string, 1000)}
	// Never blocking: a hook that blocks holds up the node's Close.
	o.OnJoin = func(info SessionInfo) { m.event("join " + info.ID) }
	o.OnLeave = func(info SessionInfo) { m.event("leave " + info.ID) }
	node, err := New(m.nc, o)
	noErr(t, err)
	so.Addr = "127.0.0.1:0"
	if so.HandshakeTimeout == 0 {
		so.HandshakeTimeout = 3 * time.Second
	}
	m.srv = sockhop.NewServer(node.ServerOptions(so))
	noErr(t, m.srv.Listen())
	t.Cleanup(func() { m.srv.Close() })
	noErr(t, node.Join(m.srv))
	t.Cleanup(func() { node.Close() })
	m.node = node
	return m
}

// startCluster starts n members on one NATS server.
func startCluster(t testing.TB, ns *natsServer, n int) []*member {
	t.Helper()
	var ms []*member
	for i := range n {
		ms = append(ms, startMember(t, fmt.Sprintf("s%d", i), ns.url(), testOptions(), sockhop.ServerOptions{}))
	}
	return ms
}

// inbox is what a client received.
type inbox struct {
	ch chan *sockhop.Message
}

// tclient is a Go client of one member.
type tclient struct {
	c     *sockhop.Client
	in    *inbox
	local string // its socket's local address: its session's RemoteAddr
}

// connect starts a client of m, which delivers every plain message to its
// inbox and answers requests with answer (never, if nil).
func connect(t testing.TB, m *member, noBinary bool, answer func(*sockhop.Message) any) *tclient {
	t.Helper()
	tc := &tclient{in: &inbox{ch: make(chan *sockhop.Message, 10000)}}
	var mu sync.Mutex
	o := sockhop.ClientOptions{Addr: m.srv.Addr().String()}
	o.NoBinary = noBinary
	o.HandshakeTimeout = 3 * time.Second
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			tc.local = c.LocalAddr().String()
			mu.Unlock()
		}
		return c, err
	}
	c := sockhop.NewClient(o)
	c.HandleDefault(func(ctx context.Context, msg *sockhop.Message) error {
		if msg.IsRequest() {
			if answer == nil {
				return nil // never answered: the requester times out
			}
			return msg.Reply(ctx, answer(msg))
		}
		tc.in.ch <- msg
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	noErr(t, c.Start(ctx))
	t.Cleanup(func() { c.Close() })
	tc.c = c
	mu.Lock()
	defer mu.Unlock()
	return tc
}

func (in *inbox) next(t testing.TB, what string) *sockhop.Message {
	t.Helper()
	select {
	case m := <-in.ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// empty checks that nothing more arrives within a short while (only used
// after everything expected has arrived, to catch duplicates).
func (in *inbox) empty(t testing.TB, what string) {
	t.Helper()
	select {
	case m := <-in.ch:
		t.Fatalf("%s: unexpected %s", what, m)
	case <-time.After(100 * time.Millisecond):
	}
}

// idOf returns the cluster-wide id of tc's session on m.
func idOf(t testing.TB, m *member, tc *tclient) string {
	t.Helper()
	var id string
	eventually(t, "the client's session on "+m.name, func() bool {
		for _, s := range m.srv.Sessions() {
			if s.RemoteAddr().String() == tc.local {
				id = m.node.ID(s)
				return true
			}
		}
		return false
	})
	return id
}

// converged waits until every member lists n sessions.
func converged(t testing.TB, ms []*member, n int) {
	t.Helper()
	for _, m := range ms {
		eventually(t, fmt.Sprintf("%s lists %d sessions", m.name, n), func() bool { return len(m.node.Sessions()) == n })
	}
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond every 5 ms for up to 10 s (a bound for a hung
// test, generous for a loaded CI machine; not a timing assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
