package sockhop

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawPeer accepts one TCP connection and hands it to the test, which plays
// the peer byte by byte.
func rawListener(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	ch := make(chan net.Conn, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		close(ch)
		for c := range ch {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}

// TestStartAgainstSilentPeer: a peer that never handshakes (1.x) makes Start
// fail with ErrHandshakeTimeout and close the connection.
func TestStartAgainstSilentPeer(t *testing.T) {
	addr, conns := rawListener(t)
	c := NewClient(ClientOptions{Addr: addr, ConnOptions: silentOpts()})
	defer c.Close()
	begin := time.Now()
	err := c.Start(testCtx(t))
	errorIs(t, err, ErrHandshakeTimeout)
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Start took %s with a 300 ms handshake timeout", d)
	}
	peer := recv(t, conns, "the connection")
	defer peer.Close()
	// The peer saw our handshake line, then EOF.
	b, _ := io.ReadAll(peer)
	if !strings.HasPrefix(string(b), `{"type":"SockhopHandshake","data":{"protocol_version":2,"library_version":"`+Version+`","request_binary_mode":true},"id":"`) {
		t.Fatalf("peer read %q", b)
	}
	errorIs(t, c.Send(testCtx(t), 1), ErrNotConnected)
}

// TestConnectToOneXStaysJSON: Connect returns at once; after the handshake
// times out, traffic flows in JSON mode and the hook reports the timeout.
func TestConnectToOneXStaysJSON(t *testing.T) {
	addr, conns := rawListener(t)
	hs := make(chan error, 1)
	c := NewClient(ClientOptions{Addr: addr, ConnOptions: silentOpts(),
		OnHandshake: func(c *Client, ok bool, err error) { hs <- err }})
	defer c.Close()
	noErr(t, c.Connect(testCtx(t)))
	peer := recv(t, conns, "the connection")
	defer peer.Close()
	errorIs(t, recv(t, hs, "the handshake outcome"), ErrHandshakeTimeout)
	st := c.State()
	equal(t, "handshake done", st.HandshakeDone, true)
	equal(t, "handshake ok", st.HandshakeOK, false)
	equal(t, "tx binary", st.TxBinary, false)
	noErr(t, c.Send(testCtx(t), "after"))
	buf := make([]byte, 4096)
	var all []byte
	for !strings.Contains(string(all), `{"type":"String","data":"after"}`+"\n") {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := peer.Read(buf)
		noErr(t, err)
		all = append(all, buf[:n]...)
	}
}

// TestCompatibilityClient talks to a default server: no handshake from the
// client, JSON both ways, the server's handshake times out.
func TestCompatibilityClient(t *testing.T) {
	tr := transports[0]
	hs := make(chan error, 1)
	srv := startServer(t, tr, ServerOptions{ConnOptions: silentOpts(),
		OnHandshake: func(s *Session, ok bool, err error) { hs <- err }})
	srv.Handle("String", func(ctx context.Context, m *Message) error { return m.Reply(ctx, "pong") })
	o := ClientOptions{ConnOptions: silentOpts()}
	o.CompatibilityMode = true
	errorIs(t, NewClient(o).Start(testCtx(t)), &Error{Code: CodeHandshakeCompatibilityMode})
	c := startClient(t, tr, srv, o)
	r, err := c.Request(testCtx(t), "ping")
	noErr(t, err)
	equal(t, "reply", string(r.JSON()), `"pong"`)
	errorIs(t, recv(t, hs, "server handshake outcome"), ErrHandshakeTimeout)
	st := c.State()
	equal(t, "client tx binary", st.TxBinary, false)
	equal(t, "client rx binary", st.RxBinary, false)
}

// TestHandlerRequestsSameConnection: a handler may itself Request on the
// connection its message came from without deadlocking the reader.
func TestHandlerRequestsSameConnection(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	srv.Handle("Question", func(ctx context.Context, m *Message) error {
		r, err := m.Session().Request(ctx, Named{Type: "Detail", Data: "which?"})
		if err != nil {
			return err
		}
		return m.Reply(ctx, Named{Type: "Answer", Data: r.JSON()})
	})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	c.Handle("Detail", func(ctx context.Context, m *Message) error { return m.Reply(ctx, "the blue one") })
	r, err := c.Request(testCtx(t), Named{Type: "Question", Data: 1})
	noErr(t, err)
	equal(t, "answer", r.Type+" "+string(r.JSON()), `Answer "the blue one"`)
}

// TestPendingFailOnDisconnect: requests waiting when the connection dies
// fail with ErrDisconnected within a second.
func TestPendingFailOnDisconnect(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	arrived := make(chan *Session, 8)
	srv.Handle("Slow", func(ctx context.Context, m *Message) error {
		arrived <- m.Session()
		<-ctx.Done() // never answers
		return nil
	})
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := c.Request(testCtx(t), Named{Type: "Slow", Data: 1})
			errs <- err
		}()
	}
	var sess *Session
	for range 8 {
		sess = recv(t, arrived, "a slow request")
	}
	begin := time.Now()
	noErr(t, sess.Close())
	for range 8 {
		errorIs(t, recv(t, errs, "a failed request"), ErrDisconnected)
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("pending requests failed after %s", d)
	}
}

// TestRequestTimeoutForgets: a request whose ctx ends is removed from the
// pending table, and a late reply is dropped without harm: counted as
// late, neither reported nor counted as a protocol error.
func TestRequestTimeoutForgets(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	late := make(chan struct{})
	srv.Handle("Late", func(ctx context.Context, m *Message) error {
		<-late
		return m.Reply(ctx, "too late")
	})
	unknown := make(chan error, 1)
	o := ClientOptions{ConnOptions: fastOpts(), OnError: func(c *Client, err error) { unknown <- err }}
	c := startClient(t, tr, srv, o)
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	_, err := c.Request(ctx, Named{Type: "Late", Data: 1})
	errorIs(t, err, context.DeadlineExceeded)
	equal(t, "pending after timeout", c.cur.pendingCount(), 0)
	close(late)
	eventually(t, "the late reply counted", func() bool { return c.Stats().LateReplies == 1 })
	select {
	case err := <-unknown:
		t.Fatalf("a late reply was reported: %v", err)
	default:
	}
	equal(t, "protocol errors", c.Stats().ProtocolErrors, uint64(0))
	// The connection is still usable after the stray reply.
	r, err := c.Request(testCtx(t), Named{Type: "Late", Data: 2})
	noErr(t, err)
	equal(t, "second reply", string(r.JSON()), `"too late"`)
	equal(t, "still connected", c.State().Connected, true)
}

// TestCloseSemantics: Close is idempotent, flushes what was accepted, and
// every later call fails with ErrClosed (also net.ErrClosed).
func TestCloseSemantics(t *testing.T) {
	tr := transports[0]
	srv := startServer(t, tr, ServerOptions{ConnOptions: fastOpts()})
	const n = 200
	big := strings.Repeat("x", 32<<10)
	seen := make(chan struct{}, n)
	srv.Handle("String", func(ctx context.Context, m *Message) error { seen <- struct{}{}; return nil })
	c := startClient(t, tr, srv, ClientOptions{ConnOptions: fastOpts()})
	for range n {
		noErr(t, c.Send(testCtx(t), big))
	}
	noErr(t, c.Close()) // 6.4 MB queued: all of it must reach the server
	noErr(t, c.Close())
	for i := range n {
		recv(t, seen, "flushed message "+string(rune('0'+i%10)))
	}
	err := c.Send(testCtx(t), 1)
	errorIs(t, err, ErrClosed)
	errorIs(t, err, net.ErrClosed)
	errorIs(t, c.Connect(testCtx(t)), ErrClosed)
	noErr(t, srv.Close())
	noErr(t, srv.Close())
}
