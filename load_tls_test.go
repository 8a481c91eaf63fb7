package sockhop

import (
	"crypto/rand"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadTLSJunk is R13 (b) at full size: 100 connections write 1 MiB of
// junk each into a TLS listener at once, half of it behind a plausible
// handshake record header (the server reads a full record before it can
// judge it). Each must be closed within TLSHandshakeTimeout + 0.5 s, the
// heap must not grow by more than 50 MiB while they do (NATS's threshold),
// and the server must still serve. Without -race (make load).
func TestLoadTLSJunk(t *testing.T) {
	if raceEnabled {
		t.Skip("a load test: run without -race (make load)")
	}
	p := certs(t)
	const hsTimeout = time.Second
	e := newTLSEnv(t, &tls.Config{Certificates: []tls.Certificate{p.server}},
		ServerOptions{TLSHandshakeTimeout: hsTimeout})
	junk := make([]byte, 1<<20)
	_, _ = rand.Read(junk)
	recordJunk := append([]byte{0x16, 0x03, 0x01, 0x40, 0x00}, junk[5:]...)

	runtime.GC()
	base := heapNow()
	heap := sampleHeap(5 * time.Millisecond)

	const conns = 100
	var wg sync.WaitGroup
	var slowest atomic.Int64
	open := make(chan string, conns)
	begin := time.Now()
	for i := range conns {
		payload := junk
		if i%2 == 1 {
			payload = recordJunk
		}
		c, err := net.Dial("tcp", e.srv.Addr().String())
		noErr(t, err)
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, err := sendJunk(c, payload, hsTimeout+5*time.Second)
			if err != nil && isTimeout(err) {
				open <- "still open after " + took.String()
				return
			}
			for {
				old := slowest.Load()
				if int64(took) <= old || slowest.CompareAndSwap(old, int64(took)) {
					break
				}
			}
		}()
	}
	wg.Wait()
	all := time.Since(begin)
	peak := heap.stop()
	close(open)
	for msg := range open {
		t.Error("a junk connection was " + msg)
	}
	growth := int64(peak) - int64(base)
	t.Logf("R13 b: %d connections x 1 MiB of junk closed in %s (slowest %s, TLSHandshakeTimeout %s); heap growth at peak %.1f MiB",
		conns, all.Round(time.Millisecond), time.Duration(slowest.Load()).Round(time.Millisecond), hsTimeout, float64(growth)/(1<<20))
	if s := time.Duration(slowest.Load()); s > hsTimeout+500*time.Millisecond {
		t.Errorf("slowest junk connection closed after %s, want within %s", s, hsTimeout+500*time.Millisecond)
	}
	if growth > 50<<20 {
		t.Errorf("heap grew by %d MiB, over 50 MiB", growth>>20)
	}
	equal(t, "messages delivered", e.delivered.Load(), 0)
	good := e.client(t, &tls.Config{RootCAs: p.caPool}, ClientOptions{})
	noErr(t, good.Start(testCtx(t)))
	e.exchange(t, good)
}
