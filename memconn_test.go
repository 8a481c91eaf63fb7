package sockhop

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// memPipe returns the two ends of an in-memory connection that behaves like
// a socket where net.Pipe does not: each direction buffers up to size bytes,
// so several writes merge into one read (what a Node receiver's read
// coalescing needs), a writer blocks only when the buffer is full
// (backpressure), a write cut by its deadline reports the bytes it wrote
// (what inlineWriteMax relies on), and CloseWrite sends EOF. It blocks only
// on channels and its timers, so under testing/synctest everything about
// it runs on the bubble's fake clock.
func memPipe(size int) (net.Conn, net.Conn) {
	ab, ba := newMemBuf(size), newMemBuf(size)
	a := &memConn{rd: ba, wr: ab, name: "mem-a", peer: "mem-b", closed: make(chan struct{})}
	b := &memConn{rd: ab, wr: ba, name: "mem-b", peer: "mem-a", closed: make(chan struct{})}
	a.rdl.init()
	a.wdl.init()
	b.rdl.init()
	b.wdl.init()
	return a, b
}

// wake makes the operations blocked on this direction look again.
func (m *memBuf) wake() {
	m.mu.Lock()
	m.notify()
	m.mu.Unlock()
}

// memBuf is one direction.
type memBuf struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	eof     bool // the writer closed its side
	gone    bool // the reader closed its side: writes fail
	changed chan struct{}
}

func newMemBuf(size int) *memBuf { return &memBuf{max: size, changed: make(chan struct{})} }

// notify wakes everyone waiting on this direction; mu held.
func (m *memBuf) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// memDeadline is a deadline whose channel is closed when it passes.
type memDeadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{}
}

func (d *memDeadline) init() { d.ch = make(chan struct{}) }

// set replaces the deadline with a fresh channel (a timer of the old one
// may be firing right now); the caller wakes the blocked operations so
// that they wait on the new one.
func (d *memDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	ch := make(chan struct{})
	d.ch = ch
	if t.IsZero() {
		return
	}
	if dur := time.Until(t); dur <= 0 {
		close(ch)
	} else {
		d.timer = time.AfterFunc(dur, func() { close(ch) })
	}
}

func (d *memDeadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

type memConn struct {
	rd, wr     *memBuf
	name, peer string
	rdl, wdl   memDeadline
	closeOnce  sync.Once
	closed     chan struct{}
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

func (c *memConn) LocalAddr() net.Addr  { return memAddr(c.name) }
func (c *memConn) RemoteAddr() net.Addr { return memAddr(c.peer) }

func (c *memConn) Read(p []byte) (int, error) {
	m := c.rd
	for {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
		}
		m.mu.Lock()
		if len(m.buf) > 0 {
			n := copy(p, m.buf)
			m.buf = m.buf[n:]
			m.notify()
			m.mu.Unlock()
			return n, nil
		}
		if m.eof {
			m.mu.Unlock()
			return 0, io.EOF
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-c.closed:
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (c *memConn) Write(p []byte) (int, error) {
	m := c.wr
	n := 0
	for {
		select {
		case <-c.closed:
			return n, net.ErrClosed
		case <-c.wdl.wait():
			return n, os.ErrDeadlineExceeded
		default:
		}
		m.mu.Lock()
		if m.gone || m.eof {
			m.mu.Unlock()
			return n, io.ErrClosedPipe
		}
		if room := m.max - len(m.buf); room > 0 {
			k := min(room, len(p)-n)
			m.buf = append(m.buf, p[n:n+k]...)
			n += k
			m.notify()
		}
		if n == len(p) {
			m.mu.Unlock()
			return n, nil
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-c.closed:
		case <-c.wdl.wait():
		}
	}
}

// CloseWrite sends EOF to the peer, as TCP's half-close does.
func (c *memConn) CloseWrite() error {
	c.wr.mu.Lock()
	c.wr.eof = true
	c.wr.notify()
	c.wr.mu.Unlock()
	return nil
}

func (c *memConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.CloseWrite()
		c.rd.mu.Lock()
		c.rd.gone = true
		c.rd.notify()
		c.rd.mu.Unlock()
	})
	return nil
}

func (c *memConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	c.rd.wake()
	return nil
}

func (c *memConn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	c.wr.wake()
	return nil
}
