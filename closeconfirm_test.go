package sockhop

import (
	"io"
	"net"
	"testing"
)

// rawPeer accepts one connection on loopback and hands it to peer.
func rawPeer(t *testing.T, peer func(nc *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		peer(nc.(*net.TCPConn))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// closeOnce connects in compatibility mode (no handshake to answer), sends
// one message, closes, and returns the client's UnconfirmedCloses.
func closeOnce(t *testing.T, addr string) uint64 {
	t.Helper()
	c := NewClient(ClientOptions{Addr: addr, ConnOptions: ConnOptions{CompatibilityMode: true}})
	ctx := testCtx(t)
	noErr(t, c.Connect(ctx))
	noErr(t, c.Send(ctx, "bye"))
	noErr(t, c.Close())
	return c.Stats().UnconfirmedCloses
}

// TestUnconfirmedCloses: a graceful close counts as confirmed only when the
// peer answers our FIN with its own, cleanly.
func TestUnconfirmedCloses(t *testing.T) {
	t.Run("sockhop server", func(t *testing.T) {
		srv := startServer(t, transports[0], ServerOptions{ConnOptions: ConnOptions{CompatibilityMode: true}})
		if n := closeOnce(t, srv.Addr().String()); n != 0 {
			t.Errorf("UnconfirmedCloses %d against a Sockhop server, want 0", n)
		}
	})
	t.Run("reads to EOF then closes", func(t *testing.T) {
		addr := rawPeer(t, func(nc *net.TCPConn) { _, _ = io.Copy(io.Discard, nc) })
		if n := closeOnce(t, addr); n != 0 {
			t.Errorf("UnconfirmedCloses %d, want 0", n)
		}
	})
	t.Run("never reads or closes", func(t *testing.T) {
		stop := make(chan struct{})
		addr := rawPeer(t, func(*net.TCPConn) { <-stop })
		defer close(stop)
		if n := closeOnce(t, addr); n != 1 {
			t.Errorf("UnconfirmedCloses %d against a silent peer, want 1", n)
		}
	})
	t.Run("resets after our FIN", func(t *testing.T) {
		addr := rawPeer(t, func(nc *net.TCPConn) {
			_, _ = io.Copy(io.Discard, nc)
			_ = nc.SetLinger(0) // close with RST instead of FIN
		})
		if n := closeOnce(t, addr); n != 1 {
			t.Errorf("UnconfirmedCloses %d against a peer that resets, want 1", n)
		}
	})
}
