package sockhop

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestSilentPeersDropped (R7): with DropFailedHandshake, connections that
// never handshake (here 200 that send nothing and one slowloris) are closed
// within HandshakeTimeout plus a little, while a healthy client connects
// and handshakes meanwhile.
func TestSilentPeersDropped(t *testing.T) {
	o := ServerOptions{ConnOptions: silentOpts()}
	o.HandshakeTimeout = 200 * time.Millisecond
	o.DropFailedHandshake = true
	srv := startServer(t, transports[0], o)
	srv.Handle("Number", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	const n = 200
	var wg sync.WaitGroup
	closedAfter := make(chan time.Duration, n+1)
	begin := time.Now()
	watch := func(c net.Conn) {
		defer wg.Done()
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c) // ends when the server closes
		closedAfter <- time.Since(begin)
	}
	for range n {
		c, err := net.Dial("tcp", srv.Addr().String())
		noErr(t, err)
		wg.Add(1)
		go watch(c)
	}
	slow, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	wg.Add(1)
	go watch(slow)
	stopDrip := make(chan struct{})
	var drip sync.WaitGroup
	drip.Add(1)
	go func() { // one byte every 20 ms of a line that never ends
		defer drip.Done()
		for {
			select {
			case <-stopDrip:
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := slow.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	healthy := startClient(t, transports[0], srv, ClientOptions{ConnOptions: fastOpts()})
	r, err := healthy.Request(testCtx(t), 7)
	noErr(t, err)
	equal(t, "healthy reply", string(r.JSON()), "7")
	wg.Wait()
	close(stopDrip)
	drip.Wait()
	close(closedAfter)
	var worst time.Duration
	for d := range closedAfter {
		worst = max(worst, d)
	}
	if worst > o.HandshakeTimeout+time.Second {
		t.Fatalf("slowest silent peer closed after %s", worst)
	}
	eventually(t, "only the healthy session left", func() bool { return len(srv.Sessions()) == 1 })
	t.Logf("%d silent peers and a slowloris closed, the last after %s (HandshakeTimeout %s)", n, worst, o.HandshakeTimeout)
}

// TestIdleTimeout: in compatibility mode there is no handshake to wait
// for; IdleTimeout closes a peer that sends nothing, and pings keep a live
// one open.
func TestIdleTimeout(t *testing.T) {
	o := ServerOptions{}
	o.CompatibilityMode = true
	o.IdleTimeout = 250 * time.Millisecond
	o.PingInterval = 100 * time.Millisecond
	ended := make(chan error, 2)
	o.OnSessionEnd = func(s *Session, err error) { ended <- err }
	srv := startServer(t, transports[0], o)
	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	go io.Copy(io.Discard, raw) // reads our pings, never answers
	co := ClientOptions{}
	co.CompatibilityMode = true
	live := startClient(t, transports[0], srv, co) // answers pings automatically
	errorIs(t, recv(t, ended, "the silent peer's end"), &Error{Code: CodeIdle})
	time.Sleep(400 * time.Millisecond) // longer than IdleTimeout: pongs kept it open
	equal(t, "live client still connected", live.State().Connected, true)
}
