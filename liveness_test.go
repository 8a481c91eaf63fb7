package sockhop

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestPingBlackhole (R8 a): when the path starts swallowing every byte
// without closing, both sides' pings go unanswered and each side drops the
// connection after about four intervals; the client then reconnects as soon
// as the path is healthy again.
func TestPingBlackhole(t *testing.T) {
	const P = 100 * time.Millisecond
	ended := make(chan time.Duration, 1)
	var cutNanos atomic.Int64
	sinceCut := func() time.Duration { return time.Duration(time.Now().UnixNano() - cutNanos.Load()) }
	o := ServerOptions{ConnOptions: fastOpts()}
	o.PingInterval = P
	o.OnSessionEnd = func(s *Session, err error) {
		if errorsIsCode(err, CodePingTimeout) {
			ended <- sinceCut()
		}
	}
	srv := startServer(t, transports[0], o)
	srv.Handle("Number", func(ctx context.Context, m *Message) error { return m.Reply(ctx, m.JSON()) })
	r := newRelay(t, srv.Addr().String(), 0)
	lost := make(chan time.Duration, 1)
	hs := make(chan bool, 4)
	co := ClientOptions{Addr: r.addr(), ConnOptions: fastOpts(), AutoReconnect: true,
		ReconnectInterval: 100 * time.Millisecond, MaxReconnectInterval: 100 * time.Millisecond,
		OnHandshake: func(c *Client, ok bool, err error) { hs <- ok },
		OnDisconnect: func(c *Client, err error) {
			if errorsIsCode(err, CodePingTimeout) {
				lost <- sinceCut()
			}
		}}
	co.PingInterval = P
	c := NewClient(co)
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	recv(t, hs, "first handshake")
	time.Sleep(3 * P) // a few healthy rounds of pings first
	cutNanos.Store(time.Now().UnixNano())
	r.blackhole.Store(true)
	clientAfter := recv(t, lost, "the client dropping the dead connection")
	serverAfter := recv(t, ended, "the server dropping the dead connection")
	t.Logf("blackhole: client dropped it after %s, server after %s (P = %s; 3P-4P expected)", clientAfter, serverAfter, P)
	for who, d := range map[string]time.Duration{"client": clientAfter, "server": serverAfter} {
		// A ping in flight at the cut is lost too, so the fourth unanswered
		// one can come a little after 2P; never sooner.
		if d < 2*P {
			t.Fatalf("%s gave up after %s, before 2 intervals", who, d)
		}
	}
	r.cut() // the old relayed connections are dead anyway
	r.blackhole.Store(false)
	healed := time.Now()
	equal(t, "handshake on the healed path", recv(t, hs, "reconnection"), true)
	t.Logf("reconnected %s after the path healed", time.Since(healed))
	reply, err := c.Request(testCtx(t), 5)
	noErr(t, err)
	equal(t, "reply after reconnect", string(reply.JSON()), "5")
}

// TestPingUnderLatency (R8 b): a path with latency comparable to the ping
// interval causes no false disconnects.
func TestPingUnderLatency(t *testing.T) {
	const P = 50 * time.Millisecond
	o := ServerOptions{ConnOptions: fastOpts()}
	o.PingInterval = P
	srv := startServer(t, transports[0], o)
	r := newRelay(t, srv.Addr().String(), 0)
	r.delay.Store(int64(20 * time.Millisecond))
	r.jitter.Store(int64(20 * time.Millisecond))
	dropped := make(chan error, 1)
	co := ClientOptions{Addr: r.addr(), ConnOptions: fastOpts(),
		OnDisconnect: func(c *Client, err error) { dropped <- err }}
	co.PingInterval = P
	c := NewClient(co)
	defer c.Close()
	noErr(t, c.Start(testCtx(t)))
	select {
	case err := <-dropped:
		t.Fatalf("disconnected under latency: %v", err)
	case <-time.After(60 * P):
	}
	st := c.Stats()
	t.Logf("60 intervals at 20-40 ms latency each way: no disconnect; client sent %d messages", st.JSONMessagesOut+st.BinaryMessagesOut)
}

func errorsIsCode(err error, code string) bool { return errors.Is(err, &Error{Code: code}) }
