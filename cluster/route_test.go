package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go"
)

// Ask is a request a test sends to a client; the client answers with its
// server's name.
type Ask struct {
	Q string `json:"q"`
}

// Answer is the client's reply.
type Answer struct {
	Q      string `json:"q"`
	Server string `json:"server"`
}

func answerFrom(name string) func(*sockhop.Message) any {
	return func(m *sockhop.Message) any {
		if m.IsTypedBuffer() {
			return append([]byte("echo:"), m.Bytes()...)
		}
		var a Ask
		_ = m.Decode(&a)
		return Answer{Q: a.Q, Server: name}
	}
}

// A session on another server is reached by its id: Send and SendTyped
// arrive, Request's reply comes back; a session of the caller's own server
// is reached the same way.
func TestRouteToSessionAnywhere(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	far := connect(t, ms[2], false, answerFrom("s2"))
	near := connect(t, ms[0], false, answerFrom("s0"))
	converged(t, ms, 2)
	farID, nearID := idOf(t, ms[2], far), idOf(t, ms[0], near)
	ctx := testCtx(t)
	for _, c := range []struct {
		id, server string
		tc         *tclient
	}{{farID, "s2", far}, {nearID, "s0", near}} {
		noErr(t, ms[0].node.Send(ctx, c.id, Tick{From: "s0", N: 7}))
		msg := c.tc.in.next(t, "routed Send")
		var tk Tick
		noErr(t, msg.Decode(&tk))
		if msg.Type != "Tick" || tk.N != 7 {
			t.Fatalf("routed Send delivered %s", msg)
		}

		noErr(t, ms[0].node.SendTyped(ctx, c.id, "Frame", []byte{1, 2, 3}))
		msg = c.tc.in.next(t, "routed SendTyped")
		if !msg.IsTypedBuffer() || msg.Type != "Frame" || string(msg.Bytes()) != "\x01\x02\x03" {
			t.Fatalf("routed SendTyped delivered %s", msg)
		}

		reply, err := ms[0].node.Request(ctx, c.id, Ask{Q: "where"})
		noErr(t, err)
		var a Answer
		noErr(t, reply.Decode(&a))
		if reply.Type != "Answer" || a != (Answer{Q: "where", Server: c.server}) {
			t.Fatalf("reply %s: %+v", reply, a)
		}
		if err := reply.Reply(ctx, 1); !errors.Is(err, sockhop.ErrNotRequest) {
			t.Fatalf("replying to a routed reply: %v", err)
		}

		reply, err = ms[0].node.RequestTyped(ctx, c.id, "Frame", []byte("x"))
		noErr(t, err)
		if string(reply.Bytes()) != "echo:x" || reply.Type != "Buffer" {
			t.Fatalf("typed request's reply %s %q", reply, reply.Bytes())
		}
	}
	if st := ms[0].node.Stats(); st.Routed != 4 {
		t.Fatalf("Stats.Routed = %d, want 4 (the far session's calls only)", st.Routed)
	}
	if st := ms[2].node.Stats(); st.Served != 4 {
		t.Fatalf("far Stats.Served = %d, want 4", st.Served)
	}
}

// Errors of the far side come back as the same errors: a typed buffer to a
// session in JSON mode, a request the peer does not answer before the
// caller's deadline.
func TestRouteErrorsCrossServers(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 2)
	js := connect(t, ms[1], true, nil) // JSON mode; never answers requests
	converged(t, ms, 1)
	id := idOf(t, ms[1], js)
	ctx := testCtx(t)

	err := ms[0].node.SendTyped(ctx, id, "Frame", []byte{1})
	if !errors.Is(err, sockhop.ErrNoBinaryMode) {
		t.Fatalf("typed buffer to a JSON-mode session on another server: %v, want ErrNoBinaryMode", err)
	}

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = ms[0].node.Request(short, id, Ask{Q: "silence"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v, want DeadlineExceeded", err)
	}
	t.Logf("unanswered request: %v", err)
}

// An id nobody holds fails at once, without a NATS round trip: a
// malformed one, one of an unknown server, one that left; and one whose
// server vanished without a word fails at once too (no responders).
func TestRouteUnknownSession(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 2)
	tc := connect(t, ms[1], false, nil)
	converged(t, ms, 1)
	id := idOf(t, ms[1], tc)
	ctx := testCtx(t)
	for _, bad := range []string{"nonsense", "0123456789abcdef-1", ms[1].node.ServerID() + "-999", ms[0].node.ServerID() + "-999"} {
		err := ms[0].node.Send(ctx, bad, "x")
		if !errors.Is(err, ErrUnknownSession) {
			t.Fatalf("Send to %q: %v, want ErrUnknownSession", bad, err)
		}
	}
	if st := ms[0].node.Stats(); st.Routed != 0 || st.UnknownSession != 4 {
		t.Fatalf("Stats: %+v; want no call routed and 4 unknown", st)
	}

	tc.c.Close()
	eventually(t, "the session leaves the directory", func() bool { _, ok := ms[0].node.Lookup(id); return !ok })
	if _, err := ms[0].node.Request(ctx, id, Ask{}); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("Request to a departed session: %v, want ErrUnknownSession", err)
	}
}

// The far server answers "unknown" when the session left after the
// directory was read (the race the directory cannot close), and "busy"
// past MaxInflight; neither waits for the caller's timeout.
func TestRouteFarSideRefusals(t *testing.T) {
	ns := startNATS(t)
	near := startMember(t, "near", ns.url(), testOptions(), sockhop.ServerOptions{})
	o := testOptions()
	o.MaxInflight = 1
	far := startMember(t, "far", ns.url(), o, sockhop.ServerOptions{})
	silent := connect(t, far, false, nil)
	converged(t, []*member{near, far}, 1)
	id := idOf(t, far, silent)
	ctx := testCtx(t)

	held := make(chan error, 1)
	long, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	go func() { _, err := near.node.Request(long, id, Ask{Q: "hold"}); held <- err }()
	eventually(t, "the first request is being served", func() bool { return far.node.Stats().Served == 1 })
	if _, err := near.node.Request(ctx, id, Ask{Q: "more"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("request past MaxInflight: %v, want ErrBusy", err)
	}
	if far.node.Stats().Busy != 1 {
		t.Fatalf("far Stats.Busy = %d, want 1", far.node.Stats().Busy)
	}
	if err := <-held; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v, want DeadlineExceeded", err)
	}
	// The far side gave up at the same deadline, which freed the slot.
	eventually(t, "the far side's slot is free", func() bool { return len(far.node.inflight) == 0 })
	noErr(t, near.node.Send(ctx, id, "x"))

	// A call for a session the far server no longer holds (it left after
	// the caller read the directory) is answered "unknown".
	answer := far.node.serve(encodeCall(call{op: opSend, session: 999, body: mustEncode(t, "x")}))
	a, err := decodeAnswer(answer)
	noErr(t, err)
	if err := near.node.remoteError(far.node.ServerID(), a); !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("answer for a departed session: %v, want ErrUnknownSession", err)
	}
}

func mustEncode(t testing.TB, v any) *sockhop.Encoded {
	t.Helper()
	e, err := sockhop.Encode(v)
	noErr(t, err)
	return e
}

// A server that vanished without a word, still in the caller's directory
// (DeadAfter not yet passed): its sessions fail at once with
// ErrUnknownSession, since NATS says nobody listens, not after the
// caller's timeout.
func TestRouteVanishedServer(t *testing.T) {
	ns := startNATS(t)
	o := testOptions()
	o.DeadAfter = time.Hour // the directory keeps the vanished server
	near := startMember(t, "near", ns.url(), o, sockhop.ServerOptions{})
	far := startMember(t, "far", ns.url(), testOptions(), sockhop.ServerOptions{})
	tc := connect(t, far, false, answerFrom("far"))
	converged(t, []*member{near, far}, 1)
	id := idOf(t, far, tc)
	far.nc.Close()
	eventually(t, "NATS has seen the far server go", func() bool { return ns.clients() == 1 })
	short, cancel := context.WithTimeout(testCtx(t), time.Hour)
	defer cancel()
	_, err := near.node.Request(short, id, Ask{})
	if !errors.Is(err, ErrUnknownSession) {
		t.Fatalf("request to a vanished server's session: %v, want ErrUnknownSession", err)
	}
	if _, listed := near.node.Lookup(id); !listed {
		t.Fatal("the directory dropped the server: the no-responders path was not taken")
	}
	t.Logf("%v", err)
}

// A caller that cancels its Request frees the far server's slot at once,
// not at the caller's (here distant) deadline.
func TestCancelledCallFreesFarSlot(t *testing.T) {
	ns := startNATS(t)
	near := startMember(t, "near", ns.url(), testOptions(), sockhop.ServerOptions{})
	o := testOptions()
	o.MaxInflight = 1
	far := startMember(t, "far", ns.url(), o, sockhop.ServerOptions{})
	silent := connect(t, far, false, nil)
	converged(t, []*member{near, far}, 1)
	id := idOf(t, far, silent)
	ctx, cancel := context.WithTimeout(testCtx(t), time.Hour)
	held := make(chan error, 1)
	go func() { _, err := near.node.Request(ctx, id, Ask{Q: "hold"}); held <- err }()
	eventually(t, "the request is being served", func() bool {
		far.node.mu.Lock()
		defer far.node.mu.Unlock()
		return len(far.node.serving) == 1
	})
	cancel()
	if err := <-held; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want Canceled", err)
	}
	eventually(t, "the far side's slot is free", func() bool { return len(far.node.inflight) == 0 })
	noErr(t, near.node.Send(testCtx(t), id, "next"))
}
