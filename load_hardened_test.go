package sockhop

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestLoadHardened: a hardened server under 200 slowloris peers (one byte
// every 100 ms) and one that never handshakes closes them all, while a
// healthy client making a request every 20 ms keeps its latency.
func TestLoadHardened(t *testing.T) {
	if raceEnabled {
		t.Skip("load figures are meaningless under -race; `make test` runs this test without it")
	}
	const slow = 200
	const grace = time.Second
	var mu sync.Mutex
	var slowCuts, hsCuts int
	so := ServerOptions{Hardened: true, OnSessionEnd: func(_ *Session, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, ErrIdle):
			slowCuts++
		case errors.Is(err, ErrHandshakeTimeout):
			hsCuts++
		}
	}}
	so.HandshakeTimeout = time.Second
	so.MessageGrace = grace
	so.MaxConnectionsPerIP = slow + 10 // every peer is on 127.0.0.1 here
	srv := startServer(t, transports[0], so)
	srv.Handle("Echo", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	healthy := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})

	silent, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer silent.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range slow {
		// Handshaked, so that DropFailedHandshake leaves it alone; then
		// one message, a byte at a time.
		raw := handshakeRaw(t, "tcp", srv.Addr().String(), 0)
		defer raw.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			slowloris(raw, []byte(`{"type":"String","data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa`), 100*time.Millisecond, stop)
		}()
	}
	begin := time.Now()
	var rtts []time.Duration
	for time.Since(begin) < grace+3*time.Second {
		t0 := time.Now()
		_, err := healthy.Request(testCtx(t), Named{Type: "Echo", Data: "ok"})
		noErr(t, err)
		rtts = append(rtts, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(rtts)
	p99 := rtts[len(rtts)*99/100]
	t.Logf("%d slowloris peers cut, %d never-handshaking cut, in %s; healthy client: %d requests, p50 %s, p99 %s",
		slowCuts, hsCuts, time.Since(begin).Round(time.Millisecond), len(rtts), rtts[len(rtts)/2], p99)
	if slowCuts != slow || hsCuts != 1 {
		t.Errorf("cut %d of %d slowloris peers and %d of 1 never-handshaking", slowCuts, slow, hsCuts)
	}
	if p99 > 250*time.Millisecond {
		t.Errorf("healthy client's p99 %s", p99)
	}
}
