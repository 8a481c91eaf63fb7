package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go"
)

// User is a value the application shares for a session.
type User struct {
	Name string `json:"name"`
}

// waitEvent waits for one hook event of m.
func waitEvent(t testing.TB, m *member, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-m.events:
			if ev == want {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no event %q", m.name, want)
		}
	}
}

// Every server lists every session of the cluster with its server, remote
// address, handshake state and shared value, and every server's hooks see
// each session join and leave, whichever server holds it.
func TestPresenceJoinListLeave(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	bin := connect(t, ms[1], false, nil)
	js := connect(t, ms[2], true, nil)
	converged(t, ms, 2)
	binID, jsID := idOf(t, ms[1], bin), idOf(t, ms[2], js)
	for _, m := range ms {
		waitEvent(t, m, "join "+binID)
	}
	noErr(t, ms[1].node.Share(ms[1].srv.Sessions()[0], User{Name: "ada"}))

	for _, m := range ms {
		eventually(t, m.name+" sees the shared value and the handshakes", func() bool {
			got := m.node.Sessions()
			if len(got) != 2 {
				return false
			}
			byID := map[string]SessionInfo{got[0].ID: got[0], got[1].ID: got[1]}
			b, j := byID[binID], byID[jsID]
			var u User
			return json.Unmarshal(b.Shared, &u) == nil && u.Name == "ada" &&
				b.Server == ms[1].node.ServerID() && j.Server == ms[2].node.ServerID() &&
				b.RemoteAddr == bin.local && j.RemoteAddr == js.local &&
				b.HandshakeDone && b.HandshakeOK && b.Binary && b.PeerVersion != "" &&
				j.HandshakeDone && j.HandshakeOK && !j.Binary && j.Shared == nil
		})
	}
	if err := ms[1].node.Share(ms[1].srv.Sessions()[0], make([]byte, 5000)); err == nil {
		t.Fatal("a shared value over MaxSharedBytes was accepted")
	}

	bin.c.Close()
	for _, m := range ms {
		waitEvent(t, m, "leave "+binID)
		eventually(t, m.name+" drops the session", func() bool { _, ok := m.node.Lookup(binID); return !ok })
	}
}

// A server that dies (its NATS connection cut, no goodbye) leaves every
// other directory, with a leave event for each of its sessions, within
// DeadAfter + HeartbeatInterval of its last heartbeat. A server that
// leaves with Close is dropped at once.
func TestKilledServerLeavesDirectory(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	var ids []string
	for _, m := range ms {
		ids = append(ids, idOf(t, m, connect(t, m, false, nil)))
	}
	converged(t, ms, 3)

	killed := time.Now()
	ms[2].nc.Close() // as a crash looks to NATS: the connection ends, no bye
	for _, m := range ms[:2] {
		waitEvent(t, m, "leave "+ids[2])
		eventually(t, m.name+" lists 2 sessions", func() bool { return len(m.node.Sessions()) == 2 })
		if st := m.node.Stats(); st.ServersDropped != 1 || st.Servers != 2 {
			t.Fatalf("%s: Stats %+v, want 1 server dropped, 2 left", m.name, st)
		}
	}
	o := testOptions()
	t.Logf("dead server dropped after %s (bound: DeadAfter %s + HeartbeatInterval %s after its last heartbeat)", time.Since(killed), o.DeadAfter, o.HeartbeatInterval)

	noErr(t, ms[1].node.Close())
	waitEvent(t, ms[0], "leave "+ids[1])
	if st := ms[0].node.Stats(); st.ServersDropped != 1 || st.Servers != 1 {
		t.Fatalf("after a Close: Stats %+v, want the closed server gone and not counted as dropped", st)
	}
}

// The sweep's bound, with the clock in the test's hands: a server is kept
// while its last heartbeat is DeadAfter old and dropped after that; the
// ticker runs the sweep every HeartbeatInterval, hence the bound.
func TestSweepBound(t *testing.T) {
	ns := startNATS(t)
	m := startMember(t, "s", ns.url(), Options{Name: "sweep", HeartbeatInterval: time.Hour, DeadAfter: 2 * time.Hour}, sockhop.ServerOptions{})
	seen := time.Now()
	m.node.mu.Lock()
	m.node.servers["feedfeedfeedfeed"] = &remoteServer{lastSeen: seen, synced: true, sessions: map[string]SessionInfo{
		"feedfeedfeedfeed-1": {ID: "feedfeedfeedfeed-1", Server: "feedfeedfeedfeed"},
	}}
	m.node.remote = 1
	m.node.mu.Unlock()
	m.node.sweep(seen.Add(2 * time.Hour))
	if len(m.node.Sessions()) != 1 {
		t.Fatal("dropped at exactly DeadAfter")
	}
	m.node.sweep(seen.Add(2*time.Hour + time.Nanosecond))
	if got := m.node.Sessions(); len(got) != 0 {
		t.Fatalf("kept past DeadAfter: %v", got)
	}
	waitEvent(t, m, "leave feedfeedfeedfeed-1")
}

// A server that joins late learns the sessions already there, and the
// others learn its sessions, through snapshots; sessions on a server
// built without ServerOptions are found by the periodic comparison.
func TestLateJoinerAndPlainServer(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 2)
	for _, m := range ms {
		for range 3 {
			connect(t, m, false, nil)
		}
	}
	converged(t, ms, 6)

	nc := dial(t, ns.url())
	node, err := New(nc, testOptions())
	noErr(t, err)
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"}) // no node hooks
	noErr(t, srv.Listen())
	t.Cleanup(func() { srv.Close() })
	noErr(t, node.Join(srv))
	t.Cleanup(func() { node.Close() })
	late := &member{name: "late", srv: srv, node: node, nc: nc, events: make(chan string, 100)}
	connect(t, late, false, nil)
	converged(t, append(ms, late), 7)
	for _, m := range ms {
		if st := m.node.Stats(); st.Servers != 3 {
			t.Fatalf("%s knows %d servers, want 3", m.name, st.Servers)
		}
	}
}

// truth is the ids of the sessions the members' servers hold now.
func truth(ms []*member) map[string]bool {
	ids := map[string]bool{}
	for _, m := range ms {
		for _, s := range m.srv.Sessions() {
			ids[m.node.ID(s)] = true
		}
	}
	return ids
}

// sameAsTruth reports whether m's directory lists exactly the sessions
// the servers hold.
func sameAsTruth(m *member, ms []*member) bool {
	want := truth(ms)
	got := m.node.Sessions()
	if len(got) != len(want) {
		return false
	}
	for _, s := range got {
		if !want[s.ID] {
			return false
		}
	}
	return true
}

// Sessions come and go on two servers while a third joins late: every
// directory ends up listing exactly the sessions that exist, whatever
// order events, heartbeats and snapshots crossed in.
func TestDirectoryConvergesUnderChurn(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 2)
	done := make(chan struct{})
	for _, m := range ms {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 40 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c := sockhop.NewClient(sockhop.ClientOptions{Addr: m.srv.Addr().String()})
				err := c.Start(ctx)
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 != 0 { // a third stay connected
					c.Close()
				} else {
					t.Cleanup(func() { c.Close() })
				}
			}
		}()
	}
	late := startMember(t, "late", ns.url(), testOptions(), sockhop.ServerOptions{})
	ms = append(ms, late)
	<-done
	<-done
	for _, m := range ms {
		eventually(t, m.name+"'s directory matches the servers", func() bool { return sameAsTruth(m, ms) })
	}
	t.Logf("%d sessions; resyncs: %d %d %d", len(truth(ms)), ms[0].node.Stats().Resyncs, ms[1].node.Stats().Resyncs, late.node.Stats().Resyncs)
}
