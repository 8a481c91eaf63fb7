package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// hsTimeout is the Go side's handshake timeout: a 1.8.4 peer never
// completes the handshake, so every test against one waits this long.
const hsTimeout = 300 * time.Millisecond

// transport is one row of the transport matrix.
type transport struct {
	name string
	unix bool
}

var transports = []transport{{"tcp", false}, {"unix", true}}

// sockPath returns a fresh Unix socket path short enough for sun_path
// (t.TempDir can exceed 107 bytes with long test names).
func sockPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

// ---- Go server ------------------------------------------------------------

// goServer is a sockhop.Server that records what it sees.
type goServer struct {
	*sockhop.Server
	in       *inbox
	hs       chan hsResult
	errs     *errList
	nodeArgs []string // how peer.js reaches it
}

type hsResult struct {
	sess *sockhop.Session
	ok   bool
	err  error
}

// startGoServer listens with default options except a short handshake
// timeout (and whatever edit changes). Every message goes to the inbox;
// requests are answered by goAnswer. Closed at cleanup.
func startGoServer(t testing.TB, tr transport, edit func(*sockhop.ServerOptions)) *goServer {
	t.Helper()
	s := &goServer{in: newInbox(), hs: make(chan hsResult, 64), errs: &errList{}}
	o := sockhop.ServerOptions{
		Addr:        "127.0.0.1:0",
		ConnOptions: sockhop.ConnOptions{HandshakeTimeout: hsTimeout},
		OnHandshake: func(sess *sockhop.Session, ok bool, err error) {
			select {
			case s.hs <- hsResult{sess, ok, err}:
			default:
			}
		},
		OnError: func(_ *sockhop.Session, err error) { s.errs.add(err) },
	}
	if tr.unix {
		o.Path = sockPath(t)
	}
	if edit != nil {
		edit(&o)
	}
	s.Server = sockhop.NewServer(o)
	s.HandleDefault(s.in.handle)
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		s.errs.check(t, "server")
	})
	if tr.unix {
		s.nodeArgs = []string{"--path", o.Path}
	} else {
		s.nodeArgs = []string{"--port", strconv.Itoa(s.Addr().(*net.TCPAddr).Port)}
	}
	return s
}

// sessions waits until the server has n live sessions.
func (s *goServer) sessions(t testing.TB, n int) []*sockhop.Session {
	t.Helper()
	var got []*sockhop.Session
	poll(t, fmt.Sprintf("%d sessions", n), func() bool {
		got = s.Sessions()
		return len(got) == n
	})
	return got
}

// handshake waits for the next OnHandshake.
func (s *goServer) handshake(t testing.TB) hsResult {
	t.Helper()
	select {
	case r := <-s.hs:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("no OnHandshake within %s", waitTimeout)
		return hsResult{}
	}
}

// ---- Go client ------------------------------------------------------------

// goClient is a sockhop.Client that records what it sees.
type goClient struct {
	*sockhop.Client
	in   *inbox
	hs   chan hsResult
	errs *errList
	down chan error // OnDisconnect reasons
}

// newGoClient makes a client for the Node server at addr (TCP) or path,
// with a short handshake timeout. Closed at cleanup.
func newGoClient(t testing.TB, addr, path string, edit func(*sockhop.ClientOptions)) *goClient {
	t.Helper()
	c := &goClient{in: newInbox(), hs: make(chan hsResult, 64), errs: &errList{}, down: make(chan error, 64)}
	o := sockhop.ClientOptions{
		Addr:        addr,
		Path:        path,
		ConnOptions: sockhop.ConnOptions{HandshakeTimeout: hsTimeout},
		OnHandshake: func(_ *sockhop.Client, ok bool, err error) {
			select {
			case c.hs <- hsResult{nil, ok, err}:
			default:
			}
		},
		OnError: func(_ *sockhop.Client, err error) { c.errs.add(err) },
		OnDisconnect: func(_ *sockhop.Client, err error) {
			select {
			case c.down <- err:
			default:
			}
		},
	}
	if edit != nil {
		edit(&o)
	}
	c.Client = sockhop.NewClient(o)
	c.HandleDefault(c.in.handle)
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
		c.errs.check(t, "client")
	})
	return c
}

func (c *goClient) handshake(t testing.TB) hsResult {
	t.Helper()
	select {
	case r := <-c.hs:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("no OnHandshake within %s", waitTimeout)
		return hsResult{}
	}
}

// startNodeServer runs peer.js as a server and returns it with the address
// or path a Go client dials. A TCP port taken between freePort and node's
// bind is retried.
func startNodeServer(t testing.TB, tr transport) (p *peer, addr, path string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		var args []string
		if tr.unix {
			path = sockPath(t)
			args = []string{"--path", path}
		} else {
			port := freePort(t)
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			args = []string{"--port", strconv.Itoa(port)}
		}
		p = startPeer(t, "server", args...)
		ev := p.expectWithin(readyTimeout, `"listening" (or a bind error)`, func(e event) bool {
			return e.Event == "listening" || e.Event == "error"
		})
		if ev.Event == "listening" {
			return p, addr, path
		}
		p.allowErrors = true // given up on; its cleanup must not fail the test
		if tr.unix || attempt == 3 || ev.Code != "EADDRINUSE" {
			t.Fatalf("node server could not listen: %s\n%s", ev.line, p.log())
		}
	}
}

// ---- recording and answering ----------------------------------------------

// inbox records every message a handler saw, in order, and answers
// requests with goAnswer.
type inbox struct{ ch chan *sockhop.Message }

func newInbox() *inbox { return &inbox{ch: make(chan *sockhop.Message, 1024)} }

func (in *inbox) handle(ctx context.Context, m *sockhop.Message) error {
	select {
	case in.ch <- m:
	default:
		return errors.New("test inbox full")
	}
	if m.IsRequest() {
		return goAnswer(ctx, m)
	}
	return nil
}

// next returns the next message (in arrival order for plain messages).
func (in *inbox) next(t testing.TB, what string) *sockhop.Message {
	t.Helper()
	select {
	case m := <-in.ch:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("Go side received no %s within %s", what, waitTimeout)
		return nil
	}
}

// nextUnlessGone is next that fails at once when the connection ends
// first (gone receives its reason).
func (in *inbox) nextUnlessGone(t testing.TB, what string, gone <-chan error) *sockhop.Message {
	t.Helper()
	select {
	case m := <-in.ch:
		return m
	case err := <-gone:
		t.Fatalf("the connection ended before the Go side received %s: %v", what, err)
	case <-time.After(waitTimeout):
		t.Fatalf("Go side received no %s within %s", what, waitTimeout)
	}
	return nil
}

// sessionGone turns a session's end into a channel of its reason.
func sessionGone(t testing.TB, sess *sockhop.Session) <-chan error {
	ch := make(chan error, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-sess.Done():
			ch <- sess.Err()
		case <-stop:
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return ch
}

// empty fails if a message is waiting: nothing unexpected (such as a
// handshake reply) may reach the application.
func (in *inbox) empty(t testing.TB) {
	t.Helper()
	select {
	case m := <-in.ch:
		t.Errorf("unexpected message delivered to the Go application: %v (type %q, JSON %s, bytes %v)", m, m.Type, m.JSON(), m.Bytes())
	default:
	}
}

// goAnswer is how the Go side answers requests: a Buffer (bytes, or the
// 1.x array form) with its bytes reversed as a Buffer; anything else with
// {"go_echo": data, "type": type}.
func goAnswer(ctx context.Context, m *sockhop.Message) error {
	if b, ok := bufferBytes(m); ok {
		return m.Reply(ctx, reversed(b))
	}
	return m.Reply(ctx, map[string]any{"go_echo": json.RawMessage(m.JSON()), "type": m.Type})
}

// bufferBytes returns the bytes of a "Buffer" message in either form: raw
// bytes (2.x base64 on the wire) or Node's {"type":"Buffer","data":[...]},
// which a 1.x peer writes and which the library delivers as JSON.
func bufferBytes(m *sockhop.Message) ([]byte, bool) {
	if m.IsBytes() {
		return m.Bytes(), true
	}
	if m.Type != "Buffer" {
		return nil, false
	}
	var nb struct {
		Type string `json:"type"`
		Data []int  `json:"data"`
	}
	if err := json.Unmarshal(m.JSON(), &nb); err != nil || nb.Type != "Buffer" {
		return nil, false
	}
	b := make([]byte, len(nb.Data))
	for i, v := range nb.Data {
		b[i] = byte(v)
	}
	return b, true
}

func reversed(b []byte) []byte {
	r := make([]byte, len(b))
	for i, c := range b {
		r[len(b)-1-i] = c
	}
	return r
}

// arrayForm is Node's JSON form of a Buffer, as 1.8.4 writes it.
func arrayForm(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = strconv.Itoa(int(c))
	}
	return `{"type":"Buffer","data":[` + strings.Join(parts, ",") + `]}`
}

// errList collects OnError reports; none are expected.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errList) check(t testing.TB, who string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Errorf("%s OnError: %v", who, err)
	}
}

// ---- small assertions -------------------------------------------------------

// poll checks cond every 5 ms until it holds, failing after waitTimeout.
func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// jsonEqual reports whether two JSON texts hold the same value (nil and
// empty both mean "no data").
func jsonEqual(a, b []byte) bool {
	if len(bytes.TrimSpace(a)) == 0 || len(bytes.TrimSpace(b)) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func noError(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// testCtx is a context bounded by waitTimeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// hasHandshakeReceive reports whether the peer ever delivered a
// SockhopHandshake to its application.
func hasHandshakeReceive(p *peer) bool {
	for _, ev := range p.Transcript() {
		if ev.Event == "receive" && ev.Type == "SockhopHandshake" {
			return true
		}
	}
	return false
}
