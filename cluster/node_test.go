package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/sockhop/sockhop-go"
)

// nodePeerDir holds the real Node Sockhop 1.8.4 peer of the interop tests
// (`make interop-deps` installs it).
const nodePeerDir = "../internal/interop/node"

// nodeClient is a real Node Sockhop 1.8.4 client (peer.js) connected to a
// member; its events arrive as decoded JSON lines.
type nodeClient struct {
	stdin  io.WriteCloser
	events chan map[string]any
}

func startNodeClient(t *testing.T, m *member) *nodeClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "node", "peer.js", "client", "--port", strconv.Itoa(portOf(m)))
	cmd.Dir = nodePeerDir
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	noErr(t, err)
	stdout, err := cmd.StdoutPipe()
	noErr(t, err)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting the Node 1.8.4 client (is node installed, and `make interop-deps` run?): %v", err)
	}
	nc := &nodeClient{stdin: stdin, events: make(chan map[string]any, 1000)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				nc.events <- ev
			}
		}
	}()
	t.Cleanup(func() {
		_, _ = io.WriteString(stdin, `{"cmd":"exit"}`+"\n")
		_ = stdin.Close()
		<-read
		_ = cmd.Wait()
		cancel()
	})
	nc.expect(t, "connected", func(ev map[string]any) bool { return ev["event"] == "connected" })
	return nc
}

func portOf(m *member) int { return m.srv.Addr().(*net.TCPAddr).Port }

// expect waits for an event that matches, skipping others; a fatal event
// of the peer fails the test.
func (nc *nodeClient) expect(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-nc.events:
			if ev["event"] == "fatal" {
				t.Fatalf("Node client died: %v", ev)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("Node client: no %s", what)
		}
	}
}

// Real Node Sockhop 1.8.4 clients on two servers, a Go client on a third:
// a broadcast from any server reaches all of them, and a request routed
// from one server to a Node client on another is answered.
func TestNode184Clients(t *testing.T) {
	ns := startNATS(t)
	ms := startCluster(t, ns, 3)
	n1, n2 := startNodeClient(t, ms[1]), startNodeClient(t, ms[2])
	goc := connect(t, ms[0], false, nil)
	converged(t, ms, 3)
	ctx := testCtx(t)

	noErr(t, ms[0].node.Broadcast(ctx, Tick{From: "s0", N: 1}))
	noErr(t, ms[2].node.Broadcast(ctx, Tick{From: "s2", N: 2}))
	// Two publishers: each one's order is kept, not the order between them.
	for _, nc := range []*nodeClient{n1, n2} {
		seen := map[float64]int{}
		for range 2 {
			ev := nc.expect(t, "broadcast", func(ev map[string]any) bool { return ev["event"] == "receive" && ev["type"] == "Tick" })
			d, _ := ev["data"].(map[string]any)
			n, _ := d["n"].(float64)
			seen[n]++
		}
		if seen[1] != 1 || seen[2] != 1 {
			t.Fatalf("Node client got broadcasts %v, want 1 and 2 once each", seen)
		}
	}
	// No duplicate comes after: the next message of each Node client is
	// a later broadcast of the same publishers (one publisher's order is
	// kept).
	noErr(t, ms[0].node.Broadcast(ctx, sockhop.Named{Type: "End", Data: 0}))
	noErr(t, ms[2].node.Broadcast(ctx, sockhop.Named{Type: "End", Data: 2}))
	for _, nc := range []*nodeClient{n1, n2} {
		for range 2 {
			ev := nc.expect(t, "end marker", func(ev map[string]any) bool { return ev["event"] == "receive" })
			if ev["type"] != "End" {
				t.Fatalf("Node client got %v after both broadcasts, want the end markers", ev)
			}
		}
	}
	for range 2 {
		if m := goc.in.next(t, "broadcast"); m.Type != "Tick" {
			t.Fatalf("Go client got %s", m)
		}
	}

	var nodeID string
	for _, info := range ms[0].node.Sessions() {
		if info.Server == ms[2].node.ServerID() {
			nodeID = info.ID
		}
	}
	reply, err := ms[0].node.Request(ctx, nodeID, Ask{Q: "from go"})
	noErr(t, err)
	var echo struct {
		Echo Ask    `json:"echo"`
		Type string `json:"type"`
	}
	noErr(t, reply.Decode(&echo))
	if echo.Echo.Q != "from go" || echo.Type != "Ask" {
		t.Fatalf("Node client's reply %s: %+v", reply, echo)
	}
	noErr(t, ms[0].node.Send(ctx, nodeID, sockhop.Named{Type: "Note", Data: "hi"}))
	n2.expect(t, "routed Send", func(ev map[string]any) bool {
		return ev["event"] == "receive" && ev["type"] == "Note" && ev["data"] == "hi"
	})
}
