package sockhop

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/nodepeer"
)

// The tests of this file send through every path of the public API to an
// emulated Node Sockhop 2.1.0 peer (internal/nodepeer), which reads the way
// the reference does: a whole socket read is split into JSON lines before
// any is acted on, so binary frames that arrive in the same read as our
// transition line are lost (PROTOCOL.md 5.5, 14.1). The peer sleeps
// node2ReadDelay before each read, as a busy Node event loop does, which
// makes that coalescing deterministic: whatever we write within that time
// after our transition line lands in the same read. Each test asserts that
// every message the Go side accepted (the call returned nil) reached the
// Node application, in order.

// node2ReadDelay is the emulated event loop's pause before each read.
const node2ReadDelay = 30 * time.Millisecond

// node2Wait bounds the wait for messages that should have arrived.
const node2Wait = 3 * time.Second

// node2Want is a message the Node application must receive.
type node2Want struct {
	typ     string
	data    []byte
	bytes   bool
	request bool
}

func (w node2Want) String() string {
	if w.bytes {
		return fmt.Sprintf("%s(%d bytes)", w.typ, len(w.data))
	}
	if len(w.data) > 64 {
		return fmt.Sprintf("%s%s...(%d bytes)", w.typ, w.data[:32], len(w.data))
	}
	return fmt.Sprintf("%s%s", w.typ, w.data)
}

func node2JSON(typ, data string) node2Want { return node2Want{typ: typ, data: []byte(data)} }

func (w node2Want) matches(m nodepeer.Msg) bool {
	return m.Type == w.typ && m.Bytes == w.bytes && m.Request == w.request && bytes.Equal(m.Data, w.data)
}

func node2Show(msgs []nodepeer.Msg) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		switch {
		case m.Bytes:
			s[i] = fmt.Sprintf("%s(%d bytes)", m.Type, len(m.Data))
		case len(m.Data) > 64:
			s[i] = fmt.Sprintf("%s%s...(%d bytes)", m.Type, m.Data[:32], len(m.Data))
		default:
			s[i] = m.Type + string(m.Data)
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}

// node2Compare reports how got differs from want ("" when equal): which
// accepted messages never reached the Node application.
func node2Compare(got []nodepeer.Msg, want []node2Want) string {
	if len(got) == len(want) {
		same := true
		for i := range want {
			if !want[i].matches(got[i]) {
				same = false
				break
			}
		}
		if same {
			return ""
		}
	}
	var lost []string
	j := 0
	for _, w := range want {
		k := j
		for k < len(got) && !w.matches(got[k]) {
			k++
		}
		if k == len(got) {
			lost = append(lost, w.String())
			continue
		}
		j = k + 1
	}
	return fmt.Sprintf("%d of %d accepted messages reached the Node application; lost %v; received %s",
		len(want)-len(lost), len(want), lost, node2Show(got))
}

// node2Check waits (up to wait, or until the peer's connection ended) for
// want to reach p's application, and fails the test if it did not, exactly
// and in order. It logs the peer's count of corrupted data, which is not
// asserted: a probe ping sent with our transition line may be lost that
// way on purpose.
func node2Check(t *testing.T, what string, p *nodepeer.Peer, want []node2Want, wait time.Duration) bool {
	t.Helper()
	got, _ := p.WaitMessages(len(want), wait)
	t.Logf("%s: Node peer reported %d corrupted line(s)/frame(s), %d bytes stranded in its JSON buffer", what, p.Corrupted(), p.JSONBuffered())
	if d := node2Compare(got, want); d != "" {
		t.Errorf("%s: %s", what, d)
		return false
	}
	return true
}

// node2Addr is a free address to listen on for network: a loopback port,
// or a socket path in a fresh temp dir.
func node2Addr(t *testing.T, network string) string {
	if network == "unix" {
		return shortSocketPath(t)
	}
	return "127.0.0.1:0"
}

// node2Server starts an emulated Node server and closes it at cleanup.
func node2Server(t *testing.T, network, addr string, o nodepeer.Options) *nodepeer.Server {
	t.Helper()
	srv, err := nodepeer.Listen(network, addr, o)
	noErr(t, err)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// node2Peer returns the n-th (from 0) connection the emulated server
// accepted.
func node2Peer(t *testing.T, srv *nodepeer.Server, n int) *nodepeer.Peer {
	t.Helper()
	peers, err := srv.WaitPeers(n+1, node2Wait)
	noErr(t, err)
	return peers[n]
}

// node2Done waits for the emulated peer's reading to end (the Go side
// closed the connection).
func node2Done(t *testing.T, p *nodepeer.Peer) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(node2Wait):
		t.Fatalf("the emulated Node peer did not see the connection end within %s", node2Wait)
	}
}

// node2Client is a Go client for the emulated server at network/addr,
// closed at cleanup.
func node2Client(t *testing.T, network, addr string, o ClientOptions) *Client {
	t.Helper()
	if network == "unix" {
		o.Path = addr
	} else {
		o.Addr = addr
	}
	o.ConnOptions = fastOpts()
	c := NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func node2Blob(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251) // every byte value but 251..255, newlines included
	}
	return b
}

// a. A Go client sends right after Start: an object, a typed buffer, a
// request (echoed by the Node server) and more objects, over TCP and a
// Unix socket.
func TestNode2ClientSends(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := node2Server(t, network, node2Addr(t, network), nodepeer.Options{ReadDelay: node2ReadDelay, Echo: true})
			c := node2Client(t, network, srv.Addr().String(), ClientOptions{})
			ctx := testCtx(t)
			noErr(t, c.Start(ctx))
			var want []node2Want
			send := func(i int) {
				if err := c.Send(ctx, map[string]int{"i": i}); err != nil {
					t.Errorf("Send %d: %v", i, err)
					return
				}
				want = append(want, node2JSON("Object", fmt.Sprintf(`{"i":%d}`, i)))
			}
			send(1)
			blob := node2Blob(300)
			if err := c.SendTyped(ctx, "Tile", blob); err != nil {
				t.Errorf("SendTyped: %v", err)
			} else {
				want = append(want, node2Want{typ: "Tile", data: blob, bytes: true})
			}
			rctx, cancel := context.WithTimeout(ctx, node2Wait)
			reply, err := c.Request(rctx, map[string]int{"i": 2})
			cancel()
			switch {
			case err != nil:
				t.Errorf("Request: %v (the Node server echoes every request it receives)", err)
			case reply.Type != "Object" || string(reply.JSON()) != `{"i":2}`:
				t.Errorf("Request: reply %s %s, want the echo Object {\"i\":2}", reply.Type, reply.JSON())
			}
			if err == nil {
				want = append(want, node2Want{typ: "Object", data: []byte(`{"i":2}`), request: true})
			}
			for i := 3; i <= 5; i++ {
				send(i)
			}
			node2Check(t, "client sends", node2Peer(t, srv, 0), want, node2Wait)
		})
	}
}

// b. Start, Send, Close at once: Close flushes what was accepted.
func TestNode2ClientSendClose(t *testing.T) {
	srv := node2Server(t, "tcp", "127.0.0.1:0", nodepeer.Options{ReadDelay: node2ReadDelay})
	const runs = 10
	lost := 0
	for run := range runs {
		c := node2Client(t, "tcp", srv.Addr().String(), ClientOptions{})
		ctx := testCtx(t)
		noErr(t, c.Start(ctx))
		var want []node2Want
		if err := c.Send(ctx, map[string]int{"run": run}); err != nil {
			t.Errorf("run %d: Send: %v", run, err)
		} else {
			want = append(want, node2JSON("Object", fmt.Sprintf(`{"run":%d}`, run)))
		}
		if err := c.Close(); err != nil {
			t.Errorf("run %d: Close: %v", run, err)
		}
		p := node2Peer(t, srv, run)
		node2Done(t, p)
		if !node2Check(t, fmt.Sprintf("run %d", run), p, want, 0) {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d runs lost the message sent right before Close", lost, runs)
	}
}

// c. A Go server sends to a Node client and closes the session right after
// the session's handshake succeeded.
func TestNode2SessionSendClose(t *testing.T) {
	var mu sync.Mutex
	sent := map[string]node2Want{} // by the Node client's address
	o := ServerOptions{Addr: "127.0.0.1:0", ConnOptions: fastOpts()}
	o.OnHandshake = func(s *Session, ok bool, err error) {
		if !ok {
			t.Errorf("session %d: handshake failed: %v", s.ID(), err)
			return
		}
		if err := s.Send(s.Context(), map[string]uint64{"session": s.ID()}); err != nil {
			t.Errorf("session %d: Send: %v", s.ID(), err)
		} else {
			mu.Lock()
			sent[s.RemoteAddr().String()] = node2JSON("Object", fmt.Sprintf(`{"session":%d}`, s.ID()))
			mu.Unlock()
		}
		s.Close()
	}
	srv := NewServer(o)
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })

	const runs = 10
	lost := 0
	for run := range runs {
		p, err := nodepeer.Dial("tcp", srv.Addr().String(), nodepeer.Options{ReadDelay: node2ReadDelay})
		noErr(t, err)
		t.Cleanup(func() { p.Close() })
		node2Done(t, p)
		mu.Lock()
		w, ok := sent[p.Conn().LocalAddr().String()]
		mu.Unlock()
		var want []node2Want
		if ok {
			want = append(want, w)
		}
		if !node2Check(t, fmt.Sprintf("run %d", run), p, want, 0) {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d runs lost the message a session sent right before Session.Close", lost, runs)
	}
}

// d. Server.SendAll to Node clients, called as each finishes its
// handshake: every client must get every broadcast made once its session
// had handshaken (and may get earlier ones), in order.
func TestNode2SendAll(t *testing.T) {
	const clients = 5
	var (
		mu    sync.Mutex
		srv   *Server
		seq   int
		owed  = map[string][]int{} // Node client address -> broadcasts it must get
		ready = make(chan struct{}, clients)
	)
	o := ServerOptions{Addr: "127.0.0.1:0", ConnOptions: fastOpts()}
	o.OnHandshake = func(s *Session, ok bool, err error) {
		defer func() { ready <- struct{}{} }()
		if !ok {
			t.Errorf("session %d: handshake failed: %v", s.ID(), err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		owed[s.RemoteAddr().String()] = nil
		seq++
		if err := srv.SendAll(s.Context(), map[string]int{"k": seq}); err != nil {
			t.Errorf("SendAll %d: %v", seq, err)
			return
		}
		for addr := range owed {
			owed[addr] = append(owed[addr], seq)
		}
	}
	srv = NewServer(o)
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })

	peers := make([]*nodepeer.Peer, clients)
	for i := range peers {
		p, err := nodepeer.Dial("tcp", srv.Addr().String(), nodepeer.Options{ReadDelay: node2ReadDelay})
		noErr(t, err)
		t.Cleanup(func() { p.Close() })
		peers[i] = p
	}
	for range clients {
		recv(t, ready, "a session handshake")
	}
	mu.Lock()
	defer mu.Unlock()
	deadline := time.Now().Add(node2Wait)
	failed := 0
	for i, p := range peers {
		must := owed[p.Conn().LocalAddr().String()]
		if len(must) == 0 {
			t.Fatalf("client %d: its session never finished its handshake", i)
		}
		// Broadcasts made before its handshake may arrive too (in JSON);
		// wait until every one it is owed did, or the deadline.
		var ks []int
		var got []nodepeer.Msg
		for {
			got = p.Messages()
			ks = ks[:0]
			for _, m := range got {
				var k int
				if _, err := fmt.Sscanf(string(m.Data), `{"k":%d}`, &k); err != nil || m.Type != "Object" {
					k = -1
				}
				ks = append(ks, k)
			}
			if node2Contains(ks, must) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("client %d: Node peer reported %d corrupted line(s)/frame(s)", i, p.Corrupted())
		ordered := true
		for j := 1; j < len(ks); j++ {
			if ks[j] <= ks[j-1] {
				ordered = false
			}
		}
		if !node2Contains(ks, must) || !ordered {
			failed++
			t.Errorf("client %d: owed broadcasts %v (sent after its handshake), received %s", i, must, node2Show(got))
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d Node clients missed broadcasts", failed, clients)
	}
}

func node2Contains(have, want []int) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// e. Node clients send requests as soon as their transmit side switched to
// binary; the Go server's handler replies; every reply must arrive.
func TestNode2HandlerReplies(t *testing.T) {
	const clients, requests = 3, 5
	var mu sync.Mutex
	handled := map[string]bool{} // request data -> the reply was accepted
	o := ServerOptions{Addr: "127.0.0.1:0", ConnOptions: fastOpts()}
	srv := NewServer(o)
	srv.Handle("Ask", func(ctx context.Context, m *Message) error {
		var v map[string]int
		if err := m.Decode(&v); err != nil {
			return err
		}
		err := m.Reply(ctx, v)
		mu.Lock()
		handled[string(m.JSON())] = err == nil
		mu.Unlock()
		return err
	})
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })

	type req struct {
		id, data string
	}
	sentCh := make(chan []req, clients)
	peers := make([]*nodepeer.Peer, clients)
	for c := range peers {
		onTx := func(p *nodepeer.Peer) {
			var sent []req
			for i := range requests {
				data := fmt.Sprintf(`{"c":%d,"i":%d}`, c, i)
				id, err := p.Request("Ask", json.RawMessage(data))
				if err != nil {
					t.Errorf("client %d: Node request %d: %v", c, i, err)
					continue
				}
				sent = append(sent, req{id, data})
			}
			sentCh <- sent
		}
		p, err := nodepeer.Dial("tcp", srv.Addr().String(), nodepeer.Options{ReadDelay: node2ReadDelay, OnTxBinary: onTx})
		noErr(t, err)
		t.Cleanup(func() { p.Close() })
		peers[c] = p
	}
	var all []req
	for range clients {
		all = append(all, recv(t, sentCh, "a Node client's switch to binary")...)
	}
	deadline := time.Now().Add(node2Wait)
	var lost []string
	for _, r := range all {
		var c int
		_, _ = fmt.Sscanf(r.data, `{"c":%d`, &c)
		p := peers[c]
		got, err := p.WaitReply(r.id, max(time.Until(deadline), time.Millisecond))
		mu.Lock()
		accepted, seen := handled[r.data]
		mu.Unlock()
		switch {
		case !seen:
			t.Errorf("request %s never reached the Go handler", r.data)
		case !accepted:
			t.Logf("request %s: the handler's Reply failed; not counted", r.data)
		case err != nil:
			lost = append(lost, r.data)
		case got.Type != "Object" || string(got.Data) != r.data:
			t.Errorf("request %s: reply %v", r.data, got)
		}
	}
	for c, p := range peers {
		t.Logf("client %d: Node peer reported %d corrupted line(s)/frame(s), %d bytes stranded in its JSON buffer, rx binary %v, replies %v", c, p.Corrupted(), p.JSONBuffered(), p.RxBinary(), p.Replies())
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d accepted replies never reached the Node clients: %v", len(lost), len(all), lost)
	}
}

// f. Messages held by the reconnect buffer while the Node server is away
// are flushed to the new one.
func TestNode2ReconnectFlush(t *testing.T) {
	o := nodepeer.Options{ReadDelay: node2ReadDelay}
	srv1, err := nodepeer.Listen("tcp", "127.0.0.1:0", o)
	noErr(t, err)
	t.Cleanup(func() { srv1.Close() })
	addr := srv1.Addr().String()
	lostConn := make(chan struct{}, 1)
	c := node2Client(t, "tcp", addr, ClientOptions{
		AutoReconnect:       true,
		ReconnectInterval:   50 * time.Millisecond,
		ReconnectBufferSize: 1 << 20,
		OnDisconnect: func(*Client, error) {
			select {
			case lostConn <- struct{}{}:
			default:
			}
		},
	})
	ctx := testCtx(t)
	noErr(t, c.Start(ctx))
	noErr(t, srv1.Close())
	recv(t, lostConn, "the client noticing the server is gone")

	var want []node2Want
	for i := 1; i <= 5; i++ {
		v := map[string]int{"held": i}
		err := c.Send(ctx, v)
		// Between the disconnect and the start of the reconnect loop a
		// send may still be refused; retry (bounded) until it is held.
		for deadline := time.Now().Add(node2Wait); errors.Is(err, ErrNotConnected) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
			err = c.Send(ctx, v)
		}
		if err != nil {
			t.Fatalf("Send %d while reconnecting: %v", i, err)
		}
		want = append(want, node2JSON("Object", fmt.Sprintf(`{"held":%d}`, i)))
	}
	srv2 := node2Server(t, "tcp", addr, o)
	node2Check(t, "held messages", node2Peer(t, srv2, 0), want, node2Wait)
}

// g. A 2 MiB typed buffer right after Start, then a small message.
func TestNode2LargeTyped(t *testing.T) {
	srv := node2Server(t, "tcp", "127.0.0.1:0", nodepeer.Options{ReadDelay: node2ReadDelay})
	blob := node2Blob(2 << 20) // made first: SendTyped must follow Start at once
	c := node2Client(t, "tcp", srv.Addr().String(), ClientOptions{})
	ctx := testCtx(t)
	noErr(t, c.Start(ctx))
	var want []node2Want
	if err := c.SendTyped(ctx, "Big", blob); err != nil {
		t.Errorf("SendTyped: %v", err)
	} else {
		want = append(want, node2Want{typ: "Big", data: blob, bytes: true})
	}
	if err := c.Send(ctx, map[string]int{"after": 1}); err != nil {
		t.Errorf("Send: %v", err)
	} else {
		want = append(want, node2JSON("Object", `{"after":1}`))
	}
	// 2 MiB in 64 KiB reads, each after the read delay: about a second.
	node2Check(t, "large buffer", node2Peer(t, srv, 0), want, 6*time.Second)
}

// h. TLS: a Node server has no TLS of its own (PROTOCOL.md 1.1) and is
// served behind a TLS terminator, which passes on what it decrypts as it
// comes; the Node server then reads it from its TCP socket. Start, Send,
// Close.
func TestNode2TLS(t *testing.T) {
	p := certs(t)
	srv := node2Server(t, "tcp", "127.0.0.1:0", nodepeer.Options{ReadDelay: node2ReadDelay})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.server}})
	noErr(t, err)
	relay := nodepeer.NewRelay(ln, "tcp", srv.Addr().String())
	t.Cleanup(func() { relay.Close() })

	c := node2Client(t, "tcp", relay.Addr().String(), ClientOptions{TLSConfig: &tls.Config{RootCAs: p.caPool}})
	ctx := testCtx(t)
	noErr(t, c.Start(ctx))
	var want []node2Want
	for i := 1; i <= 3; i++ {
		if err := c.Send(ctx, map[string]int{"tls": i}); err != nil {
			t.Errorf("Send %d: %v", i, err)
			continue
		}
		want = append(want, node2JSON("Object", fmt.Sprintf(`{"tls":%d}`, i)))
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	peer := node2Peer(t, srv, 0)
	node2Done(t, peer)
	node2Check(t, "over TLS", peer, want, 0)
}

// i. A write cut by inlineWriteMax while our transition line waits behind
// it: Connect (not Start) to a Node server that is not reading yet, a
// 2 MiB request, which its caller writes itself until the full socket
// buffers make the write stop and leave the rest to the writer; then the
// server reads, the handshake finishes, and the line and the frames after
// it queue behind that rest. The engine before this held its frames after
// the rest instead of after the line: the line and the first frames
// shared a read and were lost.
func TestNode2CutWriteBeforeLine(t *testing.T) {
	hold := make(chan struct{})
	srv := node2Server(t, "unix", shortSocketPath(t), nodepeer.Options{ReadDelay: node2ReadDelay, Echo: true, Hold: hold})
	c := node2Client(t, "unix", srv.Addr().String(), ClientOptions{Dial: smallSendBuffer(64 << 10)})
	ctx := testCtx(t)
	big := strings.Repeat("b", 2<<20)
	noErr(t, c.Connect(ctx))
	replied := make(chan error, 1)
	go func() {
		_, err := c.Request(ctx, Named{Type: "Big", Data: big})
		replied <- err
	}()
	// The request is queued in JSON mode and its write was cut: the peer
	// reads nothing yet, so nothing else can have happened.
	eventually(t, "the request's write to be cut", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cur != nil && c.cur.stats.leftToWriter.Load() > 0
	})
	equal(t, "still in JSON mode", c.State().TxBinary, false)
	close(hold)
	eventually(t, "the switch to binary", func() bool { return c.State().TxBinary })
	want := []node2Want{{typ: "Big", data: []byte(`"` + big + `"`), request: true}}
	for i := 1; i <= 3; i++ {
		if err := c.Send(ctx, map[string]int{"after": i}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		want = append(want, node2JSON("Object", fmt.Sprintf(`{"after":%d}`, i)))
	}
	if err := <-replied; err != nil {
		t.Errorf("Request: %v", err)
	}
	node2Check(t, "after a cut write", node2Peer(t, srv, 0), want, 6*time.Second)
}

// BenchmarkNode2FirstFrame measures how soon the first frame sent right
// after Start reaches an idle emulated Node 2.1.0 server: the wait for the
// proof that it reads binary frames (first-frame-µs, from Start's return to
// the message's arrival; the engine before held frames a fixed 10 ms), and
// how many corrupted pieces the peer reported per connection (each an
// 'error' event on a real Node peer: a probe that shared its read with the
// transition line).
func BenchmarkNode2FirstFrame(b *testing.B) {
	srv, err := nodepeer.Listen("tcp", "127.0.0.1:0", nodepeer.Options{})
	noErr(b, err)
	defer srv.Close()
	ctx := context.Background()
	var total time.Duration
	corrupted := 0
	for i := 0; b.Loop(); i++ {
		c := NewClient(ClientOptions{Addr: srv.Addr().String(), ConnOptions: fastOpts()})
		noErr(b, c.Start(ctx))
		start := time.Now()
		noErr(b, c.Send(ctx, map[string]int{"first": i}))
		peers, err := srv.WaitPeers(i+1, node2Wait)
		noErr(b, err)
		if _, err := peers[i].WaitMessages(1, node2Wait); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		c.Close()
		corrupted += peers[i].Corrupted()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "first-frame-µs")
	b.ReportMetric(float64(corrupted)/float64(b.N), "corrupted/conn")
}
