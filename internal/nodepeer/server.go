package nodepeer

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Server is an emulated Node Sockhop 2.1.0 server: a Peer for each
// connection its listener accepts, started at once (a server without a
// session start() hook writes its handshake as soon as it accepted).
type Server struct {
	ln net.Listener
	o  Options
	wg sync.WaitGroup

	mu      sync.Mutex
	peers   []*Peer
	closed  bool
	changed chan struct{} // closed and replaced when a peer is added
}

// Serve accepts connections on ln (TCP, a Unix socket, a tls listener...)
// until Close, which also closes ln.
func Serve(ln net.Listener, o Options) *Server {
	s := &Server{ln: ln, o: o, changed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Listen listens on network and address ("tcp", "127.0.0.1:0" or "unix",
// a path) and serves.
func Listen(network, address string, o Options) (*Server, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return Serve(ln, o), nil
}

// Addr returns the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed (any other accept error ends the emulation too)
		}
		p := New(c, s.o)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.peers = append(s.peers, p)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		p.Start()
	}
}

// Peers returns the peers of the connections accepted so far, in order.
func (s *Server) Peers() []*Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Peer(nil), s.peers...)
}

// WaitPeers waits until at least n connections were accepted.
func (s *Server) WaitPeers(n int, timeout time.Duration) ([]*Peer, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		peers := append([]*Peer(nil), s.peers...)
		ch := s.changed
		s.mu.Unlock()
		if len(peers) >= n {
			return peers, nil
		}
		select {
		case <-ch:
		case <-t.C:
			return peers, fmt.Errorf("nodepeer: %d of %d connections accepted within %s", len(peers), n, timeout)
		}
	}
}

// Close stops accepting, closes every connection and waits for every
// goroutine of the server. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	for _, p := range s.Peers() {
		_ = p.Close()
	}
	return err
}
