package sockhop

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sockhop/sockhop-go/internal/nodepeer"
)

// TestSyncSetPingIntervalDeadPeer: pinging started at run time on a client
// of a peer that answers no ping cuts the connection on the 4th tick (3
// pings written, PROTOCOL.md 7.3); stopping forgets the pings sent, so
// pinging again starts the count from zero. In fake time the ticks are
// exact.
func TestSyncSetPingIntervalDeadPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 10 * time.Millisecond
		n := newMemNode(t, nodepeer.Options{IgnorePings: true})
		down := make(chan error, 1)
		c, _ := n.client(t, func(o *ClientOptions) {
			o.OnDisconnect = func(_ *Client, err error) { down <- err }
		})
		synctest.Wait()
		equal(t, "pings before SetPingInterval", c.Stats().PingsSent, uint64(0))

		c.SetPingInterval(every)
		time.Sleep(2*every + every/2)
		equal(t, "pings after 2 ticks", c.Stats().PingsSent, uint64(2))
		c.SetPingInterval(0) // forgets the two unanswered pings
		time.Sleep(5 * every)
		equal(t, "pings while stopped", c.Stats().PingsSent, uint64(2))

		c.SetPingInterval(every)
		time.Sleep(3*every + every/2) // 3 ticks: 3 pings, none answered, still up
		synctest.Wait()
		equal(t, "pings", c.Stats().PingsSent, uint64(5))
		equal(t, "connected after 3 ticks", c.State().Connected, true)
		time.Sleep(every) // the 4th tick: 4 unanswered in a row
		synctest.Wait()
		errorIs(t, recv(t, down, "the cut"), ErrPingTimeout)
		equal(t, "pings written", c.Stats().PingsSent, uint64(5))
	})
}

// TestSyncServerSetPingInterval: Server.SetPingInterval reaches the
// sessions that are there and those that connect later; Session's changes
// one session; 0 stops. Go peers answer every ping.
func TestSyncServerSetPingInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const every = 10 * time.Millisecond
		l := newMemListener()
		srv, c1 := syncPairOn(t, l, ServerOptions{ConnOptions: fastOpts()}, ClientOptions{ConnOptions: fastOpts()})
		ctx := context.Background()
		noErr(t, c1.Start(ctx))
		synctest.Wait()
		srv.SetPingInterval(every)
		c2 := NewClient(ClientOptions{ConnOptions: fastOpts(), Dial: func(context.Context, string, string) (net.Conn, error) { return l.dial(), nil }})
		defer c2.Close()
		noErr(t, c2.Start(ctx))
		synctest.Wait()
		s := srv.Sessions()
		equal(t, "sessions", len(s), 2)
		time.Sleep(3*every + every/2)
		synctest.Wait()
		for i, sess := range s {
			st := sess.Stats()
			if st.PingsSent < 3 || st.PongsReceived != st.PingsSent {
				t.Errorf("session %d: %d pings, %d pongs; want at least 3, all answered", i, st.PingsSent, st.PongsReceived)
			}
		}
		s[0].SetPingInterval(0)
		before := [2]uint64{s[0].Stats().PingsSent, s[1].Stats().PingsSent}
		time.Sleep(5 * every)
		synctest.Wait()
		equal(t, "stopped session's pings", s[0].Stats().PingsSent, before[0])
		equal(t, "other session's pings", s[1].Stats().PingsSent, before[1]+5)
		srv.SetPingInterval(0)
		before[1] = s[1].Stats().PingsSent
		time.Sleep(5 * every)
		equal(t, "pings after the server stopped", s[1].Stats().PingsSent, before[1])
	})
}
