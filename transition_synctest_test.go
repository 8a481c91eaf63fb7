package sockhop

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sockhop/sockhop-go/internal/nodepeer"
)

// The proof of the switch to binary mode and the engine's fast paths, met
// with each other under testing/synctest: the production engine over
// memPipe (which merges writes into reads like a socket, with backpressure
// and write deadlines) against the emulated Node 2.1.0 receiver, all on the
// bubble's fake clock. Every duration below is exact.

const memSize = 256 << 10 // about a loopback socket's buffer

// memNode connects clients to emulated Node servers over memPipe: dial has
// ClientOptions.Dial's signature, and each dial starts a nodepeer.Peer on
// the other end, sent on peers.
type memNode struct {
	o     nodepeer.Options
	size  int
	peers chan *nodepeer.Peer
	mu    sync.Mutex
	all   []*nodepeer.Peer // closed at cleanup
	// wrap, when set, stands between the client's end and the peer's (a
	// TLS terminator).
	wrap func(client net.Conn) net.Conn
}

func newMemNode(t *testing.T, o nodepeer.Options) *memNode {
	n := &memNode{o: o, size: memSize, peers: make(chan *nodepeer.Peer, 16)}
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, p := range n.all {
			p.Close()
		}
	})
	return n
}

func (n *memNode) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := memPipe(n.size)
	if n.wrap != nil {
		s = n.wrap(s)
	}
	p := nodepeer.New(s, n.o)
	p.Start()
	n.mu.Lock()
	n.all = append(n.all, p)
	n.mu.Unlock()
	n.peers <- p
	return c, nil
}

// client returns a started client of a new emulated Node server.
func (n *memNode) client(t *testing.T, edit func(*ClientOptions)) (*Client, *nodepeer.Peer) {
	t.Helper()
	o := ClientOptions{Dial: n.dial, ConnOptions: fastOpts()}
	if edit != nil {
		edit(&o)
	}
	c := NewClient(o)
	t.Cleanup(func() { c.Close() })
	noErr(t, c.Start(context.Background()))
	return c, <-n.peers
}

// wantMessages checks that the peer's application got exactly these
// messages (type and JSON data), in order, once the connection ended.
func wantMessages(t *testing.T, p *nodepeer.Peer, want ...string) {
	t.Helper()
	got, _ := p.WaitMessages(len(want), 10*time.Second)
	var s []string
	for _, m := range got {
		if m.Bytes {
			s = append(s, fmt.Sprintf("%s(%d bytes)", m.Type, len(m.Data)))
		} else {
			s = append(s, m.Type+string(m.Data))
		}
	}
	if strings.Join(s, " ") != strings.Join(want, " ") {
		t.Fatalf("the Node application got %v, want %v (corrupted pieces: %d)", s, want, p.Corrupted())
	}
}

// TestSyncProofIdlePeer: towards an idle Node peer the first probe goes
// out 1 ms after the line, in a read of its own, so the peer reports no
// corrupted data at all, and the first frames wait one round trip more.
func TestSyncProofIdlePeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{})
		c, p := n.client(t, nil)
		ctx := context.Background()
		noErr(t, c.Send(ctx, Named{Type: "A", Data: 1}))
		noErr(t, c.SendTyped(ctx, "Tile", []byte{1, 2, 3}))
		noErr(t, c.Close())
		wantMessages(t, p, "A1", "Tile(3 bytes)")
		equal(t, "corrupted", p.Corrupted(), 0)
		st := c.Stats()
		equal(t, "guarded", st.GuardedTransitions, uint64(1))
		equal(t, "unproven", st.UnprovenTransitions, uint64(0))
		equal(t, "proof took", st.TransitionProof, probeFirst)
	})
}

// TestSyncProofBusyPeer: a peer whose event loop is busy 30 ms before each
// read gets the line and the first probes in one read (lost, as the frames
// would have been) and answers the first probe of a later read.
func TestSyncProofBusyPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{ReadDelay: 30 * time.Millisecond})
		c, p := n.client(t, nil)
		ctx := context.Background()
		for i := range 3 {
			noErr(t, c.Send(ctx, Named{Type: "A", Data: i}))
		}
		noErr(t, c.Close())
		wantMessages(t, p, "A0", "A1", "A2")
		st := c.Stats()
		equal(t, "unproven", st.UnprovenTransitions, uint64(0))
		t.Logf("proof after %s; the peer reported %d corrupted pieces (the probes of its first read)", st.TransitionProof, p.Corrupted())
		if st.TransitionProof < 30*time.Millisecond || st.TransitionProof > 100*time.Millisecond {
			t.Fatalf("proof took %s", st.TransitionProof)
		}
	})
}

// TestSyncProofTimeout: a peer that answers no ping gets the held frames
// when TransitionProofTimeout runs out, exactly then, and it is counted.
func TestSyncProofTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{IgnorePings: true})
		c, p := n.client(t, func(o *ClientOptions) { o.TransitionProofTimeout = 500 * time.Millisecond })
		start := time.Now()
		noErr(t, c.Send(context.Background(), Named{Type: "A", Data: 1}))
		wantMessages(t, p, "A1")
		if took := time.Since(start); took < 500*time.Millisecond || took > 510*time.Millisecond {
			t.Fatalf("the frame arrived after %s, want the 500 ms bound", took)
		}
		equal(t, "unproven", c.Stats().UnprovenTransitions, uint64(1))
		equal(t, "proof recorded", c.Stats().TransitionProof, time.Duration(0))
	})
}

// TestSyncCloseWaitsForProof: Send then Close at once: the graceful close
// waits for the proof, which Close used to cut short. Against a peer that
// never answers, it waits WriteTimeout at most, then writes the frames.
func TestSyncCloseWaitsForProof(t *testing.T) {
	for _, silent := range []bool{false, true} {
		t.Run(map[bool]string{false: "answering", true: "silent"}[silent], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newMemNode(t, nodepeer.Options{ReadDelay: 30 * time.Millisecond, IgnorePings: silent})
				c, p := n.client(t, func(o *ClientOptions) { o.WriteTimeout = 200 * time.Millisecond })
				noErr(t, c.Send(context.Background(), Named{Type: "Last", Data: 1}))
				start := time.Now()
				noErr(t, c.Close())
				took := time.Since(start)
				wantMessages(t, p, "Last1")
				unproven := c.Stats().UnprovenTransitions
				t.Logf("Close took %s, unproven %d", took, unproven)
				if silent && (unproven != 1 || took < 200*time.Millisecond) {
					t.Fatalf("silent peer: Close took %s, unproven %d; want the 200 ms WriteTimeout bound and 1", took, unproven)
				}
				if !silent && unproven != 0 {
					t.Fatal("answering peer: the frames went unproven")
				}
			})
		})
	}
}

// TestSyncCutWriteBeforeLine: a request's write is cut by inlineWriteMax
// (the peer reads slowly) while our transition line is queued behind it:
// the rest of the request goes first, the next write still stops after
// the line, and the frames after it wait for the proof. The engine before
// held after the cut rest instead of after the line, and lost the frames.
//
// With a TransitionProofTimeout shorter than the rest takes to drain (16
// reads 30 ms apart), the proof still comes: the timeout counts from the
// line written, not queued (a CI run under load lost the frames when it
// counted from the switch).
func TestSyncCutWriteBeforeLine(t *testing.T) {
	for _, proof := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run(fmt.Sprintf("TransitionProofTimeout=%s", proof), func(t *testing.T) { syncCutWriteBeforeLine(t, proof) })
	}
}

func syncCutWriteBeforeLine(t *testing.T, proof time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{ReadDelay: 30 * time.Millisecond, Echo: true})
		n.size = 64 << 10
		co := fastOpts()
		co.TransitionProofTimeout = proof
		c := NewClient(ClientOptions{Dial: n.dial, ConnOptions: co})
		t.Cleanup(func() { c.Close() })
		ctx := context.Background()
		noErr(t, c.Connect(ctx))
		p := <-n.peers
		big := strings.Repeat("b", 1<<20)
		replied := make(chan error, 1)
		go func() {
			_, err := c.Request(ctx, Named{Type: "Big", Data: big})
			replied <- err
		}()
		for !c.State().TxBinary {
			time.Sleep(time.Millisecond)
		}
		for i := range 3 {
			noErr(t, c.Send(ctx, Named{Type: "After", Data: i}))
		}
		noErr(t, <-replied)
		noErr(t, c.Close())
		if c.cur.stats.leftToWriter.Load() == 0 {
			t.Fatal("no write was cut: the test missed the path it is for")
		}
		equal(t, "unproven transitions", c.Stats().UnprovenTransitions, uint64(0))
		wantMessages(t, p, "Big\""+big+"\"", "After0", "After1", "After2")
	})
}

// TestSyncBackpressureWhileHeld: more than MaxQueueBytes sent while the
// frames are held: Send waits (backpressure, not an error), and everything
// arrives in order once the proof came.
func TestSyncBackpressureWhileHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{ReadDelay: 30 * time.Millisecond})
		c, p := n.client(t, func(o *ClientOptions) { o.MaxQueueBytes = 16 << 10 })
		var want []string
		payload := strings.Repeat("x", 1000)
		for i := range 100 {
			noErr(t, c.Send(context.Background(), Named{Type: fmt.Sprint("M", i), Data: payload}))
			want = append(want, fmt.Sprintf("M%d%q", i, payload))
		}
		noErr(t, c.Close())
		wantMessages(t, p, want...)
	})
}

// TestSyncInlineRepliesHeld: an emulated Node client sends requests the
// moment it switched to binary; a Go server with InlineHandlers answers
// them from its reader, and the replies, left for the reader, wait behind
// the barrier like everything else.
func TestSyncInlineRepliesHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newMemListener()
		o := ServerOptions{ConnOptions: fastOpts()}
		o.InlineHandlers = true
		srv := NewServer(o)
		srv.Handle("Q", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		t.Cleanup(func() { srv.Close(); <-served })
		var ids []string
		var mu sync.Mutex
		p := nodepeer.New(l.dial(), nodepeer.Options{ReadDelay: 30 * time.Millisecond, OnTxBinary: func(p *nodepeer.Peer) {
			for i := range 5 {
				id, err := p.Request("Q", i)
				if err == nil {
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				}
			}
		}})
		p.Start()
		defer p.Close()
		for i := range 5 {
			for {
				mu.Lock()
				k := len(ids)
				mu.Unlock()
				if k == 5 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			r, err := p.WaitReply(ids[i], 5*time.Second)
			noErr(t, err)
			equal(t, "reply", string(r.Data), fmt.Sprint(i))
		}
	})
}

// TestSyncTLSProof: over TLS only the writer goroutine writes (a cut TLS
// write breaks the connection); the proof works the same behind a TLS
// terminator, which hands the peer the plaintext of several records in
// one read.
func TestSyncTLSProof(t *testing.T) {
	// Made outside the bubble, whose clock starts in 2000: certificates
	// made inside would not be valid for the tests outside it.
	pki := certs(t)
	validAt := pki.server.Leaf.NotBefore.Add(time.Hour)
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{ReadDelay: 30 * time.Millisecond})
		n.wrap = func(enc net.Conn) net.Conn {
			plainPeer, plainOurs := memPipe(memSize)
			ts := tls.Server(enc, &tls.Config{Certificates: []tls.Certificate{pki.server}})
			go func() {
				defer plainOurs.Close()
				defer ts.Close()
				go func() { io.Copy(ts, plainOurs) }()
				io.Copy(plainOurs, ts)
			}()
			return plainPeer
		}
		c, p := n.client(t, func(o *ClientOptions) {
			o.TLSConfig = &tls.Config{RootCAs: pki.caPool, ServerName: "localhost",
				Time: func() time.Time { return validAt }} // the bubble's clock is in 2000
		})
		for i := range 3 {
			noErr(t, c.Send(context.Background(), Named{Type: "T", Data: i}))
		}
		// A large buffer: on TLS it is copied into the queue, never written
		// from the caller's memory by the caller (a cut TLS write is fatal).
		noErr(t, c.SendTyped(context.Background(), "Big", make([]byte, 512<<10)))
		noErr(t, c.Close())
		wantMessages(t, p, "T0", "T1", "T2", "Big(524288 bytes)")
		equal(t, "unproven", c.Stats().UnprovenTransitions, uint64(0))
	})
}

// TestSyncDirectWriteThenClose: a large buffer written from the caller's
// memory to a slow reader is cut after inlineWriteMax; its rest is copied
// before SendTyped returns (the caller then overwrites its buffer), and a
// Close right after still writes all of it.
func TestSyncDirectWriteThenClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNode(t, nodepeer.Options{ReadDelay: 30 * time.Millisecond})
		n.size = 64 << 10
		c, p := n.client(t, nil)
		noErr(t, c.Send(context.Background(), Named{Type: "First", Data: 0})) // waits for the proof
		for c.Stats().GuardedTransitions == 0 || c.cur.q.isHolding() {
			time.Sleep(time.Millisecond)
		}
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i % 251)
		}
		noErr(t, c.SendTyped(context.Background(), "Blob", buf))
		clear(buf) // ours again
		left := c.cur.stats.leftToWriter.Load()
		noErr(t, c.Close())
		if left == 0 {
			t.Fatal("the write was not cut: the test missed the path it is for")
		}
		got, err := p.WaitMessages(2, 10*time.Second)
		noErr(t, err)
		equal(t, "type", got[1].Type, "Blob")
		for i, b := range got[1].Data {
			if b != byte(i%251) {
				t.Fatalf("byte %d of the buffer changed on the way", i)
			}
		}
	})
}

// TestSyncInlineReplyThenClose: a handler on the reader replies (the reply
// is left for the reader) and closes its session at once: the graceful
// close writes the reply, behind the barrier, before the FIN.
func TestSyncInlineReplyThenClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newMemListener()
		o := ServerOptions{ConnOptions: fastOpts()}
		o.InlineHandlers = true
		srv := NewServer(o)
		srv.Handle("Bye", func(ctx context.Context, m *Message) error {
			err := m.Reply(ctx, "bye")
			m.Session().Close()
			return err
		})
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		t.Cleanup(func() { srv.Close(); <-served })
		idc := make(chan string, 1)
		p := nodepeer.New(l.dial(), nodepeer.Options{ReadDelay: 30 * time.Millisecond, OnTxBinary: func(p *nodepeer.Peer) {
			id, err := p.Request("Bye", 1)
			noErr(t, err)
			idc <- id
		}})
		p.Start()
		defer p.Close()
		r, err := p.WaitReply(<-idc, 5*time.Second)
		noErr(t, err)
		equal(t, "reply", string(r.Data), `"bye"`)
		<-p.Done()
	})
}

// TestSyncBidirectionalFlood: two Go peers, both with InlineHandlers (their
// readers write replies, cut after inlineWriteMax), request large buffers
// from each other through small buffers: every request is answered, none
// cut as a slow consumer, however the writes interleave.
func TestSyncBidirectionalFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := fastOpts()
		o.InlineHandlers = true
		o.WriteTimeout = 2 * time.Second
		l := newMemListener()
		l.size = 32 << 10
		so := ServerOptions{ConnOptions: o}
		srv, c := syncPairOn(t, l, so, ClientOptions{ConnOptions: o})
		echo := func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.Bytes()) }
		srv.Handle("Buffer", echo)
		c.Handle("Buffer", echo)
		noErr(t, c.Start(context.Background()))
		for len(srv.Sessions()) == 0 || !srv.Sessions()[0].State().TxBinary {
			time.Sleep(time.Millisecond)
		}
		sess := srv.Sessions()[0]
		payload := make([]byte, 512<<10)
		flood(t, context.Background(), []requester{c.Request, sess.Request}, 4, 4, payload, replyOf(len(payload)))
	})
}

// memListener is a net.Listener over memPipe (or net.Pipe) for Serve in a
// bubble.
type memListener struct {
	*pipeListener
	size int
}

func newMemListener() *memListener {
	return &memListener{pipeListener: newPipeListener(), size: memSize}
}

// dial returns the client's end of a new connection to the listener: a
// memPipe, or a net.Pipe when size is 0.
func (l *memListener) dial() net.Conn {
	var c, s net.Conn
	if l.size == 0 {
		c, s = net.Pipe()
	} else {
		c, s = memPipe(l.size)
	}
	l.conns <- s
	return c
}

// syncPairOn starts a server on l and a client of it, inside the bubble.
func syncPairOn(t *testing.T, l *memListener, so ServerOptions, co ClientOptions) (*Server, *Client) {
	t.Helper()
	srv := NewServer(so)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	co.Dial = func(context.Context, string, string) (net.Conn, error) { return l.dial(), nil }
	c := NewClient(co)
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		<-served
	})
	return srv, c
}
