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

// TestRuntimePings: pinging started, changed and stopped on live
// connections (the reference's ping(ms) and ping(0)) against real Node
// 1.8.4 peers, which answer every ping: a Go client of a Node server, and
// a Go server's session of a Node client.
func TestRuntimePings(t *testing.T) {
	tr := transports[0]
	t.Run("GoClientNodeServer", func(t *testing.T) {
		p, addr, path := startNodeServer(t, tr)
		c := newGoClient(t, addr, path, nil)
		noError(t, c.Connect(testCtx(t)), "Connect")
		p.expectEvent("connect")
		c.handshake(t)
		if st := c.Stats(); st.PingsSent != 0 {
			t.Fatalf("pings before SetPingInterval: %d", st.PingsSent)
		}
		c.SetPingInterval(pingEvery)
		poll(t, "3 pings answered", func() bool { return c.Stats().PongsReceived >= 3 })
		c.SetPingInterval(pingEvery / 4)
		from := c.Stats().PongsReceived
		poll(t, "4 more at the shorter interval", func() bool { return c.Stats().PongsReceived >= from+4 })
		c.SetPingInterval(0)
		sent := c.Stats().PingsSent
		time.Sleep(3 * pingEvery) // the observation: no tick may send
		if st := c.Stats(); st.PingsSent != sent {
			t.Errorf("pings after SetPingInterval(0): %d, then %d", sent, st.PingsSent)
		}
		checkNoPingsDelivered(t, p, c.in)
	})
	t.Run("GoServerNodeClient", func(t *testing.T) {
		s := startGoServer(t, tr, nil)
		p := startReady(t, "client", s.nodeArgs...)
		s.handshake(t)
		sess := s.sessions(t, 1)[0]
		s.SetPingInterval(pingEvery / 2)
		poll(t, "3 pings answered", func() bool { return sess.Stats().PongsReceived >= 3 })
		sess.SetPingInterval(0)
		sent := sess.Stats().PingsSent
		time.Sleep(3 * pingEvery)
		if st := sess.Stats(); st.PingsSent != sent {
			t.Errorf("pings after Session.SetPingInterval(0): %d, then %d", sent, st.PingsSent)
		}
		checkNoPingsDelivered(t, p, s.in)
	})
}
