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
	// rate, when set, limits each direction to rate bytes a second (a
	// slow link: what the sender writes beyond the buffers waits).
	rate atomic.Int64
	// rcvBuf, when set, is the kernel receive
	// buffer of the relay's client side (SO_RCVBUF, which also stops the
	// kernel growing it): with it a slow link holds back a bounded amount,
	// whatever the machine's autotuning allows.
	rcvBuf atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	done   chan struct{} // closed by close
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
		if tc, ok := in.(*net.TCPConn); ok && r.rcvBuf.Load() > 0 {
			tc.SetReadBuffer(int(r.rcvBuf.Load()))
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

// relayChunk is one read, to be written at a given time.
type relayChunk struct {
	at   time.Time
	data []byte
}

// pipe copies src to dst until either side fails, then closes both. With a
// delay, each read is written delay (plus jitter) after it was read, in
// order, by a second goroutine: the latency of a chunk does not add up
// with the chunks before it, as it would if the copying goroutine slept
// (a burst of pings would otherwise arrive ever later).
func (r *relay) pipe(src, dst net.Conn) {
	defer r.wg.Done()
	defer src.Close()
	defer dst.Close()
	chunks := make(chan relayChunk, 16) // bounded: a slow forward pushes back
	wrote := make(chan error, 1)
	go func() { wrote <- r.forward(dst, chunks) }()
	buf := make([]byte, 32<<10)
	var last time.Time
	var err error
	for {
		var n int
		n, err = src.Read(buf)
		if n > 0 {
			at := time.Now()
			if d := time.Duration(r.delay.Load()); d > 0 {
				at = at.Add(d + time.Duration(rand.Int64N(r.jitter.Load()+1)))
				if at.Before(last) {
					at = last // in order: never before the chunk ahead
				}
				last = at
			}
			select {
			case chunks <- relayChunk{at: at, data: append([]byte(nil), buf[:n]...)}:
			case <-wrote: // dst failed
				close(chunks)
				return
			}
		}
		if err != nil {
			break
		}
	}
	close(chunks)
	if werr := <-wrote; werr != nil {
		return
	}
	if r.blackhole.Load() {
		// A dead path delivers no FIN either: hold dst open until the test
		// cuts or closes the relay.
		<-r.done
		return
	}
	if err == io.EOF {
		if tc, ok := dst.(*net.TCPConn); ok {
			// Half-close, and keep both open until the other direction
			// ends (it closes both) or the relay closes.
			tc.CloseWrite()
			one := make([]byte, 1)
			for {
				if _, rerr := src.Read(one); rerr != nil && rerr != io.EOF {
					return
				}
				select {
				case <-r.done:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
}

// forward writes each chunk at its time, split into writes of at most
// r.split bytes, dropping it while the path is a blackhole.
func (r *relay) forward(dst net.Conn, chunks <-chan relayChunk) error {
	for ch := range chunks {
		if d := time.Until(ch.at); d > 0 {
			time.Sleep(d)
		}
		if r.blackhole.Load() {
			continue
		}
		b := ch.data
		for len(b) > 0 {
			k := len(b)
			if r.split > 0 && k > r.split {
				k = r.split
			}
			if _, err := dst.Write(b[:k]); err != nil {
				return err
			}
			if rate := r.rate.Load(); rate > 0 {
				time.Sleep(time.Duration(int64(k) * int64(time.Second) / rate))
			}
			b = b[k:]
		}
	}
	return nil
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

// TestRelayLatencyDoesNotAddUp: with a delay set, a chunk sent while an
// earlier one is still held arrives one delay after it was sent, not after
// the earlier chunk's delay plus its own (the relay used to sleep in its
// copying loop, so latencies added up and TestPingUnderLatency saw round
// trips of several intervals: a false ping timeout now and then).
func TestRelayLatencyDoesNotAddUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	defer ln.Close()
	got := make(chan time.Time, 2)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for range 2 {
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			got <- time.Now()
		}
	}()
	const delay = 100 * time.Millisecond
	r := newRelay(t, ln.Addr().String(), 0)
	r.delay.Store(int64(delay))
	c, err := net.Dial("tcp", r.addr())
	noErr(t, err)
	defer c.Close()
	_, err = c.Write([]byte{1})
	noErr(t, err)
	time.Sleep(10 * time.Millisecond) // while the first is held
	sent := time.Now()
	_, err = c.Write([]byte{2})
	noErr(t, err)
	recv(t, got, "the first byte")
	if took := recv(t, got, "the second byte").Sub(sent); took > delay*3/2 {
		t.Fatalf("the second chunk took %s with a delay of %s: latencies add up", took, delay)
	}
}
