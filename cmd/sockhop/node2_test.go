package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go/internal/nodepeer"
)

// node2ReadDelay is the pause of the emulated Node server's event loop
// before each socket read: what send writes within it after its transition
// line lands in the same read, where a Node 2.1.0 receiver loses binary
// frames (PROTOCOL.md 5.5, 14.1).
const node2ReadDelay = 30 * time.Millisecond

// node2Server starts an emulated Node Sockhop 2.1.0 server in the test
// process, closed at cleanup.
func node2Server(t *testing.T) *nodepeer.Server {
	t.Helper()
	srv, err := nodepeer.Listen("tcp", "127.0.0.1:0", nodepeer.Options{ReadDelay: node2ReadDelay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// node2Received waits until the emulated peer's connection ended (send
// closed it before exiting) and returns the data of the Seq messages its
// application received.
func node2Received(t *testing.T, p *nodepeer.Peer) []string {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(testWait):
		t.Fatalf("the emulated Node server did not see the connection end within %s", testWait)
	}
	var got []string
	for _, m := range p.Messages() {
		if m.Type != "Seq" || m.Bytes {
			got = append(got, fmt.Sprintf("unexpected %v", m))
			continue
		}
		got = append(got, string(m.Data))
	}
	return got
}

func node2Seq(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, fmt.Sprintf(`{"i":%d}`, i))
	}
	return s
}

// TestNode2SendRuns: 20 `sockhop send` processes, one message each, to an
// emulated Node 2.1.0 server: every run that exited 0 delivered its message.
func TestNode2SendRuns(t *testing.T) {
	srv := node2Server(t)
	addr := srv.Addr().String()
	const runs = 20
	var got []string
	lost := 0
	for i := 1; i <= runs; i++ {
		r := sockhopRun(t, "", "send", "--addr", addr, "--type", "Seq", fmt.Sprintf(`{"i":%d}`, i))
		if r.code != 0 {
			t.Fatalf("run %d: exit %d, stderr %q", i, r.code, r.stderr)
		}
		peers, err := srv.WaitPeers(i, testWait)
		if err != nil {
			t.Fatal(err)
		}
		p := peers[i-1]
		recv := node2Received(t, p)
		if len(recv) != 1 || recv[0] != fmt.Sprintf(`{"i":%d}`, i) {
			lost++
			t.Logf("run %d: the Node application received %v (Node peer reported %d corrupted line(s)/frame(s))", i, recv, p.Corrupted())
		}
		got = append(got, recv...)
	}
	if want := node2Seq(1, runs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%d of %d runs exited 0 but their message never reached the Node application; received %v", lost, runs, got)
	}
}

// TestNode2SendStdin: one `sockhop send` with 20 JSON lines on stdin.
func TestNode2SendStdin(t *testing.T) {
	srv := node2Server(t)
	const lines = 20
	r := sockhopRun(t, strings.Join(node2Seq(1, lines), "\n")+"\n", "send", "--addr", srv.Addr().String(), "--type", "Seq")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	peers, err := srv.WaitPeers(1, testWait)
	if err != nil {
		t.Fatal(err)
	}
	got := node2Received(t, peers[0])
	t.Logf("Node peer reported %d corrupted line(s)/frame(s)", peers[0].Corrupted())
	if want := node2Seq(1, lines); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("send exited 0, but the Node application received %d of %d lines: %v", len(got), lines, got)
	}
}
