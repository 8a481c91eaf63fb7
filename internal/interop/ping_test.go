package interop

import (
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// Pings both ways between Go and 1.8.4: each side pings every pingEvery,
// and a side that got no pong for 4 pings in a row drops the connection
// (PROTOCOL.md 7.3), which would happen after 4 intervals. The test
// watches the connection for pingWatch (6 intervals; this wait is the
// observation itself, not synchronisation) and then checks that it is
// still up, that a request still gets through, and that no ping or pong
// reached either application.
const (
	pingEvery = 100 * time.Millisecond
	pingWatch = 6 * pingEvery
)

func TestPingsBothWays(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Run("GoServerNodeClient", func(t *testing.T) {
				s := startGoServer(t, tr, func(o *sockhop.ServerOptions) { o.PingInterval = pingEvery })
				p := startReady(t, "client", s.nodeArgs...)
				s.handshake(t) // Go pings once the handshake is over (timed out)
				p.send(map[string]any{"cmd": "ping", "ms": pingEvery.Milliseconds()})
				sess := s.sessions(t, 1)[0]
				gone := sessionGone(t, sess)
				select {
				case err := <-gone:
					t.Fatalf("session ended while pinging: %v\n%s", err, p.log())
				case <-time.After(pingWatch):
				}
				m, err := sess.Request(testCtx(t), "still there?")
				noError(t, err, "Request after pinging")
				if !jsonEqual(m.JSON(), []byte(`{"echo":"still there?","type":"String"}`)) {
					t.Errorf("reply %s", m.JSON())
				}
				p.send(map[string]any{"cmd": "ping", "ms": 0})
				checkNoPingsDelivered(t, p, s.in)
			})
			t.Run("GoClientNodeServer", func(t *testing.T) {
				p, addr, path := startNodeServer(t, tr)
				c := newGoClient(t, addr, path, func(o *sockhop.ClientOptions) { o.PingInterval = pingEvery })
				noError(t, c.Connect(testCtx(t)), "Connect")
				p.expectEvent("connect")
				c.handshake(t)
				p.send(map[string]any{"cmd": "ping", "ms": pingEvery.Milliseconds()})
				select {
				case err := <-c.down:
					t.Fatalf("connection ended while pinging: %v\n%s", err, p.log())
				case <-time.After(pingWatch):
				}
				m, err := c.Request(testCtx(t), "still there?")
				noError(t, err, "Request after pinging")
				if !jsonEqual(m.JSON(), []byte(`{"echo":"still there?","type":"String"}`)) {
					t.Errorf("reply %s", m.JSON())
				}
				p.send(map[string]any{"cmd": "ping", "ms": 0})
				checkNoPingsDelivered(t, p, c.in)
			})
		})
	}
}

func checkNoPingsDelivered(t *testing.T, p *peer, in *inbox) {
	t.Helper()
	for _, ev := range p.Transcript() {
		if ev.Type == "SockhopPing" || ev.Type == "SockhopPong" || ev.Event == "disconnect" {
			t.Errorf("peer: %s", ev.line)
		}
	}
	in.empty(t)
}
