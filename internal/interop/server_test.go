package interop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// TestGoServerNodeClient runs a Go server (default options, short
// handshake timeout) against real Sockhop 1.8.4 clients.
func TestGoServerNodeClient(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("HandshakeTimesOutTrafficInJSON", func(t *testing.T) { testServerHandshake(t, tr) })
			t.Run("NodeSendsEveryKind", func(t *testing.T) {
				s := startGoServer(t, tr, nil)
				p := startReady(t, "client", s.nodeArgs...)
				nodeSendsEveryKind(t, p, s.in, false)
			})
			t.Run("GoSendsEveryKind", func(t *testing.T) {
				s := startGoServer(t, tr, nil)
				p := startReady(t, "client", s.nodeArgs...)
				sess := s.sessions(t, 1)[0]
				goSendsEveryKind(t, p, sess.Send)
			})
			t.Run("SendAll", func(t *testing.T) {
				s := startGoServer(t, tr, nil)
				p := startReady(t, "client", s.nodeArgs...)
				s.sessions(t, 1)
				goSendsEveryKind(t, p, s.SendAll)
			})
			t.Run("NodeRequestsGo", func(t *testing.T) {
				s := startGoServer(t, tr, nil)
				p := startReady(t, "client", s.nodeArgs...)
				nodeRequestsGo(t, p, s.in)
			})
			t.Run("GoRequestsNode", func(t *testing.T) {
				s := startGoServer(t, tr, nil)
				p := startReady(t, "client", s.nodeArgs...)
				sess := s.sessions(t, 1)[0]
				goRequestsNode(t, sess.Request)
				p.expectEvent("replied") // the peer answered at least once, and is still up
			})
			t.Run("CompatibilityModeServer", func(t *testing.T) {
				s := startGoServer(t, tr, func(o *sockhop.ServerOptions) { o.CompatibilityMode = true })
				p := startReady(t, "client", s.nodeArgs...)
				p.send(map[string]any{"cmd": "send", "data": "hi"})
				if m := s.in.next(t, `"hi"`); m.Type != "String" || string(m.JSON()) != `"hi"` {
					t.Errorf("got %v %s", m, m.JSON())
				}
				sess := s.sessions(t, 1)[0]
				noError(t, sess.Send(testCtx(t), "first"), "Send")
				// One ordered stream: a handshake would have come before "first".
				if ev := p.receives(1)[0]; string(ev.Data) != `"first"` || hasHandshakeReceive(p) {
					t.Errorf("compatibility-mode server: Node got %s\n%s", ev.line, p.log())
				}
				if st := sess.State(); !st.HandshakeDone || st.HandshakeOK || st.TxBinary {
					t.Errorf("state %+v", st)
				}
				goRequestsNode(t, sess.Request)
				nodeRequestsGo(t, p, s.in)
				select {
				case r := <-s.hs:
					t.Errorf("OnHandshake(%v, %v) in compatibility mode", r.ok, r.err)
				default:
				}
			})
			t.Run("ThreeClients", func(t *testing.T) { testServerThreeClients(t, tr) })
			t.Run("LargeMessagesAfterHandshakeTimeout", func(t *testing.T) { testServerLarge(t, tr) })
			t.Run("LargeMessageRightAfterConnect", func(t *testing.T) { testServerLargeEarly(t, tr) })
			t.Run("PreHandshakeLimitHardening", func(t *testing.T) { testServerPreHandshakeLimit(t, tr) })
		})
	}
}

// testServerHandshake: the Go server's handshake reaches the 1.8.4 client's
// application as an ordinary request (which peer.js answers with an echo);
// that answer has no allow_binary_mode and 1.x never sends a handshake of
// its own, so the server's handshake times out (OnHandshake false,
// ErrHandshakeTimeout) and both directions stay JSON. Messages flow before
// and after the timeout.
func testServerHandshake(t *testing.T, tr transport) {
	s := startGoServer(t, tr, nil)
	p := startReady(t, "client", s.nodeArgs...)

	// Traffic before the handshake outcome.
	p.send(map[string]any{"cmd": "send", "data": "before"})
	m := s.in.next(t, `"before"`)
	if m.Type != "String" || string(m.JSON()) != `"before"` {
		t.Errorf("before the timeout: got %v %s", m, m.JSON())
	}

	hs := p.expect("receive of SockhopHandshake", func(e event) bool {
		return e.Event == "receive" && e.Type == "SockhopHandshake"
	})
	want := fmt.Sprintf(`{"protocol_version":2,"library_version":%q,"request_binary_mode":true}`, sockhop.Version)
	if !hs.Request || !jsonEqual(hs.Data, []byte(want)) {
		t.Errorf("1.8.4 got handshake %s; want a request with data %s", hs.line, want)
	}
	p.expectEvent("replied") // peer.js echoes it, as an echo-service 1.x app would

	r := s.handshake(t)
	if r.ok || !errors.Is(r.err, sockhop.ErrHandshakeTimeout) {
		t.Errorf("OnHandshake(%v, %v), want (false, ErrHandshakeTimeout)", r.ok, r.err)
	}
	sess := s.sessions(t, 1)[0]
	if r.sess != sess {
		t.Errorf("OnHandshake for session %v, want %v", r.sess, sess)
	}
	st := sess.State()
	if !st.Connected || !st.HandshakeDone || st.HandshakeOK || st.RxBinary || st.TxBinary || st.PeerVersion != "" {
		t.Errorf("session state after the timeout: %+v", st)
	}

	// Traffic after it, both ways, in JSON.
	p.send(map[string]any{"cmd": "send", "data": map[string]any{"after": true}})
	m = s.in.next(t, "{after:true}")
	if m.Type != "Object" || !jsonEqual(m.JSON(), []byte(`{"after":true}`)) {
		t.Errorf("after the timeout: got %v %s", m, m.JSON())
	}
	noError(t, sess.Send(testCtx(t), "back"), "Send")
	ev := p.receives(1)[0]
	if ev.Type != "String" || string(ev.Data) != `"back"` {
		t.Errorf("Node got %s", ev.line)
	}
	// The echo answering our handshake went to the handshake, not to the
	// application; no transition line was ever sent.
	s.in.empty(t)
	for _, ev := range p.Transcript() {
		if ev.Type == "SockhopBinaryModeTransition" {
			t.Errorf("Go sent a transition to a 1.x peer: %s", ev.line)
		}
	}
}

// testServerThreeClients: three 1.8.4 clients on one Go server; each
// request is answered to the client that sent it, each session's request
// reaches its own client, and SendAll reaches all.
func testServerThreeClients(t *testing.T, tr transport) {
	s := startGoServer(t, tr, nil)
	const n = 3
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = startPeer(t, "client", s.nodeArgs...)
	}
	for _, p := range peers {
		p.ready()
	}
	// Introductions: which session is which client.
	for i, p := range peers {
		p.send(map[string]any{"cmd": "send", "data": map[string]any{"hello": i}})
	}
	byClient := make(map[int]*sockhop.Session)
	for range n {
		m := s.in.next(t, "hello")
		var h struct{ Hello int }
		noError(t, m.Decode(&h), "decode hello")
		if m.Session() == nil || byClient[h.Hello] != nil {
			t.Fatalf("hello %d on session %v (already seen: %v)", h.Hello, m.Session(), byClient)
		}
		byClient[h.Hello] = m.Session()
	}
	if len(s.sessions(t, n)) != n {
		t.Fatal("session count")
	}

	// Node -> Go requests, all in flight at once.
	for i, p := range peers {
		for j := range 5 {
			p.send(map[string]any{"cmd": "request", "id": j, "data": map[string]any{"client": i, "j": j}})
		}
	}
	for i, p := range peers {
		for j := range 5 {
			ev := p.reply(j)
			want, _ := json.Marshal(map[string]any{"go_echo": map[string]any{"client": i, "j": j}, "type": "Object"})
			if !jsonEqual(ev.Data, want) {
				t.Errorf("client %d request %d: reply %s, want data %s", i, j, ev.line, want)
			}
		}
	}

	for range n * 5 {
		if m := s.in.next(t, "request"); !m.IsRequest() {
			t.Errorf("Go saw %v as a plain message", m)
		}
	}

	// Go -> Node requests on each session, concurrently.
	ctx := testCtx(t)
	errs := make(chan error, n)
	for i, sess := range byClient {
		go func() {
			m, err := sess.Request(ctx, map[string]any{"to": i})
			if err != nil {
				errs <- fmt.Errorf("request to client %d: %w", i, err)
				return
			}
			want, _ := json.Marshal(map[string]any{"echo": map[string]any{"to": i}, "type": "Object"})
			if !jsonEqual(m.JSON(), want) {
				errs <- fmt.Errorf("request to client %d: reply %s, want %s", i, m.JSON(), want)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i, p := range peers {
		ev := p.expect("request from Go", func(e event) bool { return e.Event == "receive" && e.Request && e.Type == "Object" })
		want, _ := json.Marshal(map[string]any{"to": i})
		if !jsonEqual(ev.Data, want) {
			t.Errorf("client %d got request %s, want data %s", i, ev.line, want)
		}
	}

	noError(t, s.SendAll(ctx, "all"), "SendAll")
	for i, p := range peers {
		ev := p.expect(`"all"`, func(e event) bool { return e.Event == "receive" && !e.Request && e.Type == "String" })
		if string(ev.Data) != `"all"` {
			t.Errorf("client %d got %s", i, ev.line)
		}
	}
	s.in.empty(t)
}

// testServerLarge: once the handshake has timed out, messages far over
// MaxPreHandshakeSize (64 KiB) travel both ways. The first message read
// after the timeout matters: the reader may have been waiting for it since
// before the timeout.
func testServerLarge(t *testing.T, tr transport) {
	s := startGoServer(t, tr, nil)
	p := startReady(t, "client", s.nodeArgs...)
	if r := s.handshake(t); r.ok {
		t.Fatalf("handshake with 1.8.4 succeeded?")
	}
	sess := s.sessions(t, 1)[0]
	big := strings.Repeat("0123456789abcdef", 200<<10/16) // 200 KiB
	p.send(map[string]any{"cmd": "send", "data": big})
	m := s.in.nextUnlessGone(t, "a 200 KiB string sent after the handshake timed out", sessionGone(t, sess))
	var got string
	if err := m.Decode(&got); err != nil || got != big {
		t.Errorf("Go got %d bytes (%v), want %d", len(got), err, len(big))
	}
	noError(t, sess.Send(context.Background(), big), "Send 200 KiB")
	ev := p.receives(1)[0]
	var at string
	if err := json.Unmarshal(ev.Data, &at); err != nil || at != big {
		t.Errorf("Node got %d bytes (%v), want %d", len(at), err, len(big))
	}
}

// testServerLargeEarly: a 1 MiB object sent by a Node 1.8.4 client right
// after it connected, while our handshake still waits (a 1.x peer never
// answers it), is delivered by a default server: before the handshake the
// limit is MaxMessageSize too.
func testServerLargeEarly(t *testing.T, tr transport) {
	s := startGoServer(t, tr, func(o *sockhop.ServerOptions) { o.HandshakeTimeout = 5 * time.Second })
	p := startReady(t, "client", s.nodeArgs...)
	big := strings.Repeat("0123456789abcdef", 1<<20/16)
	p.send(map[string]any{"cmd": "send", "data": map[string]string{"blob": big}})
	sess := s.sessions(t, 1)[0]
	m := s.in.nextUnlessGone(t, "a 1 MiB object sent right after connecting", sessionGone(t, sess))
	var got struct{ Blob string }
	if err := m.Decode(&got); err != nil || got.Blob != big {
		t.Errorf("Go got %d bytes (%v), want %d", len(got.Blob), err, len(big))
	}
	if st := sess.State(); st.HandshakeDone {
		t.Errorf("the message should have arrived before the handshake ended: %+v", st)
	}
}

// testServerPreHandshakeLimit: the opt-in hardening, MaxPreHandshakeSize
// below MaxMessageSize, cuts the same Node 1.8.4 client, with an error
// that names the option and its value.
func testServerPreHandshakeLimit(t *testing.T, tr transport) {
	errs := make(chan error, 8)
	s := startGoServer(t, tr, func(o *sockhop.ServerOptions) {
		o.HandshakeTimeout = 5 * time.Second
		o.MaxPreHandshakeSize = 64 << 10
		o.OnError = func(_ *sockhop.Session, err error) { errs <- err }
	})
	p := startReady(t, "client", s.nodeArgs...)
	sess := s.sessions(t, 1)[0]
	p.send(map[string]any{"cmd": "send", "data": strings.Repeat("x", 100_000)})
	select {
	case <-sess.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the session over MaxPreHandshakeSize was not closed")
	}
	if !errors.Is(sess.Err(), sockhop.ErrMessageTooLarge) {
		t.Errorf("session ended with %v, want ErrMessageTooLarge", sess.Err())
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "MaxPreHandshakeSize (65536 bytes)") {
			t.Errorf("the error does not name the limit that was hit: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no error reported")
	}
}
