package sockhop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// events records hook calls in order.
type events struct {
	mu  sync.Mutex
	got []string
	ch  chan string
}

func newEvents() *events { return &events{ch: make(chan string, 64)} }

func (e *events) add(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	e.mu.Lock()
	e.got = append(e.got, s)
	e.mu.Unlock()
	e.ch <- s
}

// waitFor waits until the event s was recorded and returns every event so far.
func (e *events) waitFor(t *testing.T, s string) []string {
	t.Helper()
	for {
		if recv(t, e.ch, s) == s {
			e.mu.Lock()
			defer e.mu.Unlock()
			return append([]string(nil), e.got...)
		}
	}
}

// clientHooks fills o's lifecycle hooks with recorders.
func clientHooks(o *ClientOptions, ev *events) {
	o.OnConnect = func(*Client) { ev.add("connect") }
	o.OnHandshake = func(_ *Client, ok bool, _ error) { ev.add("handshake %v", ok) }
	o.OnReady = func(*Client) { ev.add("ready") }
	o.OnDisconnect = func(*Client, error) { ev.add("disconnect") }
	o.OnUnhandshake = func(*Client, error) { ev.add("unhandshake") }
}

// TestLifecycleAgainst2x: against a peer that handshakes, the client's
// hooks run connect, handshake, ready; a lost connection runs disconnect
// then unhandshake, and the server's session hooks the same.
func TestLifecycleAgainst2x(t *testing.T) {
	sev := newEvents()
	so := ServerOptions{ConnOptions: fastOpts()}
	so.OnSessionEnd = func(*Session, error) { sev.add("session end") }
	so.OnSessionUnhandshake = func(*Session, error) { sev.add("session unhandshake") }
	srv := startServer(t, transports[0], so)
	ev := newEvents()
	co := ClientOptions{ConnOptions: fastOpts()}
	clientHooks(&co, ev)
	c := startClient(t, transports[0], srv, co)
	equal(t, "up", strings.Join(ev.waitFor(t, "ready"), ", "), "connect, handshake true, ready")
	eventually(t, "the session", func() bool { return len(srv.Sessions()) == 1 })
	sess := srv.Sessions()[0]
	// The session's own handshake ends when the client's reply reaches it,
	// which may be after the client is ready.
	eventually(t, "the session's handshake", func() bool { return sess.State().HandshakeOK })
	equal(t, "session local address", sess.LocalAddr().String(), srv.Addr().String())
	equal(t, "client remote address", c.RemoteAddr().String(), srv.Addr().String())
	equal(t, "the two ends", c.LocalAddr().String(), sess.RemoteAddr().String())
	noErr(t, sess.Close())
	equal(t, "down", strings.Join(ev.waitFor(t, "unhandshake"), ", "), "connect, handshake true, ready, disconnect, unhandshake")
	equal(t, "session down", strings.Join(sev.waitFor(t, "session unhandshake"), ", "), "session end, session unhandshake")
	eventually(t, "no addresses without a connection", func() bool { return c.RemoteAddr() == nil && c.LocalAddr() == nil })
}

// TestLifecycleAgainst1x: against a 1.x peer (a server in compatibility
// mode) the handshake fails, ready follows it (JSON mode), and the lost
// connection runs disconnect only: it never handshook. A client in
// compatibility mode is ready right after connect.
func TestLifecycleAgainst1x(t *testing.T) {
	so := ServerOptions{ConnOptions: silentOpts()}
	so.CompatibilityMode = true
	srv := startServer(t, transports[1], so)
	got := make(chan string, 4)
	srv.HandleDefault(func(ctx context.Context, m *Message) error {
		got <- string(m.JSON())
		return nil
	})
	for _, compat := range []bool{false, true} {
		ev := newEvents()
		co := ClientOptions{ConnOptions: silentOpts()}
		co.CompatibilityMode = compat
		clientHooks(&co, ev)
		transports[1].client(srv, &co)
		c := NewClient(co)
		noErr(t, c.Connect(testCtx(t)))
		want := "connect, handshake false, ready"
		if compat {
			want = "connect, ready"
		}
		equal(t, "up", strings.Join(ev.waitFor(t, "ready"), ", "), want)
		noErr(t, c.Send(testCtx(t), "json"))
		equal(t, "delivered", recv(t, got, "the message"), `"json"`)
		noErr(t, c.Close())
		equal(t, "down", strings.Join(ev.waitFor(t, "disconnect"), ", "), want+", disconnect")
		select {
		case e := <-ev.ch:
			t.Errorf("unexpected hook after disconnect: %s", e)
		default:
		}
	}
}

// TestConnectWithRequireHandshake: Connect does not wait for the
// handshake that RequireHandshake needs: it fails with the reference's
// code, and Start works.
func TestConnectWithRequireHandshake(t *testing.T) {
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
	co := ClientOptions{ConnOptions: fastOpts(), RequireHandshake: true}
	transports[0].client(srv, &co)
	c := NewClient(co)
	defer c.Close()
	var se *Error
	if err := c.Connect(testCtx(t)); !errors.As(err, &se) || se.Code != CodeAutoRehandshakeConnect {
		t.Fatalf("Connect with RequireHandshake: %v, want %s", err, CodeAutoRehandshakeConnect)
	}
	noErr(t, c.Start(testCtx(t)))
}

// TestUnansweredRequest: a request handler that returns, fails or panics
// without replying, and a request nobody handles, are each logged as a
// warning naming the type and counted in RequestsUnanswered; answered
// requests are not.
func TestUnansweredRequest(t *testing.T) {
	var logBuf syncBuffer
	so := ServerOptions{ConnOptions: fastOpts()}
	so.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := startServer(t, transports[0], so)
	srv.Handle("Forgets", func(ctx context.Context, m *Message) error { return nil })
	srv.Handle("Fails", func(ctx context.Context, m *Message) error { return errors.New("no") })
	srv.Handle("Panics", func(ctx context.Context, m *Message) error { panic("oops") })
	srv.Handle("Answers", func(ctx context.Context, m *Message) error { return m.Reply(ctx, 1) })
	srv.Handle("Note", func(ctx context.Context, m *Message) error { return nil })
	c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	ctx := testCtx(t)
	for _, typ := range []string{"Forgets", "Fails", "Panics", "Nobody"} {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := c.Request(short, Named{Type: typ, Data: 0})
		cancel()
		errorIs(t, err, context.DeadlineExceeded)
	}
	_, err := c.Request(ctx, Named{Type: "Answers", Data: 0})
	noErr(t, err)
	noErr(t, c.Send(ctx, Named{Type: "Note", Data: 0})) // not a request
	_, err = c.Request(ctx, Named{Type: "Answers", Data: 0})
	noErr(t, err)
	// Counted when each handler returns, which a loaded machine may run
	// after its request timed out.
	eventually(t, "4 unanswered", func() bool { return srv.Stats().RequestsUnanswered == 4 })
	for _, typ := range []string{"Forgets", "Fails", "Panics", "Nobody"} {
		if !strings.Contains(logBuf.String(), "type="+typ) {
			t.Errorf("no warning names %s:\n%s", typ, logBuf.String())
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
