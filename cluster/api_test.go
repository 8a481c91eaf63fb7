package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sockhop/sockhop-go"
)

// Options that cannot work are refused with the reason.
func TestOptionsChecked(t *testing.T) {
	ns := startNATS(t)
	nc := dial(t, ns.url())
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "name"},
		{Options{Name: "a.b"}, "name"},
		{Options{Name: "ok", HeartbeatInterval: time.Second, DeadAfter: time.Second}, "DeadAfter"},
		{Options{Name: "ok", MaxInflight: -1}, "negative"},
	} {
		if _, err := New(nc, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %s", c.o, err, c.want)
		}
	}
	if _, err := New(nil, Options{Name: "ok"}); err == nil {
		t.Error("a nil connection was accepted")
	}
}

// A node acts only between Join and Close, and joins once.
func TestJoinOnceUntilClose(t *testing.T) {
	ns := startNATS(t)
	nc := dial(t, ns.url())
	node, err := New(nc, testOptions())
	noErr(t, err)
	ctx := testCtx(t)
	if err := node.Broadcast(ctx, 1); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("Broadcast before Join: %v", err)
	}
	if _, err := node.Request(ctx, "x-1", 1); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("Request before Join: %v", err)
	}
	if err := node.Join(nil); err == nil {
		t.Fatal("Join(nil) was accepted")
	}
	srv := sockhop.NewServer(sockhop.ServerOptions{Addr: "127.0.0.1:0"})
	noErr(t, srv.Listen())
	defer srv.Close()
	noErr(t, node.Join(srv))
	if err := node.Join(srv); err == nil {
		t.Fatal("a second Join was accepted")
	}
	noErr(t, node.Close())
	noErr(t, node.Close())
	if err := node.Broadcast(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Broadcast after Close: %v", err)
	}
	if err := node.Join(srv); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close: %v", err)
	}
}

// A broadcast over the NATS server's max_payload still reaches this
// server's sessions, and says why the others were not reached.
func TestBroadcastOverMaxPayload(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, MaxPayload: 4096})
	noErr(t, err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	ms := []*member{startMember(t, "a", s.ClientURL(), testOptions(), sockhop.ServerOptions{}), startMember(t, "b", s.ClientURL(), testOptions(), sockhop.ServerOptions{})}
	near, far := connect(t, ms[0], false, nil), connect(t, ms[1], false, nil)
	converged(t, ms, 2)
	err = ms[0].node.Broadcast(context.Background(), strings.Repeat("x", 8192))
	if err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("oversized broadcast: %v, want an error naming max_payload", err)
	}
	if m := near.in.next(t, "the local part"); len(m.JSON()) != 8194 {
		t.Fatalf("local session got %d bytes", len(m.JSON()))
	}
	noErr(t, ms[0].node.Broadcast(context.Background(), "small"))
	if m := far.in.next(t, "the next broadcast"); string(m.JSON()) != `"small"` {
		t.Fatalf("far session got %s first, want the small broadcast (the big one never crossed)", m.JSON())
	}
}

// A call or a reply over the NATS server's max_payload fails at once
// with the limit named, not as an outage or a timeout.
func TestCallOverMaxPayload(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true, MaxPayload: 4096})
	noErr(t, err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	ms := []*member{startMember(t, "a", s.ClientURL(), testOptions(), sockhop.ServerOptions{}), startMember(t, "b", s.ClientURL(), testOptions(), sockhop.ServerOptions{})}
	far := connect(t, ms[1], false, func(*sockhop.Message) any { return strings.Repeat("y", 8192) })
	converged(t, ms, 1)
	id := idOf(t, ms[1], far)
	err = ms[0].node.Send(testCtx(t), id, strings.Repeat("x", 8192))
	if err == nil || !strings.Contains(err.Error(), "max_payload") || errors.Is(err, ErrUnavailable) {
		t.Fatalf("oversized Send: %v, want an error naming max_payload", err)
	}
	// The reply is too big to cross back: the caller learns it at once
	// (its ctx has an hour).
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err = ms[0].node.Request(ctx, id, "small")
	if err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("request with an oversized reply: %v, want an error naming max_payload", err)
	}
	t.Log(err)
}
