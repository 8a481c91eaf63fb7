package sockhop

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relay is a TCP proxy for fault tests: it forwards both directions between
// the connections it accepts and a target, optionally cutting every
// forwarded read into pieces of at most split bytes, or swallowing
// everything (blackhole) while keeping the connections open.
type relay struct {
	ln        net.Listener
	target    string
	split     int
	blackhole atomic.Bool
	// delay, when set, holds each forwarded read for delay plus up to
	// jitter, in order (latency, not reordering).
	delay, jitter atomic.Int64 // time.Duration
	wg            sync.WaitGroup
	mu            sync.Mutex
	conns         []net.Conn
	done          chan struct{} // closed by close
}

func newRelay(t *testing.T, target string, split int) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	r := &relay{ln: ln, target: target, split: split, done: make(chan struct{})}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		if r.blackhole.Load() { // a dead path: nothing gets through
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", r.target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, in, out)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(in, out)
		go r.pipe(out, in)
	}
}

// pipe copies src to dst until either side fails, then closes both.
func (r *relay) pipe(src, dst net.Conn) {
	defer r.wg.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if d := time.Duration(r.delay.Load()); n > 0 && d > 0 {
			time.Sleep(d + time.Duration(rand.Int64N(r.jitter.Load()+1)))
		}
		if n > 0 && !r.blackhole.Load() {
			b := buf[:n]
			for len(b) > 0 {
				k := len(b)
				if r.split > 0 && k > r.split {
					k = r.split
				}
				if _, werr := dst.Write(b[:k]); werr != nil {
					return
				}
				b = b[k:]
			}
		}
		if err != nil {
			if r.blackhole.Load() {
				// A dead path delivers no FIN either: hold dst open until
				// the test cuts or closes the relay.
				<-r.done
				return
			}
			if err == io.EOF {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
					continue
				}
			}
			return
		}
	}
}

// cut closes every relayed connection, as a network failure would.
func (r *relay) cut() {
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
}

func (r *relay) close() {
	close(r.done)
	r.ln.Close()
	r.cut()
	r.wg.Wait()
}
