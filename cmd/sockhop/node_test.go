package main

import (
	"bufio"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSendToNode1x: `send --request` against a real Sockhop 1.8.4 server,
// with --compat (no handshake at all) and without (the handshake times out,
// send says so once on stderr and still delivers in JSON).
func TestSendToNode1x(t *testing.T) {
	target, output := startNodeServer(t)
	for _, compat := range []bool{true, false} {
		args := append([]string{"send", "--request", "--timeout", "4s"}, target...)
		if compat {
			args = append(args, "--compat")
		}
		r := sockhopRun(t, "", append(args, `"hello node"`)...)
		want := `{"type":"Object","data":{"echo":"hello node","type":"String"}}` + "\n"
		if r.code != 0 || r.stdout != want {
			t.Fatalf("compat=%v: exit %d, stdout %q, stderr %q; want %q", compat, r.code, r.stdout, r.stderr, want)
		}
		if compat && r.stderr != "" {
			t.Errorf("compat: unexpected stderr %q", r.stderr)
		}
		if !compat && strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("default mode: want one stderr line about the missing handshake, got %q", r.stderr)
		}
	}
	// A plain send is not lost by the 1.x receiver.
	r := sockhopRun(t, "", append(append([]string{"send", "--compat", "--type", "Widget"}, target...), `{"id":7}`)...)
	if r.code != 0 {
		t.Fatalf("plain send: exit %d, stderr %q", r.code, r.stderr)
	}
	waitOutput(t, output, `"type":"Widget","data":{"id":7}`)
	if out := output(); strings.Contains(out, `"fatal"`) {
		t.Fatalf("the 1.8.4 server crashed:\n%s", out)
	}
}

// TestServeCompatEchoNode1x: `serve --compat --echo` against a real Sockhop
// 1.8.4 client: a request comes back with its own type and data, a plain
// message is sent back, and a 1.x Buffer is echoed as a Buffer.
func TestServeCompatEchoNode1x(t *testing.T) {
	p := startServe(t, "--compat", "--echo", "--addr", "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(p.target[1])
	node := startNodeClient(t, port)
	node.cmd(t, `{"cmd":"request","data":{"a":[1,2]},"class":"Widget","id":"k1"}`)
	node.wait(t, `"event":"reply","id":"k1","type":"Widget","data":{"a":[1,2]}`)
	node.cmd(t, `{"cmd":"send","data":"plain"}`)
	node.wait(t, `"event":"receive","type":"String","data":"plain"`)
	node.cmd(t, `{"cmd":"send","base64":"AQID"}`) // 1.x writes Node's array form
	node.wait(t, `"event":"receive","type":"Buffer"`)
	node.wait(t, `"base64":"AQID"`)
	p.waitFor(t, "the 1.x Buffer", map[string]any{"event": "receive", "type": "Buffer", "base64": "AQID"})
	if strings.Contains(node.output(), `"fatal"`) {
		t.Fatalf("the 1.8.4 client crashed:\n%s", node.output())
	}
}

// nodePeer is `node peer.js server|client` driven through its stdin, its
// stdout kept as text.
type nodePeer struct {
	in  interface{ Write([]byte) (int, error) }
	mu  sync.Mutex
	out strings.Builder
}

func (n *nodePeer) cmd(t *testing.T, line string) {
	t.Helper()
	if _, err := n.in.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("writing to the node client: %v", err)
	}
}

func (n *nodePeer) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.out.String()
}

func (n *nodePeer) wait(t *testing.T, s string) {
	t.Helper()
	waitOutput(t, n.output, s)
}

// waitOutput polls output until it contains s.
func waitOutput(t *testing.T, output func() string, s string) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !strings.Contains(output(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in:\n%s", s, output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startNodeClient runs a real Sockhop 1.8.4 client against 127.0.0.1:port
// until the test ends.
func startNodeClient(t *testing.T, port string) *nodePeer {
	t.Helper()
	n := runNodePeer(t, "client", port)
	n.wait(t, `"connected"`)
	return n
}

// runNodePeer starts a real Sockhop 1.8.4 peer in role on port; it ends
// with the test (the peer exits when its stdin closes).
func runNodePeer(t *testing.T, role, port string) *nodePeer {
	t.Helper()
	requireNodePeer(t)
	cmd := exec.Command("node", "peer.js", role, "--port", port)
	cmd.Dir = nodeDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &nodePeer{in: stdin}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.mu.Lock()
			n.out.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stdin.Close() // the peer exits when its stdin closes
		select {
		case <-done:
		case <-time.After(testWait):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = cmd.Wait()
	})
	return n
}
