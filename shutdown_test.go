package sockhop

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestShutdownGivesUpFlushing: a peer that never reads cannot hold
// Shutdown past its ctx; Close after that is a no-op.
func TestShutdownGivesUpFlushing(t *testing.T) {
	o := ServerOptions{ConnOptions: fastOpts()}
	o.MaxQueueBytes = 64 << 20
	srv := startServer(t, transports[0], o)
	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	raw.(*net.TCPConn).SetReadBuffer(4 << 10)
	eventually(t, "session", func() bool { return len(srv.Sessions()) == 1 })
	big := strings.Repeat("x", 1<<20)
	for range 32 { // 32 MiB the peer never reads
		noErr(t, srv.Sessions()[0].Send(testCtx(t), big))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err = srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want a deadline error", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("Shutdown took %s with a 100 ms ctx", d)
	}
	noErr(t, srv.Close())
}

// TestShutdownFlushes: what sessions had queued reaches their peers before
// the FIN when the ctx allows it.
func TestShutdownFlushes(t *testing.T) {
	srv := startServer(t, transports[0], ServerOptions{ConnOptions: fastOpts()})
	const n = 100
	got := make(chan struct{}, n)
	c := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	c.Handle("String", func(ctx context.Context, m *Message) error { got <- struct{}{}; return nil })
	eventually(t, "session", func() bool { return len(srv.Sessions()) == 1 })
	big := strings.Repeat("y", 64<<10)
	for range n {
		noErr(t, srv.SendAll(testCtx(t), big))
	}
	noErr(t, srv.Shutdown(testCtx(t)))
	for range n {
		recv(t, got, "a message flushed by Shutdown")
	}
}
