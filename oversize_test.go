package sockhop

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// oversizeServer counts, for each ended session, why it ended and how many
// bytes the server read from it.
type oversizeServer struct {
	srv      *Server
	mu       sync.Mutex
	tooLarge int
	maxRead  uint64
}

func newOversizeServer(t *testing.T, o ServerOptions) *oversizeServer {
	s := &oversizeServer{}
	o.OnSessionEnd = func(sess *Session, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if errors.Is(err, ErrMessageTooLarge) {
			s.tooLarge++
		}
		s.maxRead = max(s.maxRead, sess.Stats().BytesIn)
	}
	s.srv = startServer(t, transports[0], o)
	return s
}

// waitTooLarge waits until n sessions ended for ErrMessageTooLarge.
func (s *oversizeServer) waitTooLarge(t *testing.T, n int) {
	t.Helper()
	eventually(t, "sessions closed as too large", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tooLarge == n
	})
}

// attack connects, writes b (errors ignored: the server may close first),
// and waits for the server to close the connection.
func attack(t *testing.T, addr string, b []byte) time.Duration {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	noErr(t, err)
	defer c.Close()
	begin := time.Now()
	go c.Write(b)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
	return time.Since(begin)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

const transitionLine = `{"type":"SockhopBinaryModeTransition","data":{}}` + "\n"

// TestOversizeRejectionIsCheap (R2): frame headers announcing 4 GiB or the
// limit plus one, and lines one byte over the pre-handshake limit, each
// close their connection after reading little more than the limit; the heap
// does not grow; a frame of exactly the limit is delivered.
func TestOversizeRejectionIsCheap(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	const limit = 256 << 10
	o := ServerOptions{}
	o.CompatibilityMode = true // no handshake: the full limit applies at once
	o.MaxMessageSize = limit
	s := newOversizeServer(t, o)
	delivered := make(chan int, 1)
	s.srv.Handle("Exact", func(ctx context.Context, m *Message) error { delivered <- len(m.Bytes()); return nil })
	addr := s.srv.Addr().String()

	header := func(size uint32) []byte {
		b := append([]byte(transitionLine), 0, 0, 0, 0, 13)
		binary.LittleEndian.PutUint32(b[len(transitionLine):], size)
		return b
	}
	base := heapInUse()
	var worst time.Duration
	for _, size := range []uint32{0xFFFFFFFF, limit + 1} {
		for range n {
			worst = max(worst, attack(t, addr, header(size)))
		}
	}
	s.waitTooLarge(t, 2*n)

	// Lines over the pre-handshake limit (the opt-in hardening), on a
	// server that handshakes.
	const preLimit = 64 << 10
	po := ServerOptions{ConnOptions: fastOpts()}
	po.MaxPreHandshakeSize = preLimit
	hs := newOversizeServer(t, po)
	line := []byte(strings.Repeat("x", preLimit+1) + "\n")
	for range n {
		worst = max(worst, attack(t, hs.srv.Addr().String(), line))
	}
	hs.waitTooLarge(t, n)
	if hs.maxRead > preLimit+96<<10 {
		t.Fatalf("server read %d bytes of a connection before refusing its line", hs.maxRead)
	}
	growth := int64(heapInUse()) - int64(base)
	t.Logf("%d oversize headers and %d oversize lines refused; slowest close %s; most read from one connection %d bytes; heap growth %d KiB",
		2*n, n, worst, hs.maxRead, growth>>10)
	if growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB", growth>>20)
	}

	// A frame of exactly the limit is fine.
	c, err := net.Dial("tcp", addr)
	noErr(t, err)
	defer c.Close()
	payload := append([]byte{5}, "Exact"...)
	data := make([]byte, limit-len(payload)-4)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(data)))
	payload = append(payload, data...)
	frame := binary.LittleEndian.AppendUint32([]byte(transitionLine), uint32(len(payload)))
	frame = append(append(frame, 13), payload...)
	_, err = c.Write(frame)
	noErr(t, err)
	equal(t, "exact-limit frame delivered", recv(t, delivered, "the exact-limit frame"), len(data))
}

// TestEndlessLine (R3): a peer streaming bytes without a terminator, before
// the handshake and after it, is cut off after the limit plus one read,
// quickly, and leaves the heap where it was.
func TestEndlessLine(t *testing.T) {
	base := heapInUse()
	for _, compat := range []bool{false, true} {
		o := ServerOptions{ConnOptions: fastOpts()}
		o.CompatibilityMode = compat // compat: no handshake, the full limit from the start
		o.MaxMessageSize = 1 << 20
		o.MaxPreHandshakeSize = 64 << 10 // the opt-in hardening; ignored in compat
		s := newOversizeServer(t, o)
		c, err := net.Dial("tcp", s.srv.Addr().String())
		noErr(t, err)
		chunk := []byte(strings.Repeat("y", 32<<10))
		begin := time.Now()
		go func() {
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		took := time.Since(begin)
		c.Close()
		s.waitTooLarge(t, 1)
		limit := o.MaxPreHandshakeSize
		if compat {
			limit = o.MaxMessageSize
		}
		t.Logf("compat=%v: endless line cut after %d bytes read (limit %d) in %s", compat, s.maxRead, limit, took)
		if s.maxRead > uint64(limit+96<<10) {
			t.Fatalf("read %d bytes of an endless line with a %d-byte limit", s.maxRead, limit)
		}
	}
	if growth := int64(heapInUse()) - int64(base); growth > 4<<20 {
		t.Fatalf("heap grew by %d KiB", growth>>10)
	}
}
