package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go"
)

// NATS stops mid-run: local sessions keep working (a local Send, Request,
// and the local part of a Broadcast), cross-server calls fail at once with
// ErrUnavailable naming the cause, counted in Stats; NATS restarts on the
// same port and the cluster resumes by itself: directories converge again,
// sessions that came and went during the outage included, and broadcasts
// and calls cross servers again.
func TestNATSRestart(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	var clients []*tclient
	var ids []string
	for i, m := range ms {
		tc := connect(t, m, false, answerFrom(m.name))
		clients = append(clients, tc)
		ids = append(ids, idOf(t, ms[i], tc))
	}
	converged(t, ms, 3)
	ctx := testCtx(t)

	ns.stop()
	for _, m := range ms {
		eventually(t, m.name+" sees NATS gone", func() bool { return !m.nc.IsConnected() })
	}
	// Local sessions keep working.
	noErr(t, ms[0].node.Send(ctx, ids[0], Tick{From: "local", N: 1}))
	if m := clients[0].in.next(t, "local Send during the outage"); m.Type != "Tick" {
		t.Fatalf("local Send during the outage delivered %s", m)
	}
	reply, err := ms[0].node.Request(ctx, ids[0], Ask{Q: "local"})
	noErr(t, err)
	var a Answer
	noErr(t, reply.Decode(&a))
	if a.Server != "s0" {
		t.Fatalf("local request during the outage: %+v", a)
	}
	err = ms[0].node.Broadcast(ctx, Tick{From: "outage", N: 0})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Broadcast during the outage: %v, want ErrUnavailable", err)
	}
	if m := clients[0].in.next(t, "local part of a broadcast during the outage"); m.Type != "Tick" {
		t.Fatalf("local broadcast during the outage delivered %s", m)
	}
	// Cross-server calls fail at once, with the cause.
	before := ms[0].node.Stats().Unavailable
	for _, call := range []func() error{
		func() error { return ms[0].node.Send(ctx, ids[1], "x") },
		func() error { _, err := ms[0].node.Request(ctx, ids[2], Ask{}); return err },
	} {
		err := call()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("cross-server call during the outage: %v, want ErrUnavailable", err)
		}
		t.Logf("during the outage: %v", err)
	}
	if got := ms[0].node.Stats().Unavailable - before; got != 2 {
		t.Fatalf("Stats.Unavailable grew by %d, want 2", got)
	}

	// Sessions come and go while NATS is away; nothing can be announced.
	clients[1].c.Close()
	eventually(t, "s1 sees its client go", func() bool { return len(ms[1].srv.Sessions()) == 0 })
	newcomer := connect(t, ms[2], false, nil)

	ns.start()
	for _, m := range ms {
		eventually(t, m.name+" reconnected", m.nc.IsConnected)
	}
	for _, m := range ms {
		eventually(t, m.name+"'s directory matches the servers again", func() bool { return sameAsTruth(m, ms) })
	}
	if err := ms[0].node.Send(ctx, ids[1], "x"); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("Send to a session that left during the outage: %v, want ErrUnknownSession", err)
	}
	reply, err = ms[0].node.Request(ctx, ids[2], Ask{Q: "after"})
	noErr(t, err)
	noErr(t, reply.Decode(&a))
	if a.Server != "s2" {
		t.Fatalf("request after the restart: %+v", a)
	}
	// A broadcast after the restart reaches everyone exactly once.
	noErr(t, ms[1].node.Broadcast(ctx, Tick{From: "s1", N: 99}))
	for i, tc := range []*tclient{clients[0], clients[2], newcomer} {
		for {
			m := tc.in.next(t, "broadcast after the restart")
			var tk Tick
			noErr(t, m.Decode(&tk))
			if tk.N == 99 {
				break
			}
			if i != 0 {
				t.Fatalf("client %d: unexpected %+v", i, tk)
			}
		}
		tc.in.empty(t, "after the broadcast")
	}
}

// Garbage on the cluster's subjects is counted and reported, never
// applied, and the node carries on.
func TestGarbageFromTheCluster(t *testing.T) {
	ns := startNATS(t)
	errs := make(chan error, 10)
	o := testOptions()
	o.OnError = func(err error) { errs <- err }
	ms := []*member{
		startMember(t, "s0", ns.url(), testOptions(), sockhop.ServerOptions{}),
		startMember(t, "s1", ns.url(), o, sockhop.ServerOptions{}),
	}
	tc := connect(t, ms[1], false, nil)
	converged(t, ms, 1)
	nc := dial(t, ns.url())
	for _, p := range []struct{ subj, data string }{
		{ms[1].node.subj.bcast, "\x01"},
		{ms[1].node.subj.bcast, "\x01\x03abc\x00\x06Widget{bad json"},
		{ms[1].node.subj.presence, `{"k":"join","srv":"x","seq":1}`},
		{ms[1].node.subj.presence, `not json`},
	} {
		noErr(t, nc.Publish(p.subj, []byte(p.data)))
	}
	ans, err := nc.Request(ms[1].node.subj.call(ms[1].node.ServerID()), []byte("\x01\x09"), 5*time.Second)
	noErr(t, err)
	a, err := decodeAnswer(ans.Data)
	noErr(t, err)
	if !a.failed {
		t.Fatal("an undecodable call was answered as a success")
	}
	for range 4 {
		select {
		case err := <-errs:
			t.Logf("reported: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("garbage not reported")
		}
	}
	if st := ms[1].node.Stats(); st.BadMessages != 5 {
		t.Fatalf("Stats.BadMessages = %d, want 5", st.BadMessages)
	}
	noErr(t, ms[0].node.Broadcast(testCtx(t), "still here"))
	if m := tc.in.next(t, "broadcast after the garbage"); m.Type != "String" {
		t.Fatalf("got %s", m)
	}
}

// Closing the node ends the calls it serves and refuses new ones; the
// server and the NATS connection stay usable.
func TestCloseEndsServedCalls(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 2)
	silent := connect(t, ms[1], false, nil)
	converged(t, ms, 1)
	id := idOf(t, ms[1], silent)
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { _, err := ms[0].node.Request(ctx, id, Ask{}); done <- err }()
	eventually(t, "the call is served", func() bool { return ms[1].node.Stats().Served == 1 })
	noErr(t, ms[1].node.Close())
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a call served by a closing node: %v, want Canceled", err)
	}
	if err := ms[1].node.Broadcast(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Broadcast after Close: %v", err)
	}
	noErr(t, ms[1].srv.SendAll(ctx, "plain")) // the server still works
	if m := silent.in.next(t, "SendAll after the node closed"); m.Type != "String" {
		t.Fatalf("got %s", m)
	}
	if !ms[1].nc.IsConnected() {
		t.Fatal("Close closed the NATS connection")
	}
}
