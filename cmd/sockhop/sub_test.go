package main

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// pushServer is a library server in the test process that hands each new
// session to the test, for it to push messages and requests.
type pushServer struct {
	srv      *sockhop.Server
	sessions chan *sockhop.Session
}

func startPushServer(t *testing.T, addr string) *pushServer {
	t.Helper()
	p := &pushServer{sessions: make(chan *sockhop.Session, 4)}
	// A session is handed over once its handshake finished, so that
	// what the test sends goes in the mode the handshake chose.
	p.srv = sockhop.NewServer(sockhop.ServerOptions{Addr: addr, OnHandshake: func(s *sockhop.Session, _ bool, _ error) {
		p.sessions <- s
	}})
	if err := p.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *pushServer) session(t *testing.T) *sockhop.Session {
	t.Helper()
	select {
	case s := <-p.sessions:
		return s
	case <-time.After(testWait):
		t.Fatal("sub did not connect")
		return nil
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// TestSubGoServer: sub prints what a Go server pushes (JSON, bytes, typed
// buffers), filters by --type, answers requests with --echo and exits 0
// after --count.
func TestSubGoServer(t *testing.T) {
	ps := startPushServer(t, "127.0.0.1:0")
	sub := startEvents(t, []string{"sub", "--addr", ps.srv.Addr().String(), "--echo",
		"--type", "Widget", "--type", "Tile", "--type", "Question", "--count", "4"})
	s := ps.session(t)
	ctx := testContext(t)
	if err := s.Send(ctx, sockhop.Named{Type: "Ignored", Data: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, sockhop.Named{Type: "Widget", Data: map[string]int{"id": 7}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; !s.State().TxBinary; i++ { // the server's transition follows its handshake
		if i == 1000 {
			t.Fatal("the session never switched to binary mode")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.SendTyped(ctx, "Tile", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	reply, err := s.Request(ctx, sockhop.Named{Type: "Question", Data: "why?"})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if reply.Type != "Question" || string(reply.JSON()) != `"why?"` {
		t.Errorf("echo reply %s %s", reply.Type, reply.JSON())
	}
	reply, err = s.RequestTyped(ctx, "Tile", []byte{9})
	if err != nil || reply.Type != "Tile" || string(reply.Bytes()) != "\x09" {
		t.Errorf("typed echo reply %v, %v", reply, err)
	}
	for _, want := range []map[string]any{
		{"type": "Widget", "data": map[string]any{"id": 7}},
		{"type": "Tile", "base64": "AQID"},
		{"type": "Question", "data": "why?", "request": true},
		{"type": "Tile", "base64": "CQ==", "request": true},
	} {
		ev := sub.waitFor(t, "printed", want)
		if ts, _ := ev["time"].(string); !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
			t.Errorf("time %q is not a UTC timestamp in ms", ev["time"])
		}
	}
	select {
	case <-sub.exited:
	case <-time.After(testWait):
		t.Fatal("sub did not exit after --count 4")
	}
	if code := sub.cmd.ProcessState.ExitCode(); code != 0 || sub.count(map[string]any{"type": "Ignored"}) != 0 {
		t.Errorf("sub: exit %d, events %v, stderr %q", code, sub.snapshot(), sub.stderr.String())
	}
}

// TestSubReconnect: with --reconnect, sub keeps printing across a server
// restart and says so on stderr; without it, the loss ends sub with exit 1.
func TestSubReconnect(t *testing.T) {
	addr := freeAddr(t)
	ps := startPushServer(t, addr)
	sub := startEvents(t, []string{"sub", "--addr", addr, "--reconnect", "--reply", `{"ok":true}`})
	ctx := testContext(t)
	if err := ps.session(t).Send(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	sub.waitFor(t, "before", map[string]any{"type": "String", "data": "before"})
	ps.srv.Close()
	ps = startPushServer(t, addr)
	s := ps.session(t)
	reply, err := s.Request(ctx, "after")
	if err != nil || string(reply.JSON()) != `{"ok":true}` {
		t.Fatalf("request after the restart: %v, %v", reply, err)
	}
	sub.waitFor(t, "after", map[string]any{"type": "String", "data": "after", "request": true})
	if code, _ := sub.stop(t); code != 0 {
		t.Errorf("sub exit %d on SIGTERM", code)
	}
	for _, want := range []string{"lost", "reconnected to " + addr} {
		if !strings.Contains(sub.stderr.String(), want) {
			t.Errorf("stderr %q does not say %q", sub.stderr.String(), want)
		}
	}

	// Without --reconnect.
	sub = startEvents(t, []string{"sub", "--addr", addr})
	ps.session(t)
	ps.srv.Close()
	select {
	case <-sub.exited:
	case <-time.After(testWait):
		_ = sub.cmd.Process.Signal(syscall.SIGTERM)
		t.Fatal("sub did not exit when the server closed")
	}
	if code := sub.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(sub.stderr.String(), "ended") {
		t.Errorf("sub after the server closed: exit %d, stderr %q; want 1 and the reason", code, sub.stderr.String())
	}
}

// TestSubNode1x: sub against a real Sockhop 1.8.4 server prints what it
// broadcasts (JSON, a 1.x Buffer as bytes) and answers its request.
func TestSubNode1x(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	node := runNodePeer(t, "server", port)
	node.wait(t, `"listening"`)
	sub := startEvents(t, []string{"sub", "--compat", "--addr", addr, "--echo", "--count", "3"})
	node.wait(t, `"event":"connect"`)
	node.cmd(t, `{"cmd":"send","data":{"from":"node"},"class":"Widget"}`)
	node.cmd(t, `{"cmd":"send","base64":"AQID"}`)
	node.cmd(t, `{"cmd":"request","data":"q","id":"r1"}`)
	node.wait(t, `"event":"reply","id":"r1","type":"String","data":"q"`)
	sub.waitFor(t, "widget", map[string]any{"type": "Widget", "data": map[string]any{"from": "node"}})
	sub.waitFor(t, "buffer", map[string]any{"type": "Buffer", "base64": "AQID"})
	sub.waitFor(t, "request", map[string]any{"type": "String", "data": "q", "request": true})
	select {
	case <-sub.exited:
	case <-time.After(testWait):
		t.Fatal("sub did not exit after --count 3")
	}
	if code := sub.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("sub: exit %d, stderr %q", code, sub.stderr.String())
	}
	if strings.Contains(node.output(), `"fatal"`) {
		t.Fatalf("the 1.8.4 server crashed:\n%s", node.output())
	}
}
