package nodepeer

import (
	"io"
	"net"
	"sync"
)

// Relay accepts connections on a listener and relays each, byte for byte in
// both directions, to a new connection to a target address. With a tls
// listener it is a TLS terminator: the way a Node Sockhop 2.x server, which
// has no TLS of its own (PROTOCOL.md 1.1), is served over TLS. What it
// decrypts is written on as it comes, and the emulated server reads it from
// its TCP socket, where writes made during its ReadDelay arrive in one read
// as they would behind a real terminator.
type Relay struct {
	ln              net.Listener
	network, target string
	wg              sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// NewRelay relays the connections ln accepts to network/target until Close,
// which also closes ln.
func NewRelay(ln net.Listener, network, target string) *Relay {
	r := &Relay{ln: ln, network: network, target: target, conns: make(map[net.Conn]struct{})}
	r.wg.Add(1)
	go r.accept()
	return r
}

// Addr returns the listener's address.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		if !r.track(c) {
			_ = c.Close()
			return
		}
		r.wg.Add(1)
		go r.relay(c)
	}
}

// track records c for Close; false once closed.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	_ = c.Close()
}

func (r *Relay) relay(in net.Conn) {
	defer r.wg.Done()
	defer r.untrack(in)
	out, err := net.Dial(r.network, r.target)
	if err != nil {
		return
	}
	if !r.track(out) {
		_ = out.Close()
		return
	}
	defer r.untrack(out)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(in, out)
		closeWrite(in)
	}()
	_, _ = io.Copy(out, in)
	closeWrite(out)
	<-done
}

// closeWrite passes an end of stream on: a half close where the connection
// has one (TCP, Unix, TLS).
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// Close stops accepting, closes every relayed connection and waits for the
// relay's goroutines. It is idempotent.
func (r *Relay) Close() error {
	r.mu.Lock()
	first := !r.closed
	r.closed = true
	conns := make([]net.Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	var err error
	if first {
		err = r.ln.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	r.wg.Wait()
	return err
}
